"""Masked-LM and next-sentence pretraining (the computation of Google's `run_pretraining.py`).

The model, the input pipeline and the metrics are Google's, so a checkpoint written here continues
in Google's script and the other way round, and `--do_eval` reports the same numbers:

  * heads: `cls/predictions/transform/dense` (the config's activation) and
    `cls/predictions/transform/LayerNorm`, a decoder tied to `bert/embeddings/word_embeddings` with
    its own `cls/predictions/output_bias`; `cls/seq_relationship/output_weights` [2, H] and
    `output_bias` [2]. Masked-LM loss = sum(w * nll) / (sum(w) + 1e-5); total loss = masked LM +
    next sentence; the optimizer is `optimization.create_optimizer`, or `lamb.create_optimizer` with
    `optimizer="lamb"` (through `train_op.create_train_op`).
  * input: the seven features `create_pretraining_data.py` writes. Training repeats the files,
    shuffles them, reads up to 4 at a time (sloppy interleave) and shuffles records in a buffer of
    100; evaluation reads the files in order, repeated, for `max_eval_steps` batches.
  * evaluation: `masked_lm_accuracy`, `masked_lm_loss`, `next_sentence_accuracy`,
    `next_sentence_loss` (weighted as Google's `metric_fn`), `loss`, `global_step`, written to
    `<output_dir>/eval_results.txt` as `key = value` lines in sorted order.

What is different from Google's script (same results, see README "Differences"): records are parsed
a batch at a time; the training loss uses a fused sparse cross-entropy (equal to Google's one-hot
form up to float rounding); bad inputs are reported before the graph is built; and the flags
`keep_checkpoint_max`, `use_xla`, `use_amp`, `num_accumulation_steps`, `distribution_strategy`,
`log_every_n_steps`, `optimizer` exist, and for held-out evaluation `eval_input_file`,
`eval_every_n_steps` and `keep_best_checkpoint` (see `eval_history.py`).
"""

import contextlib
import math
import os
import struct

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import estimator as estimator_lib
from clinicalbert_tf import eval_history
from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import optimization
from clinicalbert_tf import train_op as train_op_lib

EVAL_RESULTS_FILE = "eval_results.txt"
# Google's record shuffle buffer (training input).
SHUFFLE_BUFFER_SIZE = 100


def feature_spec(max_seq_length, max_predictions_per_seq):
  """The `tf.io.parse_example` spec of a pretraining record (Google's names, shapes and types)."""
  return {
      "input_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
      "input_mask": tf.FixedLenFeature([max_seq_length], tf.int64),
      "segment_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
      "masked_lm_positions": tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
      "masked_lm_ids": tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
      "masked_lm_weights": tf.FixedLenFeature([max_predictions_per_seq], tf.float32),
      "next_sentence_labels": tf.FixedLenFeature([1], tf.int64),
  }


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


def gather_indexes(sequence_tensor, positions):
  """Gathers the vectors at `positions` [batch, n] of `sequence_tensor` [batch, seq, width].

  Returns:
    [batch * n, width].
  """
  sequence_shape = modeling.get_shape_list(sequence_tensor, expected_rank=3)
  batch_size = sequence_shape[0]
  seq_length = sequence_shape[1]
  width = sequence_shape[2]

  flat_sequence_tensor = tf.reshape(sequence_tensor, [batch_size * seq_length, width])
  return modeling.gather_rows(flat_sequence_tensor, positions, seq_length)


