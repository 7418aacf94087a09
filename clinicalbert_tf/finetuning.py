"""Fine-tuning BERT with one linear layer: NER (i2b2 2006/2010/2012/2014, CoNLL) and NLI (MedNLI).

The models follow the ClinicalBERT paper and Google's `run_classifier.py`:

  * NER: sequence output -> dropout -> one linear layer per token (`output_weights`, `output_bias`).
    Each word's label sits on its first word piece; the loss is the mean cross entropy over those
    positions only (continuation pieces, [CLS], [SEP] and padding carry no loss). A sentence longer
    than `max_seq_length` is split into windows so that every word gets exactly one prediction: each
    window predicts a core run of words and carries neighbouring words as context.
  * NLI: pooled [CLS] output -> dropout -> linear layer (`output_weights`, `output_bias`, as Google's
    `run_classifier`), on the sentence pair `[CLS] a [SEP] b [SEP]`.

Both train with `optimization.create_optimizer` (Adam with weight decay, warmup, linear decay) in the
shared Estimator from `estimator.py`. Evaluation runs the model over the dev/test windows, reassembles
one label per word, and scores with seqeval (IOB2, strict: exact spans) or accuracy.

Outputs in `output_dir`: `eval_results.txt` / `test_results.txt` (Google's `key = value` lines),
`eval_results.json` / `test_results.json`, predictions as CoNLL (`word gold predicted`) or TSV (NLI),
per-note `.con` files for i2b2 2010, and for `--grid` a summary table (`grid_summary.md`/`.json`).
"""

import collections
import dataclasses
import glob
import os
import time
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import estimator as estimator_lib
from clinicalbert_tf import fileio
from clinicalbert_tf import hooks
from clinicalbert_tf import modeling
from clinicalbert_tf import optimization
from clinicalbert_tf import tasks
from clinicalbert_tf import tokenization

# The paper's fine-tuning grid.
PAPER_LEARNING_RATES = (2e-5, 3e-5, 5e-5)
PAPER_BATCH_SIZES = (16, 32)
PAPER_EPOCHS = {"ner": (2, 3, 4), "nli": (3, 4)}

# Dropout before the output layer (Google's run_classifier value).
HEAD_DROPOUT = 0.1

# Written next to a fine-tuned checkpoint: the head type and label order, for export_hf.py.
HEAD_RECORD_FILE = "finetune_head.json"


@dataclasses.dataclass
class FinetuneConfig:
  """Everything a fine-tuning run needs (run_finetune.py fills it from flags)."""
  task_name: str
  data_dir: str
  output_dir: str
  bert_config_file: Optional[str] = None
  vocab_file: Optional[str] = None
  init_checkpoint: Optional[str] = None
  do_lower_case: bool = False
  max_seq_length: int = 150
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  iterations_per_loop: int = 1000
  log_every_n_steps: int = 100
  seed: int = 42
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  num_tpu_cores: int = 8
  # Readers.
  check_entity_text: bool = True
  include_timex3: bool = False
  # Conversion to the authors' IOB files.
  iob_output_dir: Optional[str] = None
  # Grid.
  grid: bool = False
  grid_learning_rates: Optional[List[float]] = None
  grid_batch_sizes: Optional[List[int]] = None
  grid_num_train_epochs: Optional[List[float]] = None
  grid_keep_checkpoints: bool = False


# ---------------------------------------------------------------------------------------------------
# Examples -> model inputs.

@dataclasses.dataclass
class InputFeatures:
  """One model input (a window of a sentence for NER, a sentence pair for NLI)."""
  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]
  label_ids: object  # NER: [max_seq_length] ints; NLI: an int
  label_mask: Optional[List[int]] = None  # NER: 1 at the first piece of each word predicted here
  example_index: int = -1
  word_indexes: Optional[List[int]] = None  # NER: the words predicted here, in position order
  is_real_example: bool = True


def word_pieces(words, tokenizer, max_pieces):
  """Word pieces of each word (never empty: [UNK] stands in), at most `max_pieces` per word.

  Returns:
    (pieces per word, number of words whose pieces were cut).
  """
  result, cut = [], 0
  for word in words:
    pieces = tokenizer.tokenize(word) or ["[UNK]"]
    if len(pieces) > max_pieces:
      pieces = pieces[:max_pieces]  # the label sits on the first piece, which is kept
      cut += 1
    result.append(pieces)
  return result, cut


