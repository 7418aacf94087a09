"""Gold and system notes for the scorers: i2b2 2014 XML, i2b2 2010 `.con`, brat, JSON lines.

Every reader returns `Note`s: the note's id, its text (None where the file has none, e.g. a system
`.con` or JSON lines without `--include_text`) and its spans (character offsets, end exclusive). Files
and folders are read the same way: a folder is searched recursively for the format's suffix.

Offsets are checked against the text (`0 <= start <= end <= len(text)`); a bad file ends the run with
one line naming it (`fileio.InputError`). The XML parser is the training readers' (defusedxml, the
same bare-`&` tolerance), the `.con` line grammar is `tasks/i2b2_2010.py`'s.
"""

import collections
import dataclasses
import glob
import json
import os
import re
from typing import List, Optional, Tuple

from clinicalbert_tf import fileio
from clinicalbert_tf.tasks import documents
from clinicalbert_tf.tasks import i2b2_2010 as i2b2_2010_task

FORMATS = ("i2b2_2014", "con", "brat", "jsonl")
SUFFIXES = {"i2b2_2014": ".xml", "con": ".con", "brat": ".ann", "jsonl": ".jsonl"}

# The XML elements under <TAGS> the official 2014 scorer reads as PHI (its PHITag.tag_types).
I2B2_2014_PHI_TAGS = ("PHI", "NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID",
                      "OTHER")

# The official scorer's file-name rule: `<patient>-<record><system id>.xml`.
_I2B2_2014_NAME_RE = re.compile(r"^(\d+)-(\d+)(.*)\.xml")


@dataclasses.dataclass
class Span:
  """A span over characters [start, end) of its note.

  Attributes:
    start, end: character offsets (end exclusive); None for a `.con` concept read without its text.
    type: the label (i2b2 2014: the TYPE attribute, as written).
    tag: the i2b2 2014 XML element (NAME, DATE, ...); "" for other formats.
    first, last: `.con` only: the (line, token) of the first and last word (line 1-based).
  """
  start: Optional[int]
  end: Optional[int]
  type: str
  tag: str = ""
  first: Optional[Tuple[int, int]] = None
  last: Optional[Tuple[int, int]] = None


@dataclasses.dataclass
class Note:
  """One note of a gold or system set.

  Attributes:
    note_id: what pairs gold with system (the file name's stem; i2b2 2014: `<patient>-<record>`).
    text: the note's text, or None where the file holds none.
    spans: its spans, in file order.
    path: where it was read from (for messages).
    sys_id: i2b2 2014 only: what follows `<patient>-<record>` in the file name (the official
      scorer reports each system id separately).
  """
  note_id: str
  text: Optional[str]
  spans: List[Span]
  path: str
  sys_id: str = ""


def i2b2_2014_ids(path):
  """(note id, system id) of an i2b2 2014 file, by the official scorer's file-name rule.

  `220-01.xml` -> (`220-01`, ``); `220-01foo.xml` -> (`220-01`, `foo`); any other name -> (its stem
  followed by `-`, ``), as the official script makes it.
  """
  name = os.path.basename(path)
  m = _I2B2_2014_NAME_RE.match(name)
  if m:
    return "%s-%s" % (m.group(1), m.group(2)), m.group(3)
  return os.path.splitext(name)[0] + "-", ""


def _offsets(element, where):
  try:
    return int(element.get("start")), int(element.get("end"))
  except (TypeError, ValueError):
    raise fileio.InputError("%s: start=%r end=%r are not character offsets" %
                            (where, element.get("start"), element.get("end"))) from None


def check_offsets(note, span, where):
  """Raises InputError unless the span lies inside the note's text."""
  if note.text is not None and not 0 <= span.start <= span.end <= len(note.text):
    raise fileio.InputError("%s has offsets %d-%d outside the text (%d characters)" %
                            (where, span.start, span.end, len(note.text)))
  if note.text is None and not 0 <= span.start <= span.end:
    raise fileio.InputError("%s has offsets %d-%d: expected 0 <= start <= end" %
                            (where, span.start, span.end))