def get_masked_lm_output(bert_config, input_tensor, output_weights, positions, label_ids,
                         label_weights, is_training=False, gathered=False):
  """The masked-LM head and loss.

  Args:
    bert_config: `modeling.BertConfig`.
    input_tensor: [batch, seq, hidden] sequence output, or with `gathered` the rows at
      `positions` already ([batch, max_predictions, hidden], as
      `BertModel(output_positions=positions)` gives them).
    output_weights: [vocab, hidden] word embedding table (the tied decoder).
    positions, label_ids: [batch, max_predictions] int32.
    label_weights: [batch, max_predictions] float32, 1.0 for real predictions, 0.0 for padding.
    is_training: when True the per-prediction loss comes from the fused sparse cross-entropy (same
      value, cheaper gradient); otherwise from the log-probabilities as in Google's code.
    gathered: `input_tensor` holds only the rows at `positions`.

  Returns:
    (loss, per_example_loss [batch * max_predictions], log_probs [batch * max_predictions, vocab]).
  """
  if gathered:
    # [batch * max_predictions, hidden]
    input_tensor = tf.reshape(input_tensor, [-1, bert_config.hidden_size])
  else:
    input_tensor = gather_indexes(input_tensor, positions)

  with tf.variable_scope("cls/predictions"):
    # One more non-linear transformation before the output layer (used only in pretraining).
    with tf.variable_scope("transform"):
      input_tensor = modeling.dense(
          input_tensor,
          bert_config.hidden_size,
          activation=modeling.get_activation(bert_config.hidden_act),
          name="dense",
          kernel_initializer=modeling.create_initializer(bert_config.initializer_range))
      input_tensor = modeling.layer_norm(input_tensor)

    # The decoder is the input embedding matrix; only the bias is the head's own.
    output_bias = tf.get_variable(
        "output_bias", shape=[bert_config.vocab_size], initializer=tf.zeros_initializer())
    # [batch * max_predictions, vocab]
    logits = tf.matmul(input_tensor, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)

    label_ids = tf.reshape(label_ids, [-1])
    label_weights = tf.reshape(label_weights, [-1])

    if is_training:
      per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=label_ids, logits=logits)
    else:
      # -log p(label): the one element Google's `-sum(log_probs * one_hot)` keeps.
      per_example_loss = -tf.gather(log_probs, label_ids[:, None], batch_dims=1)[:, 0]

    # Positions are zero-padded when a sequence has fewer than max_predictions masks; their weight
    # is 0, and 1e-5 keeps an all-padding batch finite.
    numerator = tf.reduce_sum(label_weights * per_example_loss)
    denominator = tf.reduce_sum(label_weights) + 1e-5
    loss = numerator / denominator

  return (loss, per_example_loss, log_probs)


