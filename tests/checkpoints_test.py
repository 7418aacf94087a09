"""Tests for clinicalbert_tf/checkpoints.py: config checks, checkpoint resolution, init by name."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from tests import testutil

tf.disable_v2_behavior()


class CheckpointsTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.config = testutil.tiny_config()
    cls.config_file = testutil.write_config(cls.tmp, cls.config)
    cls.ckpt_dir = os.path.join(cls.tmp, "run")
    cls.ckpt = testutil.write_checkpoint(os.path.join(cls.ckpt_dir, "model.ckpt-7"), cls.config)

  def _write(self, name, text):
    path = os.path.join(self.temp_dir(), name)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    return path

  # -- load_bert_config ---------------------------------------------------------------------------

  def test_load_bert_config(self):
    config = checkpoints.load_bert_config(self.config_file, max_seq_length=64)
    self.assertIsInstance(config, modeling.BertConfig)
    self.assertEqual(config.to_dict(), self.config.to_dict())

  def test_missing_flag(self):
    with self.assertRaisesRegex(fileio.InputError, r"^--bert_config_file is required"):
      checkpoints.load_bert_config(None)
    with self.assertRaisesRegex(fileio.InputError, r"^--config is required"):
      checkpoints.load_bert_config("", flag_name="config")

  def test_missing_file(self):
    path = os.path.join(self.temp_dir(), "nope.json")
    with self.assertRaisesRegex(fileio.InputError, "^--bert_config_file=%s: no such file$" % path):
      checkpoints.load_bert_config(path)

  def test_bad_json(self):
    path = self._write("bad.json", '{"vocab_size": 10,')
    with self.assertRaisesRegex(fileio.InputError, "^--bert_config_file=%s: " % path):
      checkpoints.load_bert_config(path)
    path = self._write("list.json", "[1, 2]")
    with self.assertRaisesRegex(fileio.InputError, "^--bert_config_file=%s: not a BERT config" %
                                path):
      checkpoints.load_bert_config(path)

  def test_non_integer_entry(self):
    for key, value in (("hidden_size", "32"), ("num_hidden_layers", 2.0),
                       ("intermediate_size", True)):
      d = self.config.to_dict()
      d[key] = value
      path = self._write("bad_%s.json" % key, json.dumps(d))
      with self.assertRaises(fileio.InputError) as cm:
        checkpoints.load_bert_config(path)
      self.assertIn("--bert_config_file=%s" % path, str(cm.exception))
      self.assertIn("'%s' must be an integer" % key, str(cm.exception))
    d = self.config.to_dict()
    del d["vocab_size"]
    path = self._write("no_vocab_size.json", json.dumps(d))
    with self.assertRaisesRegex(fileio.InputError, "'vocab_size' must be an integer, got None"):
      checkpoints.load_bert_config(path)

  def test_max_seq_length_too_long(self):
    with self.assertRaises(fileio.InputError) as cm:
      checkpoints.load_bert_config(self.config_file, max_seq_length=65)
    self.assertEqual(str(cm.exception),
                     "--max_seq_length=65 is longer than the model's max_position_embeddings "
                     "(64 in %s)" % self.config_file)

  def test_check_max_seq_length(self):
    checkpoints.check_max_seq_length(64, self.config)
    with self.assertRaises(fileio.InputError) as cm:
      checkpoints.check_max_seq_length(65, self.config)
    self.assertEqual(str(cm.exception),
                     "--max_seq_length=65 is longer than the model's max_position_embeddings (64)")

  # -- check_vocab_matches_config -----------------------------------------------------------------

  def test_check_vocab_matches_config(self):
    vocab_size = self.config.vocab_size
    checkpoints.check_vocab_matches_config(vocab_size, self.config, "vocab.txt")
    checkpoints.check_vocab_matches_config(vocab_size - 3, self.config, "vocab.txt")
    with self.assertRaises(fileio.InputError) as cm:
      checkpoints.check_vocab_matches_config(vocab_size + 1, self.config, "v.txt")
    self.assertEqual(str(cm.exception),
                     "--vocab_file=v.txt has %d tokens but the config's vocab_size is %d: they do "
                     "not belong together" % (vocab_size + 1, vocab_size))

  # -- resolve_checkpoint / load_checkpoint / variable_shapes --------------------------------------

  def test_resolve_prefix_and_directory(self):
    self.assertEqual(checkpoints.resolve_checkpoint(self.ckpt), self.ckpt)
    self.assertEqual(checkpoints.resolve_checkpoint(self.ckpt_dir), self.ckpt)

  def test_resolve_empty_directory(self):
    empty = self.temp_dir()
    with self.assertRaisesRegex(fileio.InputError,
                                "^--init_checkpoint=%s is a directory without a checkpoint$" %
                                empty):
      checkpoints.resolve_checkpoint(empty)

  def test_resolve_missing(self):
    path = os.path.join(self.temp_dir(), "missing", "model.ckpt")
    with self.assertRaisesRegex(fileio.InputError,
                                "^--init_checkpoint=%s: no checkpoint" % path):
      checkpoints.resolve_checkpoint(path)
    with self.assertRaisesRegex(fileio.InputError, "^--init_checkpoint is required"):
      checkpoints.resolve_checkpoint(None)
    with self.assertRaisesRegex(fileio.InputError, "^--model_dir is required"):
      checkpoints.resolve_checkpoint("", flag_name="model_dir")

  def test_load_checkpoint_and_shapes(self):
    prefix, reader = checkpoints.load_checkpoint(self.ckpt_dir)
    self.assertEqual(prefix, self.ckpt)
    shapes = checkpoints.variable_shapes(self.ckpt_dir)
    self.assertEqual(shapes["bert/embeddings/word_embeddings"], [self.config.vocab_size, 32])
    self.assertEqual(sorted(shapes), sorted(reader.get_variable_to_shape_map()))

  def test_load_checkpoint_unreadable(self):
    prefix = os.path.join(self.temp_dir(), "model.ckpt")
    with open(prefix + ".index", "wb") as f:
      f.write(b"not a checkpoint index")
    with self.assertRaisesRegex(fileio.InputError, "cannot be read"):
      checkpoints.load_checkpoint(prefix)

  # -- init_from_checkpoint -----------------------------------------------------------------------

  def test_init_from_checkpoint_by_name(self):
    with tf.Graph().as_default():
      modeling.BertModel(self.config, is_training=False, input_ids=tf.zeros([1, 4], tf.int32))
      head = tf.get_variable("output_weights", [3, 32], initializer=tf.ones_initializer())
      names = checkpoints.init_from_checkpoint(self.ckpt_dir)
      self.assertNotIn("output_weights", names)
      self.assertIn("bert/embeddings/word_embeddings", names)
      embeddings = [v for v in tf.trainable_variables()
                    if checkpoints.variable_name(v) == "bert/embeddings/word_embeddings"][0]
      with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(
            sess.run(embeddings),
            tf.train.load_checkpoint(self.ckpt).get_tensor("bert/embeddings/word_embeddings"))
        # Not in the checkpoint: keeps its initialiser.
        np.testing.assert_array_equal(sess.run(head), np.ones([3, 32], np.float32))

  def test_init_from_checkpoint_shape_mismatch(self):
    other = testutil.tiny_config(hidden_size=16, num_attention_heads=2)
    with tf.Graph().as_default():
      modeling.BertModel(other, is_training=False, input_ids=tf.zeros([1, 4], tf.int32))
      with self.assertRaises(fileio.InputError) as cm:
        checkpoints.init_from_checkpoint(self.ckpt)
    message = str(cm.exception)
    self.assertIn("bert/embeddings/word_embeddings", message)
    self.assertIn("[%d, 32]" % self.config.vocab_size, message)
    self.assertIn("[%d, 16]" % self.config.vocab_size, message)

  def test_init_in_model_fn(self):
    self.assertIsNone(checkpoints.init_from_checkpoint_in_model_fn(None, [], use_tpu=False))
    with tf.Graph().as_default():
      modeling.BertModel(self.config, is_training=False, input_ids=tf.zeros([1, 4], tf.int32))
      tvars = tf.trainable_variables()
      scaffold_fn = checkpoints.init_from_checkpoint_in_model_fn(self.ckpt, tvars, use_tpu=True)
      self.assertTrue(callable(scaffold_fn))
      self.assertIsInstance(scaffold_fn(), tf.train.Scaffold)
      self.assertIsNone(checkpoints.init_from_checkpoint_in_model_fn(self.ckpt, tvars, False))

  def test_no_estimator_import(self):
    # Inference code (features, export, prediction) loads models without the Estimator machinery.
    code = ("import sys; from clinicalbert_tf import checkpoints, features; "
            "print(sorted(m for m in sys.modules if m == 'clinicalbert_tf.estimator' or "
            "m.startswith('tensorflow_estimator')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=testutil.script_env(), check=False, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertEqual(proc.stdout.strip().splitlines()[-1], "[]")

  def test_variable_name(self):
    with tf.Graph().as_default():
      v = tf.get_variable("a/b", [1])
      self.assertEqual(checkpoints.variable_name(v), "a/b")


if __name__ == "__main__":
  absltest.main()
