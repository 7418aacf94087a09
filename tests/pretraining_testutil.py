"""Shared helpers for the run_pretraining tests and benchmark: tiny configs, records, checkpoints,
and running Google's script and ours as subprocesses.

Records are written directly as `tf.train.Example`s with the seven features
`create_pretraining_data.py` writes (variable lengths with zero padding, 1..max_predictions masked
positions with weight 1.0 and zero-padded rest, random next-sentence labels): the pretraining code
does not care how they were made, and this keeps every shape under the test's control.
"""

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import modeling
from clinicalbert_tf import pretraining
from tests.tiny_model import read_checkpoint  # noqa: F401  (re-exported: tu.read_checkpoint)

def tiny_config(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, dropout=0.1, max_position_embeddings=64, hidden_act="gelu",
                **extra):
  """A small BERT config dict (Google's keys)."""
  config = {
      "vocab_size": vocab_size,
      "hidden_size": hidden_size,
      "num_hidden_layers": num_hidden_layers,
      "num_attention_heads": num_attention_heads,
      "intermediate_size": intermediate_size,
      "hidden_act": hidden_act,
      "hidden_dropout_prob": dropout,
      "attention_probs_dropout_prob": dropout,
      "max_position_embeddings": max_position_embeddings,
      "type_vocab_size": 2,
      "initializer_range": 0.02,
  }
  config.update(extra)
  return config


def write_config(path, config):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)
  return path


def make_examples(num, max_seq_length, max_predictions_per_seq, vocab_size, seed=0,
                  full_masks=False, nan_weight_records=()):
  """Returns `num` serialized pretraining examples (numpy-random, deterministic in `seed`).

  `full_masks`: every example has exactly `max_predictions_per_seq` masks (then the masked-LM loss
  of a batch is the mean of its halves' losses, which makes accumulation exactly comparable).
  `nan_weight_records`: indexes of examples whose masked_lm_weights are NaN (an injected NaN loss).
  """
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(num):
    length = int(rng.randint(max(4, max_seq_length // 2), max_seq_length + 1))
    input_ids = np.zeros(max_seq_length, np.int64)
    input_ids[:length] = rng.randint(5, vocab_size, size=length)
    input_ids[0] = 2  # a [CLS]-like id
    input_mask = np.zeros(max_seq_length, np.int64)
    input_mask[:length] = 1
    segment_ids = np.zeros(max_seq_length, np.int64)
    segment_ids[length // 2:length] = 1
    k = int(rng.randint(1, min(max_predictions_per_seq, length - 2) + 1))
    if full_masks:
      k = max_predictions_per_seq
    positions = np.sort(rng.choice(np.arange(1, length - 1), size=k, replace=False))
    masked_lm_positions = np.zeros(max_predictions_per_seq, np.int64)
    masked_lm_positions[:k] = positions
    masked_lm_ids = np.zeros(max_predictions_per_seq, np.int64)
    masked_lm_ids[:k] = input_ids[positions]
    input_ids[positions] = 3  # a [MASK]-like id
    masked_lm_weights = np.zeros(max_predictions_per_seq, np.float32)
    masked_lm_weights[:k] = 1.0
    if len(out) in nan_weight_records:
      masked_lm_weights[:] = np.nan

    def ints(values):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    features = {
        "input_ids": ints(input_ids),
        "input_mask": ints(input_mask),
        "segment_ids": ints(segment_ids),
        "masked_lm_positions": ints(masked_lm_positions),
        "masked_lm_ids": ints(masked_lm_ids),
        "masked_lm_weights": tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(v) for v in masked_lm_weights])),
        "next_sentence_labels": ints([rng.randint(0, 2)]),
    }
    out.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
  return out


def write_records(path, num, max_seq_length, max_predictions_per_seq, vocab_size, seed=0,
                  **kwargs):
  """Writes `make_examples(...)` to the TFRecord file `path`; returns `path`."""
  with tf.io.TFRecordWriter(path) as writer:
    for record in make_examples(num, max_seq_length, max_predictions_per_seq, vocab_size, seed,
                                **kwargs):
      writer.write(record)
  return path


def make_init_checkpoint(config, prefix, seed=1, with_global_step=False):
  """Writes a randomly initialised checkpoint of the model with both `cls/` heads.

  Built with our modules (same names as Google's, which the cross-loading tests check), saved with a
  plain Saver: model variables only (no optimizer slots), as Google's released checkpoints.
  """
  bert_config = modeling.BertConfig.from_dict(config)
  with tf.Graph().as_default():
    tf.set_random_seed(seed)
    input_ids = tf.zeros([1, 8], tf.int32)
    model = modeling.BertModel(bert_config, is_training=False, input_ids=input_ids)
    pretraining.get_masked_lm_output(
        bert_config, model.get_sequence_output(), model.get_embedding_table(),
        tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32), tf.ones([1, 2]))
    pretraining.get_next_sentence_output(bert_config, model.get_pooled_output(),
                                         tf.zeros([1, 1], tf.int32))
    # Non-zero biases and output_bias, so that a bias that fails to load shows in the metrics.
    assigns = [v.assign(v + tf.random.normal(v.shape, stddev=0.02))
               for v in tf.global_variables() if v.name.endswith(("bias:0", "beta:0"))]
    if with_global_step:
      tf.train.get_or_create_global_step()
    saver = tf.train.Saver(tf.global_variables())
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(assigns)
      saver.save(sess, prefix, write_meta_graph=False)
  return prefix


def subprocess_env(extra=None):
  """The environment for a child Python that imports what this process imports."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p])
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["CUDA_VISIBLE_DEVICES"] = ""
  env.pop("TF_CONFIG", None)
  if extra:
    env.update(extra)
  return env


def flag_args(flags):
  """{"do_train": True, "x": 3} -> ["--do_train=True", "--x=3"] (None values are left out)."""
  return ["--%s=%s" % (k, v) for k, v in flags.items() if v is not None]


def run_google(flags, no_shuffle=False, timeout=600, check=True):
  """Runs Google's run_pretraining.py (unmodified, see tests/run_google_pretraining.py)."""
  extra = {"GOOGLE_PRETRAINING_NO_SHUFFLE": "1"} if no_shuffle else {}
  proc = subprocess.run(
      [sys.executable, "-m", "tests.run_google_pretraining"] + flag_args(flags),
      env=subprocess_env(extra), capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError("Google's run_pretraining failed (%d):\n%s" %
                         (proc.returncode, proc.stderr[-5000:]))
  return proc


def run_ours(flags, timeout=600, check=True, env=None, popen=False):
  """Runs our run_pretraining.py as a script (subprocess)."""
  cmd = [sys.executable, "-m", "run_pretraining"] + flag_args(flags)
  full_env = subprocess_env(env)
  if popen:
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
  proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError("our run_pretraining failed (%d):\n%s" %
                         (proc.returncode, proc.stderr[-5000:]))
  return proc


def assert_close_results(test, ours, google, rtol, keys=None):
  """Compares two eval result dicts key by key with a relative tolerance."""
  keys = keys or sorted(google)
  for key in keys:
    a, b = float(ours[key]), float(google[key])
    test.assertLessEqual(abs(a - b), rtol * max(abs(b), 1e-12),
                         "%s: ours %r vs Google's %r (rtol %g)" % (key, a, b, rtol))
