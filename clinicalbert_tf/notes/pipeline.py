"""format_notes: any source of notes to one sentence per line, per category and in one file.

`format_notes(source, ...)` reads a source of notes (the interface and its records are in `rows.py`;
`noteevents.NoteEventsSource` is MIMIC-III's NOTEEVENTS, which `format_notes_file` and
`format_notes.py` read), runs every selected note through `sentences.SentenceSplitter` (in this
process or a pool) and writes one file per category named as the ClinicalBERT scripts name them
(`discharge_summary.txt`, `nursing_other.txt`, ...; `category_file_name`) and optionally one file
of all notes: one sentence per line, a blank line after each note, notes in input order.

PHI: with `phi="keep"` (the default) placeholders such as `[**Last Name (NamePattern1) 1234**]` stay
as they are (rule S1 of `sentences.py` keeps each whole). With `phi="surrogate"` each note's
placeholders are first replaced by realistic surrogates (`surrogates.py`: Faker in `locale`,
seeded per note from `random_seed` and the note's key, its ROW_ID, so the bytes do not depend on
the number of workers), and the note is then split like any text. The sidecar records the mode,
seed, locale and the placeholders replaced per category (counts only).

Rows: a note flagged as written in error (ISERROR = 1) is skipped and counted; a note whose text is
empty is skipped and counted; a row the source cannot use (a `rows.BadRow`) is reported by its ref
(ROW_ID or line number) in the log, never with its text, counted, and skipped; so is a note whose
formatting raises (by its ref and the exception's type, whose message could quote the note). More
than `max_bad_rows` of them stop the run with an error and no output. Note text is never logged.

Held-out patients: with `heldout_fraction` F > 0 a share F of the patients is held out (`heldout.py`
defines the split); every note of a held-out patient goes to the held-out sibling of each file it
would have gone to (`heldout.heldout_path`), written in the same format by the same rules. A note
to be written whose patient is unknown is a bad row (counted against `max_bad_rows`, on neither
side), since it could be any patient's; a source without patients is an error. With F = 0 (the
default) nothing changes: patients are not read and the bytes are today's.

Parallelism: with `num_workers` > 1 notes are sent in chunks to a process pool; results come back in
submission order and at most a few chunks per worker are in flight, so memory stays bounded and the
output is byte for byte the same as with one worker.
"""

import collections
import contextlib
import hashlib
import multiprocessing
import os
import re

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.notes import heldout as heldout_lib
from clinicalbert_tf.notes import noteevents
from clinicalbert_tf.notes import rows
from clinicalbert_tf.notes import sentences

DEFAULT_MAX_BAD_ROWS = 100
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


def category_file_name(category):
  """The ClinicalBERT name of a category's output file, without `.txt`.

  Lower case, each run of non-alphanumeric characters becomes `_`, leading and trailing `_`
  dropped: `Discharge summary` -> `discharge_summary`, `Nursing/other` -> `nursing_other`,
  `Case Management ` -> `case_management`.
  """
  name = re.sub(r"[^a-z0-9]+", "_", category.strip().lower()).strip("_")
  return name or "uncategorized"


# ---------------------------------------------------------------------------------------------
# Formatting chunks of notes in this process or a pool.


def format_chunk(splitter, texts):
  """Output bytes per note; for a note that cannot be formatted, a str naming the error instead.

  Notes are formatted together (one `nlp.pipe` over all their segments); if that fails, each note
  is formatted alone so that only the note at fault is reported (by its ref, by the caller).

  Args:
    splitter: a `sentences.SentenceSplitter`.
    texts: a list of note texts.

  Returns:
    A list, one item per note: `sentences.render_note` bytes, or a reason (str) without note text.
  """
  try:
    return [sentences.render_note(note) for note in splitter.format_notes(texts)]
  except Exception:  # pylint: disable=broad-except
    pass
  rendered = []
  for text in texts:
    try:
      rendered.append(sentences.render_note(splitter.format_note(text)))
    except Exception as e:  # pylint: disable=broad-except
      # The type only: an exception's message could quote the note.
      rendered.append("could not be formatted (%s)" % type(e).__name__)
  return rendered


