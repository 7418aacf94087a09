"""MIMIC-III NOTEEVENTS: the streaming reader, and the file as a source of the format_notes driver.

`NoteEventsReader` streams `NOTEEVENTS.csv` (or `.csv.gz`, or the lower-case Postgres export the
ClinicalBERT scripts read) and yields one record per row: a `NoteRow` (ROW_ID, CATEGORY, ISERROR,
TEXT, the line it starts on, and every column by name) or a `rows.BadRow` saying why the row cannot
be used. `predict.py` reads notes through it (`inference/readers.py`).

`NoteEventsSource` is the same file as a source of `pipeline.format_notes` (`rows.py`): one
`rows.Note` per row, keyed and named by ROW_ID, its patient SUBJECT_ID when a held-out split asks
for it.

Rows: a row with `ISERROR` = 1 is flagged (the pipeline skips and counts it); a row that cannot be
parsed (wrong number of columns, non-integer ROW_ID, empty CATEGORY, ISERROR neither empty, 0 nor 1,
a CSV error) is a `BadRow` by ROW_ID (or line number), never with its text. For a held-out split, a
SUBJECT_ID that is empty or not an integer makes the note's patient unknown (the pipeline then
counts the note as a bad row, since it could be any patient's), and a file without a SUBJECT_ID
column is an error.
"""

import collections
import csv
import gzip
import io
import os
import stat
import zlib

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import rows

# MIMIC-III NOTEEVENTS header, in file order.
NOTEEVENTS_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME",
                      "CATEGORY", "DESCRIPTION", "CGID", "ISERROR", "TEXT")
# The columns the reader needs; the others may be absent or in any order.
REQUIRED_COLUMNS = ("ROW_ID", "CATEGORY", "TEXT")

# A CSV field longer than this is a bad row (the longest MIMIC-III note is ~55k characters); it
# bounds memory when a stray quote would otherwise swallow the rest of the file.
MAX_FIELD_CHARS = 64 << 20

# What the reader yields for a row it cannot use (the pipeline's record of one).
BadRow = rows.BadRow


class NoteRow(collections.namedtuple(
    "NoteRow", ["row_id", "category", "iserror", "text", "line", "fields"])):
  """One usable row of NOTEEVENTS.

  Attributes:
    row_id: ROW_ID, an int.
    category: CATEGORY, surrounding spaces stripped (never empty).
    iserror: True when ISERROR is 1 (MIMIC's flag for a note written in error).
    text: TEXT, verbatim.
    line: the line of the file the row starts on (1 is the header).
    fields: every column of the row by its upper-case header name (`SUBJECT_ID`, `HADM_ID`,
      `CHARTDATE`, ...), the values as read, unstripped; `get` reads one.
  """
  __slots__ = ()

  def get(self, column, default=None):
    """The raw value of `column` (upper-case name), or `default` if the file has no such column."""
    return self.fields.get(column, default)



