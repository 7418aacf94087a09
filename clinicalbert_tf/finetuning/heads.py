"""Fine-tuning heads: one class per head, owning everything that differs between them.

  TokenClassificationHead     NER / de-identification (`tasks.TaggedSentence`): sequence output ->
                              dropout -> one linear layer per token. Each word's label sits on its
                              first word piece; the loss is the mean cross entropy over those
                              positions only. Scored by exact-span F1 (seqeval, IOB2, strict).
  SequenceClassificationHead  NLI (`tasks.SentencePair`): pooled [CLS] output -> dropout -> linear
                              layer (Google's `run_classifier`). Scored by accuracy.

Both use Google's variable names (`output_weights`, `output_bias`, ops under scope `loss`), so a
fine-tuned checkpoint loads wherever Google's does. A head converts examples to features, says what
a record holds, builds the output layer and loss, the model_fn's EVAL metrics and PREDICT outputs,
reassembles predictions per example, scores them and writes the prediction files.

A head also owns every decision the application side needs: what it outputs (`output`: word labels
or a pair label), how it decodes probabilities (`decode`), the examples it predicts on without
labels (`prediction_examples`), the word rules it reads raw text by (`word_rules`,
`finetuning/word_rules.py`) and its HuggingFace architecture (`hf_architecture`). Heads are
registered by name (`register_head`); `head_for_task` picks among the heads that fit a task (the
first registered for its kind unless `run_finetune.py --head` names another). Nothing outside this
module compares head names: adding a head (a CRF or span head) is one class and one `register_head`
line. The record kept next to a checkpoint is `head_record.py`'s.

For a prediction module: `head.serving_outputs(...)` builds the output layer as training does (same
variables, is_training False); `head.convert_examples`, `head.assemble_predictions` and (token
head) `head.word_probabilities` turn examples into inputs and outputs back into labels.
"""

import collections
import os

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import tasks
from clinicalbert_tf.evaluation import finetune as finetune_scores
from clinicalbert_tf.finetuning import data
from clinicalbert_tf.finetuning import metrics
from clinicalbert_tf.finetuning import word_rules as word_rules_lib

# Dropout before the output layer (Google's run_classifier value).
HEAD_DROPOUT = 0.1

# What a head outputs (`Head.output`): a label per word (spans follow), or one label per pair.
WORD_LABELS = "word_labels"
PAIR_LABEL = "pair_label"


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


def _output_layer(hidden_size, num_labels):
  output_weights = tf.get_variable(
      "output_weights", [num_labels, hidden_size],
      initializer=tf.truncated_normal_initializer(stddev=0.02))
  output_bias = tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())
  return output_weights, output_bias


def _bert(bert_config, is_training, input_ids, input_mask, segment_ids, use_one_hot_embeddings,
          output_positions=None):
  """The encoder under Google's variable names (`bert/...`); see `modeling.BertModel` for
  `output_positions` (the last layer computed only there)."""
  return modeling.BertModel(bert_config, is_training, input_ids, input_mask=input_mask,
                            token_type_ids=segment_ids,
                            use_one_hot_embeddings=use_one_hot_embeddings,
                            # A fixed name, not a default one: a second copy built with
                            # reuse (`inference.model.build_position_outputs`) finds "bert/...".
                            scope="bert", output_positions=output_positions)