def read_i2b2_2014(path):
  """A Note from an i2b2 2014 de-identification XML file (every PHI element under <TAGS>)."""
  root = documents.parse_xml(path)
  text_element = root.find("TEXT")
  if text_element is None:
    raise fileio.InputError("%s: no <TEXT> element" % path)
  note_id, sys_id = i2b2_2014_ids(path)
  note = Note(note_id, text_element.text or "", [], path, sys_id)
  tags = root.find("TAGS")
  for element in (list(tags) if tags is not None else []):
    if element.tag not in I2B2_2014_PHI_TAGS:
      continue
    where = "%s: <%s id=%s>" % (path, element.tag, element.get("id", "?"))
    start, end = _offsets(element, where)
    # The official scorer reads a missing TYPE as "" (and warns); so do we.
    span = Span(start, end, element.get("TYPE", ""), element.tag)
    check_offsets(note, span, where)
    note.spans.append(span)
  return note


def _text_for(path, suffix=".txt"):
  """The text of the `.txt` next to an annotation file, or None if there is none."""
  txt = os.path.splitext(path)[0] + suffix
  return documents.read_text_file(txt) if os.path.isfile(txt) else None


def read_brat(path):
  """A Note from a brat `.ann` (text-bound `T` lines; discontinuous spans: first to last offset),
  with the text of the `.txt` beside it if there is one."""
  note = Note(os.path.splitext(os.path.basename(path))[0], _text_for(path), [], path)
  for where, line in documents.nonblank_lines(path):
    if not line.startswith("T"):
      continue  # relations, events, attributes, notes: not spans
    fields = line.split("\t")
    parts = fields[1].split(" ", 1) if len(fields) >= 2 else []
    try:
      label = parts[0]
      offsets = [int(x) for piece in parts[1].split(";") for x in piece.split()]
      start, end = min(offsets), max(offsets)
    except (IndexError, ValueError):
      raise fileio.InputError("%s: expected `T<n><TAB><label> <start> <end><TAB><text>`" %
                              where) from None
    span = Span(start, end, label)
    check_offsets(note, span, where)
    note.spans.append(span)
  return note


def con_line_offsets(text):
  """Per line (1-based index - 1), the (start, end) character offsets of its whitespace tokens."""
  result = []
  position = 0
  for line in text.split("\n"):
    result.append([(position + m.start(), position + m.end()) for m in re.finditer(r"\S+", line)])
    position += len(line) + 1
  return result


def read_con(path, text=None):
  """A Note from an i2b2 2010 `.con` file; `text` (else the `.txt` beside it) gives char offsets."""
  text = text if text is not None else _text_for(path)
  note = Note(os.path.splitext(os.path.basename(path))[0], text, [], path)
  lines = con_line_offsets(text) if text is not None else None
  for where, line in documents.nonblank_lines(path):
    _, l1, t1, l2, t2, typ = i2b2_2010_task.parse_concept(line, where)
    start = end = None
    if lines is not None:
      for l, t in ((l1, t1), (l2, t2)):
        if not 1 <= l <= len(lines) or not 0 <= t < len(lines[l - 1]):
          raise fileio.InputError("%s: position %d:%d is outside the text (%d lines)" %
                                  (where, l, t, len(lines)))
      start, end = lines[l1 - 1][t1][0], lines[l2 - 1][t2][1]
    note.spans.append(Span(start, end, typ, first=(l1, t1), last=(l2, t2)))
  return note


def read_jsonl(path):
  """Notes from predict.py's JSON lines: `{"id", "entities": [{"start", "end", "label"}], "text"?}`."""
  notes = []
  for where, line in documents.nonblank_lines(path):
    try:
      record = json.loads(line)
      note = Note(str(record["id"]), record.get("text"), [], path)
      entities = record.get("entities", [])
      spans = [Span(int(e["start"]), int(e["end"]), str(e["label"])) for e in entities]
    except (ValueError, KeyError, TypeError) as e:
      raise fileio.InputError('%s: expected a JSON object with "id" and "entities" ([{"start", '
                              '"end", "label"}]): %s' % (where, fileio.one_line(e))) from None
    for n, span in enumerate(spans):
      check_offsets(note, span, "%s: entity %d" % (where, n + 1))
    note.spans = spans
    notes.append(note)
  return notes