class NoteEventsReader(object):
  """Streams rows of a NOTEEVENTS CSV (plain or gzip, upper- or lower-case header).

  Iterating yields `NoteRow`s and, for rows that cannot be used, `BadRow`s (never raising for a
  bad row). Memory does not grow with the file: one row is held at a time. Use it as a context
  manager; `bytes_read()` against `total_bytes` says how far it is.

    with NoteEventsReader(path) as reader:
      for row in reader:
        if isinstance(row, BadRow): ...
        else: row.row_id, row.get("SUBJECT_ID"), row.category, row.iserror, row.text

  Attributes:
    path: the file.
    gzip: whether it is gzip-compressed (detected from its first bytes, whatever its name).
    header_case: `upper` (MIMIC's CSV), `lower` (the Postgres export) or `mixed`.
    columns: the header's column names, upper case, in file order.
    regular_file: False for a pipe or device (then `total_bytes` and `bytes_read()` are None).
    total_bytes: the file's size on disk (compressed, for gzip).
  """

  def __init__(self, path, flag="--input_file"):
    """Opens `path` and reads its header.

    Args:
      path: the CSV file.
      flag: the flag errors name (`--input_file`).

    Raises:
      InputError: the file cannot be opened, is empty, or its header lacks ROW_ID, CATEGORY or
        TEXT or repeats a column.
    """
    self.path = path
    self._flag = flag
    self._saved_field_limit = None
    try:
      self._raw = open(path, "rb")
    except OSError as e:
      raise fileio.InputError("%s: cannot open %r: %s" % (flag, path, e.strerror)) from None
    info = os.fstat(self._raw.fileno())
    self.regular_file = stat.S_ISREG(info.st_mode)
    self.total_bytes = info.st_size if self.regular_file else None
    self.gzip = self._raw.peek(2)[:2] == b"\x1f\x8b"
    stream = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gzip else self._raw
    # utf-8-sig drops a byte-order mark; undecodable bytes become U+FFFD rather than stopping a
    # multi-hour run at the last gigabyte.
    self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    # The limit is process-wide: raised while this reader is open, restored by close().
    self._saved_field_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    # Python's csv accepts a quoted field that is still open when the file ends (the rest of the
    # file becomes one field); the raw lines of each record are kept to notice that (see __iter__).
    self._record_lines = []
    self._at_end = False
    self._reader = csv.reader(self._lines())
    try:
      header = next(self._reader)
    except StopIteration:
      self.close()
      raise fileio.InputError("%s %s: the file is empty; expected a NOTEEVENTS CSV with header %s"
                              % (flag, path, ",".join(NOTEEVENTS_COLUMNS))) from None
    except (csv.Error, EOFError, OSError, zlib.error) as e:
      self.close()
      raise fileio.InputError("%s %s: cannot read the header: %s" % (flag, path, e)) from None
    self._parse_header(header)

  def _parse_header(self, header):
    names = [h.strip() for h in header]
    upper = [n.upper() for n in names]
    missing = [c for c in REQUIRED_COLUMNS if c not in upper]
    if missing:
      self.close()
      raise fileio.InputError(
          "%s %s line 1: header lacks column(s) %s; expected a NOTEEVENTS header like %s "
          "(any letter case)" % (self._flag, self.path, ",".join(missing),
                                 ",".join(NOTEEVENTS_COLUMNS)))
    duplicates = sorted(set(n for n in upper if n and upper.count(n) > 1))
    if duplicates:
      self.close()
      raise fileio.InputError("%s %s line 1: duplicate column(s) %s"
                              % (self._flag, self.path, ",".join(duplicates)))
    letters = "".join(n for n in names if n.upper() in NOTEEVENTS_COLUMNS)
    if letters.isupper():
      self.header_case = "upper"
    elif letters.islower():
      self.header_case = "lower"
    else:
      self.header_case = "mixed"
    self.columns = upper
    self._num_columns = len(names)
    self._row_id = upper.index("ROW_ID")
    self._category = upper.index("CATEGORY")
    self._text_column = upper.index("TEXT")
    self._iserror = upper.index("ISERROR") if "ISERROR" in upper else None

  def bytes_read(self):
    """Bytes of the (possibly compressed) file consumed so far, or None if unknown."""
    if not self.regular_file or self._raw.closed:
      return None
    return self._raw.tell()

  def close(self):
    """Closes the file and restores the process-wide CSV field size limit."""
    if self._saved_field_limit is not None:
      csv.field_size_limit(self._saved_field_limit)
      self._saved_field_limit = None
    self._raw.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused_exc_info):
    self.close()

  def _lines(self):
    """The text's lines, each also kept in `_record_lines`; sets `_at_end` when they run out."""
    record = self._record_lines
    for text_line in self._text:
      record.append(text_line)
      yield text_line
    self._at_end = True

  def _check_quotes_closed(self, line):
    """At the end of the file, a record with an odd number of `"` left a quoted field open."""
    if self._at_end and sum(l.count('"') for l in self._record_lines) % 2:
      raise fileio.InputError(
          "%s %s: the file ends inside a quoted field opened in the record at line %d; expected "
          "a closing quote (is the file cut short?)" % (self._flag, self.path, line))

  def __iter__(self):
    reader = self._reader
    while True:
      line = reader.line_num + 1  # first line of the next record
      del self._record_lines[:]
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        yield BadRow("line %d" % line, "CSV error: %s" % e, None, line)
        continue
      except (EOFError, OSError, zlib.error) as e:
        raise fileio.InputError("%s %s: cannot read past line %d: %s"
                                % (self._flag, self.path, line, e)) from None
      self._check_quotes_closed(line)
      if not row:  # a blank line between records holds no data
        continue
      yield self._parse_row(row, line)

  def _parse_row(self, row, line):
    """A `NoteRow`, or a `BadRow` saying why not (never the row's text)."""
    row_id = None
    if len(row) > self._row_id:
      try:
        row_id = int(row[self._row_id].strip())
      except ValueError:
        pass
    ref = "ROW_ID %d" % row_id if row_id is not None else "line %d" % line
    if len(row) != self._num_columns:
      return BadRow(ref, "has %d columns, expected %d" % (len(row), self._num_columns), None, line)
    category = row[self._category].strip()
    if row_id is None:
      return BadRow(ref, "ROW_ID is not an integer", category or None, line)
    if not category:
      return BadRow(ref, "CATEGORY is empty", None, line)
    iserror = False
    if self._iserror is not None:
      value = row[self._iserror].strip()
      if value in ("1", "1.0"):
        iserror = True
      elif value not in ("", "0", "0.0"):
        return BadRow(ref, "ISERROR is neither empty, 0 nor 1", category, line)
    return NoteRow(row_id, category, iserror, row[self._text_column], line,
                   dict(zip(self.columns, row)))