class Head(object):
  """What every head answers. Subclasses set the class attributes and implement the methods.

  Attributes:
    name: the `head` value of `finetune_head.json` (and of `export_hf.py --head`).
    task_kinds: the task kinds (`tasks.Task.kind`) it can fine-tune.
    output: WORD_LABELS or PAIR_LABEL.
    word_rules: the word rules it can read raw text by (`word_rules.NAMES`); the first is the
      default for a task that names none.
    hf_architecture: its HuggingFace class name (None: no HuggingFace equivalent).
    hf_with_pooler: whether its HuggingFace model holds the pooler.
    metric: the headline metric (the grid picks by it on dev).
    paper_epochs: the paper's grid of training epochs for this head.
    min_seq_length: the shortest `max_seq_length` that leaves room for a word.
    label_list: id -> label (the output layer's row order).
  """

  name = None
  task_kinds = ()
  output = None
  word_rules = ()
  hf_architecture = None
  hf_with_pooler = True
  metric = None
  paper_epochs = ()
  min_seq_length = None

  def __init__(self, label_list):
    self.label_list = list(label_list)
    self.label_map = {label: i for i, label in enumerate(self.label_list)}

  @property
  def num_labels(self):
    return len(self.label_list)

  @classmethod
  def word_rules_for(cls, task):
    """The word rules a task's training files were split by (the task's own, else the default)."""
    rules = getattr(task, "word_rules", None) or cls.word_rules[0]
    if rules not in cls.word_rules:
      raise ValueError("task %s splits words by %r, which head %s cannot read text by" %
                       (task.name, rules, cls.name))
    return rules

  # Prediction on raw text.

  def prediction_examples(self, units):
    """Unlabelled examples for `units` (the head's kind of input), for `convert_examples`."""
    raise NotImplementedError()

  def decode(self, probabilities, min_probability=None):
    """The head's decision from one unit's probabilities (see the subclass)."""
    raise NotImplementedError()

  # Examples -> features -> records.

  def convert_examples(self, examples, max_seq_length, tokenizer, split="", window_context=None):
    """Features for all examples, in order (`_convert_example` each). Logs counts, never text.

    Args:
      examples: the head's kind of example (see the subclass).
      max_seq_length: word pieces per input, [CLS] and [SEP] included.
      tokenizer: a `tokenization.FullTokenizer`.
      split: a name for the log lines (`train`, `dev`, ...).
      window_context: a word-labelling head's windows of a long sentence: pieces of context on
        each side of a window's core (`data.plan_word_windows`; None: training's windows).
    """
    features = []
    cut = 0
    for i, example in enumerate(examples):
      converted, n = self._convert_example(i, example, max_seq_length, tokenizer, window_context)
      features.extend(converted)
      cut += int(n)
    self._log_conversion(split, len(examples), len(features), cut, max_seq_length)
    return features

  def _convert_example(self, example_index, example, max_seq_length, tokenizer,
                       window_context=None):
    """(features of one example, how many of its pieces were cut)."""
    raise NotImplementedError()

  def _log_conversion(self, split, num_examples, num_features, cut, max_seq_length):
    """Logs what the conversion made (counts only)."""
    raise NotImplementedError()

  def padding_feature(self, max_seq_length):
    """A feature that counts for nothing (TPU batches must be full)."""
    raise NotImplementedError()

  def record_spec(self, seq_length):
    """{record field: tf.FixedLenFeature} of the records `record_values` makes."""
    return {
        "input_ids": tf.FixedLenFeature([seq_length], tf.int64),
        "input_mask": tf.FixedLenFeature([seq_length], tf.int64),
        "segment_ids": tf.FixedLenFeature([seq_length], tf.int64),
        "is_real_example": tf.FixedLenFeature([], tf.int64),
    }

  def record_values(self, feature):
    """An OrderedDict {record field: list of ints} for one feature, in the file's field order."""
    record = collections.OrderedDict()
    record["input_ids"] = list(feature.input_ids)
    record["input_mask"] = list(feature.input_mask)
    record["segment_ids"] = list(feature.segment_ids)
    record.update(self._label_values(feature))
    record["is_real_example"] = [int(feature.is_real_example)]
    return record

  def _label_values(self, feature):
    raise NotImplementedError()

  # The model.

  def create_model(self, bert_config, is_training, features, is_real_example,
                   use_one_hot_embeddings):
    """The encoder, output layer and loss over a batch of records.

    Args:
      bert_config: a `modeling.BertConfig`.
      is_training: dropout on.
      features: the batch from `input_fn` ({record field: int32 tensor}).
      is_real_example: [B] float32, 0 for padding inputs.
      use_one_hot_embeddings: as `modeling.BertModel` (TPU).

    Returns:
      A dict of tensors with at least "loss" (scalar); the rest is for `eval_metrics` and
      `predict_outputs`.
    """
    raise NotImplementedError()

  def serving_outputs(self, bert_config, input_ids, input_mask, segment_ids):
    """The prediction tensors, built with is_training=False under the training variable names.

    Args:
      bert_config: a `modeling.BertConfig`.
      input_ids, input_mask, segment_ids: [B, L] int32.

    Returns:
      {"probabilities": float32, "label_ids": int32} (shapes per head).
    """
    raise NotImplementedError()

  def eval_metrics(self, model_outputs):
    """The TPUEstimatorSpec `eval_metrics` (metric_fn, tensors) for `create_model`'s outputs."""
    raise NotImplementedError()

  def predict_outputs(self, model_outputs):
    """The PREDICT tensors: `serving_outputs`' keys plus per input "loss_sum", "label_count"."""
    raise NotImplementedError()

  # Predictions -> labels, scores and files.

  def assemble_predictions(self, examples, features, outputs):
    """One prediction per example from per-feature outputs.

    Args:
      examples: the examples `features` were converted from.
      features: their features (real ones, or with padding marked `is_real_example=False`).
      outputs: per real feature, a dict of the `serving_outputs` / `predict_outputs` arrays.
    """
    raise NotImplementedError()

  def score(self, examples, predicted):
    """The metrics of `predicted` (from `assemble_predictions`) against the examples' labels."""
    raise NotImplementedError()

  def write_predictions(self, task, examples, predicted, outputs, output_dir, prefix):
    """Writes `<prefix>_predictions.*` (and the task's native files) to `output_dir`.

    Returns more metrics for the results (an official scorer's), or None.
    """
    raise NotImplementedError()

  def majority_baseline(self, train_examples, examples):
    """The metric of always predicting the most frequent training label (a sanity reference)."""
    raise NotImplementedError()


