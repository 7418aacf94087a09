"""The local job behind predict.py and deidentify.py: read notes, predict, run the per-note step, write.

  counts = job.run_job(model, job.JobOptions(input_file="notes/*.txt", output_file="spans.jsonl"))

What the job adds to the per-note step (`step.py`): the options and their checks, reading (the
note readers of `readers.py`), the bad-note policy (`--max_bad_notes`), resuming
(`--skip_existing`), progress lines, and the writers of the output formats (`outputs.py`), held in
one `ExitStack` so that every output is committed when the run succeeds and none is left under its
final name when it fails.
"""

import collections
import contextlib
import dataclasses
import os
from typing import Optional

from absl import logging

from clinicalbert_tf import anonymize
from clinicalbert_tf import fileio
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.inference import deid
from clinicalbert_tf.inference import model as model_lib
from clinicalbert_tf.inference import outputs
from clinicalbert_tf.inference import predictor as predictor_lib
from clinicalbert_tf.inference import readers
from clinicalbert_tf.inference import step


@dataclasses.dataclass
class JobOptions:
  """What predict.py / deidentify.py were asked (same names as their flags)."""
  input_file: str
  output_file: Optional[str] = None
  output_dir: Optional[str] = None
  output_format: str = "jsonl"
  input_format: str = "auto"
  id_field: str = "id"
  text_field: str = "text"
  include_text: bool = False
  skip_existing: bool = False
  max_bad_notes: int = 0
  batch_size: int = dataclasses.field(default=32, metadata={"flag": "predict_batch_size"})
  # predict.py's --min_probability; deidentify.py's --min_phi_probability (options_from_flags).
  min_probability: Optional[float] = None
  window_context: Optional[int] = None  # long lines: context pieces beside each window's core
  replace: Optional[str] = None  # deidentify.py: the replacement operator(s)
  mask_char: str = "*"
  random_seed: int = surrogates_lib.DEFAULT_SEED  # --replace=surrogate: with each note's id
  surrogate_locale: str = surrogates_lib.DEFAULT_LOCALE  # --replace=surrogate: the Faker locale
  progress_seconds: float = 30.0
  # deidentify.py (`deid.py`): operators, keys, patients, where spans come from, the release check.
  operators_file: Optional[str] = None
  secret_file: Optional[str] = None
  date_shift_days: int = anonymize.DEFAULT_DATE_SHIFT_DAYS
  patient_field: Optional[str] = None
  patient_map: Optional[str] = None
  spans_file: Optional[str] = None
  spans_format: str = "jsonl"
  recognizers: str = deid.DEFAULT_RECOGNIZERS
  min_label_recall: float = deid.DEFAULT_MIN_LABEL_RECALL
  model_dir: Optional[str] = None  # where the release check finds the recorded dev recall

  @property
  def deidentify(self):
    return self.replace is not None


def check_paths_and_locale(options):
  """The checks that need no model: output paths and the surrogate locale (before a model loads)."""
  fileio.check_output_file(options.output_file)
  fileio.check_output_dir(options.output_dir)
  if options.deidentify:
    deid.check_options(options)


def output_plan(options, pairs):
  """[(OutputFormat, scope, path)] the job writes, checked against the options.

  Raises:
    InputError: a combination of options that cannot work.
  """
  o = options
  fmt = outputs.get(outputs.Deidentified.name if o.deidentify else o.output_format)
  if pairs and not fmt.pairs:
    raise fileio.InputError("--output_format=%s: a sentence-pair model writes jsonl only" %
                            o.output_format)
  per_note = outputs.PER_NOTE in fmt.scopes
  if per_note and not o.output_dir:
    raise fileio.InputError("--output_dir is required: %s writes one file per note" % (
        "deidentify.py" if o.deidentify else "--output_format=" + o.output_format))
  if not (o.output_file or o.output_dir):
    raise fileio.InputError("--output_file (one JSON-lines file) or --output_dir (one file per "
                            "input file) is required")
  if o.output_file and o.output_dir and not o.deidentify:
    raise fileio.InputError("--output_file and --output_dir: give one of them")
  if per_note:
    plan = [(fmt, outputs.PER_NOTE, o.output_dir)]
    if o.deidentify:  # each note's replacement items beside the notes
      plan.append((outputs.get(outputs.Items.name), outputs.ONE_FILE,
                   os.path.join(o.output_dir, deid.ITEMS_FILE)))
    if o.output_file:  # deidentify.py: the PHI spans as JSON lines beside the notes
      plan.append((outputs.get(outputs.JsonLines.name), outputs.ONE_FILE, o.output_file))
    return plan
  if o.output_file:
    return [(fmt, outputs.ONE_FILE, o.output_file)]
  if outputs.PER_INPUT not in fmt.scopes:
    raise fileio.InputError("--output_format=%s writes one file for the run: give --output_file" %
                            o.output_format)
  return [(fmt, outputs.PER_INPUT, o.output_dir)]


