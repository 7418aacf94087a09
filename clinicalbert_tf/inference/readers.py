"""Note readers: plain text files, JSON lines, MIMIC's NOTEEVENTS, streamed one note at a time.

`--input_file` is a comma list of files or globs (`fileio.expand_file_patterns`). Each file is read
by one registered reader, `--input_format` names it, or `auto` walks the registry and takes the
first reader that claims the file by its name:

  * `jsonl` (`.jsonl`, `.json`): one JSON object per line, the note in `text_field`, its id in
    `id_field` (absent: `<file stem>-<line>`), its patient in `patient_field` when asked; a
    sentence-pair model reads `sentence1`/`sentence2` (MedNLI's fields) instead of `text_field`;
  * `noteevents` (`.csv`, `.csv.gz`): MIMIC-III's NOTEEVENTS through the project's streaming reader,
    id = ROW_ID, patient = SUBJECT_ID;
  * `text` (anything else): one note per file, its id the file name without the last extension
    (`note-201.txt` -> `note-201`); the text is the file's UTF-8 content exactly (offsets index
    into it).

A note that cannot be used (bad UTF-8, an unreadable file, a JSON line that is not an object with
the fields, a bad CSV row) becomes a `BadNote` naming where it is and why -- never its text -- so
the caller decides whether to stop (the default) or count it and go on (`--max_bad_notes`).

A new reader is one class (`name`, `claims`, `read`, optionally `count` and `reads_pairs`) and one
`register` line.
"""

import collections
import dataclasses
import json
import os
from typing import Optional

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import noteevents


@dataclasses.dataclass
class Note:
  """One note to predict on (or, for a sentence-pair model, one pair in `text` and `text_b`)."""
  id: str
  text: str
  source: str  # the input file it came from
  where: str  # the file and line or row, for messages
  text_b: Optional[str] = None
  patient: Optional[str] = None  # the patient key (JSON lines' patient_field, SUBJECT_ID)


@dataclasses.dataclass
class BadNote:
  """A note that cannot be read: where it is and why (never its text)."""
  source: str
  where: str
  reason: str


@dataclasses.dataclass
class ReadOptions:
  """How notes are read (the flags of the same names)."""
  id_field: str = "id"
  text_field: str = "text"
  patient_field: Optional[str] = None
  pairs: bool = False  # read sentence pairs (`sentence1`, `sentence2`) for a sentence-pair model


def file_stem(path):
  """`dir/note-201.txt` -> `note-201`; `notes.jsonl.gz` -> `notes.jsonl`."""
  return os.path.splitext(os.path.basename(path))[0]


def decode_utf8(data, where):
  """`data` as text; InputError naming `where` and the byte offset if it is not UTF-8."""
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise fileio.InputError("%s: not UTF-8 text (byte %d: %s)" %
                            (where, e.start, e.reason)) from None


class Reader(object):
  """A kind of note file. Subclasses set `name` and implement `claims` and `read`."""

  name = None
  reads_pairs = False  # whether a sentence-pair model can read its notes

  def claims(self, path):
    """True when `--input_format=auto` should read `path` with this reader (by its name)."""
    raise NotImplementedError()

  def read(self, path, options):
    """Yields a Note or BadNote per note of `path` (streamed)."""
    raise NotImplementedError()

  def count(self, path, options):  # pylint: disable=unused-argument
    """The number of notes in `path` when that is cheap to know, else None."""
    return None


class TextReader(Reader):
  """One note per plain text file."""

  name = "text"

  def claims(self, path):
    return True

  def read(self, path, options):
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      yield BadNote(path, path, "cannot be read: %s" % (e.strerror or e))
      return
    try:
      text = decode_utf8(data, path)
    except fileio.InputError as e:
      yield BadNote(path, path, str(e)[len(path) + 2:])
      return
    yield Note(file_stem(path), text, path, path)

  def count(self, path, options):
    return 1


