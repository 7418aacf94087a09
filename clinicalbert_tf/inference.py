"""Fine-tuned models on raw notes: notes -> words -> windows -> one loaded session -> spans.

`predict.py` and `deidentify.py` are front ends over this module:

  model = inference.load_model("finetune/i2b2_2010")      # a fine-tuned directory or a SavedModel
  for note, spans in inference.Predictor(model).predict(notes):
    ...                                                    # spans: span_outputs.Span, char offsets

A model directory is what `run_finetune.py` leaves: the checkpoint, `bert_config.json`, `vocab.txt`
and the head record `finetune_head.json` (head type, label order, casing, `max_seq_length`, word
rules). A directory from before those files were written works with Google's flags
(`bert_config_file`, `vocab_file`, `init_checkpoint`). A SavedModel made by `export_savedmodel.py`
carries its vocabulary and head record as assets, so its directory alone is enough.

Notes are split into sentences and words by the rules the model's task used in training
(WORD_RULES: every NER task here reads a line as a sentence and whitespace-separated words, i2b2
2010 by its tokens, the character-offset tasks through `documents.tokenize_document`), long lines
go through the fine-tuning window planner (every word gets exactly one prediction), and IOB runs
become spans after seqeval's lenient repair (an `I-` after `O` or another type starts a span).
Windows of many notes are batched together, sorted by length so a batch pads little; notes stream
through a bounded buffer (memory does not grow with the number of notes, and a long note is cut
into blocks of lines), and come out in input order. Nothing here logs note text.
"""

import collections
import dataclasses
import json
import os
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import note_inputs
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import span_outputs
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf import tasks
from clinicalbert_tf import tokenization
from clinicalbert_tf.tasks import documents

# How a task split text into sentences and words for training (the head record's "word_rules").
# "lines_whitespace": a line is a sentence, words are runs of non-whitespace (i2b2 2006/2010/2012/
# 2014, CoNLL); "sentence_pairs": two texts per example (MedNLI).
WORD_RULES = ("lines_whitespace", "sentence_pairs")
TOKEN_HEAD = "token_classification"
SEQUENCE_HEAD = "sequence_classification"

SERVING_INPUTS = ("input_ids", "input_mask", "segment_ids")
SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"

# A long note is split into blocks of whole lines of about this many characters, so its words and
# windows never all sit in memory at once.
BLOCK_CHARS = 1 << 16


def _heads():
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  return heads


# --------------------------------------------------------------------------------------------------
# Finding and loading a model.

@dataclasses.dataclass
class ModelFiles:
  """Where a model's pieces are (`saved_model_dir` set: a SavedModel, else a checkpoint)."""
  record: dict
  vocab_file: str
  bert_config_file: Optional[str] = None
  checkpoint: Optional[str] = None
  saved_model_dir: Optional[str] = None


def find_saved_model(model_dir):
  """`model_dir` itself if it holds `saved_model.pb`, else its highest numbered version, or None."""
  if os.path.isfile(os.path.join(model_dir, SAVED_MODEL_FILE)):
    return model_dir
  versions = [int(name) for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
              if name.isdigit() and os.path.isfile(os.path.join(model_dir, name, SAVED_MODEL_FILE))]
  return os.path.join(model_dir, str(max(versions))) if versions else None


def locate_model(model_dir, bert_config_file=None, vocab_file=None, init_checkpoint=None):
  """The pieces of the model in `model_dir` (see the module docstring). Flags given win.

  Raises:
    InputError: no such directory, no head record, or a piece that is neither in the directory nor
      given by its flag.
  """
  if not model_dir or not os.path.isdir(model_dir):
    raise fileio.InputError("--model_dir=%s: no such directory" % model_dir)
  saved = find_saved_model(model_dir)
  if saved:
    assets = os.path.join(saved, "assets")
    return ModelFiles(record=_heads().read_head_record(assets),
                      vocab_file=os.path.join(assets, checkpoints.VOCAB_FILE),
                      saved_model_dir=saved)
  record = _heads().read_head_record(model_dir)
  found = {}
  for flag, value, name in (("bert_config_file", bert_config_file, checkpoints.BERT_CONFIG_FILE),
                            ("vocab_file", vocab_file, checkpoints.VOCAB_FILE)):
    path = value or os.path.join(model_dir, name)
    if not os.path.isfile(path):
      raise fileio.InputError("--%s=%s: no such file (a directory from an older run_finetune.py "
                              "lacks %s: pass --%s)" % (flag, path, name, flag))
    found[flag] = path
  return ModelFiles(record=record, vocab_file=found["vocab_file"],
                    bert_config_file=found["bert_config_file"],
                    checkpoint=checkpoints.resolve_checkpoint(init_checkpoint or model_dir))