def check_options(options, pairs):
  """Raises InputError for a combination of options that cannot work."""
  o = options
  output_plan(o, pairs)
  check_paths_and_locale(o)
  if o.skip_existing and not o.output_dir:
    raise fileio.InputError("--skip_existing needs --output_dir (one output per input file or "
                            "note, so a rerun can tell what is done)")
  if o.min_probability is not None and not 0.0 < o.min_probability <= 1.0:
    raise fileio.InputError("--min_phi_probability=%g: expected a probability in (0, 1]" %
                            o.min_probability)
  if o.window_context is not None and o.window_context < 0:
    raise fileio.InputError("--window_context=%d: expected pieces of context >= 0" %
                            o.window_context)
  if o.max_bad_notes < 0 or o.batch_size < 1:
    raise fileio.InputError("--max_bad_notes must be >= 0 and --predict_batch_size >= 1")


def good_notes(stream, max_bad_notes, counts):
  """The readable notes of `stream`; bad ones stop the job, or are counted up to max_bad_notes."""
  for _, note in stream:
    if isinstance(note, readers.BadNote):
      counts["bad"] += 1
      message = "%s: %s" % (note.where, note.reason)
      if counts["bad"] > max_bad_notes:
        if max_bad_notes:
          message += " (more than --max_bad_notes=%d unreadable notes)" % max_bad_notes
        raise fileio.InputError(message)
      logging.warning("skipped an unreadable note (%d so far): %s", counts["bad"], message)
      continue
    yield note


def _writer(fmt, scope, path, input_files):
  if scope == outputs.ONE_FILE:
    # A format drawn whole at the end (the HTML page) brings its own writer.
    return getattr(fmt, "writer", outputs.OneFileWriter)(path, fmt)
  if scope == outputs.PER_INPUT:
    return outputs.PerInputWriter(path, input_files, fmt)
  return outputs.PerNoteWriter(path, fmt)