def plan_windows(piece_counts, max_pieces):
  """Splits a sentence into windows of at most `max_pieces` word pieces.

  Each word is predicted in exactly one window (its "core"); a window also carries context words
  on both sides, as many as fit. When the whole sentence fits, there is one window.

  Args:
    piece_counts: the number of pieces of each word (each <= max_pieces).
    max_pieces: pieces per window (max_seq_length - 2).

  Returns:
    A list of (start, end, core_start, core_end) word ranges (end exclusive); the cores partition
    range(len(piece_counts)) in order.
  """
  n = len(piece_counts)
  if sum(piece_counts) <= max_pieces:
    return [(0, n, 0, n)]
  core_budget = max(1, max_pieces // 2)
  windows = []
  core_start = 0
  while core_start < n:
    core_end, total = core_start, 0
    while core_end < n and (core_end == core_start or total + piece_counts[core_end] <= core_budget):
      total += piece_counts[core_end]
      core_end += 1
    start, end = core_start, core_end
    grew = True
    while grew:  # add context alternately right and left while it fits
      grew = False
      if end < n and total + piece_counts[end] <= max_pieces:
        total += piece_counts[end]
        end += 1
        grew = True
      if start > 0 and total + piece_counts[start - 1] <= max_pieces:
        total += piece_counts[start - 1]
        start -= 1
        grew = True
    windows.append((start, end, core_start, core_end))
    core_start = core_end
  return windows


def convert_tagged_sentence(example_index, example, label_map, max_seq_length, tokenizer):
  """Windows (InputFeatures) for one TaggedSentence; labels on first pieces of core words.

  Returns:
    (list of InputFeatures, number of words whose pieces were cut to fit a window).
  """
  max_pieces = max_seq_length - 2
  pieces, cut = word_pieces(example.words, tokenizer, max_pieces)
  features = []
  for start, end, core_start, core_end in plan_windows([len(p) for p in pieces], max_pieces):
    tokens = ["[CLS]"]
    label_ids = [0]
    label_mask = [0]
    word_indexes = []
    for w in range(start, end):
      in_core = core_start <= w < core_end
      for k, piece in enumerate(pieces[w]):
        tokens.append(piece)
        is_label_position = in_core and k == 0
        label_mask.append(1 if is_label_position else 0)
        if is_label_position:
          label = example.labels[w]
          if label not in label_map:
            raise fileio.InputError("%s: label %r is not in the label set" % (example.guid, label))
          label_ids.append(label_map[label])
          word_indexes.append(w)
        else:
          label_ids.append(0)
    tokens.append("[SEP]")
    label_ids.append(0)
    label_mask.append(0)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    padding = max_seq_length - len(input_ids)
    features.append(InputFeatures(
        input_ids=input_ids + [0] * padding,
        input_mask=input_mask + [0] * padding,
        segment_ids=[0] * max_seq_length,
        label_ids=label_ids + [0] * padding,
        label_mask=label_mask + [0] * padding,
        example_index=example_index,
        word_indexes=word_indexes))
  return features, cut


def convert_sentence_pair(example_index, example, label_map, max_seq_length, tokenizer):
  """InputFeatures for one SentencePair (`[CLS] a [SEP] b [SEP]`). Returns (features, truncated)."""
  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = tokenizer.tokenize(example.text_b)
  truncated = len(tokens_a) + len(tokens_b) > max_seq_length - 3
  tokenization.truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
  segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  padding = max_seq_length - len(input_ids)
  if example.label not in label_map:
    raise fileio.InputError("%s: label %r is not in the label set" % (example.guid, example.label))
  return InputFeatures(
      input_ids=input_ids + [0] * padding,
      input_mask=[1] * len(input_ids) + [0] * padding,
      segment_ids=segment_ids + [0] * padding,
      label_ids=label_map[example.label],
      example_index=example_index), truncated


def convert_examples(kind, examples, label_list, max_seq_length, tokenizer, split=""):
  """InputFeatures for all examples (windows for NER). Logs counts, never text."""
  label_map = {label: i for i, label in enumerate(label_list)}
  features = []
  cut = 0
  for i, example in enumerate(examples):
    if kind == "ner":
      windows, n = convert_tagged_sentence(i, example, label_map, max_seq_length, tokenizer)
      features.extend(windows)
    else:
      feature, n = convert_sentence_pair(i, example, label_map, max_seq_length, tokenizer)
      features.append(feature)
    cut += int(n)
  if kind == "ner":
    logging.info("%s: %d sentences -> %d windows of at most %d pieces (%d sentences split, %d words "
                 "cut to fit)", split, len(examples), len(features), max_seq_length,
                 len(features) - len(examples), cut)
    if cut:
      logging.warning("%s: %d words have more word pieces than a window holds; their first %d "
                      "pieces are kept", split, cut, max_seq_length - 2)
  else:
    logging.info("%s: %d pairs (%d truncated to %d pieces)", split, len(examples), cut,
                 max_seq_length)
  return features


def padding_feature(kind, max_seq_length):
  """A feature that counts for nothing (TPU batches must be full)."""
  zeros = [0] * max_seq_length
  return InputFeatures(input_ids=zeros, input_mask=zeros, segment_ids=zeros,
                       label_ids=zeros if kind == "ner" else 0,
                       label_mask=zeros if kind == "ner" else None, is_real_example=False)


def write_features(path, kind, features):
  """Writes features as tf.train.Examples to a TFRecord file (atomically)."""

  def ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

  with fileio.atomic_output(path) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for f in features:
        record = collections.OrderedDict()
        record["input_ids"] = ints(f.input_ids)
        record["input_mask"] = ints(f.input_mask)
        record["segment_ids"] = ints(f.segment_ids)
        if kind == "ner":
          record["label_ids"] = ints(f.label_ids)
          record["label_mask"] = ints(f.label_mask)
        else:
          record["label_ids"] = ints([f.label_ids])
        record["is_real_example"] = ints([int(f.is_real_example)])
        writer.write(tf.train.Example(
            features=tf.train.Features(feature=record)).SerializeToString())


def input_fn_builder(input_file, kind, seq_length, is_training, drop_remainder, num_examples=None,
                     seed=None):
  """An `input_fn` reading features written by `write_features` (Google's file-based input_fn).

  Training repeats and shuffles with a buffer as large as the data (up to 10,000), seeded, so the
  same seed gives the same batches; evaluation keeps the file order.
  """
  name_to_features = {
      "input_ids": tf.FixedLenFeature([seq_length], tf.int64),
      "input_mask": tf.FixedLenFeature([seq_length], tf.int64),
      "segment_ids": tf.FixedLenFeature([seq_length], tf.int64),
      "label_ids": tf.FixedLenFeature([seq_length] if kind == "ner" else [], tf.int64),
      "is_real_example": tf.FixedLenFeature([], tf.int64),
  }
  if kind == "ner":
    name_to_features["label_mask"] = tf.FixedLenFeature([seq_length], tf.int64)

  def decode(record):
    example = tf.parse_single_example(record, name_to_features)
    # tf.Example holds int64; the TPU wants int32.
    return {name: tf.cast(t, tf.int32) for name, t in example.items()}

  def input_fn(params):
    batch_size = params["batch_size"]
    d = tf.data.TFRecordDataset(input_file)
    if is_training:
      d = d.repeat()
      d = d.shuffle(buffer_size=max(1, min(num_examples or 100, 10000)), seed=seed)
    d = d.map(decode, num_parallel_calls=tf.data.experimental.AUTOTUNE)  # keeps the order
    d = d.batch(batch_size, drop_remainder=drop_remainder)
    return d.prefetch(2)

  return input_fn


# ---------------------------------------------------------------------------------------------------
# Models.

def _output_layer(hidden_size, num_labels):
  output_weights = tf.get_variable(
      "output_weights", [num_labels, hidden_size],
      initializer=tf.truncated_normal_initializer(stddev=0.02))
  output_bias = tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())
  return output_weights, output_bias


