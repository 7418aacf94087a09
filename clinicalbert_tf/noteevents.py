"""MIMIC-III NOTEEVENTS: the streaming reader, the worker pool, and formatting a whole file.

`NoteEventsReader` streams `NOTEEVENTS.csv` (or `.csv.gz`, or the lower-case Postgres export the
ClinicalBERT scripts read) and yields one record per row: a `NoteRow` (ROW_ID, CATEGORY, ISERROR,
TEXT, the line it starts on, and every column by name) or a `BadRow` saying why the row cannot be
used. `format_notes_file` runs every selected note through `notes.SentenceSplitter` (in this
process or a pool) and writes one file per category named as the ClinicalBERT scripts name them
(`discharge_summary.txt`, `nursing_other.txt`, ...) and optionally one file of all notes: one
sentence per line, a blank line after each note, notes in input order.

PHI: with `phi="keep"` (the default) placeholders such as `[**Last Name (NamePattern1) 1234**]` stay
as they are (rule S1 of `notes.py` keeps each whole). With `phi="surrogate"` each note's
placeholders are first replaced by realistic surrogates (`surrogates.py`: Faker in `locale`,
seeded per note from `random_seed` and the ROW_ID, so the bytes do not depend on the number of
workers), and the note is then split like any text. The sidecar records the mode, seed, locale and
the placeholders replaced per category (counts only).

Rows: a row with `ISERROR` = 1 is skipped and counted; a row whose TEXT is empty is skipped and
counted; a row that cannot be parsed (wrong number of columns, non-integer ROW_ID, empty CATEGORY,
ISERROR neither empty, 0 nor 1, a CSV error) is reported by ROW_ID (or line number) in the log,
never with its text, counted, and skipped; so is a note whose formatting raises (by ROW_ID and the
exception's type, whose message could quote the note). More than `max_bad_rows` of them stop the
run with an error and no output. Note text is never logged.

Held-out patients: with `heldout_fraction` F > 0 a share F of the patients (SUBJECT_ID) is held
out: patient s is held out when the first 8 bytes (big-endian) of SHA-256 of `"<seed>:<s>"`, over
2**64, are below F (`is_heldout_subject`), a pure function of the seed and the id, so the split is
the same for any worker count, any order of rows and any `categories`, and a larger F holds out a
superset. Every note of a held-out patient goes to the held-out sibling of each file it would have
gone to (`heldout_path`: `discharge_summary.heldout.txt` next to `discharge_summary.txt`), written
in the same format by the same rules; no patient has notes on both sides. A note to be written
whose SUBJECT_ID is empty or not an integer is a bad row (by ROW_ID and line, counted against
`max_bad_rows`, on neither side), since it could be any patient's; a file without a SUBJECT_ID
column is an error. With F = 0 (the default) nothing changes: SUBJECT_ID is not read and the bytes
are today's.

Parallelism: with `num_workers` > 1 notes are sent in chunks to a process pool; results come back in
submission order and at most a few chunks per worker are in flight, so memory stays bounded and the
output is byte for byte the same as with one worker.
"""

import collections
import contextlib
import csv
import gzip
import hashlib
import io
import multiprocessing
import os
import stat
import zlib

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import notes
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import surrogates as surrogates_lib

# MIMIC-III NOTEEVENTS header, in file order.
NOTEEVENTS_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME",
                      "CATEGORY", "DESCRIPTION", "CGID", "ISERROR", "TEXT")
# The columns the reader needs; the others may be absent or in any order.
REQUIRED_COLUMNS = ("ROW_ID", "CATEGORY", "TEXT")