def process_chunk(splitter, surrogates, chunk):
  """Surrogates (if any) and then sentences for a chunk of notes.

  Args:
    splitter: a `sentences.SentenceSplitter`.
    surrogates: a `surrogates.Surrogates`, or None to keep placeholders as they are.
    chunk: (texts, note_keys): note texts and their keys (`rows.Note.key`: NOTEEVENTS' ROW_IDs),
      which seed their surrogates.

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
    _WORKER_SPLITTER = sentences.SentenceSplitter(spacy_model)
  _WORKER_SURROGATES = surrogates_lib.make_surrogates(phi)


def _format_chunk_in_worker(chunk):
  return process_chunk(_WORKER_SPLITTER, _WORKER_SURROGATES, chunk)


class InProcessRunner(object):
  """Formats chunks in this process (num_workers=1); the same interface as `PoolRunner`."""

  def __init__(self, spacy_model, phi=None):
    self._splitter = sentences.SentenceSplitter(spacy_model)
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
    if fork and spacy_model == sentences.RULES_MODEL:
      # Build the rules pipeline once here, so that the forked workers inherit it instead of each
      # importing spaCy and building their own (seconds of CPU on a 2-core machine). A model named
      # by --spacy_model is loaded by each worker (it may hold BLAS thread state unsafe to fork).
      _WORKER_SPLITTER = sentences.SentenceSplitter(spacy_model)
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

  def __init__(self, source_name, max_bad_rows, heldout=False):
    self._source_name = source_name
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
            "%s: more than %d different CATEGORY values (the latest at %s); MIMIC-III "
            "NOTEEVENTS has 15" % (self._source_name, MAX_CATEGORIES, ref))
      file_name = category_file_name(category) + ".txt" if category != UNPARSEABLE else None
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
          "%s: %d rows could not be parsed, more than --max_bad_rows=%d "
          "(latest: %s, line %d: %s); stopped without writing output"
          % (self._source_name, self.num_bad_rows, self._max_bad_rows, ref, line, reason))

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

  With `heldout`, every output comes as a pair, (training file, its `heldout.heldout_path`
  sibling), both created together (the held-out one possibly empty), so that a run replaces the
  held-out file of every training file it writes and no earlier split is left beside a new one.
  Each file is entered into `stack`, so it gets its final name only when the stack closes without
  an exception.
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
        self._reserved[heldout_lib.heldout_path(path)] = (
            "--all_notes_file=%s: its held-out file %s"
            % (all_notes_file, heldout_lib.heldout_path(all_notes_file)))
      self._all_notes = self._open_pair(path)
    self._by_path = collections.OrderedDict()  # training path -> (training, held-out) of a category

  def _open_pair(self, path):
    held_out = _Output(heldout_lib.heldout_path(path), self._stack) if self._heldout else None
    return _Output(path, self._stack), held_out

  def for_category(self, category):
    """The category's (training, held-out or None) `_Output`s, created at its first note.

    None without category files.
    """
    if not self._category_files:
      return None
    path = os.path.abspath(os.path.join(self._output_dir,
                                        category_file_name(category) + ".txt"))
    pair = self._by_path.get(path)
    if pair is None:
      paths = [(path, "output file")]
      if self._heldout:
        paths.append((heldout_lib.heldout_path(path), "held-out file"))
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
  heldout_lib.check_heldout_fraction(heldout_fraction)
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
    wanted[category_file_name(name)] = name
  if not wanted:
    return None
  return lambda category: (category.lower() in wanted
                           or category_file_name(category) in wanted)


def _progress_detail(progress, source, tally):
  """What a progress line adds to the rows and their rate: notes written, input read, ETA."""
  detail = "%d notes written" % tally.notes_written
  done, total = source.progress() or (None, None)
  if done and total:
    fraction = min(1.0, done / total)
    detail += ", %.1f%% of input, ETA %s" % (100.0 * fraction, progress_lib.format_duration(
        progress_lib.eta_seconds(done, total, progress.elapsed())))
  return detail


def _notes_to_format(source, tally, selected, progress, split, by_patient=False):
  """Yields (text, key, (category, ref, line, subject)) of each note to format; counts the others.

  `split`: None, or (fraction, seed) of the held-out split; `subject` is then (patient, whether
  the patient is held out), else None. A note whose patient is unknown is then a bad row.
  `by_patient` (surrogates keyed by a secret): the key is (key, patient), and a note whose patient
  is unknown is a bad row too.
  """
  for item in source:
    tally.rows_read += 1
    if progress.due():
      progress.log(tally.rows_read, _progress_detail(progress, source, tally))
    if isinstance(item, rows.BadRow):
      category = item.category or UNPARSEABLE
      tally.counts_for(category, item.ref)["read"] += 1
      tally.bad_row(item.ref, item.line, item.reason, category)
      continue
    counts = tally.counts_for(item.category, item.ref)
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
    if split is not None or by_patient:
      if isinstance(item.patient, str):  # why it is unknown
        tally.no_subject_id += 1
        tally.bad_row(item.ref, item.line, item.patient, item.category)
        continue
    if split is not None:
      subject = item.patient, heldout_lib.is_heldout_subject(item.patient, *split)
    key = (item.key, item.patient) if by_patient else item.key
    yield item.text, key, (item.category, item.ref, item.line, subject)


def _chunks(notes_and_meta):
  """Groups (text, key, meta) into ((texts, keys), metas) chunks of CHUNK_NOTES or CHUNK_CHARS."""
  texts, keys, meta, chunk_chars = [], [], [], 0
  for text, key, note_meta in notes_and_meta:
    texts.append(text)
    keys.append(key)
    meta.append(note_meta)
    chunk_chars += len(text)
    if len(texts) >= CHUNK_NOTES or chunk_chars >= CHUNK_CHARS:
      yield (texts, keys), meta
      texts, keys, meta, chunk_chars = [], [], [], 0
  if texts:
    yield (texts, keys), meta


def _write_results(meta, result, tally, outputs):
  """Writes a formatted chunk's notes in order; counts empty notes, notes that failed, and PHI."""
  rendered, phi_counts = result
  for i, ((category, ref, line, subject), data) in enumerate(zip(meta, rendered)):
    counts = tally.categories[category]
    if isinstance(data, str):
      tally.bad_row(ref, line, data, category)
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
      patient, held_out = subject
      counts["heldout"] += held_out
      tally.notes_by_side[held_out] += 1
      tally.patients[held_out].add(patient)
    outputs.write(category, data, num_sentences, held_out)