def masked_token_loss(logits, label_ids, label_mask):
  """Mean cross entropy over the positions where `label_mask` is 1.

  Args:
    logits: [batch, seq, num_labels].
    label_ids: [batch, seq] ints.
    label_mask: [batch, seq], 1 at each word's first piece that this window predicts.

  Returns:
    (loss: scalar, per_token_loss: [batch, seq] with zeros where the mask is 0).
  """
  num_labels = modeling.get_shape_list(logits)[-1]
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  one_hot_labels = tf.one_hot(label_ids, depth=num_labels, dtype=tf.float32)
  mask = tf.cast(label_mask, tf.float32)
  per_token_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1) * mask
  # A batch with no labelled position (all padding) has loss 0, not NaN.
  loss = tf.reduce_sum(per_token_loss) / tf.maximum(tf.reduce_sum(mask), 1.0)
  return loss, per_token_loss


def create_ner_model(bert_config, is_training, input_ids, input_mask, segment_ids, label_ids,
                     label_mask, num_labels, use_one_hot_embeddings):
  """Token classification: sequence output -> dropout -> linear per token.

  Returns:
    (loss, per_token_loss [B, L], logits [B, L, num_labels], predictions [B, L]).
  """
  model = modeling.BertModel(
      config=bert_config,
      is_training=is_training,
      input_ids=input_ids,
      input_mask=input_mask,
      token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings)
  output_layer = model.get_sequence_output()  # [B, L, H]
  batch_size, seq_length, hidden_size = modeling.get_shape_list(output_layer, expected_rank=3)
  output_weights, output_bias = _output_layer(hidden_size, num_labels)
  with tf.variable_scope("loss"):
    if is_training:
      output_layer = modeling.dropout(output_layer, HEAD_DROPOUT)
    flat = tf.reshape(output_layer, [-1, hidden_size])
    logits = tf.nn.bias_add(tf.matmul(flat, output_weights, transpose_b=True), output_bias)
    logits = tf.reshape(logits, [batch_size, seq_length, num_labels])
    loss, per_token_loss = masked_token_loss(logits, label_ids, label_mask)
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return loss, per_token_loss, logits, predictions


def create_classification_model(bert_config, is_training, input_ids, input_mask, segment_ids,
                                labels, num_labels, use_one_hot_embeddings):
  """Sentence(-pair) classification: pooled [CLS] -> dropout -> linear (Google's run_classifier).

  Returns:
    (loss, per_example_loss [B], logits [B, num_labels], probabilities [B, num_labels]).
  """
  model = modeling.BertModel(
      config=bert_config,
      is_training=is_training,
      input_ids=input_ids,
      input_mask=input_mask,
      token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings)
  output_layer = model.get_pooled_output()  # [B, H]
  hidden_size = modeling.get_shape_list(output_layer, expected_rank=2)[-1]
  output_weights, output_bias = _output_layer(hidden_size, num_labels)
  with tf.variable_scope("loss"):
    if is_training:
      output_layer = modeling.dropout(output_layer, HEAD_DROPOUT)
    logits = tf.nn.bias_add(tf.matmul(output_layer, output_weights, transpose_b=True), output_bias)
    probabilities = tf.nn.softmax(logits, axis=-1)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    one_hot_labels = tf.one_hot(labels, depth=num_labels, dtype=tf.float32)
    per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
    loss = tf.reduce_mean(per_example_loss)
  return loss, per_example_loss, logits, probabilities