DEFAULT_MAX_BAD_ROWS = 100
# A CSV field longer than this is a bad row (the longest MIMIC-III note is ~55k characters); it
# bounds memory when a stray quote would otherwise swallow the rest of the file.
MAX_FIELD_CHARS = 64 << 20
# Text per chunk sent to a worker, and chunks in flight per worker.
CHUNK_CHARS = 256 << 10
CHUNK_NOTES = 256
IN_FLIGHT_PER_WORKER = 3
# Bad rows listed in the summary (all are counted and logged).
MAX_LISTED_BAD_ROWS = 1000
# MIMIC-III has 15 categories; far more means the file is not NOTEEVENTS (and would need one open
# output file each).
MAX_CATEGORIES = 500

# The category under which rows without a usable CATEGORY are counted.
UNPARSEABLE = "(unparseable)"

# Inserted before the extension of an output's name to name its held-out sibling.
HELDOUT_INFIX = ".heldout"


# ---------------------------------------------------------------------------------------------
# Reading NOTEEVENTS.


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


BadRow = collections.namedtuple("BadRow", ["ref", "reason", "category", "line"])
BadRow.__doc__ = """A row that cannot be used: `ref` (`ROW_ID n` or `line n`), why, its CATEGORY if
known, and its line. Never its text."""


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


# ---------------------------------------------------------------------------------------------
# The held-out split by patient.


def heldout_path(path):
  """The held-out sibling of an output file: `.heldout` before its extension.

  `out/discharge_summary.txt` -> `out/discharge_summary.heldout.txt`; `all` -> `all.heldout`.
  """
  root, extension = os.path.splitext(path)
  return root + HELDOUT_INFIX + extension


