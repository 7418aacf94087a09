"""deidentify.py's side of the job: where PHI spans come from, patients, keys, the release check.

Spans (`--recognizers`, default `model,patterns`):
  * `model`: the model's spans -- predicted with `--model_dir`, or read from `--spans_file`
    (predict.py's JSON lines, or i2b2 2014 XML / brat `.ann` with `--spans_format`), then no model
    is loaded; every span must fit its note, and a note without an entry in the file is an error
    (it would be released untouched);
  * `patterns`: the pattern recognizers (`anonymize/recognizers.py`); alone they need no model.
  Both: merged (`anonymize/spans.py`): overlapping spans become one over their union, labelled as
  the model labelled it; a pattern span that overlaps no model span is added as it is.
Patients: JSON lines' `--patient_field`, NOTEEVENTS' SUBJECT_ID, or `--patient_map` (a file of
`note id<TAB or comma>patient` lines, for any input; a note it lacks is an error). Without a key a
note is its own patient. Keys: `--secret_file` (kept by the user: never logged, never written);
without it surrogates, hashes and date offsets are seeded per note (`--random_seed`), with a
warning that consistency across notes needs a secret.
Release check: the model's dev recall per PHI type, which `run_finetune.py --do_eval` records next
to the checkpoint (`eval_results.json`, `per_type`), is logged at the start; a type under
`--min_label_recall` (0.8) or without a recorded recall gets a warning. Recall must be measured on
the user's own notes before any release (README, "Releasing a de-identified corpus").
"""

import json
import os

from absl import logging

from clinicalbert_tf import anonymize
from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.anonymize import recognizers as recognizers_lib
from clinicalbert_tf.anonymize import span_readers
from clinicalbert_tf.anonymize import spans as spans_lib
from clinicalbert_tf.inference import text as text_lib

SOURCES = ("model", "patterns")
DEFAULT_RECOGNIZERS = "model,patterns"
DEFAULT_MIN_LABEL_RECALL = 0.8
# Written into --output_dir next to the notes (the notes are <id>.txt).
ITEMS_FILE = "deidentify_items.jsonl"
SUMMARY_FILE = "deidentify_summary.json"
# Where run_finetune.py --do_eval records the dev scores, next to the checkpoint.
DEV_RESULTS_FILE = "eval_results.json"