def get_next_sentence_output(bert_config, input_tensor, labels):
  """The next-sentence head: 0 = "is next", 1 = "random sentence".

  Returns:
    (loss, per_example_loss [batch], log_probs [batch, 2]).
  """
  with tf.variable_scope("cls/seq_relationship"):
    output_weights = tf.get_variable(
        "output_weights",
        shape=[2, bert_config.hidden_size],
        initializer=modeling.create_initializer(bert_config.initializer_range))
    output_bias = tf.get_variable("output_bias", shape=[2], initializer=tf.zeros_initializer())

    logits = tf.matmul(input_tensor, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    labels = tf.reshape(labels, [-1])
    one_hot_labels = tf.one_hot(labels, depth=2, dtype=tf.float32)
    per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
    loss = tf.reduce_mean(per_example_loss)
    return (loss, per_example_loss, log_probs)


def metric_fn(masked_lm_example_loss, masked_lm_log_probs, masked_lm_ids, masked_lm_weights,
              next_sentence_example_loss, next_sentence_log_probs, next_sentence_labels):
  """Google's evaluation metrics (streaming, weighted by `masked_lm_weights`)."""
  masked_lm_log_probs = tf.reshape(masked_lm_log_probs, [-1, masked_lm_log_probs.shape[-1]])
  masked_lm_predictions = tf.argmax(masked_lm_log_probs, axis=-1, output_type=tf.int32)
  masked_lm_example_loss = tf.reshape(masked_lm_example_loss, [-1])
  masked_lm_ids = tf.reshape(masked_lm_ids, [-1])
  masked_lm_weights = tf.reshape(masked_lm_weights, [-1])
  masked_lm_accuracy = tf.metrics.accuracy(
      labels=masked_lm_ids, predictions=masked_lm_predictions, weights=masked_lm_weights)
  masked_lm_mean_loss = tf.metrics.mean(values=masked_lm_example_loss, weights=masked_lm_weights)

  next_sentence_log_probs = tf.reshape(next_sentence_log_probs,
                                       [-1, next_sentence_log_probs.shape[-1]])
  next_sentence_predictions = tf.argmax(next_sentence_log_probs, axis=-1, output_type=tf.int32)
  next_sentence_labels = tf.reshape(next_sentence_labels, [-1])
  next_sentence_accuracy = tf.metrics.accuracy(
      labels=next_sentence_labels, predictions=next_sentence_predictions)
  next_sentence_mean_loss = tf.metrics.mean(values=next_sentence_example_loss)

  return {
      "masked_lm_accuracy": masked_lm_accuracy,
      "masked_lm_loss": masked_lm_mean_loss,
      "next_sentence_accuracy": next_sentence_accuracy,
      "next_sentence_loss": next_sentence_mean_loss,
  }


def model_fn_builder(bert_config, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, num_accumulation_steps=1,
                     use_amp=False, optimizer="adamw"):
  """The `model_fn` closure for `estimator.build_estimator` (Google's signature, plus extras)."""

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator / Estimator."""
    logging.info("*** Features ***")
    for name in sorted(features.keys()):
      logging.info("  name = %s, shape = %s", name, features[name].shape)

    input_ids = features["input_ids"]
    input_mask = features["input_mask"]
    segment_ids = features["segment_ids"]
    masked_lm_positions = features["masked_lm_positions"]
    masked_lm_ids = features["masked_lm_ids"]
    masked_lm_weights = features["masked_lm_weights"]
    next_sentence_labels = features["next_sentence_labels"]

    is_training = (mode == tf.estimator.ModeKeys.TRAIN)

    model = modeling.BertModel(
        config=bert_config,
        is_training=is_training,
        input_ids=input_ids,
        input_mask=input_mask,
        token_type_ids=segment_ids,
        use_one_hot_embeddings=use_one_hot_embeddings,
        # The losses read the last layer only at the masked positions and [CLS], so it is computed
        # only there: the same losses for 1/num_hidden_layers less work (BertModel's docstring).
        output_positions=masked_lm_positions)

    (masked_lm_loss, masked_lm_example_loss, masked_lm_log_probs) = get_masked_lm_output(
        bert_config, model.get_sequence_output(), model.get_embedding_table(),
        masked_lm_positions, masked_lm_ids, masked_lm_weights, is_training=is_training,
        gathered=True)

    (next_sentence_loss, next_sentence_example_loss, next_sentence_log_probs) = (
        get_next_sentence_output(bert_config, model.get_pooled_output(), next_sentence_labels))

    total_loss = masked_lm_loss + next_sentence_loss

    tvars = tf.trainable_variables()
    scaffold_fn = checkpoints.init_from_checkpoint_in_model_fn(init_checkpoint, tvars, use_tpu)

    if mode == tf.estimator.ModeKeys.TRAIN:
      train_op = train_op_lib.create_train_op(
          total_loss, learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          num_accumulation_steps=num_accumulation_steps, use_amp=use_amp, tvars=tvars,
          optimizer=optimizer)
      if not use_tpu:
        # TensorBoard: the Estimator adds `loss`; these are the batch's values.
        weights = tf.reshape(masked_lm_weights, [-1])
        predictions = tf.argmax(masked_lm_log_probs, axis=-1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predictions, tf.reshape(masked_lm_ids, [-1])), tf.float32)
        tf.summary.scalar("masked_lm_accuracy",
                          tf.reduce_sum(correct * weights) / (tf.reduce_sum(weights) + 1e-5))
        tf.summary.scalar("masked_lm_loss", masked_lm_loss)
        tf.summary.scalar("next_sentence_loss", next_sentence_loss)
        tf.summary.scalar("learning_rate", optimization.learning_rate_schedule(
            learning_rate, num_train_steps, num_warmup_steps))
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=total_loss, train_op=train_op, scaffold_fn=scaffold_fn)

    if mode == tf.estimator.ModeKeys.EVAL:
      eval_metrics = (metric_fn, [
          masked_lm_example_loss, masked_lm_log_probs, masked_lm_ids, masked_lm_weights,
          next_sentence_example_loss, next_sentence_log_probs, next_sentence_labels
      ])
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=total_loss, eval_metrics=eval_metrics, scaffold_fn=scaffold_fn)

    raise ValueError("Only TRAIN and EVAL modes are supported: %s" % mode)

  return model_fn


# ------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------


def _decode_batch(records, name_to_features):
  """Parses a batch of serialized examples; int64 -> int32 (what the model and TPUs take)."""
  example = tf.io.parse_example(records, name_to_features)
  for name in list(example.keys()):
    t = example[name]
    if t.dtype == tf.int64:
      t = tf.cast(t, tf.int32)
    example[name] = t
  return example


def input_fn_builder(input_files, max_seq_length, max_predictions_per_seq, is_training,
                     num_cpu_threads=4, shuffle_buffer_size=SHUFFLE_BUFFER_SIZE):
  """Creates the `input_fn(params)` closure (Google's pipeline; `params["batch_size"]`).

  Args:
    input_files: list of TFRecord files.
    max_seq_length, max_predictions_per_seq: the record shapes.
    is_training: training order (repeat, shuffled files, interleave, record shuffle) or evaluation
      order (files in order, repeated).
    num_cpu_threads: at most this many files are read at once in training.
    shuffle_buffer_size: record shuffle buffer in training (Google: 100); 0 or 1 turns record
      shuffling off (used by tests to fix the batch order).

  Returns:
    `input_fn(params)` returning a dataset of feature dicts, `params["batch_size"]` per batch.
    Under a multi-worker strategy `params["input_context"]` shards the input between workers.
  """
  name_to_features = feature_spec(max_seq_length, max_predictions_per_seq)
  input_files = list(input_files)

  def input_fn(params):
    """The actual input function."""
    batch_size = params["batch_size"]
    input_context = params.get("input_context")
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0

    if is_training:
      d = tf.data.Dataset.from_tensor_slices(tf.constant(input_files))
      shard_records = False
      if pipelines > 1:
        if len(input_files) >= pipelines:
          d = d.shard(pipelines, pipeline_id)
        else:
          shard_records = True
      d = d.repeat()
      d = d.shuffle(buffer_size=len(input_files))
      # `cycle_length` files are read in parallel; non-deterministic order adds randomness (as
      # Google's `sloppy=True`).
      cycle_length = min(num_cpu_threads, len(input_files))
      d = d.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length,
                       num_parallel_calls=cycle_length, deterministic=False)
      if shard_records:
        d = d.shard(pipelines, pipeline_id)
      if shuffle_buffer_size and shuffle_buffer_size > 1:
        d = d.shuffle(buffer_size=shuffle_buffer_size)
    else:
      d = tf.data.TFRecordDataset(input_files)
      if pipelines > 1:
        d = d.shard(pipelines, pipeline_id)
      # A fixed number of evaluation steps must not run out of data.
      d = d.repeat()

    # Fixed batch shapes (Google drops the remainder too); parse a whole batch at once.
    d = d.batch(batch_size, drop_remainder=True)
    d = d.map(lambda records: _decode_batch(records, name_to_features),
              num_parallel_calls=tf.data.experimental.AUTOTUNE)
    d = d.prefetch(tf.data.experimental.AUTOTUNE)
    return d

  return input_fn


def check_record_framing(path, flag_name="input_file"):
  """Walks a local TFRecord file's record headers (not their data) to its end: cheap, catches a cut.

  A TFRecord is `uint64 length, uint32 crc, data[length], uint32 crc`; seeking from header to
  header reads 12 bytes per record, so a file cut short (an interrupted copy) is named here
  rather than as a `DataLossError` deep into training. The CRCs are not checked (that would read
  every byte): a corrupt byte inside a record is reported when training reaches it (see
  `run_pretraining`). Remote files (`gs://...`) are not walked.

  Args:
    path: the TFRecord file.
    flag_name: the flag the file came from (`input_file`, `eval_input_file`), for the messages.

  Raises:
    InputError: a header or a record runs past the end of the file (naming the record's number
      and byte offset), or a length no record could have.
  """
  where = "--%s: " % flag_name
  if "://" in path or not os.path.isfile(path):
    return
  size = os.path.getsize(path)
  offset = 0
  number = 0
  with open(path, "rb") as f:
    while offset < size:
      f.seek(offset)
      header = f.read(12)
      if len(header) < 12:
        raise fileio.InputError(
            where + "%s is cut short: record %d at byte %d has a %d-byte header, expected "
            "12 (an interrupted copy? regenerate or copy it again)" %
            (path, number + 1, offset, len(header)))
      (length,) = struct.unpack("<Q", header[:8])
      end = offset + 12 + length + 4
      if end > size and number == 0:
        raise fileio.InputError(
            where + "%s is not a TFRecord file: its first record header claims %d bytes, "
            "the file has %d (expected records from create_pretraining_data.py)" %
            (path, length, size))
      if end > size:
        raise fileio.InputError(
            where + "%s is cut short: record %d at byte %d needs %d bytes, the file has %d "
            "(an interrupted copy? regenerate or copy it again)" %
            (path, number + 1, offset, end - offset, size - offset))
      offset = end
      number += 1


def check_records(input_files, max_seq_length, max_predictions_per_seq, flag_name="input_file"):
  """Checks each file's framing and its first record against the flags, before any graph is built.

  Args:
    input_files: the TFRecord files.
    max_seq_length, max_predictions_per_seq: the flags' values.
    flag_name: the flag the files came from (`input_file`, `eval_input_file`), for the messages.

  Raises:
    InputError: a file is cut short (`check_record_framing`), is empty, is not a TFRecord file of
      tf.train.Examples, lacks a feature, or has a sequence length / number of predictions other
      than the flags' (naming both values).
  """
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  where = "--%s: " % flag_name
  expected = {
      "input_ids": ("max_seq_length", max_seq_length),
      "input_mask": ("max_seq_length", max_seq_length),
      "segment_ids": ("max_seq_length", max_seq_length),
      "masked_lm_positions": ("max_predictions_per_seq", max_predictions_per_seq),
      "masked_lm_ids": ("max_predictions_per_seq", max_predictions_per_seq),
      "masked_lm_weights": ("max_predictions_per_seq", max_predictions_per_seq),
      "next_sentence_labels": (None, 1),
  }
  for path in input_files:
    check_record_framing(path, flag_name)
    try:
      first = next(iter(tf.io.tf_record_iterator(path)), None)
    except (tf.errors.OpError, IOError) as e:
      raise fileio.InputError(where + "%s is not a readable TFRecord file (%s)" %
                              (path, getattr(e, "message", e))) from e
    if first is None:
      raise fileio.InputError(where + "%s holds no records" % path)
    try:
      example = example_pb2.Example.FromString(first)
    except Exception as e:  # pylint: disable=broad-except
      raise fileio.InputError(where + "the first record of %s is not a tf.train.Example (%s)"
                              % (path, e)) from e
    features = example.features.feature
    missing = [name for name in expected if name not in features]
    if missing:
      raise fileio.InputError(
          where + "%s is not a pretraining record file (create_pretraining_data.py): "
          "missing feature(s) %s" % (path, ", ".join(missing)))
    for name, (flag, want) in expected.items():
      feature = features[name]
      have = len(feature.float_list.value) if name == "masked_lm_weights" else len(
          feature.int64_list.value)
      if have != want:
        if flag is None:
          raise fileio.InputError(where + "%s: feature %s has %d values, expected %d" %
                                  (path, name, have, want))
        raise fileio.InputError(
            where + "%s was written with %s=%d but --%s=%d (feature %s has %d values); "
            "pass --%s=%d or regenerate the records" %
            (path, flag, have, flag, want, name, have, flag, have))


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def write_eval_results(output_dir, result):
  """Logs the evaluation result and writes it as Google's `eval_results.txt`; returns its path."""
  logging.info("***** Eval results *****")
  for key in sorted(result.keys()):
    logging.info("  %s = %s", key, str(result[key]))
  return fileio.write_key_values(os.path.join(output_dir, EVAL_RESULTS_FILE), result)


@contextlib.contextmanager
def _data_errors_named(sources, init_checkpoint):
  """A corrupt record or checkpoint met mid-run becomes an InputError naming the files read.

  `check_records` reads headers and first records only; a byte flipped inside a later record (or
  a checkpoint's data cut short) surfaces inside the Estimator as a `DataLossError` (or an
  `OutOfRangeError` from the checkpoint reader) with no file name.

  Args:
    sources: (flag name, files) pairs, e.g. [("input_file", [...])], named in that order.
    init_checkpoint: the --init_checkpoint value (named too when set).
  """
  try:
    yield
  except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
    parts = []
    for flag_name, files in sources:
      shown = ", ".join(files[:5]) + (" and %d more" % (len(files) - 5) if len(files) > 5 else "")
      parts.append("--%s (%s)" % (flag_name, shown))
    what = " or ".join(parts)
    if init_checkpoint:
      what += " or --init_checkpoint=%s" % init_checkpoint
    raise fileio.InputError("corrupt data while reading %s: %s" %
                            (what, fileio.one_line(e))) from None


def _check_eval_flags(eval_input_file, eval_every_n_steps, keep_best_checkpoint, do_train, do_eval,
                      save_checkpoints_steps, max_eval_steps, use_tpu):
  """Checks the held-out evaluation flags; returns the --eval_input_file files (None: not given).

  Raises:
    InputError: a flag without the flags it needs, or --eval_every_n_steps that is not a
      multiple of --save_checkpoints_steps (evaluation reads the checkpoint saved at each
      multiple of N, so saves must fall on them).
  """
  if eval_every_n_steps is None or eval_every_n_steps < 0:
    raise fileio.InputError("--eval_every_n_steps=%s: expected 0 (off) or a positive integer" %
                            eval_every_n_steps)
  if eval_every_n_steps:
    if not do_train:
      raise fileio.InputError("--eval_every_n_steps=%d evaluates during training: it needs "
                              "--do_train" % eval_every_n_steps)
    if use_tpu:
      raise fileio.InputError("--eval_every_n_steps is not supported with --use_tpu")
    if eval_every_n_steps % save_checkpoints_steps:
      raise fileio.InputError(
          "--eval_every_n_steps=%d is not a multiple of --save_checkpoints_steps=%d: each "
          "evaluation reads the checkpoint saved at that step; pass --save_checkpoints_steps=%d "
          "(or another divisor of %d)" % (eval_every_n_steps, save_checkpoints_steps,
                                          math.gcd(eval_every_n_steps, save_checkpoints_steps),
                                          eval_every_n_steps))
    if max_eval_steps is None or max_eval_steps < 1:
      raise fileio.InputError("--max_eval_steps=%s: expected a positive integer" % max_eval_steps)
  if keep_best_checkpoint and not eval_every_n_steps:
    raise fileio.InputError("--keep_best_checkpoint keeps the best of the evaluations during "
                            "training: it needs --eval_every_n_steps")
  if eval_input_file is None:
    return None
  if not do_eval and not eval_every_n_steps:
    raise fileio.InputError("--eval_input_file is given but nothing evaluates: pass --do_eval "
                            "and/or --eval_every_n_steps")
  return fileio.expand_file_patterns(eval_input_file, "eval_input_file", skip_sidecars=True)


def run_pretraining(bert_config_file,
                    input_file,
                    output_dir,
                    init_checkpoint=None,
                    max_seq_length=128,
                    max_predictions_per_seq=20,
                    do_train=False,
                    do_eval=False,
                    train_batch_size=32,
                    eval_batch_size=8,
                    learning_rate=5e-5,
                    num_train_steps=100000,
                    num_warmup_steps=10000,
                    save_checkpoints_steps=1000,
                    iterations_per_loop=1000,
                    max_eval_steps=100,
                    use_tpu=False,
                    tpu_name=None,
                    tpu_zone=None,
                    gcp_project=None,
                    master=None,
                    num_tpu_cores=8,
                    keep_checkpoint_max=5,
                    use_xla=False,
                    use_amp=False,
                    num_accumulation_steps=1,
                    distribution_strategy="none",
                    log_every_n_steps=100,
                    optimizer="adamw",
                    eval_input_file=None,
                    eval_every_n_steps=0,
                    keep_best_checkpoint=False,
                    shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
                    seed=None):
  """Runs pretraining and/or evaluation as Google's `run_pretraining.py` main does.

  Arguments are the script's flags (see `run_pretraining.py`); `shuffle_buffer_size` and `seed` are
  for tests and benchmarks. Without `eval_input_file`, `eval_every_n_steps` and
  `keep_best_checkpoint` (additions), this is Google's flow: train, then evaluate on the training
  records. `eval_input_file` gives evaluation records of its own (read as Google's evaluation
  reads: files in order, repeated, `max_eval_steps` batches); `eval_every_n_steps` evaluates
  during training (`eval_history.EvalListener`: `<output_dir>/eval_history.jsonl`, summaries in
  `<output_dir>/eval`), and `keep_best_checkpoint` keeps the lowest-masked_lm_loss checkpoint in
  `<output_dir>/best`. Under multi_worker_mirrored only the chief evaluates.

  Returns:
    The evaluation result dict when `do_eval`, else None.

  Raises:
    InputError: a bad flag or input, before anything is built; or an init_checkpoint whose shapes
      differ from the model's.
    hooks.NanLossError: the loss became NaN or infinite.
  """
  if not do_train and not do_eval:
    raise fileio.InputError("at least one of --do_train or --do_eval must be set")
  if not output_dir:
    raise fileio.InputError("--output_dir is required")
  bert_config = checkpoints.load_bert_config(bert_config_file)
  if not input_file:
    raise fileio.InputError("--input_file is required (TFRecord files from "
                            "create_pretraining_data.py; a glob or a comma list)")
  input_files = fileio.expand_file_patterns(input_file, "input_file", skip_sidecars=True)
  for name, value in (("max_seq_length", max_seq_length),
                      ("max_predictions_per_seq", max_predictions_per_seq),
                      ("train_batch_size", train_batch_size), ("eval_batch_size", eval_batch_size),
                      ("num_accumulation_steps", num_accumulation_steps),
                      ("save_checkpoints_steps", save_checkpoints_steps)):
    if value is None or value < 1:
      raise fileio.InputError("--%s=%s: expected a positive integer" % (name, value))
  if do_train and (num_train_steps is None or num_train_steps < 1):
    raise fileio.InputError("--num_train_steps=%s: expected a positive integer" % num_train_steps)
  eval_files = _check_eval_flags(eval_input_file, eval_every_n_steps, keep_best_checkpoint,
                                 do_train, do_eval, save_checkpoints_steps, max_eval_steps,
                                 use_tpu)
  checkpoints.check_max_seq_length(max_seq_length, bert_config, bert_config_file)
  if max_predictions_per_seq > max_seq_length:
    raise fileio.InputError("--max_predictions_per_seq=%d exceeds --max_seq_length=%d" %
                            (max_predictions_per_seq, max_seq_length))
  if init_checkpoint:
    checkpoints.resolve_checkpoint(init_checkpoint)
  fileio.check_output_dir(output_dir)
  check_records(input_files, max_seq_length, max_predictions_per_seq)
  if eval_files is not None:
    check_records(eval_files, max_seq_length, max_predictions_per_seq, "eval_input_file")

  tf.io.gfile.makedirs(output_dir)
  logging.info("*** Input Files ***")
  for path in input_files:
    logging.info("  %s", path)
  # Evaluation reads --eval_input_file when given, else the training records (Google's).
  sources = [("input_file", input_files)]
  if eval_files is not None:
    logging.info("*** Eval Input Files ***")
    for path in eval_files:
      logging.info("  %s", path)
    sources.append(("eval_input_file", eval_files))
  else:
    eval_files = input_files

  run_config = estimator_lib.make_run_config(
      output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      keep_checkpoint_max=keep_checkpoint_max,
      iterations_per_loop=iterations_per_loop,
      use_tpu=use_tpu,
      tpu_name=tpu_name,
      tpu_zone=tpu_zone,
      gcp_project=gcp_project,
      master=master,
      num_tpu_cores=num_tpu_cores,
      distribution_strategy=distribution_strategy,
      use_xla=use_xla,
      log_every_n_steps=log_every_n_steps,
      seed=seed,
      use_amp=use_amp)

  model_fn = model_fn_builder(
      bert_config=bert_config,
      init_checkpoint=init_checkpoint,
      learning_rate=learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=num_warmup_steps,
      use_tpu=use_tpu,
      use_one_hot_embeddings=use_tpu,
      num_accumulation_steps=num_accumulation_steps,
      use_amp=use_amp,
      optimizer=optimizer)

  estimator = estimator_lib.build_estimator(
      model_fn,
      run_config,
      train_batch_size=train_batch_size,
      eval_batch_size=eval_batch_size,
      use_tpu=use_tpu,
      distribution_strategy=distribution_strategy,
      num_accumulation_steps=num_accumulation_steps)

  eval_input_fn = input_fn_builder(
      input_files=eval_files,
      max_seq_length=max_seq_length,
      max_predictions_per_seq=max_predictions_per_seq,
      is_training=False)

  if do_train:
    logging.info("***** Running training *****")
    logging.info("  Batch size = %d (x %d accumulation steps)", train_batch_size,
                 num_accumulation_steps)
    train_input_fn = input_fn_builder(
        input_files=input_files,
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        is_training=True,
        shuffle_buffer_size=shuffle_buffer_size)
    # Evaluation during training is a checkpoint-save listener, not tf.estimator.train_and_evaluate:
    # train_and_evaluate evaluates after every save its throttle_secs lets through (every N steps
    # only if checkpoints are saved every N steps and no oftener), again after the save a resumed
    # run makes at the step it resumes from, and under multi_worker_mirrored only on an
    # "evaluator" task. EvalListener evaluates each save at a multiple of N once, on the chief.
    train_kwargs, listener = {}, None
    if eval_every_n_steps and estimator_lib.is_chief(distribution_strategy):
      listener = eval_history.EvalListener(
          lambda path: estimator.evaluate(input_fn=eval_input_fn, steps=max_eval_steps,
                                          checkpoint_path=path),
          output_dir, eval_every_n_steps, keep_best=keep_best_checkpoint)
      if distribution_strategy == "multi_worker_mirrored":
        # Estimator refuses saving listeners under a multi-worker strategy.
        train_kwargs["hooks"] = [eval_history.CheckpointPollingHook(listener, output_dir)]
      else:
        train_kwargs["saving_listeners"] = [listener]
    # With accumulation each global step takes N input batches; Estimator counts global steps.
    with _data_errors_named(sources, init_checkpoint):
      estimator.train(input_fn=train_input_fn, max_steps=num_train_steps, **train_kwargs)
      if listener is not None:
        # The checkpoint saved as training ends (multi-worker: the one the hook cannot see).
        listener.maybe_evaluate(tf.train.latest_checkpoint(output_dir) or "")

  result = None
  if do_eval:
    if not estimator_lib.is_chief(distribution_strategy):
      logging.info("Evaluation runs on the chief only; this worker is done.")
      return None
    logging.info("***** Running evaluation *****")
    logging.info("  Batch size = %d", eval_batch_size)
    with _data_errors_named(sources, init_checkpoint):
      result = estimator.evaluate(input_fn=eval_input_fn, steps=max_eval_steps)
    write_eval_results(output_dir, result)
  return result
