"""PHI spans as the anonymizer takes them: checked against their note, overlaps merged.

A span is any object with `.start`, `.end` and `.label` (`inference.Span`) or a (start, end,
label) tuple; offsets are Python string indices, end exclusive.

Merging (`merge`): spans that overlap (share at least one character) become one span over their
union. Its label is that of the first list given (the model's, before the pattern recognizers')
holding one of them, and within that list the longest span's (the earliest on a tie). Spans that
only touch stay apart.
"""

import collections

from clinicalbert_tf import fileio

PhiSpan = collections.namedtuple("PhiSpan", ["start", "end", "label"])


def as_span(span):
  if isinstance(span, tuple) and not hasattr(span, "start"):
    start, end, label = span[:3]
    return PhiSpan(int(start), int(end), str(label))
  return PhiSpan(int(span.start), int(span.end), str(span.label))


def check_fit(note_id, text, spans):
  """Raises InputError naming the note and offsets of a span that does not fit in `text`."""
  for s in spans:
    if not 0 <= s.start < s.end <= len(text):
      raise fileio.InputError("note %s: span %d-%d (%s) does not fit the note (%d characters)" % (
          note_id, s.start, s.end, s.label, len(text)))


def merge(*span_lists):
  """One sorted list of disjoint PhiSpans from `span_lists` (first list: first say on labels)."""
  tagged = []
  for rank, spans in enumerate(span_lists):
    for span in spans:
      s = as_span(span)
      tagged.append((s.start, s.end, rank, s))
  tagged.sort(key=lambda t: (t[0], -t[1], t[2]))
  merged = []
  group = []
  end = -1
  for start, stop, rank, span in tagged:
    if group and start >= end:
      merged.append(_one(group))
      group = []
    group.append((rank, span))
    end = max(end, stop) if len(group) > 1 else stop
  if group:
    merged.append(_one(group))
  return merged


def _one(group):
  if len(group) == 1:
    return group[0][1]
  best = min(group, key=lambda rs: (rs[0], -(rs[1].end - rs[1].start), rs[1].start))[1]
  return PhiSpan(min(s.start for _, s in group), max(s.end for _, s in group), best.label)
