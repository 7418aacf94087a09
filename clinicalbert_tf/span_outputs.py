"""Predicted spans out: JSON lines, brat standoff, i2b2 2014 XML, i2b2 2010 `.con`; PHI replacement.

Offsets are Python string indices into the note as given, end exclusive. Only the formats that need
the note's text hold it (brat's entity text, the i2b2 2014 XML's TEXT, `.con`'s concept text, JSON
lines with `include_text`): JSON lines without it carry no clinical text.
"""

import collections
import dataclasses
import json
import os
from typing import Optional, Tuple
from xml.sax import saxutils

from clinicalbert_tf import fileio
from clinicalbert_tf.tasks import i2b2_2010

OUTPUT_FORMATS = ("jsonl", "brat", "i2b2_2014", "con")
# The file suffix of each per-note format.
SUFFIXES = {"jsonl": ".jsonl", "brat": ".ann", "i2b2_2014": ".xml", "con": ".con"}
# surrogate: realistic values consistent within the note (`surrogates.Surrogates.replace_spans`).
REPLACE_MODES = ("placeholder", "tag", "mask", "surrogate")

# The 2014 de-identification guidelines' fine TYPEs under their XML tags (the tag the scorer reads).
I2B2_2014_TAGS = {
    "NAME": ("PATIENT", "DOCTOR", "USERNAME"),
    "PROFESSION": ("PROFESSION",),
    "LOCATION": ("ROOM", "DEPARTMENT", "HOSPITAL", "ORGANIZATION", "STREET", "CITY", "STATE",
                 "COUNTRY", "ZIP", "LOCATION-OTHER"),
    "AGE": ("AGE",),
    "DATE": ("DATE",),
    "CONTACT": ("PHONE", "FAX", "EMAIL", "URL", "IPADDR"),
    "ID": ("SSN", "MEDICALRECORD", "HEALTHPLAN", "ACCOUNT", "LICENSE", "VEHICLE", "DEVICE", "BIOID",
           "IDNUM"),
}
_TAG_OF_TYPE = {t: tag for tag, types in I2B2_2014_TAGS.items() for t in types}


@dataclasses.dataclass
class Span:
  """A predicted entity over characters [start, end) of its note.

  `first` and `last` are the (line, token) positions of its first and last word (line 1-based,
  token 0-based within the line), which the i2b2 2010 `.con` format counts in.
  """
  start: int
  end: int
  label: str
  score: float
  first: Optional[Tuple[int, int]] = None
  last: Optional[Tuple[int, int]] = None

  def to_json(self):
    return {"start": self.start, "end": self.end, "label": self.label,
            "score": round(float(self.score), 6)}


def jsonl_record(note_id, spans, text=None):
  """The JSON-lines object of one note (`text` only when asked for: it is PHI)."""
  record = {"id": note_id, "entities": [s.to_json() for s in spans]}
  if text is not None:
    record["text"] = text
  return record


def format_brat(text, spans):
  """brat standoff (`.ann`) lines: `T1<TAB>label start end<TAB>text`."""
  return "".join("T%d\t%s %d %d\t%s\n" % (n, s.label, s.start, s.end, text[s.start:s.end])
                 for n, s in enumerate(spans, 1))


def i2b2_2014_tag(label):
  """The XML tag of a fine PHI TYPE (`DOCTOR` -> `NAME`); an unknown type is its own tag."""
  return _TAG_OF_TYPE.get(label, label)


def format_i2b2_2014(text, spans):
  """The de-identification XML the i2b2/n2c2 2014 scorer reads (TEXT in CDATA, one tag per span)."""
  cdata = text.replace("]]>", "]]]]><![CDATA[>")  # "]]>" cannot appear inside one CDATA section
  lines = ['<?xml version="1.0" encoding="UTF-8" ?>', "<deIdi2b2>",
           "<TEXT><![CDATA[%s]]></TEXT>" % cdata, "<TAGS>"]
  for n, s in enumerate(spans):
    lines.append('<%s id="P%d" start="%d" end="%d" text=%s TYPE=%s comment="" />' % (
        i2b2_2014_tag(s.label), n, s.start, s.end, saxutils.quoteattr(text[s.start:s.end]),
        saxutils.quoteattr(s.label)))
  lines += ["</TAGS>", "</deIdi2b2>"]
  return "\n".join(lines) + "\n"


def format_con(text, spans):
  """i2b2 2010 concept lines (`c="text" 3:2 3:4||t="problem"`), as run_finetune writes them."""
  lines = []
  for s in spans:
    words = text[s.start:s.end].split()
    lines.append(i2b2_2010.format_con_line(words, s.first, s.last, s.label) + "\n")
  return "".join(lines)


def format_note(output_format, text, spans):
  """The per-note file of `output_format` (brat, i2b2_2014 or con)."""
  return {"brat": format_brat, "i2b2_2014": format_i2b2_2014, "con": format_con}[output_format](
      text, spans)


def replacement(label, length, mode, mask_char="*"):
  """What a PHI span of `label` and `length` characters becomes under `mode` (not `surrogate`,
  which depends on the whole note: see `replace_spans`)."""
  if mode == "placeholder":
    return "[**%s**]" % label  # MIMIC-III's de-identification brackets
  if mode == "tag":
    return "<%s>" % label
  if mode == "mask":
    return mask_char * length
  raise ValueError("replace mode must be one of %s, got %r" % (REPLACE_MODES, mode))


def replace_spans(text, spans, mode="placeholder", mask_char="*", surrogates=None, note_key=None):
  """`text` with every span (disjoint) replaced as `mode` says.

  `surrogate` needs `surrogates` (a `surrogates.Surrogates`) and `note_key` (the note's id, which
  seeds its surrogates with the run's seed): the note-level rules there (the same text the same
  surrogate, dates shifted together, the replaced PHI never repeated) are applied, not redone here.
  """
  spans = sorted(spans, key=lambda s: s.start)
  if mode == "surrogate":
    if surrogates is None or note_key is None:
      raise ValueError("replace mode surrogate needs surrogates and note_key")
    new_text, _ = surrogates.replace_spans(text, [(s.start, s.end, s.label) for s in spans],
                                           note_key)
    return new_text
  parts = []
  last = 0
  for s in spans:
    parts.append(text[last:s.start])
    parts.append(replacement(s.label, s.end - s.start, mode, mask_char))
    last = s.end
  parts.append(text[last:])
  return "".join(parts)


class PerInputWriter(object):
  """JSON lines per input file, `<output_dir>/<input stem>.jsonl`, each written atomically."""

  def __init__(self, output_dir, input_files):
    self.output_dir = output_dir
    self.remaining = collections.deque(input_files)
    self.current = None  # (input file, context manager, file)

  @staticmethod
  def path_for(output_dir, input_file):
    return os.path.join(output_dir, os.path.splitext(os.path.basename(input_file))[0] + ".jsonl")

  def _commit(self):
    if self.current:
      self.current[1].__exit__(None, None, None)
      self.current = None

  def _open_next(self):
    self._commit()
    source = self.remaining.popleft()
    context = fileio.atomic_open(self.path_for(self.output_dir, source))
    self.current = (source, context, context.__enter__())

  def write(self, source, record):
    while self.current is None or self.current[0] != source:
      self._open_next()  # an input file without a readable note gets an empty output
    self.current[2].write(json.dumps(record, ensure_ascii=False) + "\n")

  def close(self, ok):
    if not ok:
      if self.current:
        self.current[1].__exit__(RuntimeError, RuntimeError("aborted"), None)
        self.current = None
      return
    while self.remaining or self.current:
      if self.remaining:
        self._open_next()
      else:
        self._commit()