def model_fn_builder(bert_config, kind, num_labels, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, use_tpu, use_one_hot_embeddings):
  """The `model_fn` for the (TPU)Estimator: NER (`kind="ner"`) or NLI (`kind="nli"`)."""

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    input_ids = features["input_ids"]
    input_mask = features["input_mask"]
    segment_ids = features["segment_ids"]
    label_ids = features["label_ids"]
    is_real_example = tf.cast(features["is_real_example"], tf.float32)

    if kind == "ner":
      label_mask = features["label_mask"] * tf.expand_dims(features["is_real_example"], -1)
      loss, per_token_loss, _, predictions = create_ner_model(
          bert_config, is_training, input_ids, input_mask, segment_ids, label_ids, label_mask,
          num_labels, use_one_hot_embeddings)
    else:
      loss, per_example_loss, logits, probabilities = create_classification_model(
          bert_config, is_training, input_ids, input_mask, segment_ids, label_ids, num_labels,
          use_one_hot_embeddings)

    scaffold_fn = checkpoints.init_from_checkpoint_in_model_fn(
        init_checkpoint, tf.trainable_variables(), use_tpu)

    if mode == tf.estimator.ModeKeys.TRAIN:
      train_op = optimization.create_optimizer(loss, learning_rate, num_train_steps,
                                               num_warmup_steps, use_tpu)
      # The shared Estimator's train() adds the NaN guard (NanLossHook) and the progress log.
      return tf.estimator.tpu.TPUEstimatorSpec(mode=mode, loss=loss, train_op=train_op,
                                               scaffold_fn=scaffold_fn)

    if mode == tf.estimator.ModeKeys.EVAL:
      if kind == "ner":
        def metric_fn(per_token_loss, label_ids, predictions, label_mask):
          weights = tf.cast(label_mask, tf.float32)
          return {
              "eval_token_accuracy": tf.metrics.accuracy(label_ids, predictions, weights=weights),
              "eval_loss": tf.metrics.mean(per_token_loss, weights=weights),
          }
        eval_metrics = (metric_fn, [per_token_loss, label_ids, predictions, label_mask])
      else:
        def metric_fn(per_example_loss, label_ids, logits, is_real_example):
          predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
          return {
              "eval_accuracy": tf.metrics.accuracy(label_ids, predictions, weights=is_real_example),
              "eval_loss": tf.metrics.mean(per_example_loss, weights=is_real_example),
          }
        eval_metrics = (metric_fn, [per_example_loss, label_ids, logits, is_real_example])
      return tf.estimator.tpu.TPUEstimatorSpec(mode=mode, loss=loss, eval_metrics=eval_metrics,
                                               scaffold_fn=scaffold_fn)

    if kind == "ner":
      mask = tf.cast(label_mask, tf.float32)
      outputs = {
          "predictions": predictions,
          "loss_sum": tf.reduce_sum(per_token_loss, axis=-1),
          "label_count": tf.reduce_sum(mask, axis=-1),
      }
    else:
      outputs = {"probabilities": probabilities, "loss_sum": per_example_loss,
                 "label_count": is_real_example}
    return tf.estimator.tpu.TPUEstimatorSpec(mode=mode, predictions=outputs,
                                             scaffold_fn=scaffold_fn)

  return model_fn


# ---------------------------------------------------------------------------------------------------
# Metrics.

def ner_metrics(gold, predicted):
  """Exact-span micro P/R/F1 and a per-type report (seqeval, IOB2, strict mode).

  Args:
    gold, predicted: lists (one per sentence) of IOB2 label lists.

  Returns:
    {"precision", "recall", "f1", "per_type": {type: {precision, recall, f1, support}}}.
  """
  from seqeval import metrics as seqeval_metrics  # pylint: disable=g-import-not-at-top
  from seqeval import scheme as seqeval_scheme  # pylint: disable=g-import-not-at-top
  kwargs = dict(mode="strict", scheme=seqeval_scheme.IOB2, zero_division=0)
  gold_types = {tasks.label_type(l) for s in gold for l in s if l != "O"}
  per_type = {}
  if gold_types or any(l != "O" for s in predicted for l in s):
    report = seqeval_metrics.classification_report(gold, predicted, output_dict=True, **kwargs)
    for name, values in report.items():
      if name.endswith(" avg"):
        continue
      per_type[name] = {"precision": float(values["precision"]), "recall": float(values["recall"]),
                        "f1": float(values["f1-score"]), "support": int(values["support"])}
  return {
      "precision": float(seqeval_metrics.precision_score(gold, predicted, **kwargs)),
      "recall": float(seqeval_metrics.recall_score(gold, predicted, **kwargs)),
      "f1": float(seqeval_metrics.f1_score(gold, predicted, **kwargs)),
      "per_type": per_type,
  }