def is_heldout_subject(subject_id, fraction, seed):
  """Whether patient `subject_id` (an int) is held out at `fraction` with `seed`.

  The first 8 bytes (big-endian) of SHA-256 of `"<seed>:<subject_id>"`, over 2**64, below
  `fraction`: the same in every process and run (Python's `hash` is salted per process), about a
  share `fraction` of patients, and nested (a patient held out at F is held out at every F' > F).
  """
  if fraction <= 0.0:
    return False
  digest = hashlib.sha256(("%d:%d" % (seed, subject_id)).encode("ascii")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def parse_subject_id(row):
  """(SUBJECT_ID as an int, None) of a `NoteRow`, or (None, why not) if it is empty or no int."""
  value = (row.get("SUBJECT_ID") or "").strip()
  if not value:
    return None, "SUBJECT_ID is empty; --heldout_fraction needs each note's patient"
  try:
    return int(value), None
  except ValueError:
    return None, "SUBJECT_ID is not an integer; --heldout_fraction needs each note's patient"


def check_heldout_fraction(fraction, flag="--heldout_fraction"):
  """Raises InputError unless 0 <= `fraction` < 1."""
  if not 0.0 <= fraction < 1.0:  # also false for NaN
    raise fileio.InputError("%s=%s: expected a share of patients to hold out, at least 0 (no "
                            "split) and below 1" % (flag, fraction))


# ---------------------------------------------------------------------------------------------
# Formatting chunks of notes in this process or a pool.


def format_chunk(splitter, texts):
  """Output bytes per note; for a note that cannot be formatted, a str naming the error instead.

  Notes are formatted together (one `nlp.pipe` over all their segments); if that fails, each note
  is formatted alone so that only the note at fault is reported (by its ROW_ID, by the caller).

  Args:
    splitter: a `notes.SentenceSplitter`.
    texts: a list of note texts.

  Returns:
    A list, one item per note: `notes.render_note` bytes, or a reason (str) without note text.
  """
  try:
    return [notes.render_note(sentences) for sentences in splitter.format_notes(texts)]
  except Exception:  # pylint: disable=broad-except
    pass
  rendered = []
  for text in texts:
    try:
      rendered.append(notes.render_note(splitter.format_note(text)))
    except Exception as e:  # pylint: disable=broad-except
      # The type only: an exception's message could quote the note.
      rendered.append("could not be formatted (%s)" % type(e).__name__)
  return rendered


def process_chunk(splitter, surrogates, chunk):
  """Surrogates (if any) and then sentences for a chunk of notes.

  Args:
    splitter: a `notes.SentenceSplitter`.
    surrogates: a `surrogates.Surrogates`, or None to keep placeholders as they are.
    chunk: (texts, note_keys): note texts and their ROW_IDs, which seed their surrogates.

  Returns:
    (rendered, phi_counts): `rendered` as `format_chunk` returns it; `phi_counts` None when PHI is
    kept, else one `collections.Counter` (category -> placeholders) per note.
  """
  texts, note_keys = chunk
  if surrogates is None:
    return format_chunk(splitter, texts), None
  replaced, phi_counts, failed = surrogates.replace_notes(texts, note_keys)
  rendered = format_chunk(splitter, replaced)
  for i, reason in failed.items():
    rendered[i] = reason
  return rendered, phi_counts


_WORKER_SPLITTER = None
_WORKER_SURROGATES = None


def _init_worker(spacy_model, phi=None):
  global _WORKER_SPLITTER, _WORKER_SURROGATES
  # A worker forked while the parent held a pipeline for this model starts with a copy of it.
  if _WORKER_SPLITTER is None or _WORKER_SPLITTER.spacy_model != spacy_model:
    _WORKER_SPLITTER = notes.SentenceSplitter(spacy_model)
  _WORKER_SURROGATES = surrogates_lib.make_surrogates(phi)


def _format_chunk_in_worker(chunk):
  return process_chunk(_WORKER_SPLITTER, _WORKER_SURROGATES, chunk)


class InProcessRunner(object):
  """Formats chunks in this process (num_workers=1); the same interface as `PoolRunner`."""

  def __init__(self, spacy_model, phi=None):
    self._splitter = notes.SentenceSplitter(spacy_model)
    self._surrogates = surrogates_lib.make_surrogates(phi)

  def submit(self, chunk, meta):
    """Formats `chunk` ((texts, note_keys)); yields (meta, result) for every chunk that is done.

    `result` is what `process_chunk` returns.
    """
    yield meta, process_chunk(self._splitter, self._surrogates, chunk)

  def drain(self):
    """Yields (meta, rendered) for the chunks still in flight, in submission order."""
    return iter(())

  def close(self, unused_ok):
    """Releases the runner (`ok`: whether the run succeeded)."""


class PoolRunner(object):
  """Formats chunks in worker processes; yields results in submission order, bounded in flight."""

  def __init__(self, spacy_model, num_workers, phi=None):
    global _WORKER_SPLITTER
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    if fork and spacy_model == notes.RULES_MODEL:
      # Build the rules pipeline once here, so that the forked workers inherit it instead of each
      # importing spaCy and building their own (seconds of CPU on a 2-core machine). A model named
      # by --spacy_model is loaded by each worker (it may hold BLAS thread state unsafe to fork).
      _WORKER_SPLITTER = notes.SentenceSplitter(spacy_model)
    try:
      self._pool = context.Pool(num_workers, initializer=_init_worker,
                                initargs=(spacy_model, phi))
    finally:
      _WORKER_SPLITTER = None  # the workers have their copies; a replacement worker builds one
    self._pending = collections.deque()
    self._max_pending = IN_FLIGHT_PER_WORKER * num_workers

  def submit(self, chunk, meta):
    """Queues `chunk`; yields (meta, result) of the oldest chunks while too many are in flight."""
    self._pending.append((meta, self._pool.apply_async(_format_chunk_in_worker, (chunk,))))
    while len(self._pending) > self._max_pending:
      meta, result = self._pending.popleft()
      yield meta, result.get()

  def drain(self):
    """Yields (meta, rendered) for the chunks still in flight, in submission order."""
    while self._pending:
      meta, result = self._pending.popleft()
      yield meta, result.get()

  def close(self, ok):
    """Lets the workers finish (`ok`) or stops them at once (after an error)."""
    if ok:
      self._pool.close()
    else:
      self._pool.terminate()
    self._pool.join()


def make_runner(spacy_model, num_workers, phi=None):
  """An `InProcessRunner` for one worker, else a `PoolRunner` of `num_workers` processes.

  `phi`: a `surrogates.PhiOptions` (None: placeholders are kept).
  """
  if num_workers == 1:
    return InProcessRunner(spacy_model, phi)
  return PoolRunner(spacy_model, num_workers, phi)


# ---------------------------------------------------------------------------------------------
# Formatting a whole file: the counts, the outputs, and the steps that connect them.

_COUNT_KEYS = ("read", "written", "sentences", "skipped_iserror", "skipped_empty",
               "skipped_bad_row", "not_selected")


class _Tally(object):
  """The counts of one run, per category, and its bad rows (never any note text).

  With a held-out split (`heldout`), each category also counts `heldout`: of its notes `written`,
  those written to the held-out files; and the patients of the written notes are kept per side.
  """

  def __init__(self, input_file, max_bad_rows, heldout=False):
    self._input_file = input_file
    self._max_bad_rows = max_bad_rows
    self._count_keys = _COUNT_KEYS + (("heldout",) if heldout else ())
    self.categories = collections.OrderedDict()  # category -> its counts
    self.bad_rows = []  # the first MAX_LISTED_BAD_ROWS, for the summary
    self.num_bad_rows = 0
    self.rows_read = 0
    self.notes_written = 0
    self.phi_counts = collections.Counter()  # category -> placeholders replaced (surrogate mode)
    # held out (bool) -> SUBJECT_IDs of the notes written on that side (MIMIC-III: 46,520 patients).
    self.patients = {False: set(), True: set()}
    self.notes_by_side = {False: 0, True: 0}
    self.no_subject_id = 0  # notes skipped (as bad rows) for want of a SUBJECT_ID

  def counts_for(self, category, ref):
    """The counts of `category`, created at its first row (`ref` names that row in errors)."""
    counts = self.categories.get(category)
    if counts is None:
      if len(self.categories) >= MAX_CATEGORIES:
        raise fileio.InputError(
            "--input_file %s: more than %d different CATEGORY values (the latest at %s); MIMIC-III "
            "NOTEEVENTS has 15" % (self._input_file, MAX_CATEGORIES, ref))
      file_name = notes.category_file_name(category) + ".txt" if category != UNPARSEABLE else None
      counts = self.categories[category] = collections.OrderedDict(
          [("file", file_name)] + [(key, 0) for key in self._count_keys])
    return counts

  def bad_row(self, ref, line, reason, category):
    """Counts, logs and lists a bad row; raises InputError past `max_bad_rows`."""
    self.num_bad_rows += 1
    self.categories[category]["skipped_bad_row"] += 1
    logging.warning("Bad row at %s (line %d): %s; skipped", ref, line, reason)
    if len(self.bad_rows) < MAX_LISTED_BAD_ROWS:
      self.bad_rows.append({"ref": ref, "line": line, "reason": reason})
    if 0 <= self._max_bad_rows < self.num_bad_rows:
      raise fileio.InputError(
          "--input_file %s: %d rows could not be parsed, more than --max_bad_rows=%d "
          "(latest: %s, line %d: %s); stopped without writing output"
          % (self._input_file, self.num_bad_rows, self._max_bad_rows, ref, line, reason))

  def totals(self):
    return collections.OrderedDict((k, sum(c[k] for c in self.categories.values()))
                                   for k in self._count_keys)

  def split_record(self, fraction, seed):
    """The summary's record of the held-out split: notes and patients per side (counts only)."""
    record = collections.OrderedDict([("fraction", fraction)])
    if fraction > 0.0:
      record["seed"] = seed
      for name, held_out in (("train", False), ("heldout", True)):
        record[name] = collections.OrderedDict([("notes", self.notes_by_side[held_out]),
                                                ("patients", len(self.patients[held_out]))])
      record["skipped_no_subject_id"] = self.no_subject_id
    return record

  def table(self):
    """Log lines: per category read / written / skipped counts (no text)."""
    heldout = "heldout" in self._count_keys
    header = "%-22s %10s %10s %10s %10s %10s %12s" % ("category", "read", "written", "iserror",
                                                      "empty", "bad_row", "not_selected")
    lines = [header + (" %10s" % "heldout" if heldout else "")]
    for category, counts in self.categories.items():
      line = "%-22s %10d %10d %10d %10d %10d %12d" % (
          category[:22], counts["read"], counts["written"], counts["skipped_iserror"],
          counts["skipped_empty"], counts["skipped_bad_row"], counts["not_selected"])
      lines.append(line + (" %10d" % counts["heldout"] if heldout else ""))
    return lines


class _Output(object):
  """One output file being written under its temporary name, with its running counts."""

  def __init__(self, path, stack):
    self.path = path
    self.file = stack.enter_context(fileio.atomic_open(path, "wb"))
    self.notes = 0
    self.sentences = 0
    self.bytes = 0
    self._sha256 = hashlib.sha256()

  def write(self, data, num_sentences):
    self.file.write(data)
    self._sha256.update(data)
    self.notes += 1
    self.sentences += num_sentences
    self.bytes += len(data)

  def record(self):
    return {"notes": self.notes, "sentences": self.sentences, "bytes": self.bytes,
            "sha256": self._sha256.hexdigest()}


class _Outputs(object):
  """The output files of one run: the all-notes file and one file per category, opened lazily.

  With `heldout`, every output comes as a pair, (training file, its `heldout_path` sibling), both
  created together (the held-out one possibly empty), so that a run replaces the held-out file of
  every training file it writes and no earlier split is left beside a new one. Each file is entered
  into `stack`, so it gets its final name only when the stack closes without an exception.
  """

  def __init__(self, stack, output_dir, category_files, all_notes_file, heldout=False):
    self._stack = stack
    self._output_dir = output_dir
    self._category_files = category_files
    self._heldout = heldout
    self._all_notes = None  # (training, held-out or None) _Outputs of --all_notes_file
    # The all-notes paths a category's file must not take: path -> how the error names it.
    self._reserved = {}
    if all_notes_file:
      path = os.path.abspath(all_notes_file)
      self._reserved[path] = "--all_notes_file=%s" % all_notes_file
      if heldout:
        self._reserved[heldout_path(path)] = ("--all_notes_file=%s: its held-out file %s"
                                              % (all_notes_file, heldout_path(all_notes_file)))
      self._all_notes = self._open_pair(path)
    self._by_path = collections.OrderedDict()  # training path -> (training, held-out) of a category

  def _open_pair(self, path):
    held_out = _Output(heldout_path(path), self._stack) if self._heldout else None
    return _Output(path, self._stack), held_out

  def for_category(self, category):
    """The category's (training, held-out or None) `_Output`s, created at its first note.

    None without category files.
    """
    if not self._category_files:
      return None
    path = os.path.abspath(os.path.join(self._output_dir,
                                        notes.category_file_name(category) + ".txt"))
    pair = self._by_path.get(path)
    if pair is None:
      paths = [(path, "output file")]
      if self._heldout:
        paths.append((heldout_path(path), "held-out file"))
      for own_path, kind in paths:
        if own_path in self._reserved:
          raise fileio.InputError("%s is also the %s of category %r"
                                  % (self._reserved[own_path], kind, category))
      pair = self._by_path[path] = self._open_pair(path)
    return pair

  def write(self, category, data, num_sentences, held_out=False):
    """Appends a note's bytes to its category's file and the all-notes file, on its side."""
    for pair in (self.for_category(category), self._all_notes):
      if pair is not None:
        pair[1 if held_out else 0].write(data, num_sentences)

  def records(self):
    """path -> counts and sha256 of every output, all-notes first, each before its held-out one."""
    pairs = ([self._all_notes] if self._all_notes else []) + list(self._by_path.values())
    return collections.OrderedDict(
        (out.path, out.record()) for pair in pairs for out in pair if out is not None)


def _check_arguments(output_dir, all_notes_file, category_files, num_workers, max_bad_rows, phi,
                     heldout_fraction):
  surrogates_lib.check_phi_options(phi)
  check_heldout_fraction(heldout_fraction)
  if num_workers < 1:
    raise fileio.InputError("--num_workers=%d: expected 1 or more" % num_workers)
  if max_bad_rows < -1:
    raise fileio.InputError("--max_bad_rows=%d: expected -1 (no limit) or 0 or more"
                            % max_bad_rows)
  if category_files and not output_dir:
    raise fileio.InputError("--output_dir is required (or turn off --category_files and give "
                            "--all_notes_file)")
  if not category_files and not all_notes_file:
    raise fileio.InputError("nothing to write: --category_files is off and --all_notes_file is "
                            "empty")
  if category_files:
    fileio.check_output_dir(output_dir)
  fileio.check_output_file(all_notes_file, "all_notes_file")


def _category_selector(categories):
  """A predicate on CATEGORY values for `--categories` (None: every category is selected)."""
  wanted = {}
  for name in categories or ():
    wanted[name.strip().lower()] = name
    wanted[notes.category_file_name(name)] = name
  if not wanted:
    return None
  return lambda category: (category.lower() in wanted
                           or notes.category_file_name(category) in wanted)


def _progress_detail(progress, reader, tally):
  """What a progress line adds to the rows and their rate: notes written, input read, ETA."""
  detail = "%d notes written" % tally.notes_written
  done = reader.bytes_read()
  if done and reader.total_bytes:
    fraction = min(1.0, done / reader.total_bytes)
    detail += ", %.1f%% of input, ETA %s" % (100.0 * fraction, progress_lib.format_duration(
        progress_lib.eta_seconds(done, reader.total_bytes, progress.elapsed())))
  return detail


def _notes_to_format(reader, tally, selected, progress, split):
  """Yields (text, (category, row_id, line, subject)) of each note to format; counts the others.

  `split`: None, or (fraction, seed) of the held-out split; `subject` is then (SUBJECT_ID, whether
  the patient is held out), else None. A note without a usable SUBJECT_ID is then a bad row.
  """
  for item in reader:
    tally.rows_read += 1
    if progress.due():
      progress.log(tally.rows_read, _progress_detail(progress, reader, tally))
    if isinstance(item, BadRow):
      category = item.category or UNPARSEABLE
      tally.counts_for(category, item.ref)["read"] += 1
      tally.bad_row(item.ref, item.line, item.reason, category)
      continue
    counts = tally.counts_for(item.category, "ROW_ID %d" % item.row_id)
    counts["read"] += 1
    if selected is not None and not selected(item.category):
      counts["not_selected"] += 1
      continue
    if item.iserror:
      counts["skipped_iserror"] += 1
      continue
    if not item.text.strip():
      counts["skipped_empty"] += 1
      continue
    subject = None
    if split is not None:
      subject_id, reason = parse_subject_id(item)
      if subject_id is None:
        tally.no_subject_id += 1
        tally.bad_row("ROW_ID %d" % item.row_id, item.line, reason, item.category)
        continue
      subject = subject_id, is_heldout_subject(subject_id, *split)
    yield item.text, (item.category, item.row_id, item.line, subject)


def _chunks(notes_and_meta):
  """Groups (text, meta) pairs into (texts, metas) chunks of CHUNK_NOTES notes or CHUNK_CHARS."""
  chunk, meta, chunk_chars = [], [], 0
  for text, note_meta in notes_and_meta:
    chunk.append(text)
    meta.append(note_meta)
    chunk_chars += len(text)
    if len(chunk) >= CHUNK_NOTES or chunk_chars >= CHUNK_CHARS:
      yield chunk, meta
      chunk, meta, chunk_chars = [], [], 0
  if chunk:
    yield chunk, meta


def _write_results(meta, result, tally, outputs):
  """Writes a formatted chunk's notes in order; counts empty notes, notes that failed, and PHI."""
  rendered, phi_counts = result
  for i, ((category, row_id, line, subject), data) in enumerate(zip(meta, rendered)):
    counts = tally.categories[category]
    if isinstance(data, str):
      tally.bad_row("ROW_ID %d" % row_id, line, data, category)
      continue
    if phi_counts is not None:
      tally.phi_counts.update(phi_counts[i])
    if not data:
      counts["skipped_empty"] += 1
      continue
    num_sentences = data.count(b"\n") - 1
    counts["written"] += 1
    counts["sentences"] += num_sentences
    tally.notes_written += 1
    held_out = False
    if subject is not None:
      subject_id, held_out = subject
      counts["heldout"] += held_out
      tally.notes_by_side[held_out] += 1
      tally.patients[held_out].add(subject_id)
    outputs.write(category, data, num_sentences, held_out)


def format_notes_file(input_file, output_dir=None, categories=None, all_notes_file=None,
                      category_files=True, spacy_model=notes.RULES_MODEL, num_workers=1,
                      max_bad_rows=DEFAULT_MAX_BAD_ROWS, progress_every_s=30.0, phi="keep",
                      random_seed=surrogates_lib.DEFAULT_SEED,
                      surrogate_locale=surrogates_lib.DEFAULT_LOCALE, heldout_fraction=0.0):
  """Formats MIMIC-III notes into pretraining text files (see the module docstring).

  Args:
    input_file: NOTEEVENTS CSV, plain or gzip (detected from its first bytes).
    output_dir: directory for one `<category>.txt` per category (needed if `category_files`).
    categories: list of CATEGORY values to keep (case-insensitive, surrounding spaces ignored; the
      file-name form such as `discharge_summary` also works); None or empty keeps all.
    all_notes_file: if set, also write every kept note to this file.
    category_files: write the per-category files.
    spacy_model: `rules` or a spaCy model name/path (rule S2 of `notes.py`).
    num_workers: processes formatting notes; the output does not depend on it.
    max_bad_rows: stop with an error when more rows than this cannot be parsed (-1: never stop).
    progress_every_s: seconds between progress log lines.
    phi: `keep` (placeholders as they are) or `surrogate` (realistic values, `surrogates.py`).
    random_seed: with `surrogate`, the seed of every note's surrogates (with its ROW_ID); with
      `heldout_fraction` > 0, the seed of the split (with each SUBJECT_ID).
    surrogate_locale: with `surrogate`, the Faker locale of the values (en_US, en_GB, de_DE, ...).
    heldout_fraction: the share of patients whose notes go to the held-out files (`heldout_path`)
      instead, in [0, 1); 0 writes no held-out file and does not read SUBJECT_ID.

  Returns:
    The summary dict that is also written as the sidecar of every output file.

  Raises:
    InputError: for bad flags, an unreadable input (or one without SUBJECT_ID for a split), or
      too many bad rows. No output file is created or replaced then.
  """
  phi_options = surrogates_lib.PhiOptions(phi, random_seed, surrogate_locale)
  _check_arguments(output_dir, all_notes_file, category_files, num_workers, max_bad_rows,
                   phi_options, heldout_fraction)
  notes.check_spacy_model(spacy_model)
  selected = _category_selector(categories)
  split = (heldout_fraction, random_seed) if heldout_fraction > 0.0 else None
  progress = progress_lib.Progress("rows", every_seconds=progress_every_s, label="format_notes: ")
  tally = _Tally(input_file, max_bad_rows, heldout=split is not None)

  with contextlib.ExitStack() as stack:
    reader = stack.enter_context(NoteEventsReader(input_file))
    if split is not None and "SUBJECT_ID" not in reader.columns:
      raise fileio.InputError(
          "--input_file %s line 1: header lacks column SUBJECT_ID, which --heldout_fraction=%s "
          "needs to hold out patients" % (input_file, heldout_fraction))
    logging.info("Reading %s (%s, %s header) with spacy_model=%s, %d worker(s)", input_file,
                 "gzip" if reader.gzip else "plain CSV", reader.header_case, spacy_model,
                 num_workers)
    runner = make_runner(spacy_model, num_workers, phi_options)
    ok = False
    try:
      outputs = _Outputs(stack, output_dir, category_files, all_notes_file,
                         heldout=split is not None)
      for chunk, meta in _chunks(_notes_to_format(reader, tally, selected, progress, split)):
        for done_meta, result in runner.submit((chunk, [m[1] for m in meta]), meta):
          _write_results(done_meta, result, tally, outputs)
      for done_meta, result in runner.drain():
        _write_results(done_meta, result, tally, outputs)
      # A requested category with no notes still gets its (empty) file.
      if category_files:
        seen = set(notes.category_file_name(c) for c in tally.categories)
        for name in categories or ():
          if notes.category_file_name(name) not in seen:
            logging.warning("--categories: no row has CATEGORY %r", name)
            outputs.for_category(name)
      ok = True
    finally:
      runner.close(ok)
    # Leaving the ExitStack without an exception renames every output to its final name.

  elapsed = progress.elapsed()
  summary = collections.OrderedDict([
      ("tool", "format_notes"),
      ("input_file", os.path.abspath(input_file)),
      ("input_bytes", reader.total_bytes),
      ("input_gzip", reader.gzip),
      ("header_case", reader.header_case),
      ("spacy_model", spacy_model),
      ("phi", surrogates_lib.sidecar_record(phi_options, tally.phi_counts)),
      ("heldout", tally.split_record(heldout_fraction, random_seed)),
      ("num_workers", num_workers),
      ("categories_requested", list(categories or [])),
      ("max_bad_rows", max_bad_rows),
      ("categories", tally.categories),
      ("totals", tally.totals()),
      ("bad_rows_total", tally.num_bad_rows),
      ("bad_rows", tally.bad_rows),
      ("outputs", outputs.records()),
      ("elapsed_s", round(elapsed, 3)),
      ("notes_per_s", round(tally.rows_read / elapsed, 1) if elapsed > 0 else None),
  ])
  for path in summary["outputs"]:
    fileio.write_sidecar(path, summary)
  logging.info("Done in %s: %d rows read, %d notes written (%.1f rows/s), %d bad rows",
               progress_lib.format_duration(elapsed), tally.rows_read, tally.notes_written,
               summary["notes_per_s"] or 0.0, tally.num_bad_rows)
  for line in tally.table():
    logging.info("%s", line)
  if phi_options.mode == "surrogate":
    logging.info("Surrogate PHI (%s, seed %d): %d placeholders replaced; per category: %s",
                 phi_options.locale, phi_options.random_seed, sum(tally.phi_counts.values()),
                 ", ".join("%s %d" % item for item in summary["phi"]["counts"].items()) or "none")
  if split is not None:
    record = summary["heldout"]
    logging.info("Held-out split (--heldout_fraction=%s, seed %d): training %d notes of %d "
                 "patients, held out %d notes of %d patients; %d notes without a usable "
                 "SUBJECT_ID skipped as bad rows", heldout_fraction, random_seed,
                 record["train"]["notes"], record["train"]["patients"],
                 record["heldout"]["notes"], record["heldout"]["patients"],
                 record["skipped_no_subject_id"])
  return summary