def format_notes_file(input_file, *args, **kwargs):
  """Formats MIMIC-III notes (`format_notes.py`): `format_notes` of a NOTEEVENTS file.

  Args:
    input_file: NOTEEVENTS CSV, plain or gzip (detected from its first bytes).
    *args, **kwargs: the other arguments of `format_notes` (`output_dir`, ...).

  Returns:
    The summary dict that is also written as the sidecar of every output file.
  """
  return format_notes(noteevents.NoteEventsSource(input_file), *args, **kwargs)


def format_notes(source, output_dir=None, categories=None, all_notes_file=None,
                 category_files=True, spacy_model=sentences.RULES_MODEL, num_workers=1,
                 max_bad_rows=DEFAULT_MAX_BAD_ROWS, progress_every_s=30.0, phi="keep",
                 random_seed=surrogates_lib.DEFAULT_SEED,
                 surrogate_locale=surrogates_lib.DEFAULT_LOCALE, heldout_fraction=0.0,
                 secret=None, runner_factory=None):
  """Formats the notes of `source` into pretraining text files (see the module docstring).

  Args:
    source: a source of notes, not yet entered (the interface in `rows.py`; for NOTEEVENTS,
      `noteevents.NoteEventsSource`).
    output_dir: directory for one `<category>.txt` per category (needed if `category_files`).
    categories: list of CATEGORY values to keep (case-insensitive, surrounding spaces ignored; the
      file-name form such as `discharge_summary` also works); None or empty keeps all.
    all_notes_file: if set, also write every kept note to this file.
    category_files: write the per-category files.
    spacy_model: `rules` or a spaCy model name/path (rule S2 of `sentences.py`).
    num_workers: processes formatting notes; the output does not depend on it.
    max_bad_rows: stop with an error when more rows than this cannot be parsed (-1: never stop).
    progress_every_s: seconds between progress log lines.
    phi: `keep` (placeholders as they are) or `surrogate` (realistic values, `surrogates.py`).
    random_seed: with `surrogate`, the seed of every note's surrogates (with its key, the ROW_ID);
      with `heldout_fraction` > 0, the seed of the split (with each patient).
    surrogate_locale: with `surrogate`, the Faker locale of the values (en_US, en_GB, de_DE, ...).
    heldout_fraction: the share of patients whose notes go to the held-out files
      (`heldout.heldout_path`) instead, in [0, 1); 0 writes no held-out file and reads no patient.
    secret: with `surrogate`, a secret key (bytes): each note's surrogates are then keyed by its
      patient, the same in all the patient's notes (`surrogates.py`); never logged or written.
    runner_factory: (spacy_model, num_workers, phi) -> a runner with `make_runner`'s interface
      (default `make_runner`; `engines.spark.format_notes_runner` formats chunks on Spark).

  Returns:
    The summary dict that is also written as the sidecar of every output file.

  Raises:
    InputError: for bad flags, an unreadable input (or one without patients for a split), or
      too many bad rows. No output file is created or replaced then.
  """
  phi_options = surrogates_lib.PhiOptions(phi, random_seed, surrogate_locale, secret)
  by_patient = phi == "surrogate" and secret is not None
  _check_arguments(output_dir, all_notes_file, category_files, num_workers, max_bad_rows,
                   phi_options, heldout_fraction)
  sentences.check_spacy_model(spacy_model)
  selected = _category_selector(categories)
  split = (heldout_fraction, random_seed) if heldout_fraction > 0.0 else None
  progress = progress_lib.Progress("rows", every_seconds=progress_every_s, label="format_notes: ")
  tally = _Tally(source.name, max_bad_rows, heldout=split is not None)

  with contextlib.ExitStack() as stack:
    stack.enter_context(source)
    if split is not None:
      source.require_patients("--heldout_fraction=%s" % heldout_fraction)
    elif by_patient:
      source.require_patients("--secret_file")
    logging.info("Reading %s with spacy_model=%s, %d worker(s)", source.description(),
                 spacy_model, num_workers)
    runner = (runner_factory or make_runner)(spacy_model, num_workers, phi_options)
    ok = False
    try:
      outputs = _Outputs(stack, output_dir, category_files, all_notes_file,
                         heldout=split is not None)
      for chunk, meta in _chunks(_notes_to_format(source, tally, selected, progress, split,
                                                   by_patient)):
        for done_meta, result in runner.submit(chunk, meta):
          _write_results(done_meta, result, tally, outputs)
      for done_meta, result in runner.drain():
        _write_results(done_meta, result, tally, outputs)
      # A requested category with no notes still gets its (empty) file.
      if category_files:
        seen = set(category_file_name(c) for c in tally.categories)
        for name in categories or ():
          if category_file_name(name) not in seen:
            logging.warning("--categories: no row has CATEGORY %r", name)
            outputs.for_category(name)
      ok = True
    finally:
      runner.close(ok)
    # Leaving the ExitStack without an exception renames every output to its final name.

  elapsed = progress.elapsed()
  summary = collections.OrderedDict([("tool", "format_notes")] + list(source.sidecar_fields()) + [
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