def classification_metrics(gold, predicted, label_list):
  """Accuracy and a confusion matrix (rows gold, columns predicted, in `label_list` order)."""
  index = {label: i for i, label in enumerate(label_list)}
  matrix = np.zeros([len(label_list), len(label_list)], dtype=np.int64)
  for g, p in zip(gold, predicted):
    matrix[index[g], index[p]] += 1
  correct = int(np.trace(matrix))
  return {
      "accuracy": correct / max(1, len(gold)),
      "confusion_matrix": {"labels": list(label_list), "rows_gold_columns_predicted":
                           matrix.tolist()},
  }


def majority_baseline(kind, train_examples, examples):
  """The metric of always predicting the most frequent training label (a sanity reference)."""
  if kind == "ner":
    counts = collections.Counter(l for s in train_examples for l in s.labels)
    label = counts.most_common(1)[0][0] if counts else "O"
    gold = [s.labels for s in examples]
    return ner_metrics(gold, [[label if label.startswith("B-") or label == "O" else "O"] * len(g)
                              for g in gold])["f1"]
  counts = collections.Counter(e.label for e in train_examples)
  label = counts.most_common(1)[0][0]
  return sum(e.label == label for e in examples) / max(1, len(examples))


# ---------------------------------------------------------------------------------------------------
# Running.

@dataclasses.dataclass
class PreparedSplit:
  """A split's examples, features and the TFRecord file holding them."""
  name: str
  examples: list
  features: list
  record_file: str


