"""Tests for tests/testutil.py: temp folders vanish, comparisons fail when they should, the tiny
checkpoints load into `modeling.BertModel` by name for each head, and importing testutil does not
import TensorFlow."""

import os
import subprocess
import sys
import unittest

from absl.testing import absltest
import numpy as np

from tests import testutil


def _run_case(case_class):
  """Runs one TestCase class quietly; returns the unittest result."""
  suite = unittest.defaultTestLoader.loadTestsFromTestCase(case_class)
  result = unittest.TestResult()
  suite.run(result)
  return result


class TempDirTest(testutil.TestCase):

  def test_temp_dirs_are_removed_after_the_test_and_the_class(self):
    seen = {}

    class Inner(testutil.TestCase):

      @classmethod
      def setUpClass(cls):
        super().setUpClass()
        seen["class"] = cls.class_temp_dir()

      def test_a(self):
        seen["a"] = self.temp_dir()
        os.makedirs(os.path.join(seen["a"], "sub"))
        with open(os.path.join(seen["a"], "sub", "f.txt"), "w", encoding="utf-8") as f:
          f.write("x")
        with open(os.path.join(seen["class"], "g.txt"), "w", encoding="utf-8") as f:
          f.write("y")
        seen["during"] = (os.path.isdir(seen["a"]), os.path.isdir(seen["class"]))

      def test_b(self):
        # test_a ran first (alphabetical order) and its folder is gone; the class's is still here.
        seen["b"] = self.temp_dir()
        seen["between"] = (os.path.exists(seen["a"]), os.path.isdir(seen["class"]))
        self.assertNotEqual(seen["a"], seen["b"])

    result = _run_case(Inner)
    self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
    self.assertEqual(seen["during"], (True, True))
    self.assertEqual(seen["between"], (False, True))
    for key in ("a", "b", "class"):
      self.assertFalse(os.path.exists(seen[key]), key)

  def test_a_failing_test_removes_its_folder_too(self):
    seen = {}

    class Inner(testutil.TestCase):

      def test_fails(self):
        seen["dir"] = self.temp_dir()
        self.fail("on purpose")

    result = _run_case(Inner)
    self.assertEqual(len(result.failures), 1)
    self.assertFalse(os.path.exists(seen["dir"]))


class CompareTest(testutil.TestCase):

  def test_all_close(self):
    self.assertAllClose([1.0, 2.0], np.array([1.0, 2.0 + 1e-7]))
    self.assertAllClose({"a": [1.0], "b": 2.0}, {"a": np.array([1.0]), "b": 2.0})
    self.assertAllClose([1.0], [1.05], rtol=0.1)
    with self.assertRaises(AssertionError):
      self.assertAllClose([1.0, 2.0], [1.0, 2.001])
    with self.assertRaisesRegex(AssertionError, "shape"):
      self.assertAllClose(np.zeros([2, 1]), np.zeros([2]))
    with self.assertRaisesRegex(AssertionError, "keys"):
      self.assertAllClose({"a": 1.0}, {"b": 1.0})

  def test_all_equal(self):
    self.assertAllEqual([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]]))
    self.assertAllEqual([{"x": [1]}], [{"x": np.array([1])}])
    with self.assertRaises(AssertionError):
      self.assertAllEqual([1, 2], [1, 3])
    with self.assertRaisesRegex(AssertionError, "shape"):
      self.assertAllEqual([1], [1, 1])

  def test_results_close(self):
    self.assertResultsClose({"loss": 1.0001}, {"loss": 1.0}, rtol=1e-3)
    with self.assertRaises(AssertionError):
      self.assertResultsClose({"loss": 1.1}, {"loss": 1.0}, rtol=1e-3)