def define_flags():
  """deidentify.py's de-identification flags (job.define_flags(deidentify=True) calls this)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string(
      "replace", "placeholder",
      "One operator for every PHI label, or LABEL:operator pairs with an optional default "
      "(DATE:shift,IDNUM:mask,AGE:safe_harbor,default:surrogate). Operators: placeholder "
      "([**TYPE**], MIMIC-III style); tag (<TYPE>); mask (--mask_char over the span's length); "
      "redact (removed); keep; surrogate (a realistic value: per note without --secret_file, one "
      "identity per patient with it); shift (dates, by the patient's offset); hash (TYPE_3f2a9c, "
      "keyed); safe_harbor (HIPAA Safe Harbor: ages over 89 -> 90+, dates -> year, ZIP -> 3 digits "
      "or 000).")
  flags.DEFINE_string("operators_file", None,
                      "A JSON object {label: operator, \"default\": operator}, instead of --replace.")
  flags.DEFINE_string("mask_char", "*", "--replace=mask: the character.")
  surrogates_lib.define_flags("--replace=surrogate")
  flags.DEFINE_string("secret_file", None,
                      "A file holding a secret key (keep it private; never logged or written): "
                      "every surrogate, hash and date offset is then an HMAC of (secret, patient, "
                      "type, value), the same for one patient in every note, run and machine.")
  flags.DEFINE_integer("date_shift_days", anonymize.DEFAULT_DATE_SHIFT_DAYS,
                       "Dates move by a keyed per-patient offset within +- this many days (never "
                       "0, never whole weeks).")
  flags.DEFINE_string("patient_field", None,
                      "JSON lines: the field holding a note's patient (NOTEEVENTS: SUBJECT_ID).")
  flags.DEFINE_string("patient_map", None,
                      "A file of `note id<TAB or comma>patient` lines: each note's patient (plain "
                      "text files, or any input); a note it lacks is an error.")
  flags.DEFINE_string("spans_file", None,
                      "Comma list of files or globs of PHI spans to use instead of a model: "
                      "predict.py's JSON lines, or i2b2 2014 XML / brat .ann (--spans_format).")
  flags.DEFINE_enum("spans_format", "jsonl", list(span_readers.SPAN_FORMATS),
                    "The format of --spans_file.")
  flags.DEFINE_string("recognizers", DEFAULT_RECOGNIZERS,
                      "Where PHI spans come from: model (the model's, or --spans_file's), patterns "
                      "(rules for dates, phone/fax, e-mail, URL, IP, SSN, IDs after cue words, ZIP "
                      "codes, ages over 89), or both (merged).")
  flags.DEFINE_float("min_label_recall", DEFAULT_MIN_LABEL_RECALL,
                     "Warn at the start about every PHI type whose recorded dev recall is under "
                     "this (or unknown).")
  flags.DEFINE_float("min_phi_probability", None,
                     "A word is PHI when P(not O) reaches this (lower: more recall, less "
                     "precision); default: the most probable label.")


def parse_recognizers(value):
  """The sources of `--recognizers` (a subset of SOURCES, in order)."""
  names = [n.strip() for n in (value or "").split(",") if n.strip()]
  unknown = [n for n in names if n not in SOURCES]
  if unknown or not names:
    raise fileio.InputError("--recognizers=%s: expected a comma list of %s" % (
        value, ", ".join(SOURCES)))
  return tuple(n for n in SOURCES if n in names)


def needs_model(options):
  """Whether the run predicts spans with a model (else: a spans file, or patterns alone)."""
  return "model" in parse_recognizers(options.recognizers) and not options.spans_file


def operators_of(options, labels=None):
  if options.operators_file:
    return anonymize.load_operators_file(options.operators_file, labels)
  return anonymize.parse_operators(options.replace, labels)


def check_options(options):
  """The checks that need no model (before one loads): operators, secret, map, spans files."""
  sources = parse_recognizers(options.recognizers)
  if options.spans_file and "model" not in sources:
    raise fileio.InputError("--spans_file stands for the model's spans: use --recognizers=model "
                            "or model,patterns with it")
  # Before a model is loaded any label may be named; make_anonymizer checks them with its labels.
  operators = operators_of(options, anonymize.ANY_LABEL if needs_model(options) else None)
  if "surrogate" in operators.names():
    surrogates_lib.check_locale(options.surrogate_locale)
  if len(options.mask_char) != 1:
    raise fileio.InputError("--mask_char=%r: expected one character" % options.mask_char)
  if options.date_shift_days < 1:
    raise fileio.InputError("--date_shift_days=%d: expected at least 1" % options.date_shift_days)
  if not 0.0 <= options.min_label_recall <= 1.0:
    raise fileio.InputError("--min_label_recall=%g: expected a recall in [0, 1]" %
                            options.min_label_recall)
  if options.secret_file:
    anonymize.read_secret_file(options.secret_file)
  if options.patient_map:
    load_patient_map(options.patient_map)
  if options.spans_file:
    fileio.expand_file_patterns(options.spans_file, flag_name="spans_file")


def load_patient_map(path):
  """{note id: patient} of a `--patient_map` file (`id<TAB>patient` or `id,patient` lines)."""
  mapping = {}
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except OSError as e:
    raise fileio.InputError("--patient_map=%s: cannot be read (%s)" % (
        path, e.strerror or type(e).__name__)) from None
  except UnicodeDecodeError:
    raise fileio.InputError("--patient_map=%s: not UTF-8 text" % path) from None
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.startswith("#"):
      continue
    parts = line.split("\t") if "\t" in line else line.split(",")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
      raise fileio.InputError("--patient_map=%s:%d: expected `note id<TAB>patient`" % (path, number))
    note_id, patient = parts[0].strip(), parts[1].strip()
    if mapping.setdefault(note_id, patient) != patient:
      raise fileio.InputError("--patient_map=%s:%d: note %s has two patients" % (
          path, number, note_id))
  if not mapping:
    raise fileio.InputError("--patient_map=%s: no `note id<TAB>patient` line" % path)
  return mapping


def with_patients(notes, patient_map):
  """`notes` with their patient from `patient_map` (InputError naming a note it lacks)."""
  for note in notes:
    if patient_map is not None:
      patient = patient_map.get(note.id)
      if patient is None:
        raise fileio.InputError("%s: note %s is not in --patient_map" % (note.where, note.id))
      note.patient = patient
    yield note


def model_types(label_list):
  """The PHI types of a word-label list (`B-DATE`, `I-DATE` -> DATE; `O` left out)."""
  types = []
  for label in label_list:
    if label == "O":
      continue
    bare = label[2:] if label[:2] in ("B-", "I-", "E-", "S-", "U-", "L-") else label
    if bare not in types:
      types.append(bare)
  return types


def release_check(model_dir, types, floor):
  """Logs the model's recorded dev recall per PHI type; returns the types to warn about."""
  path = os.path.join(model_dir, DEV_RESULTS_FILE) if model_dir else None
  per_type = {}
  if path and os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        per_type = json.load(f).get("per_type") or {}
    except (OSError, ValueError, AttributeError):
      logging.warning("release check: %s cannot be read; every type's recall is unknown", path)
  else:
    logging.warning("release check: no %s next to the model (run_finetune.py --do_eval records "
                    "it): every type's dev recall is unknown", DEV_RESULTS_FILE)
  weak = []
  for label in types:
    recall = (per_type.get(label) or {}).get("recall")
    if recall is None:
      weak.append(label)
      logging.warning("release check: %s: dev recall unknown", label)
    elif recall < floor:
      weak.append(label)
      logging.warning("release check: %s: dev recall %.3f is under --min_label_recall=%.2f",
                      label, recall, floor)
    else:
      logging.info("release check: %s: dev recall %.3f", label, recall)
  if weak:
    logging.warning("release check: %d of %d PHI types lack a dev recall of %.2f; measure recall "
                    "on your own notes before any release", len(weak), len(types), floor)
  return weak