def default_word_rules(record):
  """The word rules of a head record from before records named them: what every task here used."""
  return "sentence_pairs" if record["head"] == SEQUENCE_HEAD else "lines_whitespace"


def session_config(num_threads=0):
  """A session config with `num_threads` intra- and inter-op threads (0: TensorFlow's choice)."""
  return tf.ConfigProto(intra_op_parallelism_threads=num_threads,
                        inter_op_parallelism_threads=num_threads)


def build_serving_graph(head, bert_config):
  """Placeholders [batch, length] (int32, any length up to the model's) and the head's outputs.

  Returns:
    ({name: placeholder} for SERVING_INPUTS, {name: output tensor}).
  """
  inputs = collections.OrderedDict(
      (name, tf.placeholder(tf.int32, [None, None], name=name)) for name in SERVING_INPUTS)
  outputs = head.serving_outputs(bert_config, inputs["input_ids"], inputs["input_mask"],
                                 inputs["segment_ids"])
  return inputs, outputs


class LoadedModel(object):
  """A fine-tuned model held in one TensorFlow session, with its tokenizer and head.

  Attributes:
    head: the fine-tuning head (`finetuning.heads`), built from the head record.
    record: the head record.
    tokenizer: the model's `tokenization.FullTokenizer`.
    max_seq_length: the window length the model was fine-tuned with.
    word_rules: one of WORD_RULES.
  """

  def __init__(self, files, max_seq_length=None, do_lower_case=None, num_threads=0, graph=None,
               finalize=True):
    self.files = files
    self.record = files.record
    self.head = _heads().head_from_record(self.record)
    self.label_list = list(self.record["labels"])
    if do_lower_case is None:
      do_lower_case = bool(self.record.get("do_lower_case", False))
    self.tokenizer = tokenization.FullTokenizer(files.vocab_file, do_lower_case=do_lower_case)
    self.max_seq_length = int(max_seq_length or self.record.get("max_seq_length") or 128)
    self.word_rules = self.record.get("word_rules") or default_word_rules(self.record)
    if self.word_rules not in WORD_RULES:
      raise fileio.InputError("head record: word_rules %r is not one of %s (a newer version "
                              "wrote it?)" % (self.word_rules, ", ".join(WORD_RULES)))
    self.graph = graph or tf.Graph()
    self.session = tf.Session(graph=self.graph, config=session_config(num_threads))
    with self.graph.as_default():
      if files.saved_model_dir:
        self._load_saved_model(files.saved_model_dir)
      else:
        self._load_checkpoint(files)
    if finalize:
      self.graph.finalize()

  def _load_checkpoint(self, files):
    bert_config = checkpoints.load_bert_config(files.bert_config_file, self.max_seq_length)
    checkpoints.check_vocab_matches_config(len(self.tokenizer.vocab), bert_config, files.vocab_file)
    self.inputs, self.outputs = build_serving_graph(self.head, bert_config)
    variables = tf.global_variables()
    initialised = checkpoints.init_from_checkpoint(files.checkpoint, variables)
    if len(initialised) != len(variables):
      missing = sorted(set(checkpoints.variable_name(v) for v in variables) - set(initialised))
      raise fileio.InputError("%s is not a fine-tuned %s checkpoint: it lacks %s" % (
          files.checkpoint, self.record["head"], ", ".join(missing[:3])))
    self.session.run(tf.global_variables_initializer())

  def _load_saved_model(self, path):
    meta_graph = tf.saved_model.loader.load(self.session, [tf.saved_model.tag_constants.SERVING],
                                            path)
    signature = meta_graph.signature_def[SERVING_SIGNATURE]
    self.inputs = {k: self.graph.get_tensor_by_name(v.name) for k, v in signature.inputs.items()}
    self.outputs = {k: self.graph.get_tensor_by_name(v.name) for k, v in signature.outputs.items()}

  def probabilities(self, features, batch_size=32):
    """The head's probabilities for each feature, in the order given.

    Features are run in batches of similar length (sorted by real length), each padded only to
    its longest member. Token head: per feature [length, num_labels] (length at least the
    feature's real length); sequence head: [num_labels].
    """
    order = sorted(range(len(features)), key=lambda i: sum(features[i].input_mask))
    result = [None] * len(features)
    fetch = self.outputs["probabilities"]
    for begin in range(0, len(order), batch_size):
      batch = order[begin:begin + batch_size]
      length = max(sum(features[i].input_mask) for i in batch)
      feed = {self.inputs[name]: np.array([getattr(features[i], name)[:length] for i in batch],
                                          dtype=np.int32) for name in SERVING_INPUTS}
      values = self.session.run(fetch, feed)
      for i, value in zip(batch, values):
        result[i] = value
    return result

  def close(self):
    self.session.close()