def run_job(model, options):
  """Runs predict.py (`options.replace` None) or deidentify.py over `options.input_file`.

  Outputs: see `output_plan` and `outputs.py`; `--skip_existing` leaves those already there alone.
  deidentify.py also writes its items and run summary (`deid.py`); its `model` is None when the
  spans come from a file or from the patterns alone.

  Returns:
    Counts: {"notes", "words", "entities", "bad", "skipped", "seconds"} (deidentify.py: and
    "summary", the anonymizer's run summary).
  """
  o = options
  if o.deidentify and model is not None:
    predictor_lib.check_output(model, heads.WORD_LABELS, "deidentify.py (a PHI model)")
  pairs = model is not None and model.head.output == heads.PAIR_LABEL
  check_options(o, pairs)
  plan = output_plan(o, pairs)
  per_note_suffix = next((fmt.suffix for fmt, scope, _ in plan if scope == outputs.PER_NOTE), None)
  input_files = fileio.expand_file_patterns(o.input_file)
  counts = collections.Counter(notes=0, words=0, entities=0, bad=0, skipped=0)
  if o.skip_existing and per_note_suffix is None:
    kept = [p for p in input_files if not os.path.exists(
        outputs.PerInputWriter.path_for(o.output_dir, p, plan[0][0].suffix))]
    counts["skipped"] = len(input_files) - len(kept)
    input_files = kept
  read_options = readers.ReadOptions(id_field=o.id_field, text_field=o.text_field, pairs=pairs,
                                     patient_field=o.patient_field if o.deidentify else None)
  patient_map = by_note = None  # deidentify.py: read once, used by the check and by the run
  if o.deidentify:  # the checks that must see every note before one is written
    patient_map = deid.load_patient_map(o.patient_map) if o.patient_map else None
    by_note = deid.read_file_spans(o) if o.spans_file else None
    deid.precheck(good_notes(readers.read_notes(input_files, o.input_format, read_options),
                             o.max_bad_notes, collections.Counter()), patient_map, by_note)
  stream = good_notes(readers.read_notes(input_files, o.input_format, read_options),
                      o.max_bad_notes, counts)
  if o.deidentify:
    stream = deid.with_patients(stream, patient_map)
  if per_note_suffix is not None:
    stream = _unfinished(stream, o, per_note_suffix, counts)
  progress = progress_lib.Progress(
      "notes", total=readers.count_notes(input_files, o.input_format, read_options),
      every_seconds=o.progress_seconds, label=("deidentify" if o.deidentify else "predict") + ": ")
  anonymizer = None
  if o.deidentify:
    anonymizer = deid.make_anonymizer(o, deid.model_types(model.label_list) if model else None)

  def rate():
    return "%d words, %.0f words/s" % (counts["words"],
                                       counts["words"] / max(progress.elapsed(), 1e-9))

  predictor = None
  if pairs:
    results = (step.pair_outputs(pair, label, probs)
               for pair, label, probs in predictor_lib.predict_pairs(model, stream, o.batch_size))
  else:
    def log_words():
      counts["words"] = predictor.words_done
      progress.maybe_log(counts["notes"], detail=rate())
    if model is not None:
      predictor = predictor_lib.Predictor(model, o.batch_size, o.min_probability,
                                          after_batch=log_words, window_context=o.window_context)
    found = (deid.note_spans(stream, o, predictor, by_note) if o.deidentify
             else predictor.predict(stream))
    results = (step.note_outputs(note, spans, anonymizer, o.include_text)
               for note, spans in found)

  with contextlib.ExitStack() as stack:
    writers = [stack.enter_context(_writer(fmt, scope, path, input_files))
               for fmt, scope, path in plan]
    for note_outputs in results:
      for writer in writers:
        writer.write(note_outputs)
      counts["entities"] += len(note_outputs.spans)
      counts["notes"] += 1
      counts["words"] = predictor.words_done if predictor else counts["notes"]
      progress.maybe_log(counts["notes"], detail=rate())
    if anonymizer is not None:  # counts only: no PHI, no key
      counts["summary"] = anonymizer.summary()
      fileio.write_json_atomic(os.path.join(o.output_dir, deid.SUMMARY_FILE), counts["summary"])
  counts["seconds"] = progress.elapsed()
  progress.log(counts["notes"], detail="%d words, %.0f words/s; %d entities, %d unreadable notes "
               "skipped, %d already done" % (counts["words"], counts["words"] / max(
                   counts["seconds"], 1e-9), counts["entities"], counts["bad"], counts["skipped"]))
  return dict(counts)


def _unfinished(notes, options, suffix, counts):
  """The notes whose per-note output is not there yet (all of them without --skip_existing)."""
  seen = set()
  for note in notes:
    name = readers.output_name(note, suffix, seen)
    if options.skip_existing and os.path.exists(os.path.join(options.output_dir, name)):
      counts["skipped"] += 1
    else:
      yield note


# --------------------------------------------------------------------------------------------------
# The flags predict.py and deidentify.py share (defined once, here).