class Runner(object):
  """Reads the task once, converts its splits once, and trains/evaluates models on them."""

  def __init__(self, config):
    self.config = config
    self.task = tasks.get_task(config.task_name, tasks.ReaderOptions(
        check_text=config.check_entity_text, include_timex3=config.include_timex3))
    self.kind = self.task.kind
    self._splits = {}
    self._setup_model()

  def _setup_model(self):
    c = self.config
    for flag in ("bert_config_file", "vocab_file", "output_dir"):
      if not getattr(c, flag):
        raise fileio.InputError("--%s is required to train or evaluate" % flag)
    if not os.path.isfile(c.bert_config_file):
      raise fileio.InputError("--bert_config_file=%s: no such file" % c.bert_config_file)
    if not os.path.isfile(c.vocab_file):
      raise fileio.InputError("--vocab_file=%s: no such file" % c.vocab_file)
    try:
      self.bert_config = modeling.BertConfig.from_json_file(c.bert_config_file)
    except (ValueError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
      message = str(e)
      if c.bert_config_file not in message:
        message = "%s: not a BERT config (%s)" % (c.bert_config_file, message)
      raise fileio.InputError("--bert_config_file: " + message) from None
    if c.max_seq_length > self.bert_config.max_position_embeddings:
      raise fileio.InputError(
          "--max_seq_length=%d is longer than the model's max_position_embeddings (%d)" %
          (c.max_seq_length, self.bert_config.max_position_embeddings))
    if c.max_seq_length < (3 if self.kind == "ner" else 4):
      raise fileio.InputError("--max_seq_length=%d leaves no room for words" % c.max_seq_length)
    try:
      tokenization.validate_case_matches_checkpoint(c.do_lower_case, c.init_checkpoint)
    except ValueError as e:
      raise fileio.InputError(str(e)) from None
    self.tokenizer = tokenization.FullTokenizer(vocab_file=c.vocab_file,
                                                do_lower_case=c.do_lower_case)
    self.label_list = self.task.get_labels(c.data_dir)
    os.makedirs(c.output_dir, exist_ok=True)

  def split(self, name):
    """The PreparedSplit for `name` (converted and written once)."""
    if name not in self._splits:
      c = self.config
      examples = self.task.get_examples(c.data_dir, name)
      if not examples:
        raise fileio.InputError("--data_dir=%s: the %s split is empty" % (c.data_dir, name))
      features = convert_examples(self.kind, examples, self.label_list, c.max_seq_length,
                                  self.tokenizer, name)
      if name != "train" and c.use_tpu:
        batch = c.eval_batch_size if name == "dev" else c.predict_batch_size
        while len(features) % batch:
          features.append(padding_feature(self.kind, c.max_seq_length))
      record_file = os.path.join(c.output_dir, "%s.tf_record" % name)
      write_features(record_file, self.kind, features)
      self._splits[name] = PreparedSplit(name, examples, features, record_file)
    return self._splits[name]

  def num_train_steps(self, batch_size, epochs):
    num_features = len(self.split("train").features)
    return max(1, int(num_features / batch_size * epochs))

  def estimator(self, model_dir, learning_rate, batch_size, epochs, init_checkpoint):
    """The Estimator for one setting (`init_checkpoint` None: restore from model_dir only)."""
    c = self.config
    num_train_steps = num_warmup_steps = None
    if epochs:
      num_train_steps = self.num_train_steps(batch_size, epochs)
      num_warmup_steps = int(num_train_steps * c.warmup_proportion)
    model_fn = model_fn_builder(
        bert_config=self.bert_config, kind=self.kind, num_labels=len(self.label_list),
        init_checkpoint=init_checkpoint, learning_rate=learning_rate,
        num_train_steps=num_train_steps, num_warmup_steps=num_warmup_steps, use_tpu=c.use_tpu,
        use_one_hot_embeddings=c.use_tpu)
    run_config = estimator_lib.make_run_config(
        model_dir, save_checkpoints_steps=c.save_checkpoints_steps,
        keep_checkpoint_max=c.keep_checkpoint_max, iterations_per_loop=c.iterations_per_loop,
        use_tpu=c.use_tpu, tpu_name=c.tpu_name, tpu_zone=c.tpu_zone, gcp_project=c.gcp_project,
        master=c.master, num_tpu_cores=c.num_tpu_cores, log_every_n_steps=c.log_every_n_steps,
        seed=c.seed)
    return estimator_lib.build_estimator(
        model_fn, run_config, train_batch_size=batch_size, eval_batch_size=c.eval_batch_size,
        predict_batch_size=c.predict_batch_size, use_tpu=c.use_tpu), num_train_steps

  def train(self, model_dir, learning_rate, batch_size, epochs):
    """Trains one setting into `model_dir`. Returns (number of steps, seconds)."""
    c = self.config
    train = self.split("train")
    estimator, num_train_steps = self.estimator(model_dir, learning_rate, batch_size, epochs,
                                                c.init_checkpoint)
    logging.info("training: %d examples (%d windows), batch %d, %g epochs -> %d steps, lr %g",
                 len(train.examples), len(train.features), batch_size, epochs, num_train_steps,
                 learning_rate)
    input_fn = input_fn_builder(train.record_file, self.kind, c.max_seq_length, is_training=True,
                                drop_remainder=True, num_examples=len(train.features),
                                seed=c.seed)
    hook = hooks.ProgressHook(num_train_steps, batch_size, max(1, c.log_every_n_steps))
    start = time.time()
    estimator.train(input_fn=input_fn, max_steps=num_train_steps, hooks=[hook])
    self.write_head_record(model_dir)
    return num_train_steps, time.time() - start

  def write_head_record(self, model_dir):
    """Records the head and label order next to the checkpoint (`export_hf.py` reads it)."""
    fileio.write_json_atomic(os.path.join(model_dir, HEAD_RECORD_FILE), {
        "head": "token_classification" if self.kind == "ner" else "sequence_classification",
        "labels": list(self.label_list),
        "task_name": self.config.task_name,
        "do_lower_case": self.config.do_lower_case,
        "max_seq_length": self.config.max_seq_length,
    })

  def evaluate(self, model_dir, split_name, prefix, output_dir=None):
    """Predicts `split_name` with the latest checkpoint in `model_dir`, scores and writes results.

    Args:
      model_dir: where the checkpoint is.
      split_name: `dev` or `test`.
      prefix: `eval` or `test` (file names: `<prefix>_results.txt`, ...).
      output_dir: where results go (default model_dir).

    Returns:
      The results dict (as written to `<prefix>_results.json`).
    """
    c = self.config
    output_dir = output_dir or model_dir
    if not tf.train.latest_checkpoint(model_dir):
      raise fileio.InputError("no checkpoint in %s to evaluate: train first (--do_train)" %
                              model_dir)
    split = self.split(split_name)
    estimator, _ = self.estimator(model_dir, 0.0, c.train_batch_size, None, None)
    input_fn = input_fn_builder(split.record_file, self.kind, c.max_seq_length, is_training=False,
                                drop_remainder=c.use_tpu)
    loss_sum = label_count = 0.0
    outputs = []
    for feature, prediction in zip(split.features, estimator.predict(input_fn=input_fn)):
      if not feature.is_real_example:
        continue
      loss_sum += float(prediction["loss_sum"])
      label_count += float(prediction["label_count"])
      outputs.append(prediction)
    if len(outputs) != sum(f.is_real_example for f in split.features):
      raise RuntimeError("the model returned %d predictions for %d inputs" %
                         (len(outputs), len(split.features)))
    global_step = int(estimator.get_variable_value(tf.GraphKeys.GLOBAL_STEP))
    results = {"global_step": global_step, "loss": loss_sum / max(1.0, label_count),
               "num_examples": len(split.examples), "split": split_name}
    if self.kind == "ner":
      predicted = assemble_ner_predictions(split.examples, split.features,
                                           [o["predictions"] for o in outputs], self.label_list)
      gold = [e.labels for e in split.examples]
      results.update(ner_metrics(gold, predicted))
      text = tasks.format_conll(split.examples, [[p] for p in predicted])
      fileio.write_text_atomic(os.path.join(output_dir, prefix + "_predictions.txt"), text)
      native = self.task.write_native_predictions(split.examples, predicted,
                                                  os.path.join(output_dir, prefix + "_con"))
      if native:
        logging.info("wrote %d .con files to %s", len(native),
                     os.path.join(output_dir, prefix + "_con"))
    else:
      probabilities = [o["probabilities"] for o in outputs]
      predicted = [self.label_list[int(np.argmax(p))] for p in probabilities]
      gold = [e.label for e in split.examples]
      results.update(classification_metrics(gold, predicted, self.label_list))
      lines = ["\t".join(["guid", "gold", "predicted"] + ["p_" + l for l in self.label_list])]
      for e, p, probs in zip(split.examples, predicted, probabilities):
        lines.append("\t".join([e.guid, e.label, p] + ["%.6f" % x for x in probs]))
      fileio.write_text_atomic(os.path.join(output_dir, prefix + "_predictions.tsv"),
                               "\n".join(lines) + "\n")
    write_results(output_dir, prefix, results)
    return results


def assemble_ner_predictions(examples, features, window_predictions, label_list):
  """One predicted label per word, from per-window predictions.

  Args:
    examples: the TaggedSentences.
    features: their windows (InputFeatures, real ones only or with padding marked).
    window_predictions: per real window, the predicted label id at each position.
    label_list: id -> label.

  Returns:
    A list (per example) of label lists, one label per word.

  Raises:
    RuntimeError: if a word got no prediction or more than one (a bug, never bad input).
  """
  predicted = [[None] * len(e.words) for e in examples]
  real = [f for f in features if f.is_real_example]
  for feature, ids in zip(real, window_predictions):
    positions = [i for i, m in enumerate(feature.label_mask) if m]
    row = predicted[feature.example_index]
    for word, position in zip(feature.word_indexes, positions):
      if row[word] is not None:
        raise RuntimeError("word %d of %s predicted twice" % (word, examples[feature.example_index]
                                                              .guid))
      row[word] = label_list[int(ids[position])]
  for example, row in zip(examples, predicted):
    if any(label is None for label in row):
      raise RuntimeError("%s: a word got no prediction" % example.guid)
  return predicted


def format_results(results):
  """Google's `key = value` lines (sorted), with per-type NER scores flattened to `<type>_<metric>`."""
  flat = {}
  for key, value in results.items():
    if key == "per_type":
      for typ, scores in value.items():
        for metric, v in scores.items():
          flat["%s_%s" % (typ, metric)] = v
    elif key == "confusion_matrix":
      labels = value["labels"]
      for g, row in zip(labels, value["rows_gold_columns_predicted"]):
        for p, count in zip(labels, row):
          flat["confusion_%s_as_%s" % (g, p)] = count
    else:
      flat[key] = value
  return "".join("%s = %s\n" % (key, flat[key]) for key in sorted(flat))


def write_results(output_dir, prefix, results):
  """Writes `<prefix>_results.txt` (key = value) and `<prefix>_results.json`."""
  fileio.write_text_atomic(os.path.join(output_dir, prefix + "_results.txt"),
                           format_results(results))
  fileio.write_json_atomic(os.path.join(output_dir, prefix + "_results.json"), results)
  logging.info("***** %s results *****", prefix)
  for line in format_results({k: v for k, v in results.items() if k != "per_type"}).splitlines():
    logging.info("  %s", line)


def headline_metric(kind):
  return "f1" if kind == "ner" else "accuracy"


def run(config):
  """Runs what `config` asks: conversion, training, dev evaluation, test prediction, or the grid.

  Returns:
    {"eval": results or None, "test": results or None, "grid": summary or None,
     "converted": {split: path} or None}.
  """
  outcome = {"eval": None, "test": None, "grid": None, "converted": None}
  task = tasks.get_task(config.task_name, tasks.ReaderOptions(
      check_text=config.check_entity_text, include_timex3=config.include_timex3))
  if config.iob_output_dir:
    outcome["converted"] = tasks.convert_to_iob(task, config.data_dir, config.iob_output_dir)
    logging.info("wrote IOB files: %s", ", ".join(sorted(outcome["converted"].values())))
  if config.grid:
    outcome["grid"] = run_grid(config)
    return outcome
  if not (config.do_train or config.do_eval or config.do_predict):
    if not config.iob_output_dir:
      raise fileio.InputError("nothing to do: pass --do_train, --do_eval, --do_predict, --grid or "
                              "--iob_output_dir")
    return outcome
  runner = Runner(config)
  if config.do_train:
    runner.train(config.output_dir, config.learning_rate, config.train_batch_size,
                 config.num_train_epochs)
  if config.do_eval:
    outcome["eval"] = runner.evaluate(config.output_dir, "dev", "eval")
  if config.do_predict:
    outcome["test"] = runner.evaluate(config.output_dir, "test", "test")
  return outcome


def grid_points(config, kind):
  """The (learning rate, batch size, epochs) settings of the grid, in order."""
  learning_rates = config.grid_learning_rates or PAPER_LEARNING_RATES
  batch_sizes = config.grid_batch_sizes or PAPER_BATCH_SIZES
  epochs = config.grid_num_train_epochs or PAPER_EPOCHS[kind]
  return [(float(lr), int(bs), float(ep))
          for lr in learning_rates for bs in batch_sizes for ep in epochs]


def point_name(learning_rate, batch_size, epochs):
  return "lr%g_bs%d_ep%g" % (learning_rate, batch_size, epochs)


def remove_checkpoints(model_dir):
  """Deletes a model directory's checkpoints (keeps results and event files)."""
  for path in glob.glob(os.path.join(model_dir, "model.ckpt-*")) + \
      glob.glob(os.path.join(model_dir, "checkpoint")) + \
      glob.glob(os.path.join(model_dir, "graph.pbtxt")):
    os.remove(path)


def run_grid(config):
  """The paper's grid: train each setting, score dev, pick the best, report test for it.

  Each setting trains in `<output_dir>/grid/<setting>/` (dev results there). The best setting by dev
  F1 (NER) or accuracy (NLI) -- the first in grid order on a tie -- is evaluated on test, with results
  and predictions in `output_dir`. Only the best setting's checkpoint is kept unless
  `grid_keep_checkpoints`. Writes `grid_summary.md` and `grid_summary.json`.

  Returns:
    The summary dict.
  """
  runner = Runner(config)
  metric = headline_metric(runner.kind)
  points = grid_points(config, runner.kind)
  runner.split("test")  # fail early if there is no test split
  rows = []
  best = None
  start_all = time.time()
  for n, (lr, bs, ep) in enumerate(points, 1):
    name = point_name(lr, bs, ep)
    model_dir = os.path.join(config.output_dir, "grid", name)
    logging.info("grid point %d/%d: learning_rate=%g batch=%d epochs=%g -> %s", n, len(points), lr,
                 bs, ep, model_dir)
    steps, seconds = runner.train(model_dir, lr, bs, ep)
    dev = runner.evaluate(model_dir, "dev", "eval")
    row = {"setting": name, "learning_rate": lr, "train_batch_size": bs, "num_train_epochs": ep,
           "steps": steps, "train_seconds": round(seconds, 1), "dev_" + metric: dev[metric],
           "dev_loss": dev["loss"]}
    rows.append(row)
    improved = best is None or dev[metric] > best["dev_" + metric]
    if improved:
      if best is not None and not config.grid_keep_checkpoints:
        remove_checkpoints(best["model_dir"])
      best = dict(row, model_dir=model_dir)
    elif not config.grid_keep_checkpoints:
      remove_checkpoints(model_dir)
    elapsed = time.time() - start_all
    logging.info("grid point %d/%d done: %s dev %s=%.4f (best so far %s %.4f); %.0fs elapsed, "
                 "about %.0fs left", n, len(points), name, metric, dev[metric], best["setting"],
                 best["dev_" + metric], elapsed, elapsed / n * (len(points) - n))
  test = runner.evaluate(best["model_dir"], "test", "test", output_dir=config.output_dir)
  summary = {
      "task": config.task_name,
      "metric": metric,
      "seed": config.seed,
      "max_seq_length": config.max_seq_length,
      "points": rows,
      "best": {k: v for k, v in best.items()},
      "test": {k: v for k, v in test.items() if k != "per_type"},
  }
  if "per_type" in test:
    summary["test_per_type"] = test["per_type"]
  fileio.write_json_atomic(os.path.join(config.output_dir, "grid_summary.json"), summary)
  fileio.write_text_atomic(os.path.join(config.output_dir, "grid_summary.md"),
                           format_grid_markdown(summary))
  logging.info("grid: best %s (dev %s %.4f), test %s %.4f", best["setting"], metric,
               best["dev_" + metric], metric, test[metric])
  return summary


def format_grid_markdown(summary):
  """A markdown table of the grid, the chosen setting marked, and its test score."""
  metric = summary["metric"]
  lines = ["# Fine-tuning grid: %s" % summary["task"], "",
           "Selected by dev %s; test reported for the selected setting only." % metric, "",
           "| setting | learning rate | batch | epochs | steps | dev %s | dev loss | |" % metric,
           "|---|---|---|---|---|---|---|---|"]
  for row in summary["points"]:
    mark = "**selected**" if row["setting"] == summary["best"]["setting"] else ""
    lines.append("| %s | %g | %d | %g | %d | %.4f | %.4f | %s |" % (
        row["setting"], row["learning_rate"], row["train_batch_size"], row["num_train_epochs"],
        row["steps"], row["dev_" + metric], row["dev_loss"], mark))
  test = summary["test"]
  lines += ["", "Test (%s): %s = %.4f" % (summary["best"]["setting"], metric, test[metric])]
  if metric == "f1":
    lines[-1] += ", precision = %.4f, recall = %.4f" % (test["precision"], test["recall"])
  return "\n".join(lines) + "\n"


def config_from_flags(flags_values):
  """A FinetuneConfig from parsed absl flags (same names)."""
  fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
  values = {name: getattr(flags_values, name) for name in fields if name in flags_values}
  for name in ("grid_learning_rates", "grid_batch_sizes", "grid_num_train_epochs"):
    value = values.get(name)
    if isinstance(value, str):
      items = fileio.split_comma_list(value)
      try:
        values[name] = [int(x) if name == "grid_batch_sizes" else float(x) for x in items] or None
      except ValueError:
        raise fileio.InputError("--%s=%s: expected a comma list of numbers" % (name, value)) from None
  return FinetuneConfig(**values)
