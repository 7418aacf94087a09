"""What a source of notes gives the format_notes pipeline: `Note`s and `BadRow`s.

`pipeline.format_notes` reads any object with this interface (`noteevents.NoteEventsSource` is the
one `format_notes.py` uses; another source, such as another hospital's export, is one class):

  name               how errors and counts name the input (`--input_file NOTEEVENTS.csv`);
  __enter__/__exit__ opens / closes the input (the pipeline enters the source before reading);
  __iter__()         yields a `Note` per usable row and a `BadRow` per row that cannot be used, in
                     input order, never raising for a bad row (InputError for an unreadable input);
  require_patients(why)  called once before iterating when a held-out split needs each note's
                     patient: raises InputError naming `why` (the flag) if the input has no
                     patients; afterwards every `Note` carries its `patient`;
  progress()         (done, total) of the input read so far in any unit, or None when unknown;
  description()      what the start-up log line says about the input (never note text);
  sidecar_fields()   (key, value) pairs that describe the input in every output's sidecar.
"""

import collections


class Note(collections.namedtuple(
    "Note", ["key", "ref", "line", "category", "iserror", "text", "patient"])):
  """One row of a source, as the pipeline needs it.

  Attributes:
    key: seeds the note's surrogates (with `--random_seed`), so they depend on neither the order
      nor the workers; NOTEEVENTS: ROW_ID, an int.
    ref: how logs and the sidecar name the note (`ROW_ID 12`); never its text.
    line: the line of the input the note starts on (for messages).
    category: names its output file (`category_file_name`); never empty.
    iserror: True for a note written in error (skipped and counted).
    text: the note, verbatim.
    patient: after `require_patients`, its patient's id, an int, or a str saying why it is
      unknown (then the note is a bad row if it would be written); before, None.
  """
  __slots__ = ()


BadRow = collections.namedtuple("BadRow", ["ref", "reason", "category", "line"])
BadRow.__doc__ = """A row that cannot be used: `ref` (`ROW_ID n` or `line n`), why, its category if
known, and its line. Never its text."""