def make_anonymizer(options, labels=None):
  """The run's Anonymizer; warns when surrogates are not consistent across notes."""
  secret = anonymize.read_secret_file(options.secret_file) if options.secret_file else None
  operators = operators_of(options, labels)
  keyed = operators.names() & {"surrogate", "shift", "hash"}
  if secret is None and keyed:
    logging.warning("no --secret_file: %s are seeded per note (--random_seed and the note's id), "
                    "so one patient's names and dates differ between notes; consistency across "
                    "notes needs a secret", "/".join(sorted(keyed)))
  if secret is None and (options.patient_field or options.patient_map):
    logging.warning("patients are known but there is no --secret_file: each note is its own "
                    "patient")
  return anonymize.Anonymizer(operators, secret=secret, random_seed=options.random_seed,
                              locale=options.surrogate_locale, mask_char=options.mask_char,
                              date_shift_days=options.date_shift_days, labels=labels)


def _merged(model_spans, pattern_spans):
  """`spans.merge` of the model's and the patterns' spans, as `text.Span`s (a model span kept as
  it is when nothing merged into it; a merged or pattern span scores the highest inside or 1)."""
  exact = {(s.start, s.end, s.label): s for s in model_spans}
  out = []
  for s in spans_lib.merge(model_spans, pattern_spans):
    kept = exact.get((s.start, s.end, s.label))
    if kept is not None:
      out.append(kept)
      continue
    inside = [m.score for m in model_spans if s.start <= m.start and m.end <= s.end]
    out.append(text_lib.Span(s.start, s.end, s.label, max(inside) if inside else 1.0))
  return out


def note_spans(notes, options, predictor=None, by_note=None):
  """Yields (note, spans) from the model (`predictor`), the spans file, and/or the patterns.

  `by_note`: --spans_file as `read_file_spans` gives it, when the caller has read it already.
  """
  sources = parse_recognizers(options.recognizers)
  if "model" in sources and predictor is not None:
    found = predictor.predict(notes)
  elif "model" in sources and options.spans_file:
    found = _file_spans(notes, by_note if by_note is not None else read_file_spans(options))
  else:
    found = ((note, []) for note in notes)
  for note, spans in found:
    if "patterns" in sources:
      spans = _merged(list(spans), recognizers_lib.recognize(note.text))
    yield note, spans


def read_file_spans(options):
  """{note id: [span]} of --spans_file."""
  paths = fileio.expand_file_patterns(options.spans_file, flag_name="spans_file")
  return span_readers.read_spans(paths, options.spans_format)


def _spans_of(note, by_note):
  spans = by_note.get(note.id)
  if spans is None:
    raise fileio.InputError("%s: note %s has no entry in --spans_file (it would be released "
                            "as it is)" % (note.where, note.id))
  span_readers.check_spans(note.id, note.text, spans)
  return spans


def _file_spans(notes, by_note):
  for note in notes:
    spans = _spans_of(note, by_note)
    yield note, sorted((text_lib.Span(s.start, s.end, s.label, getattr(s, "score", 1.0))
                        for s in spans), key=lambda s: (s.start, s.end))


def precheck(notes, patient_map=None, by_note=None):
  """Reads every note once before anything is written (deidentify.py writes a note as soon as it
  is done): a note missing from --patient_map (`patient_map`) or --spans_file (`by_note`), or a
  span outside its note, stops the run with nothing written. Only with those flags (the notes are
  read twice then)."""
  if patient_map is None and by_note is None:
    return
  for note in with_patients(notes, patient_map):
    if by_note is not None:
      _spans_of(note, by_note)


def items_record(note_outputs):
  """The per-note items line: {id, items: [{start, end, label, operator, input_start, input_end}]}."""
  return {"id": note_outputs.note.id, "items": note_outputs.deidentified.items_json()}
