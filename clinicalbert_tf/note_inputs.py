"""Notes to predict on: plain text files, JSON lines, MIMIC's NOTEEVENTS, streamed one at a time.

`--input_file` is a comma list of files or globs (`fileio.expand_file_patterns`). Each file is read
by its kind (`--input_format=auto` decides by the name):

  * `text`: one note per file, its id the file name without the last extension (`note-201.txt` ->
    `note-201`); the text is the file's UTF-8 content exactly (offsets index into it);
  * `jsonl` (`.jsonl`, `.json`): one JSON object per line, the note in `text_field`, its id in
    `id_field` (absent: `<file stem>-<line>`); a sentence-pair model reads `sentence1`/`sentence2`
    (MedNLI's fields) instead of `text_field`;
  * `noteevents` (`.csv`, `.csv.gz`): MIMIC-III's NOTEEVENTS through the project's streaming reader,
    id = ROW_ID.

A note that cannot be used (bad UTF-8, an unreadable file, a JSON line that is not an object with
the fields, a bad CSV row) becomes a `BadNote` naming where it is and why -- never its text -- so
the caller decides whether to stop (the default) or count it and go on (`--max_bad_notes`).
"""

import dataclasses
import json
import os
from typing import Optional

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import noteevents

INPUT_FORMATS = ("auto", "text", "jsonl", "noteevents")


@dataclasses.dataclass
class Note:
  """One note to predict on (or, for a sentence-pair model, one pair in `text` and `text_b`)."""
  id: str
  text: str
  source: str  # the input file it came from
  where: str  # the file and line or row, for messages
  text_b: Optional[str] = None


@dataclasses.dataclass
class BadNote:
  """A note that cannot be read: where it is and why (never its text)."""
  source: str
  where: str
  reason: str


def input_format_of(path, input_format="auto"):
  """The reader for `path`: `input_format` unless `auto`, else by the file name."""
  if input_format != "auto":
    if input_format not in INPUT_FORMATS:
      raise fileio.InputError("--input_format=%s: expected one of %s" %
                              (input_format, ", ".join(INPUT_FORMATS)))
    return input_format
  name = os.path.basename(path).lower()
  if name.endswith((".jsonl", ".json")):
    return "jsonl"
  if name.endswith((".csv", ".csv.gz")):
    return "noteevents"
  return "text"


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


def read_text_note(path):
  """The note in a plain text file (Note or BadNote)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return BadNote(path, path, "cannot be read: %s" % (e.strerror or e))
  try:
    text = decode_utf8(data, path)
  except fileio.InputError as e:
    return BadNote(path, path, str(e)[len(path) + 2:])
  return Note(file_stem(path), text, path, path)


def read_jsonl_notes(path, id_field="id", text_field="text", pairs=False):
  """Yields a Note or BadNote per non-blank line of a JSON-lines file (streamed)."""
  stem = file_stem(path)
  fields = ("sentence1", "sentence2") if pairs else (text_field,)
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
      note_id = record.get(id_field)
      if pairs and note_id in (None, ""):
        note_id = record.get("pairID")  # MedNLI's own id field
      note_id = "%s-%d" % (stem, number) if note_id in (None, "") else str(note_id)
      yield Note(note_id, record[fields[0]], path, where,
                 text_b=record[fields[1]] if pairs else None)


def read_noteevents_notes(path):
  """Yields a Note (id = ROW_ID) or BadNote per row of a NOTEEVENTS CSV (streamed)."""
  with noteevents.NoteEventsReader(path) as reader:
    for row in reader:
      where = "%s line %d" % (path, row.line)
      if isinstance(row, noteevents.BadRow):
        yield BadNote(path, "%s (%s)" % (where, row.ref), row.reason)
      else:
        yield Note(str(row.row_id), row.text, path, "%s (ROW_ID %d)" % (where, row.row_id))


def read_notes(input_files, input_format="auto", id_field="id", text_field="text", pairs=False):
  """Yields (input file, Note or BadNote) for every note of `input_files`, in order, streamed.

  Args:
    input_files: paths (already expanded).
    input_format: one of INPUT_FORMATS.
    id_field, text_field: the JSON-lines fields of the note's id and text.
    pairs: read sentence pairs (`sentence1`, `sentence2`) for a sentence-pair model.
  """
  for path in input_files:
    kind = input_format_of(path, input_format)
    if kind == "text":
      if pairs:
        raise fileio.InputError("%s: a sentence-pair model reads JSON lines with sentence1 and "
                                "sentence2, not plain text files" % path)
      yield path, read_text_note(path)
    elif kind == "jsonl":
      for note in read_jsonl_notes(path, id_field, text_field, pairs):
        yield path, note
    else:
      if pairs:
        raise fileio.InputError("%s: a sentence-pair model reads JSON lines, not NOTEEVENTS" % path)
      for note in read_noteevents_notes(path):
        yield path, note


def count_notes(input_files, input_format):
  """The number of notes to expect when it is cheap to know (text files, JSON lines), else None."""
  total = 0
  for path in input_files:
    kind = input_format_of(path, input_format)
    if kind == "text":
      total += 1
    elif kind == "jsonl":
      with open(path, "rb") as f:
        total += sum(1 for line in f if line.strip())
    else:
      return None
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