def load_model(model_dir, bert_config_file=None, vocab_file=None, init_checkpoint=None,
               max_seq_length=None, do_lower_case=None, num_threads=0):
  """The `LoadedModel` of `model_dir` (fine-tuned directory or SavedModel); flags override."""
  files = locate_model(model_dir, bert_config_file, vocab_file, init_checkpoint)
  return LoadedModel(files, max_seq_length=max_seq_length, do_lower_case=do_lower_case,
                     num_threads=num_threads)


# --------------------------------------------------------------------------------------------------
# Notes -> sentences of words with character offsets.

@dataclasses.dataclass
class Sentence:
  """A line's words and where each sits: (start, end) characters, the line (1-based)."""
  words: List[str]
  offsets: List[tuple]
  line: int


def note_blocks(text, block_chars=None):
  """(start, end) of blocks of whole lines of about `block_chars` (BLOCK_CHARS) characters."""
  block_chars = block_chars or BLOCK_CHARS
  start = 0
  while start < len(text):
    end = text.find("\n", min(len(text), start + block_chars))
    end = len(text) if end < 0 else end + 1
    yield start, end
    start = end


def block_sentences(text, start, end, first_line):
  """The sentences of `text[start:end]` (whole lines), by the task readers' own word rules.

  `documents.tokenize_document` with no entities gives exactly the words (and sentence breaks) the
  readers give training notes; offsets are shifted back into the whole note.
  """
  result = []
  line, cursor = first_line, start
  for sentence in documents.tokenize_document(text[start:end], [], "note"):
    begin = start + sentence.positions[0][0]
    line += text.count("\n", cursor, begin)
    cursor = begin
    result.append(Sentence(sentence.words, [(start + a, start + b) for a, b in sentence.positions],
                           line))
  return result


def word_labels(probabilities, label_list, min_probability=None):
  """One label per word from its label probabilities [num_words, num_labels].

  The most probable label, or, with `min_probability`, the most probable entity label wherever
  P(not O) = 1 - P(O) reaches it (recall over precision, as de-identification wants).
  """
  ids = np.argmax(probabilities, axis=-1)
  if min_probability is not None and "O" in label_list and len(label_list) > 1:
    o = label_list.index("O")
    others = probabilities.copy()
    others[:, o] = -1.0
    entity = (1.0 - probabilities[:, o]) >= min_probability
    ids = np.where(entity, np.argmax(others, axis=-1), ids)
  return [label_list[i] for i in ids], ids


def sentence_spans(sentence, labels, ids, probabilities):
  """Spans (span_outputs.Span) of one sentence from its word labels (repaired to IOB2 first)."""
  repaired, _ = tasks.repair_iob2(labels)
  spans = []
  for s, e, typ in tasks.iob_to_spans(repaired):
    score = float(np.mean([probabilities[w, ids[w]] for w in range(s, e)]))
    spans.append(span_outputs.Span(
        start=sentence.offsets[s][0], end=sentence.offsets[e - 1][1], label=typ, score=score,
        first=(sentence.line, s), last=(sentence.line, e - 1)))
  return spans