class TokenClassificationHead(Head):
  """NER: a label per word, predicted at its first word piece (see the module docstring)."""

  name = "token_classification"
  task_kinds = ("ner",)
  output = WORD_LABELS
  word_rules = (word_rules_lib.LINES_WHITESPACE, word_rules_lib.LINES_PUNCTUATION)
  hf_architecture = "BertForTokenClassification"
  hf_with_pooler = False  # HF's token classifier has no pooler; ours never trains it
  metric = "f1"
  paper_epochs = (2, 3, 4)
  min_seq_length = 3  # [CLS] word [SEP]

  def prediction_examples(self, units):
    """Unlabelled TaggedSentences of `units` (objects with `words`, e.g. word_rules.Sentence)."""
    return [tasks.TaggedSentence(guid="sentence-%d" % i, words=u.words, labels=None)
            for i, u in enumerate(units)]

  def decode(self, probabilities, min_probability=None):
    """One label per word from its label probabilities [num_words, num_labels].

    The most probable label, or, with `min_probability`, the most probable entity label wherever
    P(not O) = 1 - P(O) reaches it (recall over precision, as de-identification wants).

    Returns:
      (labels: one per word, ids: their label ids).
    """
    label_list = self.label_list
    ids = np.argmax(probabilities, axis=-1)
    if min_probability is not None and "O" in label_list and len(label_list) > 1:
      o = label_list.index("O")
      others = probabilities.copy()
      others[:, o] = -1.0
      entity = (1.0 - probabilities[:, o]) >= min_probability
      ids = np.where(entity, np.argmax(others, axis=-1), ids)
    return [label_list[i] for i in ids], ids

  def _convert_example(self, example_index, example, max_seq_length, tokenizer,
                       window_context=None):
    """Windows (`data.TokenFeatures`) of a `tasks.TaggedSentence` (labels None: unlabelled)."""
    return data.convert_tagged_sentence(example_index, example, self.label_map, max_seq_length,
                                        tokenizer, window_context)

  def _log_conversion(self, split, num_examples, num_features, cut, max_seq_length):
    logging.info("%s: %d sentences -> %d windows of at most %d pieces (%d sentences split, %d "
                 "words cut to fit)", split, num_examples, num_features, max_seq_length,
                 num_features - num_examples, cut)
    if cut:
      logging.warning("%s: %d words have more word pieces than a window holds; their first %d "
                      "pieces are kept", split, cut, max_seq_length - 2)

  def padding_feature(self, max_seq_length):
    zeros = [0] * max_seq_length
    return data.TokenFeatures(input_ids=zeros, input_mask=zeros, segment_ids=zeros,
                              label_ids=zeros, label_mask=zeros, is_real_example=False)

  def record_spec(self, seq_length):
    spec = super(TokenClassificationHead, self).record_spec(seq_length)
    spec["label_ids"] = tf.FixedLenFeature([seq_length], tf.int64)
    spec["label_mask"] = tf.FixedLenFeature([seq_length], tf.int64)
    return spec

  def _label_values(self, feature):
    return [("label_ids", list(feature.label_ids)), ("label_mask", list(feature.label_mask))]

  def _logits(self, bert_config, is_training, input_ids, input_mask, segment_ids,
              use_one_hot_embeddings, output_positions=None):
    """[B, L, num_labels] logits ([B, P, num_labels] at `output_positions` [B, P]), and the
    `loss` variable scope they were built in."""
    model = _bert(bert_config, is_training, input_ids, input_mask, segment_ids,
                  use_one_hot_embeddings, output_positions)
    output_layer = model.get_sequence_output()  # [B, L, H] (or [B, P, H])
    batch_size, seq_length, hidden_size = modeling.get_shape_list(output_layer, expected_rank=3)
    output_weights, output_bias = _output_layer(hidden_size, self.num_labels)
    with tf.variable_scope("loss") as scope:
      if is_training:
        output_layer = modeling.dropout(output_layer, HEAD_DROPOUT)
      flat = tf.reshape(output_layer, [-1, hidden_size])
      logits = tf.nn.bias_add(tf.matmul(flat, output_weights, transpose_b=True), output_bias)
      logits = tf.reshape(logits, [batch_size, seq_length, self.num_labels])
    return logits, scope

  def create_model(self, bert_config, is_training, features, is_real_example,
                   use_one_hot_embeddings):
    """Returns {"loss", "per_token_loss" [B, L], "logits" [B, L, C], "predictions" [B, L],
    "label_ids", "label_mask" [B, L] (zero on padding inputs)}."""
    label_mask = features["label_mask"] * tf.expand_dims(features["is_real_example"], -1)
    logits, scope = self._logits(bert_config, is_training, features["input_ids"],
                                 features["input_mask"], features["segment_ids"],
                                 use_one_hot_embeddings)
    with tf.name_scope(scope.original_name_scope):
      loss, per_token_loss = masked_token_loss(logits, features["label_ids"], label_mask)
      predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return {"loss": loss, "per_token_loss": per_token_loss, "logits": logits,
            "predictions": predictions, "label_ids": features["label_ids"],
            "label_mask": label_mask}

  @staticmethod
  def _prediction_tensors(logits):
    return {"probabilities": tf.nn.softmax(logits, axis=-1),  # [B, L, C]
            "label_ids": tf.argmax(logits, axis=-1, output_type=tf.int32)}  # [B, L]

  def serving_outputs(self, bert_config, input_ids, input_mask, segment_ids, output_positions=None):
    """{"probabilities": [B, L, C] float32, "label_ids": [B, L] int32}.

    With `output_positions` [B, P] (int32), the outputs are at those positions only ([B, P, C],
    [B, P]) and the last encoder layer is computed only there (`modeling.BertModel`): prediction
    reads a window only at the first pieces of the words it predicts.
    """
    logits, scope = self._logits(bert_config, False, input_ids, input_mask, segment_ids, False,
                                 output_positions)
    with tf.name_scope(scope.original_name_scope):
      return self._prediction_tensors(logits)

  def eval_metrics(self, model_outputs):
    def metric_fn(per_token_loss, label_ids, predictions, label_mask):
      weights = tf.cast(label_mask, tf.float32)
      return {
          "eval_token_accuracy": tf.metrics.accuracy(label_ids, predictions, weights=weights),
          "eval_loss": tf.metrics.mean(per_token_loss, weights=weights),
      }
    return metric_fn, [model_outputs[k] for k in ("per_token_loss", "label_ids", "predictions",
                                                  "label_mask")]

  def predict_outputs(self, model_outputs):
    mask = tf.cast(model_outputs["label_mask"], tf.float32)
    outputs = self._prediction_tensors(model_outputs["logits"])
    outputs["loss_sum"] = tf.reduce_sum(model_outputs["per_token_loss"], axis=-1)
    outputs["label_count"] = tf.reduce_sum(mask, axis=-1)
    return outputs

  def _gather_words(self, examples, features, per_feature):
    """Per example, per word: the row of `per_feature` (per real feature, [L, ...]) at the word's
    first piece, from the window that predicts the word.

    Raises:
      RuntimeError: if a word got no prediction or more than one (a bug, never bad input).
    """
    gathered = [[None] * len(e.words) for e in examples]
    real = [f for f in features if f.is_real_example]
    if len(real) != len(per_feature):
      raise RuntimeError("%d outputs for %d windows" % (len(per_feature), len(real)))
    for feature, values in zip(real, per_feature):
      positions = [i for i, m in enumerate(feature.label_mask) if m]
      row = gathered[feature.example_index]
      for word, position in zip(feature.word_indexes, positions):
        if row[word] is not None:
          raise RuntimeError("word %d of %s predicted twice" %
                             (word, examples[feature.example_index].guid))
        row[word] = values[position]
    for example, row in zip(examples, gathered):
      if any(value is None for value in row):
        raise RuntimeError("%s: a word got no prediction" % example.guid)
    return gathered

  def word_probabilities(self, examples, features, probabilities):
    """Per example a float32 array [num_words, C]: each word's probabilities at its first piece.

    Args:
      examples: the TaggedSentences.
      features: their windows (real ones only or with padding marked).
      probabilities: per real window, its [L, C] "probabilities".
    """
    rows = self._gather_words(examples, features, [np.asarray(p) for p in probabilities])
    return [np.asarray(r, dtype=np.float32).reshape([len(r), self.num_labels]) for r in rows]

  def assemble_predictions(self, examples, features, outputs):
    """Per example the list of predicted labels, one per word (the argmax at its first piece).

    `outputs`: per real window a dict with "label_ids" ([L] ints, as `serving_outputs` gives).
    """
    rows = self._gather_words(examples, features, [o["label_ids"] for o in outputs])
    return [[self.label_list[int(i)] for i in row] for row in rows]

  def score(self, examples, predicted):
    return metrics.ner_metrics([e.labels for e in examples], predicted)

  def write_predictions(self, task, examples, predicted, outputs, output_dir, prefix):
    """CoNLL `word gold predicted` lines, and the task's native files (e.g. i2b2 2010 `.con`)."""
    text = tasks.format_conll(examples, [[p] for p in predicted])
    fileio.write_text_atomic(os.path.join(output_dir, prefix + "_predictions.txt"), text)
    native_dir = os.path.join(output_dir, prefix + "_con")
    native = task.write_native_predictions(examples, predicted, native_dir)
    if native:
      logging.info("wrote %d .con files to %s", len(native), native_dir)
    # i2b2 2006 / 2014: the official i2b2 2014 scorer's numbers too, next to seqeval's.
    return finetune_scores.official_scores(task, examples, predicted, output_dir, prefix)

  def majority_baseline(self, train_examples, examples):
    counts = collections.Counter(l for s in train_examples for l in s.labels)
    label = counts.most_common(1)[0][0] if counts else "O"
    gold = [s.labels for s in examples]
    return metrics.ner_metrics(gold, [[label if label.startswith("B-") or label == "O" else "O"]
                                      * len(g) for g in gold])["f1"]