class ImportTest(testutil.TestCase):

  def test_importing_testutil_does_not_import_tensorflow(self):
    code = ("import sys; from tests import testutil; "
            "assert 'tensorflow' not in sys.modules, [m for m in sys.modules if 'tensorf' in m]")
    r = subprocess.run([sys.executable, "-c", code], env=testutil.script_env(),
                       capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(r.returncode, 0, r.stderr)


class TinyModelTest(testutil.TestCase):

  def test_vocab_and_config(self):
    d = self.temp_dir()
    tokens = testutil.vocab_tokens()
    self.assertEqual(len(tokens), len(set(tokens)))
    with open(testutil.write_vocab(d), encoding="utf-8") as f:
      self.assertEqual(f.read().splitlines(), tokens)
    config = testutil.tiny_config(dropout=0.0, vocab_size=97)
    self.assertEqual((config.num_hidden_layers, config.hidden_size, config.vocab_size),
                     (2, 32, 97))
    self.assertEqual((config.hidden_dropout_prob, config.attention_probs_dropout_prob), (0, 0))
    self.assertEqual(testutil.tiny_config().vocab_size, len(tokens))
    path = testutil.write_config(d, config)
    self.assertEqual(path, os.path.join(d, "bert_config.json"))
    from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
    self.assertEqual(modeling.BertConfig.from_json_file(path).to_dict(), config.to_dict())
    other = testutil.write_config(os.path.join(d, "c.json"), config.to_dict())
    self.assertEqual(modeling.BertConfig.from_json_file(other).to_dict(), config.to_dict())

  def _restore_into_model(self, prefix, config, heads, num_labels):
    """Builds BertModel (+ the head) in a new graph and restores every variable from `prefix`.

    Returns:
      ({name: value restored}, the checkpoint's variable names).
    """
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf import pretraining  # pylint: disable=g-import-not-at-top
    with tf.Graph().as_default():
      model = modeling.BertModel(config, is_training=False, input_ids=tf.zeros([2, 5], tf.int32))
      if heads == "pretraining":
        pretraining.get_masked_lm_output(
            config, model.get_sequence_output(), model.get_embedding_table(),
            tf.zeros([2, 2], tf.int32), tf.zeros([2, 2], tf.int32), tf.ones([2, 2]))
        pretraining.get_next_sentence_output(config, model.get_pooled_output(),
                                             tf.zeros([2, 1], tf.int32))
      elif heads is not None:
        # Google's run_classifier names, as run_finetune's token and sequence heads use.
        tf.get_variable("output_weights", [num_labels, config.hidden_size])
        tf.get_variable("output_bias", [num_labels])
      variables = tf.global_variables()
      with tf.Session() as sess:
        tf.train.Saver(variables).restore(sess, prefix)  # by name; a missing name or shape fails
        values = dict(zip([v.op.name for v in variables], sess.run(variables)))
    return values

  def test_checkpoints_load_into_bert_model_by_name_for_each_head(self):
    config = testutil.tiny_config()
    d = self.temp_dir()
    for heads in testutil.HEADS:
      for released in (False, True):
        with self.subTest(heads=heads, released=released):
          prefix = testutil.write_checkpoint(
              os.path.join(d, "%s_%s" % (heads, released), "model.ckpt"), config, heads=heads,
              num_labels=5, released=released)
          stored = testutil.read_checkpoint(prefix)
          values = self._restore_into_model(prefix, config, heads, 5)
          optimizer = {n for n in stored
                       if n == "global_step" or n.endswith(("/adam_m", "/adam_v"))}
          # Every checkpoint variable but optimizer state is a model variable, and equal.
          self.assertEqual(set(stored) - optimizer, set(values))
          for name, value in values.items():
            self.assertAllEqual(value, stored[name])
          # released: no optimizer state; otherwise two Adam slots per weight and a global_step.
          self.assertEqual(len(optimizer), 0 if released else 2 * len(values) + 1)
          bias = stored["bert/encoder/layer_0/output/dense/bias"]
          self.assertGreater(np.abs(bias).max(), 0)  # nothing left at its zero default
          if heads in ("token_classification", "sequence_classification"):
            self.assertEqual(stored["output_weights"].shape, (5, 32))

  def test_same_arguments_write_the_same_values_and_seed_changes_them(self):
    config = testutil.tiny_config()
    d = self.temp_dir()
    a = testutil.read_checkpoint(testutil.write_checkpoint(os.path.join(d, "a"), config))
    b = testutil.read_checkpoint(testutil.write_checkpoint(os.path.join(d, "b"), config))
    c = testutil.read_checkpoint(testutil.write_checkpoint(os.path.join(d, "c"), config, seed=2))
    self.assertAllEqual(a, b)
    name = "bert/embeddings/word_embeddings"
    self.assertFalse(np.array_equal(a[name], c[name]))

  def test_extra_variables_and_unknown_heads(self):
    config = testutil.tiny_config()
    d = self.temp_dir()
    prefix = testutil.write_checkpoint(os.path.join(d, "m"), config,
                                       extra_variables=[("bert/extra/kernel", [3, 4])])
    self.assertEqual(testutil.read_checkpoint(prefix)["bert/extra/kernel"].shape, (3, 4))
    with self.assertRaisesRegex(ValueError, "heads"):
      testutil.write_checkpoint(os.path.join(d, "n"), config, heads="classifier")

  def test_random_ids(self):
    ids, mask, types = testutil.random_ids(3, 8, 50)
    self.assertEqual(ids.shape, (3, 8))
    self.assertAllEqual(ids * mask, ids)
    self.assertAllEqual(types * mask, types)
    self.assertEqual(mask[1].sum(), 7)


class RecordsAndScriptsTest(testutil.TestCase):

  def test_pretraining_records(self):
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    path = testutil.write_pretraining_records(os.path.join(self.temp_dir(), "r.tfrecord"), 6,
                                              16, 4, 97, full_masks=True, nan_weight_records=[2])
    records = list(tf.io.tf_record_iterator(path))
    self.assertEqual(records, testutil.pretraining_examples(6, 16, 4, 97, full_masks=True,
                                                            nan_weight_records=[2]))
    examples = [tf.train.Example.FromString(r).features.feature for r in records]
    self.assertEqual(len(examples[0]), 7)
    self.assertEqual(len(examples[0]["input_ids"].int64_list.value), 16)
    self.assertEqual(sum(examples[0]["masked_lm_weights"].float_list.value), 4.0)
    self.assertTrue(np.isnan(examples[2]["masked_lm_weights"].float_list.value).all())

  def test_run_module(self):
    self.assertEqual(testutil.flag_args({"a": 1, "b": None, "c": True}), ["--a=1", "--c=True"])
    r = testutil.run_module("tests.testutil", check=False)
    self.assertEqual(r.returncode, 0, r.stderr)
    with self.assertRaisesRegex(AssertionError, "no_such_module failed"):
      testutil.run_module("no_such_module")


if __name__ == "__main__":
  absltest.main()