def parse_subject_id(row):
  """(SUBJECT_ID as an int, None) of a `NoteRow`, or (None, why not) if it is empty or no int."""
  value = (row.get("SUBJECT_ID") or "").strip()
  if not value:
    return None, "SUBJECT_ID is empty; --heldout_fraction needs each note's patient"
  try:
    return int(value), None
  except ValueError:
    return None, "SUBJECT_ID is not an integer; --heldout_fraction needs each note's patient"


class NoteEventsSource(object):
  """A NOTEEVENTS file as a source of `pipeline.format_notes` (the interface in `rows.py`).

  Opened on entering (`with`), so that the pipeline checks its own arguments first.
  """

  def __init__(self, path, flag="--input_file"):
    self.path = path
    self.name = "%s %s" % (flag, path)
    self._flag = flag
    self._reader = None
    self._patients = False

  def __enter__(self):
    self._reader = NoteEventsReader(self.path, self._flag)
    return self

  def __exit__(self, *unused_exc_info):
    self._reader.close()

  def require_patients(self, why):
    """Reads SUBJECT_ID as each note's patient; InputError if the header has no such column."""
    if "SUBJECT_ID" not in self._reader.columns:
      raise fileio.InputError("%s line 1: header lacks column SUBJECT_ID, which %s needs to hold "
                              "out patients" % (self.name, why))
    self._patients = True

  def __iter__(self):
    for row in self._reader:
      if isinstance(row, BadRow):
        yield row
        continue
      patient = None
      if self._patients:
        subject_id, reason = parse_subject_id(row)
        patient = reason if subject_id is None else subject_id
      yield rows.Note(row.row_id, "ROW_ID %d" % row.row_id, row.line, row.category, row.iserror,
                      row.text, patient)

  def progress(self):
    """(bytes read, bytes in all) of the (possibly compressed) file, or None for a pipe."""
    done = self._reader.bytes_read()
    return None if done is None else (done, self._reader.total_bytes)

  def description(self):
    return "%s (%s, %s header)" % (self.path, "gzip" if self._reader.gzip else "plain CSV",
                                   self._reader.header_case)

  def sidecar_fields(self):
    return [("input_file", os.path.abspath(self.path)),
            ("input_bytes", self._reader.total_bytes),
            ("input_gzip", self._reader.gzip),
            ("header_case", self._reader.header_case)]