class JsonLinesReader(Reader):
  """One JSON object per line."""

  name = "jsonl"
  reads_pairs = True

  def claims(self, path):
    return os.path.basename(path).lower().endswith((".jsonl", ".json"))

  def read(self, path, options):
    stem = file_stem(path)
    fields = ("sentence1", "sentence2") if options.pairs else (options.text_field,)
    try:
      f = open(path, "rb")
    except OSError as e:
      yield BadNote(path, path, "cannot be read: %s" % (e.strerror or e))
      return
    with f:
      for number, raw in enumerate(f, 1):
        where = "%s:%d" % (path, number)
        if not raw.strip():
          continue
        try:
          record = json.loads(decode_utf8(raw, where))
        except fileio.InputError as e:
          yield BadNote(path, where, str(e)[len(where) + 2:])
          continue
        except json.JSONDecodeError as e:
          yield BadNote(path, where, "not JSON (%s at column %d)" % (e.msg, e.colno))
          continue
        if not isinstance(record, dict):
          yield BadNote(path, where, "expected a JSON object")
          continue
        missing = [name for name in fields if not isinstance(record.get(name), str)]
        if missing:
          yield BadNote(path, where, "missing or non-text %r" % missing[0])
          continue
        note_id = record.get(options.id_field)
        if options.pairs and note_id in (None, ""):
          note_id = record.get("pairID")  # MedNLI's own id field
        note_id = "%s-%d" % (stem, number) if note_id in (None, "") else str(note_id)
        patient = None
        if options.patient_field:
          patient = record.get(options.patient_field)
          if patient in (None, "") or isinstance(patient, (dict, list, bool)):
            yield BadNote(path, where, "missing or unusable patient field %r (expected a string "
                          "or number)" % options.patient_field)
            continue
          patient = str(patient)
        yield Note(note_id, record[fields[0]], path, where,
                   text_b=record[fields[1]] if options.pairs else None, patient=patient)

  def count(self, path, options):
    with open(path, "rb") as f:
      return sum(1 for line in f if line.strip())


class NoteEventsReader(Reader):
  """MIMIC-III's NOTEEVENTS CSV (plain or gzip)."""

  name = "noteevents"

  def claims(self, path):
    return os.path.basename(path).lower().endswith((".csv", ".csv.gz"))

  def read(self, path, options):
    with noteevents.NoteEventsReader(path) as reader:
      for row in reader:
        where = "%s line %d" % (path, row.line)
        if isinstance(row, noteevents.BadRow):
          yield BadNote(path, "%s (%s)" % (where, row.ref), row.reason)
        else:
          subject = (row.get("SUBJECT_ID") or "").strip() or None
          yield Note(str(row.row_id), row.text, path, "%s (ROW_ID %d)" % (where, row.row_id),
                     patient=subject)


# name -> reader; `auto` asks them in this order (the catch-all `text` last).
_REGISTRY = collections.OrderedDict()


def register(reader_class):
  """Adds a Reader class to the registry under its `name` (usable as a decorator)."""
  _REGISTRY[reader_class.name] = reader_class()
  return reader_class


for _reader in (JsonLinesReader, NoteEventsReader, TextReader):
  register(_reader)

INPUT_FORMATS = ("auto",) + tuple(sorted(_REGISTRY))


def reader_for(path, input_format="auto"):
  """The Reader of `path`: the one `input_format` names, else the first that claims the file."""
  if input_format != "auto":
    if input_format not in _REGISTRY:
      raise fileio.InputError("--input_format=%s: expected one of %s" %
                              (input_format, ", ".join(INPUT_FORMATS)))
    return _REGISTRY[input_format]
  for reader in _REGISTRY.values():
    if reader.claims(path):
      return reader
  raise fileio.InputError("%s: no reader claims it (--input_format one of %s)" %
                          (path, ", ".join(INPUT_FORMATS)))


def input_format_of(path, input_format="auto"):
  """The name of the reader of `path` (see `reader_for`)."""
  return reader_for(path, input_format).name


def read_notes(input_files, input_format="auto", options=None):
  """Yields (input file, Note or BadNote) for every note of `input_files`, in order, streamed.

  Args:
    input_files: paths (already expanded).
    input_format: one of INPUT_FORMATS.
    options: a ReadOptions.
  """
  options = options or ReadOptions()
  for path in input_files:
    reader = reader_for(path, input_format)
    if options.pairs and not reader.reads_pairs:
      raise fileio.InputError("%s: a sentence-pair model reads JSON lines with sentence1 and "
                              "sentence2, not %s files" % (path, reader.name))
    for note in reader.read(path, options):
      yield path, note


def count_notes(input_files, input_format="auto", options=None):
  """The number of notes to expect when it is cheap to know (text files, JSON lines), else None."""
  options = options or ReadOptions()
  total = 0
  for path in input_files:
    n = reader_for(path, input_format).count(path, options)
    if n is None:
      return None
    total += n
  return total


def output_name(note, suffix, seen):
  """`<id><suffix>` for a per-note output; InputError for an id unfit to name a file or repeated."""
  if not note.id or note.id in (".", "..") or "/" in note.id or "\\" in note.id or \
      "\0" in note.id:
    raise fileio.InputError("%s: note id %r cannot name an output file" % (note.where, note.id))
  if note.id in seen:
    raise fileio.InputError("%s: note id %r repeats an earlier note's (outputs are one file per "
                            "id)" % (note.where, note.id))
  seen.add(note.id)
  return note.id + suffix
