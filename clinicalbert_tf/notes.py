"""MIMIC-III NOTEEVENTS to pretraining text: sections, sentences, one sentence per line.

`format_notes_file` streams `NOTEEVENTS.csv` (or `.csv.gz`, or the lower-case Postgres export the
ClinicalBERT scripts read), splits every selected note into sections (`sections.py`, rules R1-R7) and
sentences (spaCy/scispaCy, rules S1-S7 below), and writes one file per category named as the
ClinicalBERT scripts name them (`discharge_summary.txt`, `nursing_other.txt`, ...) and optionally one
file of all notes: one sentence per line, a blank line after each note, notes in input order.

Sentence rules (applied to TEXT and ITEM segments; HEADER and FIXED segments are one line each):
  S1 Placeholders. Every de-identification placeholder `[**...**]` (within one line) is replaced by
     a lower-case stand-in word before sections and spaCy see the note, and restored verbatim at
     the end, so a placeholder is never split inside and never split across two sentences.
  S2 spaCy. `--spacy_model=rules` (the default, no download): `spacy.blank("en")` with scispaCy's
     `combined_rule_tokenizer` (keeps `s/p`, `h/o`, `w/`, `120/80`, `Dr.` whole) and spaCy's
     rule-based `sentencizer` (a sentence ends at a `.`, `!`, `?` token and the punctuation right
     after it). Any other value is loaded with `spacy.load(name, disable=["tagger", "ner"])`, as
     the paper did with `en_core_sci_md`, and its parser decides, with S3 added before the parser.
  S3 Period + title case. A `.` token followed by a title-case token starts a sentence (the
     authors' `sbd_component`); so does a `.` glued to a title-case word (`stable.He`,
     `0.12.Cardiology`), unless the word before the `.` is a known abbreviation (`Dr.Smith`) or
     has a `.` between letters (`U.S.Army`); and so does a title-case word after a lone capital
     letter and `.`, which spaCy keeps as one token (`65 yo M. He ...`, `Vitamin D. Take ...`).
  S4 Abbreviations. A sentence that ends with `.`, `!` or `?` and then `,`, `;` or `:` (`q.d.,`) is
     joined with the next sentence of the same segment. With the rules model, so is a sentence
     that ends with an abbreviation (`p.o.`, `b.i.d.`, `Pt.`, `approx.`, `vs.`, any `x.y.` form,
     ...) when the next one starts with a lower-case letter or a digit (`ASA 81 mg p.o. daily.`,
     `approx. 5 cm`).
  S5 List markers. A sentence that is only a list marker (`1.`, `2)`, `-`) is joined with the
     sentence after it (`1. Aspirin 81 mg daily.`).
  S6 Whitespace. Newlines inside a sentence become spaces; every run of whitespace becomes one
     space (placeholders are restored verbatim afterwards); sentences are stripped.
  S7 Empty sentences are dropped. A note left with no sentence is counted as empty, not written.

Rows: a row with `ISERROR` = 1 is skipped and counted; a row whose TEXT is empty is skipped and
counted; a row that cannot be parsed (wrong number of columns, non-integer ROW_ID, empty CATEGORY,
ISERROR neither empty, 0 nor 1, a CSV error) is reported by ROW_ID (or line number) in the log, never
with its text, counted, and skipped; so is a note whose formatting raises (by ROW_ID and the
exception's type, whose message could quote the note). More than `max_bad_rows` of them stop the run
with an error and no output. Note text is never logged.

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
import re
import stat
import time
import warnings
import zlib

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import sections

# MIMIC-III NOTEEVENTS header, in file order.
NOTEEVENTS_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME",
                      "CATEGORY", "DESCRIPTION", "CGID", "ISERROR", "TEXT")
# The columns this module needs; the others may be absent or in any order.
REQUIRED_COLUMNS = ("ROW_ID", "CATEGORY", "TEXT")

RULES_MODEL = "rules"
DEFAULT_MAX_BAD_ROWS = 100
# A CSV field longer than this is a bad row (the longest MIMIC-III note is ~55k characters); it
# bounds memory when a stray quote would otherwise swallow the rest of the file.
MAX_FIELD_CHARS = 64 << 20
# scispaCy 0.5.5 uses the v0.5.4 models (spaCy 3.7).
SCISPACY_MODEL_URL = ("https://s3-us-west-2.amazonaws.com/ai2-s2-scispacy/releases/v0.5.4/"
                      "{name}-0.5.4.tar.gz")
# Text per chunk sent to a worker, and chunks in flight per worker.
CHUNK_CHARS = 256 << 10
CHUNK_NOTES = 256
IN_FLIGHT_PER_WORKER = 3
# The spaCy vocabulary and tokenizer cache grow with every new string; past this many lexemes the
# pipeline is rebuilt so memory does not grow with the input (tokenization does not depend on it).
MAX_VOCAB_LEXEMES = 300000
# Bad rows listed in the summary (all are counted and logged).
MAX_LISTED_BAD_ROWS = 1000
# MIMIC-III has 15 categories; far more means the file is not NOTEEVENTS (and would need one open
# output file each).
MAX_CATEGORIES = 500

UNPARSEABLE = "(unparseable)"

PLACEHOLDER_RE = re.compile(r"\[\*\*.*?\*\*\]")
_STAND_IN_STEM = "qqphi"

# S3: a `.` glued to a following title-case word, with the word before it; and a single capital
# letter with a `.` (one token for spaCy, like `M.` in `65 yo M. He ...`) before a title-case word.
_GLUED_PERIOD_RE = re.compile(r"(\S+)\.(?=[A-Z][a-z])")
_LETTER_PERIOD_RE = re.compile(r"(?<![\w.])[A-Z]\.(?=\s+[A-Z][a-z])")
# S4: abbreviations after which a lower-case word continues the sentence.
_ABBREVIATIONS = frozenset("""
    dr mr mrs ms st pt pts approx appt vs no nos fig figs sig disp tab tabs cap caps inj susp soln
    hx dx tx rx sx yo etc al jr sr
    """.split())
_DOTTED_ABBREVIATION_RE = re.compile(r"(?:[A-Za-z]\.){2,}|(?:[A-Za-z]\.)+[A-Za-z]")
# S3: a word with a `.` between letters (`p.o`, `U.S`), after which a glued `.` is not a boundary.
_DOTTED_WORD_RE = re.compile(r"[A-Za-z]\.[A-Za-z]")
# S4: a sentence cut right after `.`, `!` or `?` that is followed by `,`, `;` or `:` (`q.d.,`).
_PUNCT_THEN_COMMA_RE = re.compile(r"[.!?][,;:]$")
# S5: a sentence that is only a list marker.
_LIST_MARKER_RE = re.compile(r"\(?\d{1,2}[.)]|[-*\u2022#]+")


def category_file_name(category):
  """The ClinicalBERT name of a category's output file, without `.txt`.

  Lower case, each run of non-alphanumeric characters becomes `_`, leading and trailing `_`
  dropped: `Discharge summary` -> `discharge_summary`, `Nursing/other` -> `nursing_other`,
  `Case Management ` -> `case_management`.
  """
  name = re.sub(r"[^a-z0-9]+", "_", category.strip().lower()).strip("_")
  return name or "uncategorized"


def protect_placeholders(text):
  """Replaces each `[**...**]` by a stand-in word that occurs nowhere else in `text` (rule S1).

  Args:
    text: a note.

  Returns:
    (protected_text, placeholders, stand_in): `placeholders` in order of appearance; `stand_in` is
    None when there are none. `restore_placeholders` undoes it.
  """
  placeholders = PLACEHOLDER_RE.findall(text)
  if not placeholders:
    return text, [], None
  tail = 2
  while True:
    stand_in = _STAND_IN_STEM + "q" * tail
    protected = PLACEHOLDER_RE.sub(stand_in, text)
    # Count overlapping occurrences too, so that no text next to a stand-in can fake one.
    if len(re.findall("(?=%s)" % stand_in, protected)) == len(placeholders):
      return protected, placeholders, stand_in
    tail += 1


def restore_placeholders(sentences, placeholders, stand_in):
  """Puts the placeholders back, in order, into the sentences made from a protected note."""
  if not placeholders:
    return sentences
  remaining = iter(placeholders)
  pattern = re.compile(re.escape(stand_in))
  restored = [pattern.sub(lambda _: next(remaining), s) for s in sentences]
  if next(remaining, None) is not None:
    raise AssertionError("internal error: a placeholder was lost while splitting a note")
  return restored


def _period_titlecase_component(doc):
  """Rule S3 as a spaCy component: a `.` token followed by a title-case token starts a sentence."""
  for i in range(len(doc) - 1):
    if doc[i].text == "." and doc[i + 1].is_title:
      doc[i + 1].is_sent_start = True
  return doc


_COMPONENT_NAME = "clinicalbert_period_titlecase"


def _register_component():
  import spacy  # pylint: disable=g-import-not-at-top
  if not spacy.language.Language.has_factory(_COMPONENT_NAME):
    spacy.language.Language.component(_COMPONENT_NAME, func=_period_titlecase_component)


def missing_model_message(name):
  """The one-line error for a spaCy model that is not installed."""
  if name.startswith(("en_core_sci_", "en_ner_")):
    how = "pip install " + SCISPACY_MODEL_URL.format(name=name)
  else:
    how = "python -m spacy download %s" % name
  return ("--spacy_model=%s: spaCy model %r is not installed; install it with `%s`, or use "
          "--spacy_model=%s, which needs no download" % (name, name, how, RULES_MODEL))


def check_spacy_model(name):
  """Raises InputError unless `name` is `rules`, an installed spaCy package or a model directory."""
  if name == RULES_MODEL:
    return
  import spacy  # pylint: disable=g-import-not-at-top
  if not (spacy.util.is_package(name) or os.path.isdir(name)):
    raise fileio.InputError(missing_model_message(name))


def build_pipeline(spacy_model=RULES_MODEL):
  """Builds the spaCy pipeline for sentence splitting (rule S2).

  Args:
    spacy_model: `rules`, or a spaCy model name or path.

  Returns:
    A `spacy.Language`.

  Raises:
    InputError: if the model is not installed.
  """
  import spacy  # pylint: disable=g-import-not-at-top
  from scispacy import custom_tokenizer  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    # scispaCy's tokenizer regexes trigger Python's "possible set union" FutureWarning.
    warnings.simplefilter("ignore", FutureWarning)
    if spacy_model == RULES_MODEL:
      # spaCy's sentencizer rather than scispaCy's pysbd_sentencizer: measured here 4.5x faster
      # (363k vs 80k tokens/s), and pysbd joined `no n/v/d. Echo showed ...`; what pysbd did
      # better (`p.o. daily`) rule S4 does.
      nlp = spacy.blank("en")
      nlp.tokenizer = custom_tokenizer.combined_rule_tokenizer(nlp)
      nlp.add_pipe("sentencizer")
      return nlp
    try:
      nlp = spacy.load(spacy_model, disable=["tagger", "ner"])
    except OSError as e:
      if "E050" in str(e) or "E053" in str(e):
        raise fileio.InputError(missing_model_message(spacy_model)) from None
      raise
  _register_component()
  if "parser" in nlp.pipe_names:
    nlp.add_pipe(_COMPONENT_NAME, before="parser")
  elif "senter" in nlp.pipe_names:
    nlp.add_pipe(_COMPONENT_NAME, before="senter")
  else:
    # No parser: a sentencizer decides (it sets every token's start), then S3 adds starts.
    if "sentencizer" not in nlp.pipe_names:
      nlp.add_pipe("sentencizer")
    nlp.add_pipe(_COMPONENT_NAME, last=True)
  return nlp


def _is_abbreviation(word):
  """True for `p.o.`, `b.i.d.`, `Pt.`, `approx.`: words after which a lower-case word continues."""
  if not word.endswith("."):
    return False
  stem = word[:-1]
  return stem.lower() in _ABBREVIATIONS or bool(_DOTTED_ABBREVIATION_RE.fullmatch(word))


def _split_after_periods(sentence):
  """Rule S3 inside a sentence: `stable.He ...` or `65 yo M. He ...` -> [`... M.`, `He ...`]."""
  cuts = set()
  for match in _GLUED_PERIOD_RE.finditer(sentence):
    word = match.group(1)
    if word.lower() not in _ABBREVIATIONS and not _DOTTED_WORD_RE.search(word):
      cuts.add(match.end())  # just after the `.`
  for match in _LETTER_PERIOD_RE.finditer(sentence):
    cuts.add(match.end())
  if not cuts:
    return [sentence]
  pieces = []
  start = 0
  for cut in sorted(cuts):
    pieces.append(sentence[start:cut].strip())
    start = cut
  pieces.append(sentence[start:].strip())
  return [p for p in pieces if p]


def postprocess_sentences(raw_sentences, abbreviations=True):
  """Rules S3 (glued), S4, S5, S6 and S7 on the raw sentence texts of one segment.

  Args:
    raw_sentences: sentence texts from spaCy, in order, for one segment.
    abbreviations: apply rule S4 (the rules model only).

  Returns:
    The segment's output sentences.
  """
  out = []
  marker = None
  for raw in raw_sentences:
    text = " ".join(raw.split())  # S6
    if not text:  # S7
      continue
    for piece in _split_after_periods(text) if "." in text else (text,):
      if marker is not None:  # S5
        piece = marker + " " + piece
        marker = None
      if _LIST_MARKER_RE.fullmatch(piece):
        marker = piece
        continue
      if out and (_PUNCT_THEN_COMMA_RE.search(out[-1]) or (
          abbreviations and (piece[0].islower() or piece[0].isdigit())
          and _is_abbreviation(out[-1].rsplit(" ", 1)[-1]))):  # S4
        out[-1] = out[-1] + " " + piece
        continue
      out.append(piece)
  if marker is not None:
    out.append(marker)
  return out


def _sentence_texts(doc):
  """The texts of `doc`'s sentences, each running to the next one's start (whitespace included).

  Reading the sentence starts as one array is several times faster than iterating `doc.sents`.
  """
  from spacy import attrs  # pylint: disable=g-import-not-at-top
  if not len(doc):
    return []
  starts = doc.to_array([attrs.SENT_START, attrs.IDX])  # [num_tokens, 2]
  offsets = starts[starts[:, 0] == 1, 1].tolist()
  if not offsets or offsets[0] != 0:
    offsets.insert(0, 0)
  offsets.append(len(doc.text))
  text = doc.text
  return [text[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


class SentenceSplitter(object):
  """Turns note texts into sentences with the sections rules and a spaCy pipeline."""

  def __init__(self, spacy_model=RULES_MODEL):
    self.spacy_model = spacy_model
    self._rules = spacy_model == RULES_MODEL
    self._nlp = build_pipeline(spacy_model)

  def _maybe_rebuild(self):
    # Lexemes and cached tokenizations accumulate for every new string; start afresh (tokenization
    # and sentence boundaries do not depend on what the vocabulary has seen).
    if len(self._nlp.vocab) > MAX_VOCAB_LEXEMES:
      self._nlp = build_pipeline(self.spacy_model)

  def format_notes(self, texts):
    """Splits notes into output sentences.

    Args:
      texts: a list of note texts.

    Returns:
      A list with, for each note, its list of sentences (possibly empty).
    """
    notes = []
    spacy_inputs = []
    for text in texts:
      protected, placeholders, stand_in = protect_placeholders(text)
      segments = sections.split_sections(protected)
      notes.append((segments, placeholders, stand_in))
      spacy_inputs.extend(s.text for s in segments if s.kind in (sections.TEXT, sections.ITEM))
    docs = self._nlp.pipe(spacy_inputs, batch_size=256)
    results = []
    for segments, placeholders, stand_in in notes:
      sentences = []
      for segment in segments:
        if segment.kind in (sections.TEXT, sections.ITEM):
          raw = _sentence_texts(next(docs))
          sentences.extend(postprocess_sentences(raw, abbreviations=self._rules))
        else:
          sentences.append(" ".join(segment.text.split()))
      results.append(restore_placeholders(sentences, placeholders, stand_in))
    if next(docs, None) is not None:
      raise AssertionError("internal error: segments and spaCy documents out of step")
    self._maybe_rebuild()
    return results

  def format_note(self, text):
    """The output sentences of one note."""
    return self.format_notes([text])[0]


def render_note(sentences):
  """The output bytes of one note: one sentence per line, then a blank line (b"" if empty)."""
  if not sentences:
    return b""
  return ("\n".join(sentences) + "\n\n").encode("utf-8")


def _format_chunk(splitter, texts):
  """Output bytes per note; for a note that cannot be formatted, a str naming the error instead.

  Notes are formatted together (one `nlp.pipe` over all their segments); if that fails, each note
  is formatted alone so that only the note at fault is reported (by its ROW_ID, by the caller).
  """
  try:
    return [render_note(sentences) for sentences in splitter.format_notes(texts)]
  except Exception:  # pylint: disable=broad-except
    pass
  rendered = []
  for text in texts:
    try:
      rendered.append(render_note(splitter.format_note(text)))
    except Exception as e:  # pylint: disable=broad-except
      # The type only: an exception's message could quote the note.
      rendered.append("could not be formatted (%s)" % type(e).__name__)
  return rendered


# ---------------------------------------------------------------------------------------------
# Reading NOTEEVENTS.

NoteRow = collections.namedtuple("NoteRow", ["row_id", "category", "iserror", "text", "line"])
BadRow = collections.namedtuple("BadRow", ["ref", "reason", "category", "line"])


class NoteEventsReader(object):
  """Streams rows of a NOTEEVENTS CSV (plain or gzip, upper- or lower-case header).

  Iterating yields `NoteRow`s and, for rows that cannot be used, `BadRow`s (never raising for a
  bad row). Memory does not grow with the file: one row is held at a time.
  """

  def __init__(self, path):
    self.path = path
    self._saved_field_limit = None
    try:
      self._raw = open(path, "rb")
    except OSError as e:
      raise fileio.InputError("--input_file: cannot open %r: %s" % (path, e.strerror)) from None
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
    self._reader = csv.reader(self._text)
    try:
      header = next(self._reader)
    except StopIteration:
      self.close()
      raise fileio.InputError("--input_file %s: the file is empty; expected a NOTEEVENTS CSV "
                              "with header %s" % (path, ",".join(NOTEEVENTS_COLUMNS))) from None
    except (csv.Error, EOFError, OSError, zlib.error) as e:
      self.close()
      raise fileio.InputError("--input_file %s: cannot read the header: %s" % (path, e)) from None
    self._parse_header(header)

  def _parse_header(self, header):
    names = [h.strip() for h in header]
    upper = [n.upper() for n in names]
    missing = [c for c in REQUIRED_COLUMNS if c not in upper]
    if missing:
      self.close()
      raise fileio.InputError(
          "--input_file %s line 1: header lacks column(s) %s; expected a NOTEEVENTS header like %s "
          "(any letter case)" % (self.path, ",".join(missing), ",".join(NOTEEVENTS_COLUMNS)))
    duplicates = sorted(set(n for n in upper if n and upper.count(n) > 1))
    if duplicates:
      self.close()
      raise fileio.InputError("--input_file %s line 1: duplicate column(s) %s"
                              % (self.path, ",".join(duplicates)))
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
    if self._saved_field_limit is not None:
      csv.field_size_limit(self._saved_field_limit)
      self._saved_field_limit = None
    self._raw.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused_exc_info):
    self.close()

  def __iter__(self):
    reader = self._reader
    while True:
      line = reader.line_num + 1  # first line of the next record
      try:
        row = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        yield BadRow("line %d" % line, "CSV error: %s" % e, None, line)
        continue
      except (EOFError, OSError, zlib.error) as e:
        raise fileio.InputError("--input_file %s: cannot read past line %d: %s"
                                % (self.path, line, e)) from None
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
    return NoteRow(row_id, category, iserror, row[self._text_column], line)


# ---------------------------------------------------------------------------------------------
# Running notes through one process or a pool.

_WORKER_SPLITTER = None


def _init_worker(spacy_model):
  global _WORKER_SPLITTER
  # A worker forked while the parent held a pipeline for this model starts with a copy of it.
  if _WORKER_SPLITTER is None or _WORKER_SPLITTER.spacy_model != spacy_model:
    _WORKER_SPLITTER = SentenceSplitter(spacy_model)


def _format_chunk_in_worker(texts):
  return _format_chunk(_WORKER_SPLITTER, texts)


class _InProcessRunner(object):
  """Formats chunks in this process (num_workers=1)."""

  def __init__(self, spacy_model):
    self._splitter = SentenceSplitter(spacy_model)

  def submit(self, chunk, meta):
    yield meta, _format_chunk(self._splitter, chunk)

  def drain(self):
    return iter(())

  def close(self, unused_ok):
    pass


class _PoolRunner(object):
  """Formats chunks in worker processes; yields results in submission order, bounded in flight."""

  def __init__(self, spacy_model, num_workers):
    global _WORKER_SPLITTER
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    if fork and spacy_model == RULES_MODEL:
      # Build the rules pipeline once here, so that the forked workers inherit it instead of each
      # importing spaCy and building their own (seconds of CPU on a 2-core machine). A model named
      # by --spacy_model is loaded by each worker (it may hold BLAS thread state unsafe to fork).
      _WORKER_SPLITTER = SentenceSplitter(spacy_model)
    try:
      self._pool = context.Pool(num_workers, initializer=_init_worker, initargs=(spacy_model,))
    finally:
      _WORKER_SPLITTER = None  # the workers have their copies; a replacement worker builds one
    self._pending = collections.deque()
    self._max_pending = IN_FLIGHT_PER_WORKER * num_workers

  def submit(self, chunk, meta):
    self._pending.append((meta, self._pool.apply_async(_format_chunk_in_worker, (chunk,))))
    while len(self._pending) > self._max_pending:
      meta, result = self._pending.popleft()
      yield meta, result.get()

  def drain(self):
    while self._pending:
      meta, result = self._pending.popleft()
      yield meta, result.get()

  def close(self, ok):
    if ok:
      self._pool.close()
    else:
      self._pool.terminate()
    self._pool.join()


# ---------------------------------------------------------------------------------------------
# Writing.


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


def _new_category_counts(file_name):
  return collections.OrderedDict([
      ("file", file_name), ("read", 0), ("written", 0), ("sentences", 0), ("skipped_iserror", 0),
      ("skipped_empty", 0), ("skipped_bad_row", 0), ("not_selected", 0)])


_COUNT_KEYS = ("read", "written", "sentences", "skipped_iserror", "skipped_empty",
               "skipped_bad_row", "not_selected")


def _format_duration(seconds):
  seconds = int(round(seconds))
  return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _summary_table(category_counts):
  """Log lines: per category read / written / skipped counts (no text)."""
  header = "%-22s %10s %10s %10s %10s %10s %12s" % ("category", "read", "written", "iserror",
                                                    "empty", "bad_row", "not_selected")
  lines = [header]
  for category, counts in category_counts.items():
    lines.append("%-22s %10d %10d %10d %10d %10d %12d" % (
        category[:22], counts["read"], counts["written"], counts["skipped_iserror"],
        counts["skipped_empty"], counts["skipped_bad_row"], counts["not_selected"]))
  return lines


def format_notes_file(input_file, output_dir=None, categories=None, all_notes_file=None,
                      category_files=True, spacy_model=RULES_MODEL, num_workers=1,
                      max_bad_rows=DEFAULT_MAX_BAD_ROWS, progress_every_s=30.0):
  """Formats MIMIC-III notes into pretraining text files (see the module docstring).

  Args:
    input_file: NOTEEVENTS CSV, plain or gzip (detected from its first bytes).
    output_dir: directory for one `<category>.txt` per category (needed if `category_files`).
    categories: list of CATEGORY values to keep (case-insensitive, surrounding spaces ignored; the
      file-name form such as `discharge_summary` also works); None or empty keeps all.
    all_notes_file: if set, also write every kept note to this file.
    category_files: write the per-category files.
    spacy_model: `rules` or a spaCy model name/path (rule S2).
    num_workers: processes formatting notes; the output does not depend on it.
    max_bad_rows: stop with an error when more rows than this cannot be parsed (-1: never stop).
    progress_every_s: seconds between progress log lines.

  Returns:
    The summary dict that is also written as the sidecar of every output file.

  Raises:
    InputError: for bad flags, an unreadable input, or too many bad rows. No output file is
      created or replaced then.
  """
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
  check_spacy_model(spacy_model)
  wanted = {}
  for name in categories or ():
    wanted[name.strip().lower()] = name
    wanted[category_file_name(name)] = name
  all_notes_path = os.path.abspath(all_notes_file) if all_notes_file else None

  start = time.time()
  category_counts = collections.OrderedDict()
  bad_rows = []
  num_bad_rows = 0
  rows_read = 0
  notes_written = 0
  outputs = collections.OrderedDict()  # path -> _Output

  def counts_for(category, ref):
    counts = category_counts.get(category)
    if counts is None:
      if len(category_counts) >= MAX_CATEGORIES:
        raise fileio.InputError(
            "--input_file %s: more than %d different CATEGORY values (the latest at %s); MIMIC-III "
            "NOTEEVENTS has 15" % (input_file, MAX_CATEGORIES, ref))
      counts = category_counts[category] = _new_category_counts(
          category_file_name(category) + ".txt" if category != UNPARSEABLE else None)
    return counts

  with contextlib.ExitStack() as stack:
    reader = stack.enter_context(NoteEventsReader(input_file))
    logging.info("Reading %s (%s, %s header) with spacy_model=%s, %d worker(s)", input_file,
                 "gzip" if reader.gzip else "plain CSV", reader.header_case, spacy_model,
                 num_workers)
    runner = (_InProcessRunner(spacy_model) if num_workers == 1
              else _PoolRunner(spacy_model, num_workers))
    ok = False
    try:
      all_output = _Output(all_notes_path, stack) if all_notes_path else None

      def output_for(category):
        if not category_files:
          return None
        path = os.path.abspath(os.path.join(output_dir, category_file_name(category) + ".txt"))
        out = outputs.get(path)
        if out is None:
          if path == all_notes_path:
            raise fileio.InputError("--all_notes_file=%s is also the output file of category %r"
                                    % (all_notes_file, category))
          out = outputs[path] = _Output(path, stack)
        return out

      def record_bad_row(ref, line, reason, category):
        nonlocal num_bad_rows
        num_bad_rows += 1
        category_counts[category]["skipped_bad_row"] += 1
        logging.warning("Bad row at %s (line %d): %s; skipped", ref, line, reason)
        if len(bad_rows) < MAX_LISTED_BAD_ROWS:
          bad_rows.append({"ref": ref, "line": line, "reason": reason})
        if 0 <= max_bad_rows < num_bad_rows:
          raise fileio.InputError(
              "--input_file %s: %d rows could not be parsed, more than --max_bad_rows=%d "
              "(latest: %s, line %d: %s); stopped without writing output"
              % (input_file, num_bad_rows, max_bad_rows, ref, line, reason))

      def write_results(meta, rendered):
        nonlocal notes_written
        for (category, row_id, line), data in zip(meta, rendered):
          counts = category_counts[category]
          if isinstance(data, str):
            record_bad_row("ROW_ID %d" % row_id, line, data, category)
            continue
          if not data:
            counts["skipped_empty"] += 1
            continue
          num_sentences = data.count(b"\n") - 1
          counts["written"] += 1
          counts["sentences"] += num_sentences
          notes_written += 1
          out = output_for(category)
          if out is not None:
            out.write(data, num_sentences)
          if all_output is not None:
            all_output.write(data, num_sentences)

      chunk, meta, chunk_chars = [], [], 0
      last_log = time.time()
      for item in reader:
        rows_read += 1
        now = time.time()
        if now - last_log >= progress_every_s:
          last_log = now
          _log_progress(reader, rows_read, notes_written, now - start)
        if isinstance(item, BadRow):
          category = item.category or UNPARSEABLE
          counts_for(category, item.ref)["read"] += 1
          record_bad_row(item.ref, item.line, item.reason, category)
          continue
        counts = counts_for(item.category, "ROW_ID %d" % item.row_id)
        counts["read"] += 1
        if wanted and (item.category.lower() not in wanted
                       and category_file_name(item.category) not in wanted):
          counts["not_selected"] += 1
          continue
        if item.iserror:
          counts["skipped_iserror"] += 1
          continue
        if not item.text.strip():
          counts["skipped_empty"] += 1
          continue
        chunk.append(item.text)
        meta.append((item.category, item.row_id, item.line))
        chunk_chars += len(item.text)
        if len(chunk) >= CHUNK_NOTES or chunk_chars >= CHUNK_CHARS:
          for done_meta, rendered in runner.submit(chunk, meta):
            write_results(done_meta, rendered)
          chunk, meta, chunk_chars = [], [], 0
      if chunk:
        for done_meta, rendered in runner.submit(chunk, meta):
          write_results(done_meta, rendered)
      for done_meta, rendered in runner.drain():
        write_results(done_meta, rendered)
      # A requested category with no notes still gets its (empty) file.
      if category_files:
        seen = set(category_file_name(c) for c in category_counts)
        for name in categories or ():
          if category_file_name(name) not in seen:
            logging.warning("--categories: no row has CATEGORY %r", name)
            output_for(name)
      ok = True
    finally:
      runner.close(ok)
    # Leaving the ExitStack without an exception renames every output to its final name.

  elapsed = time.time() - start
  totals = collections.OrderedDict((k, sum(c[k] for c in category_counts.values()))
                                   for k in _COUNT_KEYS)
  summary = collections.OrderedDict([
      ("tool", "format_notes"),
      ("input_file", os.path.abspath(input_file)),
      ("input_bytes", reader.total_bytes),
      ("input_gzip", reader.gzip),
      ("header_case", reader.header_case),
      ("spacy_model", spacy_model),
      ("num_workers", num_workers),
      ("categories_requested", list(categories or [])),
      ("max_bad_rows", max_bad_rows),
      ("categories", category_counts),
      ("totals", totals),
      ("bad_rows_total", num_bad_rows),
      ("bad_rows", bad_rows),
      ("outputs", collections.OrderedDict(
          (path, out.record()) for path, out in
          ([(all_notes_path, all_output)] if all_output else []) + list(outputs.items()))),
      ("elapsed_s", round(elapsed, 3)),
      ("notes_per_s", round(rows_read / elapsed, 1) if elapsed > 0 else None),
  ])
  for path in summary["outputs"]:
    fileio.write_sidecar(path, summary)
  logging.info("Done in %s: %d rows read, %d notes written (%.1f rows/s), %d bad rows",
               _format_duration(elapsed), rows_read, notes_written,
               summary["notes_per_s"] or 0.0, num_bad_rows)
  for line in _summary_table(category_counts):
    logging.info("%s", line)
  return summary


def _log_progress(reader, rows_read, notes_written, elapsed):
  rate = rows_read / elapsed if elapsed > 0 else 0.0
  done = reader.bytes_read()
  if done and reader.total_bytes:
    fraction = min(1.0, done / reader.total_bytes)
    eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else 0.0
    logging.info("%d rows read (%.0f notes/s), %d notes written, %.1f%% of input, ETA %s",
                 rows_read, rate, notes_written, 100.0 * fraction, _format_duration(eta))
  else:
    logging.info("%d rows read (%.0f notes/s), %d notes written", rows_read, rate, notes_written)