# --------------------------------------------------------------------------------------------------
# Predicting.

class _Pending(object):
  """A note in flight: its spans so far and how many of its blocks are still unpredicted."""

  def __init__(self, item):
    self.item = item
    self.spans = []
    self.words = 0
    self.blocks_left = 0
    self.read = False


class Predictor(object):
  """Runs a token-classification `LoadedModel` over notes, batched across notes, streamed."""

  def __init__(self, model, batch_size=32, min_probability=None, buffer_words=None,
               after_batch=None):
    """Args:
      model: a LoadedModel with a token-classification head.
      batch_size: windows per session run.
      min_probability: see `word_labels`.
      buffer_words: words of notes collected before they are predicted together.
      after_batch: called with no arguments after each buffer is predicted (progress lines
        within one long note).
    """
    if model.record["head"] != TOKEN_HEAD:
      raise fileio.InputError("the model has a %s head: spans come from a %s model (a sentence-"
                              "pair model predicts pairs: see predict_pairs)" %
                              (model.record["head"], TOKEN_HEAD))
    self.model = model
    self.batch_size = batch_size
    self.min_probability = min_probability
    # Enough words for many full batches, so length sorting has something to sort.
    self.buffer_words = buffer_words or 64 * batch_size * max(8, model.max_seq_length // 4)
    self.words_done = 0
    self.after_batch = after_batch

  def _run(self, pending):
    """Predicts the buffered blocks [(state, sentences)] and adds their spans to their notes."""
    sentences = [s for _, block in pending for s in block]
    examples = [tasks.TaggedSentence(guid="sentence-%d" % i, words=s.words,
                                     labels=["O"] * len(s.words))
                for i, s in enumerate(sentences)]
    model = self.model
    features = model.head.convert_examples(examples, model.max_seq_length, model.tokenizer,
                                           split="predict")
    probabilities = model.probabilities(features, self.batch_size)
    per_word = model.head.word_probabilities(examples, features, probabilities)
    k = 0
    for state, block in pending:
      for sentence in block:
        labels, ids = word_labels(per_word[k], model.label_list, self.min_probability)
        state.spans.extend(sentence_spans(sentence, labels, ids, per_word[k]))
        state.words += len(sentence.words)
        k += 1
      state.blocks_left -= 1
    self.words_done += sum(len(s.words) for s in sentences)
    if self.after_batch:
      self.after_batch()

  def predict(self, items, text_of=lambda item: item.text):
    """Yields (item, spans) for each item (a note), in order, spans sorted by start.

    Args:
      items: an iterable of notes (consumed lazily).
      text_of: the note text of an item.
    """
    queue = collections.deque()
    pending, buffered = [], 0
    for item in items:
      state = _Pending(item)
      queue.append(state)
      text = text_of(item)
      line = 1
      for start, end in note_blocks(text):
        block = block_sentences(text, start, end, line)
        line += text.count("\n", start, end)
        if not block:
          continue
        state.blocks_left += 1
        pending.append((state, block))
        buffered += sum(len(s.words) for s in block)
        if buffered >= self.buffer_words:
          self._run(pending)
          pending, buffered = [], 0
          yield from self._finished(queue)
      state.read = True
      yield from self._finished(queue)
    if pending:
      self._run(pending)
    yield from self._finished(queue)

  @staticmethod
  def _finished(queue):
    while queue and queue[0].read and queue[0].blocks_left == 0:
      state = queue.popleft()
      yield state.item, sorted(state.spans, key=lambda s: s.start)


def predict_pairs(model, pairs, batch_size=32):
  """Yields (pair, label, {label: probability}) for (text_a, text_b) pairs (a sentence-pair model).

  Args:
    model: a LoadedModel with a sequence-classification head.
    pairs: an iterable of objects with `text` and `text_b`, consumed in chunks.
  """
  if model.record["head"] != SEQUENCE_HEAD:
    raise fileio.InputError("the model has a %s head, not a sentence-pair head" %
                            model.record["head"])
  chunk = []

  def run(chunk):
    examples = [tasks.SentencePair(guid="pair-%d" % i, text_a=p.text, text_b=p.text_b,
                                   label=model.label_list[0]) for i, p in enumerate(chunk)]
    features = model.head.convert_examples(examples, model.max_seq_length, model.tokenizer,
                                           split="predict")
    for pair, probs in zip(chunk, model.probabilities(features, batch_size)):
      yield pair, model.label_list[int(np.argmax(probs))], {
          label: round(float(p), 6) for label, p in zip(model.label_list, probs)}

  for pair in pairs:
    chunk.append(pair)
    if len(chunk) >= 64 * batch_size:
      yield from run(chunk)
      chunk = []
  if chunk:
    yield from run(chunk)


# --------------------------------------------------------------------------------------------------
# Jobs: predict.py and deidentify.py.

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
  batch_size: int = 32
  min_probability: Optional[float] = None
  replace: Optional[str] = None  # deidentify.py: one of span_outputs.REPLACE_MODES
  mask_char: str = "*"
  random_seed: int = surrogates_lib.DEFAULT_SEED  # --replace=surrogate: with each note's id
  surrogate_locale: str = surrogates_lib.DEFAULT_LOCALE  # --replace=surrogate: the Faker locale
  progress_seconds: float = 30.0


def check_paths_and_locale(options):
  """The checks that need no model: output paths and the surrogate locale (before a model loads)."""
  fileio.check_output_file(options.output_file)
  fileio.check_output_dir(options.output_dir)
  if options.replace == "surrogate":
    surrogates_lib.check_locale(options.surrogate_locale)


def check_options(options, pairs):
  """Raises InputError for a combination of options that cannot work."""
  o = options
  if o.output_format not in span_outputs.OUTPUT_FORMATS:
    raise fileio.InputError("--output_format=%s: expected one of %s" %
                            (o.output_format, ", ".join(span_outputs.OUTPUT_FORMATS)))
  if pairs and o.output_format != "jsonl":
    raise fileio.InputError("--output_format=%s: a sentence-pair model writes jsonl only" %
                            o.output_format)
  per_note = o.replace is not None or o.output_format != "jsonl"
  if per_note and not o.output_dir:
    raise fileio.InputError("--output_dir is required: %s writes one file per note" % (
        "deidentify.py" if o.replace is not None else "--output_format=" + o.output_format))
  if not (o.output_file or o.output_dir):
    raise fileio.InputError("--output_file (one JSON-lines file) or --output_dir (one file per "
                            "input file) is required")
  if o.output_file and o.output_dir and o.replace is None:
    raise fileio.InputError("--output_file and --output_dir: give one of them")
  check_paths_and_locale(o)
  if o.skip_existing and not o.output_dir:
    raise fileio.InputError("--skip_existing needs --output_dir (one output per input file or "
                            "note, so a rerun can tell what is done)")
  if o.min_probability is not None and not 0.0 < o.min_probability <= 1.0:
    raise fileio.InputError("--min_phi_probability=%g: expected a probability in (0, 1]" %
                            o.min_probability)
  if o.max_bad_notes < 0 or o.batch_size < 1:
    raise fileio.InputError("--max_bad_notes must be >= 0 and --predict_batch_size >= 1")
  if o.replace == "mask" and len(o.mask_char) != 1:
    raise fileio.InputError("--mask_char=%r: expected one character" % o.mask_char)


def _good_notes(stream, options, counts):
  """The readable notes of `stream`; bad ones stop the job, or are counted up to max_bad_notes."""
  for _, note in stream:
    if isinstance(note, note_inputs.BadNote):
      counts["bad"] += 1
      message = "%s: %s" % (note.where, note.reason)
      if counts["bad"] > options.max_bad_notes:
        if options.max_bad_notes:
          message += " (more than --max_bad_notes=%d unreadable notes)" % options.max_bad_notes
        raise fileio.InputError(message)
      logging.warning("skipped an unreadable note (%d so far): %s", counts["bad"], message)
      continue
    yield note


def run_job(model, options):
  """Runs predict.py (`options.replace` None) or deidentify.py over `options.input_file`.

  Outputs: `output_file` (all notes as JSON lines, written atomically), or one file per input file
  (JSON lines) or per note (brat, i2b2_2014, con; de-identified `<id>.txt`) in `output_dir`, each
  written atomically; `--skip_existing` leaves those already there alone.

  Returns:
    Counts: {"notes", "words", "entities", "bad", "skipped", "seconds"}.
  """
  o = options
  pairs = model.record["head"] == SEQUENCE_HEAD
  check_options(o, pairs)
  if o.replace is not None and pairs:
    raise fileio.InputError("deidentify.py needs a token-classification (PHI) model, not a %s "
                            "model" % model.record["head"])
  input_files = fileio.expand_file_patterns(o.input_file)
  per_note = o.replace is not None or o.output_format != "jsonl"
  counts = collections.Counter(notes=0, words=0, entities=0, bad=0, skipped=0)
  if o.skip_existing and not per_note:
    kept = [p for p in input_files
            if not os.path.exists(span_outputs.PerInputWriter.path_for(o.output_dir, p))]
    counts["skipped"] = len(input_files) - len(kept)
    input_files = kept
  stream = _good_notes(note_inputs.read_notes(input_files, o.input_format, o.id_field,
                                              o.text_field, pairs=pairs), o, counts)
  seen, suffix = set(), ".txt" if o.replace is not None else span_outputs.SUFFIXES[o.output_format]
  if per_note:
    def unfinished(notes):
      for note in notes:
        name = note_inputs.output_name(note, suffix, seen)
        if o.skip_existing and os.path.exists(os.path.join(o.output_dir, name)):
          counts["skipped"] += 1
        else:
          yield note
    stream = unfinished(stream)
  what = "deidentify" if o.replace is not None else "predict"
  progress = progress_lib.Progress("notes",
                                   total=note_inputs.count_notes(input_files, o.input_format),
                                   every_seconds=o.progress_seconds, label=what + ": ")
  if pairs:
    results = ((pair, {"id": pair.id, "label": label, "probabilities": probs})
               for pair, label, probs in predict_pairs(model, stream, o.batch_size))
    predictor = None
  else:
    def log_words():
      progress.maybe_log(counts["notes"], detail="%d words, %.0f words/s" % (
          predictor.words_done, predictor.words_done / max(progress.elapsed(), 1e-9)))
    predictor = Predictor(model, o.batch_size, o.min_probability, after_batch=log_words)
    results = predictor.predict(stream)
  spans_file = fileio.atomic_open(o.output_file) if o.output_file else None
  spans_out = spans_file.__enter__() if spans_file else None
  writer = None
  # Each note's surrogates are seeded from random_seed and its id: reproducible, order-free.
  surrogates = (surrogates_lib.Surrogates(locale=o.surrogate_locale, random_seed=o.random_seed)
                if o.replace == "surrogate" else None)
  if o.output_dir and not per_note:
    writer = span_outputs.PerInputWriter(o.output_dir, input_files)
  ok = False
  try:
    for note, result in results:
      if pairs:
        record = result
      else:
        record = span_outputs.jsonl_record(note.id, result, note.text if o.include_text else None)
        counts["entities"] += len(result)
      if per_note:
        path = os.path.join(o.output_dir, note.id + suffix)
        if o.replace is not None:
          text = span_outputs.replace_spans(note.text, result, o.replace, o.mask_char,
                                            surrogates=surrogates, note_key=note.id)
        else:
          text = span_outputs.format_note(o.output_format, note.text, result)
        fileio.write_text_atomic(path, text)
      if spans_out is not None:
        spans_out.write(json.dumps(record, ensure_ascii=False) + "\n")
      if writer is not None:
        writer.write(note.source, record)
      counts["notes"] += 1
      counts["words"] = predictor.words_done if predictor else counts["notes"]
      progress.maybe_log(counts["notes"], detail="%d words, %.0f words/s" % (
          counts["words"], counts["words"] / max(progress.elapsed(), 1e-9)))
    ok = True
  finally:
    if writer is not None:
      writer.close(ok)
    if spans_file is not None:
      if ok:
        spans_file.__exit__(None, None, None)
      else:
        spans_file.__exit__(RuntimeError, RuntimeError("aborted"), None)
  counts["seconds"] = progress.elapsed()
  progress.log(counts["notes"], detail="%d words, %.0f words/s; %d entities, %d unreadable notes "
               "skipped, %d already done" % (counts["words"], counts["words"] / max(
                   counts["seconds"], 1e-9), counts["entities"], counts["bad"], counts["skipped"]))
  return dict(counts)


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
  flags.DEFINE_enum("input_format", "auto", list(note_inputs.INPUT_FORMATS),
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
  flags.DEFINE_integer("num_threads", 0, "TensorFlow threads (0: TensorFlow's choice).")
  flags.DEFINE_bool("skip_existing", False,
                    "Leave outputs that exist alone (continue a run that was stopped).")
  flags.DEFINE_integer("max_bad_notes", 0,
                       "Unreadable notes (bad UTF-8, unreadable file, bad JSON line or CSV row) to "
                       "skip with a warning before stopping; 0: the first one stops the run.")
  flags.DEFINE_float("progress_seconds", 30.0, "Seconds between progress lines.")
  if deidentify:
    flags.DEFINE_string("output_dir", None, "De-identified notes go here, one <id>.txt per note.")
    flags.DEFINE_string("output_file", None,
                        "Also write the predicted PHI spans of the notes as JSON lines here.")
    flags.DEFINE_enum("replace", "placeholder", list(span_outputs.REPLACE_MODES),
                      "placeholder: [**TYPE**] (MIMIC-III style); tag: <TYPE>; mask: --mask_char "
                      "repeated over the span's length; surrogate: a realistic value (Faker), "
                      "consistent within a note (the same text the same value, dates shifted "
                      "together), never the replaced PHI.")
    flags.DEFINE_string("mask_char", "*", "--replace=mask: the character.")
    surrogates_lib.define_flags("--replace=surrogate")
    flags.DEFINE_float("min_phi_probability", None,
                       "A word is PHI when P(not O) reaches this (lower: more recall, less "
                       "precision); default: the most probable label.")
  else:
    flags.DEFINE_string("output_file", None, "All notes' predictions as JSON lines, one per note.")
    flags.DEFINE_string("output_dir", None,
                        "One output per input file (jsonl) or per note (brat, i2b2_2014, con).")
    flags.DEFINE_enum("output_format", "jsonl", list(span_outputs.OUTPUT_FORMATS),
                      "jsonl: {id, entities: [{start, end, label, score}]} per note; brat: "
                      "<id>.ann; i2b2_2014: <id>.xml (the n2c2 de-id scorer's XML); con: i2b2 "
                      "2010 <id>.con.")
    flags.DEFINE_bool("include_text", False,
                      "jsonl: put each note's text in its line (it is protected health "
                      "information: off by default).")
    flags.DEFINE_float("min_probability", None,
                       "A word gets an entity label when P(not O) reaches this; default: the most "
                       "probable label.")


def run_from_flags(flag_values, deidentify=False):
  """Loads the model named by the flags and runs the job. Returns run_job's counts."""
  from clinicalbert_tf import cli  # pylint: disable=g-import-not-at-top
  f = flag_values
  cli.require_flags(f, ("model_dir", "input_file"))
  options = JobOptions(
      input_file=f.input_file, output_file=f.output_file, output_dir=f.output_dir,
      input_format=f.input_format, id_field=f.id_field, text_field=f.text_field,
      skip_existing=f.skip_existing, max_bad_notes=f.max_bad_notes,
      batch_size=f.predict_batch_size, progress_seconds=f.progress_seconds)
  if deidentify:
    options.replace, options.mask_char = f.replace, f.mask_char
    options.random_seed, options.surrogate_locale = f.random_seed, f.surrogate_locale
    options.min_probability = f.min_phi_probability
  else:
    options.output_format, options.include_text = f.output_format, f.include_text
    options.min_probability = f.min_probability
  check_paths_and_locale(options)  # a wrong path should not cost a model load first
  model = load_model(f.model_dir, f.bert_config_file, f.vocab_file, f.init_checkpoint,
                     num_threads=f.num_threads)
  try:
    return run_job(model, options)
  finally:
    model.close()