def detect_format(path):
  """The format of a file (by suffix) or a folder (the suffix its files have most)."""
  by_suffix = {s: f for f, s in SUFFIXES.items()}
  if os.path.isfile(path):
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".txt" and os.path.isfile(os.path.splitext(path)[0] + ".con"):
      return "con"
    if suffix not in by_suffix:
      raise fileio.InputError("%s: cannot tell the format from the suffix %r: expected one of %s" %
                              (path, suffix, ", ".join(sorted(by_suffix))))
    return by_suffix[suffix]
  if not os.path.isdir(path):
    raise fileio.InputError("%s: no such file or folder" % path)
  counts = collections.Counter()
  for root, _, names in os.walk(path):
    for name in names:
      suffix = os.path.splitext(name)[1].lower()
      if suffix in by_suffix:
        counts[by_suffix[suffix]] += 1
  if not counts:
    raise fileio.InputError("%s: no %s files in this folder" % (path, "/".join(sorted(by_suffix))))
  return counts.most_common(1)[0][0]


def _files(path, suffix):
  if os.path.isfile(path):
    return [path]
  return sorted(p for p in glob.glob(os.path.join(path, "**", "*" + suffix), recursive=True)
                if os.path.isfile(p))


def load(path, fmt=None, texts=None):
  """{note id: Note} of a file or folder.

  Args:
    path: a file or a folder (searched recursively).
    fmt: one of FORMATS, or None to detect it.
    texts: {note id: text} for formats without their own text (`.con` without a `.txt`).

  Raises:
    fileio.InputError: an unreadable file, or two notes with one id.
  """
  fmt = fmt or detect_format(path)
  notes = collections.OrderedDict()
  for name in _files(path, SUFFIXES[fmt]):
    if fmt == "i2b2_2014":
      found = [read_i2b2_2014(name)]
    elif fmt == "brat":
      found = [read_brat(name)]
    elif fmt == "con":
      stem = os.path.splitext(os.path.basename(name))[0]
      found = [read_con(name, (texts or {}).get(stem))]
    else:
      found = read_jsonl(name)
    for note in found:
      key = (note.sys_id, note.note_id)
      if key in notes:
        raise fileio.InputError("%s: note %s is also in %s" % (note.path, note.note_id,
                                                              notes[key].path))
      notes[key] = note
  if not notes:
    raise fileio.InputError("%s: no %s notes" % (path, fmt))
  return notes


def pair_notes(gold, system, allow_missing=False):
  """Pairs gold and system notes by id: a list of (gold Note or None, system Note or None).

  A system note must have the gold note's text where it carries one (the scorers compare offsets,
  which mean nothing over another text); a system note without text borrows the gold text.

  Args:
    gold: {(sys id, note id): Note} (`load`).
    system: the same for the system.
    allow_missing: count a note missing on one side (as a note without spans there) instead of
      stopping.

  Raises:
    fileio.InputError: a note without its counterpart (unless allow_missing), or different texts.
  """
  gold_by_id = {note_id: note for (_, note_id), note in gold.items()}
  pairs = []
  seen = set()
  for (_, note_id), s in system.items():
    g = gold_by_id.get(note_id)
    seen.add(note_id)
    if g is None:
      if not allow_missing:
        raise fileio.InputError("%s: no gold note %s (expected one among the gold files; "
                                "--allow_missing counts it)" % (s.path, note_id))
      pairs.append((None, s))
      continue
    if s.text is None:
      s.text = g.text
      for n, span in enumerate(s.spans):
        if span.start is not None:
          check_offsets(s, span, "%s: span %d" % (s.path, n + 1))
    elif g.text is not None and s.text != g.text:
      raise fileio.InputError("%s: its text differs from the gold note's (%s): %s" %
                              (s.path, g.path, documents.describe_mismatch(g.text, s.text)))
    pairs.append((g, s))
  for (_, note_id), g in gold.items():
    if note_id not in seen:
      if not allow_missing:
        raise fileio.InputError("%s: no system note %s (expected one among the system files; "
                                "--allow_missing counts it)" % (g.path, note_id))
      pairs.append((g, None))
  return pairs