class SequenceClassificationHead(Head):
  """NLI: one label per sentence pair, from the pooled [CLS] output (Google's run_classifier)."""

  name = "sequence_classification"
  task_kinds = ("nli",)
  output = PAIR_LABEL
  word_rules = (word_rules_lib.SENTENCE_PAIRS,)
  hf_architecture = "BertForSequenceClassification"
  metric = "accuracy"
  paper_epochs = (3, 4)
  min_seq_length = 4  # [CLS] a [SEP] [SEP]

  def prediction_examples(self, units):
    """Unlabelled SentencePairs of `units` (objects with `text` and `text_b`)."""
    return [tasks.SentencePair(guid="pair-%d" % i, text_a=u.text, text_b=u.text_b, label=None)
            for i, u in enumerate(units)]

  def decode(self, probabilities, min_probability=None):  # pylint: disable=unused-argument
    """(the most probable label, {label: probability rounded to 6 places}) of one pair."""
    return self.label_list[int(np.argmax(probabilities))], {
        label: round(float(p), 6) for label, p in zip(self.label_list, probabilities)}

  def _convert_example(self, example_index, example, max_seq_length, tokenizer,
                       window_context=None):  # pylint: disable=unused-argument
    """One `data.PairFeatures` for a `tasks.SentencePair` (label None: unlabelled)."""
    feature, truncated = data.convert_sentence_pair(example_index, example, self.label_map,
                                                    max_seq_length, tokenizer)
    return [feature], truncated

  def _log_conversion(self, split, num_examples, num_features, cut, max_seq_length):
    logging.info("%s: %d pairs (%d truncated to %d pieces)", split, num_examples, cut,
                 max_seq_length)

  def padding_feature(self, max_seq_length):
    zeros = [0] * max_seq_length
    return data.PairFeatures(input_ids=zeros, input_mask=zeros, segment_ids=zeros, label_id=0,
                             is_real_example=False)

  def record_spec(self, seq_length):
    spec = super(SequenceClassificationHead, self).record_spec(seq_length)
    spec["label_ids"] = tf.FixedLenFeature([], tf.int64)
    return spec

  def _label_values(self, feature):
    return [("label_ids", [feature.label_id])]

  def _logits(self, bert_config, is_training, input_ids, input_mask, segment_ids,
              use_one_hot_embeddings):
    """[B, num_labels] logits, and the `loss` variable scope they were built in."""
    model = _bert(bert_config, is_training, input_ids, input_mask, segment_ids,
                  use_one_hot_embeddings)
    output_layer = model.get_pooled_output()  # [B, H]
    hidden_size = modeling.get_shape_list(output_layer, expected_rank=2)[-1]
    output_weights, output_bias = _output_layer(hidden_size, self.num_labels)
    with tf.variable_scope("loss") as scope:
      if is_training:
        output_layer = modeling.dropout(output_layer, HEAD_DROPOUT)
      logits = tf.nn.bias_add(tf.matmul(output_layer, output_weights, transpose_b=True),
                              output_bias)
    return logits, scope

  def create_model(self, bert_config, is_training, features, is_real_example,
                   use_one_hot_embeddings):
    """Returns {"loss", "per_example_loss" [B], "logits" [B, C], "probabilities" [B, C],
    "label_ids" [B], "is_real_example" [B] float}."""
    logits, scope = self._logits(bert_config, is_training, features["input_ids"],
                                 features["input_mask"], features["segment_ids"],
                                 use_one_hot_embeddings)
    with tf.name_scope(scope.original_name_scope):
      probabilities = tf.nn.softmax(logits, axis=-1)
      log_probs = tf.nn.log_softmax(logits, axis=-1)
      one_hot_labels = tf.one_hot(features["label_ids"], depth=self.num_labels, dtype=tf.float32)
      per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
      loss = tf.reduce_mean(per_example_loss)
    return {"loss": loss, "per_example_loss": per_example_loss, "logits": logits,
            "probabilities": probabilities, "label_ids": features["label_ids"],
            "is_real_example": is_real_example}

  def serving_outputs(self, bert_config, input_ids, input_mask, segment_ids):
    """{"probabilities": [B, C] float32, "label_ids": [B] int32}."""
    logits, scope = self._logits(bert_config, False, input_ids, input_mask, segment_ids, False)
    with tf.name_scope(scope.original_name_scope):
      probabilities = tf.nn.softmax(logits, axis=-1)
    return {"probabilities": probabilities,
            "label_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int32)}

  def eval_metrics(self, model_outputs):
    def metric_fn(per_example_loss, label_ids, logits, is_real_example):
      predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
      return {
          "eval_accuracy": tf.metrics.accuracy(label_ids, predictions, weights=is_real_example),
          "eval_loss": tf.metrics.mean(per_example_loss, weights=is_real_example),
      }
    return metric_fn, [model_outputs[k] for k in ("per_example_loss", "label_ids", "logits",
                                                  "is_real_example")]

  def predict_outputs(self, model_outputs):
    probabilities = model_outputs["probabilities"]
    return {"probabilities": probabilities,
            "label_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "loss_sum": model_outputs["per_example_loss"],
            "label_count": model_outputs["is_real_example"]}

  def assemble_predictions(self, examples, features, outputs):
    """Per example the predicted label (the argmax of its "probabilities")."""
    if len(outputs) != len(examples):
      raise RuntimeError("%d outputs for %d sentence pairs" % (len(outputs), len(examples)))
    return [self.label_list[int(np.argmax(o["probabilities"]))] for o in outputs]

  def score(self, examples, predicted):
    return metrics.classification_metrics([e.label for e in examples], predicted,
                                          self.label_list)

  def write_predictions(self, task, examples, predicted, outputs, output_dir, prefix):
    """A TSV: guid, gold, predicted and each label's probability."""
    lines = ["\t".join(["guid", "gold", "predicted"] + ["p_" + l for l in self.label_list])]
    for e, p, o in zip(examples, predicted, outputs):
      lines.append("\t".join([e.guid, e.label, p] + ["%.6f" % x for x in o["probabilities"]]))
    fileio.write_text_atomic(os.path.join(output_dir, prefix + "_predictions.tsv"),
                             "\n".join(lines) + "\n")

  def majority_baseline(self, train_examples, examples):
    counts = collections.Counter(e.label for e in train_examples)
    label = counts.most_common(1)[0][0]
    return sum(e.label == label for e in examples) / max(1, len(examples))


# --------------------------------------------------------------------------------------------------
# The registry of heads: which heads fit a task, the head of a name or a HuggingFace architecture.

_HEADS = collections.OrderedDict()


def register_head(head_class):
  """Adds a Head class to the registry under its `name` (usable as a decorator)."""
  _HEADS[head_class.name] = head_class
  return head_class


register_head(TokenClassificationHead)
register_head(SequenceClassificationHead)

HEAD_NAMES = tuple(sorted(_HEADS))  # the heads of this module (`run_finetune.py --head`)


def head_names():
  """The names of every registered head, sorted (heads registered later included)."""
  return tuple(sorted(_HEADS))


def head_class(name, where="--head"):
  """The registered Head class called `name`; InputError naming `where` if there is none."""
  if name not in _HEADS:
    raise fileio.InputError("%s: %r is not a head: expected one of %s" %
                            (where, name, ", ".join(head_names())))
  return _HEADS[name]


def heads_for_task(task):
  """The names of the heads that can fine-tune `task`, the default first."""
  return [name for name, cls in _HEADS.items() if task.kind in cls.task_kinds]


def head_for_task(task, label_list, name=None):
  """The head that fine-tunes `task` (a `tasks.Task`) with `label_list` (index = label id).

  Args:
    task: the task.
    label_list: its labels.
    name: a head name (`run_finetune.py --head`), or None for the task's default.

  Raises:
    InputError: `name` is no head, or a head that does not fit the task.
  """
  fitting = heads_for_task(task)
  if not fitting:
    raise ValueError("task %s has kind %r, which no head handles" % (task.name, task.kind))
  if name is None:
    name = fitting[0]
  head_class(name)
  if name not in fitting:
    raise fileio.InputError("--head=%s does not fit task %s (a %s task): expected one of %s" %
                            (name, task.name, task.kind, ", ".join(fitting)))
  return _HEADS[name](label_list)


def hf_architectures():
  """{head name: HuggingFace architecture} of the heads that have one."""
  return {name: cls.hf_architecture for name, cls in _HEADS.items() if cls.hf_architecture}


def head_of_hf_architectures(architectures, default=None):
  """The name of the head whose HuggingFace class is among `architectures`, else `default`."""
  for name, cls in _HEADS.items():
    if cls.hf_architecture and cls.hf_architecture in (architectures or ()):
      return name
  return default
