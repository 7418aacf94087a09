"""PHI spans from files, to anonymize without running a model (`deidentify.py --spans_file`).

Formats (`SPAN_FORMATS`, one reader function and one registry line each):
  * `jsonl`: predict.py's JSON lines, `{"id": ..., "entities": [{"start", "end", "label",
    "score"}, ...]}`, one note per line (any number of files);
  * `i2b2_2014`: the i2b2/n2c2 2014 XML (reviewed or gold annotations), one note per file, its id
    the file name without `.xml` (`220-01.xml` -> `220-01`); the TYPE attribute is the label;
  * `brat`: standoff `.ann` files, one note per file, id = the file name without `.ann`;
    text-bound annotations `T1<TAB>LABEL start end[;start end]<TAB>text` (a discontinuous one gives
    one span per fragment); other lines (relations, notes) are skipped.
`read_spans(paths, spans_format)` returns {note id: [span]} (ScoredSpan, SpanWithText). Formats that carry the annotated
text (i2b2 XML, brat) are checked against the note when it is anonymized (`check_text`): a span
whose text differs names the note and offsets, since it means the annotations belong to another
version of the note. Every span is checked to fit its note (`spans.check_fit`).
"""

import collections
import json
import os

from clinicalbert_tf import fileio
from clinicalbert_tf.anonymize import spans as spans_lib

SpanWithText = collections.namedtuple("SpanWithText", ["start", "end", "label", "text"])
ScoredSpan = collections.namedtuple("ScoredSpan", ["start", "end", "label", "score"])


def _int_field(value, where, name):
  if isinstance(value, bool) or not isinstance(value, int):
    raise fileio.InputError("%s: %s=%r is not a character offset" % (where, name, value))
  return value


def read_jsonl(path):
  """{id: [ScoredSpan]} of predict.py's JSON lines."""
  out = collections.OrderedDict()
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      where = "%s:%d" % (path, number)
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
      except (UnicodeDecodeError, ValueError) as e:
        raise fileio.InputError("%s: not a JSON line (%s)" % (
            where, getattr(e, "msg", type(e).__name__))) from None
      if not isinstance(record, dict) or "id" not in record or not isinstance(
          record.get("entities"), list):
        raise fileio.InputError("%s: expected an object with \"id\" and an \"entities\" list "
                                "(predict.py's output)" % where)
      spans = []
      for n, entity in enumerate(record["entities"]):
        here = "%s: entity %d" % (where, n)
        if not isinstance(entity, dict) or not isinstance(entity.get("label"), str):
          raise fileio.InputError("%s: expected an object with start, end and label" % here)
        score = entity.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
          raise fileio.InputError("%s: score=%r is not a number" % (here, score))
        spans.append(ScoredSpan(_int_field(entity.get("start"), here, "start"),
                                _int_field(entity.get("end"), here, "end"), entity["label"],
                                float(score)))
      note_id = str(record["id"])
      if note_id in out:
        raise fileio.InputError("%s: note id %s repeats an earlier line's" % (where, note_id))
      out[note_id] = spans
  return out


def read_i2b2_2014(path):
  """{id: [SpanWithText]} of one i2b2 2014 XML file."""
  from clinicalbert_tf.tasks import i2b2_2012  # pylint: disable=g-import-not-at-top
  _, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", None, "TYPE",
                                             lambda typ, where: None)
  note_id = os.path.splitext(os.path.basename(path))[0]
  return {note_id: [SpanWithText(e.start, e.end, e.type, e.text) for e in entities]}


def read_brat(path):
  """{id: [SpanWithText]} of one brat `.ann` file (one span per fragment)."""
  spans = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      where = "%s:%d" % (path, number)
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise fileio.InputError("%s: not UTF-8 text (byte %d)" % (where, e.start)) from None
      if not line.startswith("T"):
        continue
      fields = line.split("\t")
      if len(fields) < 2:
        raise fileio.InputError("%s: expected `T<n><TAB>LABEL start end<TAB>text`" % where)
      label, _, offsets = fields[1].partition(" ")
      fragments = []
      for fragment in offsets.split(";"):
        try:
          start, end = (int(x) for x in fragment.split())
        except ValueError:
          raise fileio.InputError("%s: offsets %r are not `start end`" % (
              where, fragment)) from None
        fragments.append((start, end))
      texts = fields[2].split(" ") if len(fields) > 2 and len(fragments) > 1 else None
      for n, (start, end) in enumerate(fragments):
        text = (fields[2] if len(fields) > 2 and len(fragments) == 1 else
                texts[n] if texts and len(texts) == len(fragments) else None)
        spans.append(SpanWithText(start, end, label, text))
  return {os.path.splitext(os.path.basename(path))[0]: spans}


SPAN_FORMATS = collections.OrderedDict([
    ("jsonl", read_jsonl),
    ("i2b2_2014", read_i2b2_2014),
    ("brat", read_brat),
])


def read_spans(paths, spans_format="jsonl"):
  """{note id: [span]} of every file in `paths` (expanded); InputError for a repeated note id."""
  if spans_format not in SPAN_FORMATS:
    raise fileio.InputError("--spans_format=%s: expected one of %s" % (
        spans_format, ", ".join(SPAN_FORMATS)))
  out = collections.OrderedDict()
  for path in paths:
    try:
      found = SPAN_FORMATS[spans_format](path)
    except FileNotFoundError:
      raise fileio.InputError("--spans_file: %s: no such file" % path) from None
    for note_id, spans in found.items():
      if note_id in out:
        raise fileio.InputError("%s: note %s has spans in an earlier file too" % (path, note_id))
      out[note_id] = spans
  return out


def check_spans(note_id, text, spans):
  """Raises InputError naming the note and offsets of a span outside `text`, or one whose
  recorded text (i2b2 XML, brat) differs from the note's there (the text itself is not quoted)."""
  spans_lib.check_fit(note_id, text, [spans_lib.as_span(s) for s in spans])
  for s in spans:
    recorded = getattr(s, "text", None)
    if recorded is not None and " ".join(recorded.split()) != " ".join(
        text[s.start:s.end].split()):
      raise fileio.InputError("note %s: span %d-%d (%s): the annotation's text differs from the "
                              "note's there (annotations of another version of the note?)" % (
                                  note_id, s.start, s.end, s.label))