def define_flags(deidentify=False):
  """Defines predict.py's flags (deidentify.py's with `deidentify`) on absl's FLAGS."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("model_dir", None,
                      "A fine-tuned model directory (run_finetune.py's output_dir: checkpoint, "
                      "bert_config.json, vocab.txt, finetune_head.json) or an exported SavedModel.")
  flags.DEFINE_string("input_file", None,
                      "Comma list of files or globs: plain text (one note per file, id = file name "
                      "without its extension), JSON lines (.jsonl) or MIMIC NOTEEVENTS.csv[.gz].")
  flags.DEFINE_enum("input_format", "auto", list(readers.INPUT_FORMATS),
                    "How to read each input file (auto: by its name).")
  flags.DEFINE_string("id_field", "id", "JSON lines: the field holding a note's id.")
  flags.DEFINE_string("text_field", "text", "JSON lines: the field holding a note's text.")
  flags.DEFINE_string("bert_config_file", None,
                      "The model's bert_config.json (default: the one in --model_dir).")
  flags.DEFINE_string("vocab_file", None,
                      "The model's vocab.txt (default: the one in --model_dir).")
  flags.DEFINE_string("init_checkpoint", None,
                      "Checkpoint prefix or directory (default: the latest in --model_dir).")
  flags.DEFINE_integer("predict_batch_size", 32, "Windows per batch.")
  define_speed_flags()
  flags.DEFINE_integer("num_threads", 0, "TensorFlow threads (0: TensorFlow's choice).")
  flags.DEFINE_bool("skip_existing", False,
                    "Leave outputs that exist alone (continue a run that was stopped).")
  flags.DEFINE_integer("max_bad_notes", 0,
                       "Unreadable notes (bad UTF-8, unreadable file, bad JSON line or CSV row) to "
                       "skip with a warning before stopping; 0: the first one stops the run.")
  flags.DEFINE_float("progress_seconds", 30.0, "Seconds between progress lines.")
  from clinicalbert_tf import engines  # pylint: disable=g-import-not-at-top
  engines.define_flags("notes")  # --engine, --spark_master, --spark_partitions
  if deidentify:
    flags.DEFINE_string("output_dir", None, "De-identified notes go here, one <id>.txt per note.")
    flags.DEFINE_string("output_file", None,
                        "Also write the predicted PHI spans of the notes as JSON lines here.")
    deid.define_flags()
  else:
    flags.DEFINE_string("output_file", None, "All notes' predictions as JSON lines, one per note.")
    flags.DEFINE_string("output_dir", None,
                        "One output per input file (jsonl) or per note (brat, i2b2_2014, con).")
    flags.DEFINE_enum("output_format", "jsonl", list(outputs.OUTPUT_FORMATS),
                      outputs.format_help() + ".")
    flags.DEFINE_bool("include_text", False,
                      "jsonl: put each note's text in its line (it is protected health "
                      "information: off by default).")
    flags.DEFINE_float("min_probability", None,
                       "A word gets an entity label when P(not O) reaches this; default: the most "
                       "probable label.")


def define_speed_flags():
  """--window_context and --use_bf16 (predict.py, deidentify.py, serve.py)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool(
      "use_bf16", False,
      "bfloat16 mixed precision on the CPU (oneDNN, AMX / AVX512_BF16): about 1.7x faster on a "
      "CPU with AMX; spans differ from float32's on about 1% of entities (see README).")
  flags.DEFINE_integer(
      "window_context", None,
      "A line longer than a window is cut into windows that each predict a core of words and see "
      "context around it. Default: cores of half a window (as training makes windows), so each "
      "word piece of a long line runs through the model about twice. N: cores of up to "
      "max_seq_length - 2 - 2N pieces with at least N pieces of context on each side (16: about "
      "1.5x faster on one-line notes; spans near core edges can differ, see README).")


def options_from_flags(flag_values, deidentify=False):
  """The JobOptions of predict.py's (deidentify.py's) parsed flags (`cli.config_from_flags`)."""
  from clinicalbert_tf import cli  # pylint: disable=g-import-not-at-top
  if deidentify:
    return cli.config_from_flags(JobOptions, flag_values,
                                 min_probability=flag_values.min_phi_probability)
  return cli.config_from_flags(JobOptions, flag_values)


def run_from_flags(flag_values, deidentify=False):
  """Loads the model named by the flags and runs the job. Returns run_job's counts."""
  from clinicalbert_tf import cli  # pylint: disable=g-import-not-at-top
  f = flag_values
  options = options_from_flags(f, deidentify)
  with_model = not deidentify or deid.needs_model(options)
  cli.require_flags(f, ("model_dir", "input_file") if with_model else ("input_file",))
  check_paths_and_locale(options)  # a wrong path should not cost a model load first
  if f.engine == "spark":
    from clinicalbert_tf.engines import spark_job  # pylint: disable=g-import-not-at-top
    return spark_job.run_job(options, f.model_dir, (f.bert_config_file, f.vocab_file,
                                                    f.init_checkpoint),
                             master=f.spark_master, partitions=f.spark_partitions,
                             num_threads=f.num_threads or 1, use_bf16=f.use_bf16)
  if not with_model:
    logging.info("deidentify: PHI spans from %s; no model", "--spans_file=" + options.spans_file
                 if options.spans_file else "the pattern recognizers alone")
    return run_job(None, options)
  model = model_lib.load_model(f.model_dir, f.bert_config_file, f.vocab_file, f.init_checkpoint,
                               num_threads=f.num_threads, use_bf16=f.use_bf16)
  try:
    if deidentify:
      deid.release_check(f.model_dir, deid.model_types(model.label_list),
                         options.min_label_recall)
    return run_job(model, options)
  finally:
    model.close()
