"""Tests for tests/hf_util.py: the strict HuggingFace load catches what the converter skips."""

import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import modeling
from tests import hf_util

tf.disable_v2_behavior()

CONFIG = modeling.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu")


def write_checkpoint(path, with_heads=True, extra=()):
  """A randomly initialised Google-format checkpoint (with Adam slots and global_step)."""
  with tf.Graph().as_default():
    ids = tf.zeros([1, 8], tf.int32)
    model = modeling.BertModel(CONFIG, is_training=False, input_ids=ids)
    del model
    if with_heads:
      with tf.variable_scope("cls/predictions"):
        with tf.variable_scope("transform"):
          modeling.layer_norm(modeling.dense(tf.zeros([1, 32]), 32, name="dense"))
        tf.get_variable("output_bias", [40], initializer=tf.random_normal_initializer())
      with tf.variable_scope("cls/seq_relationship"):
        tf.get_variable("output_weights", [2, 32], initializer=tf.random_normal_initializer())
        tf.get_variable("output_bias", [2], initializer=tf.random_normal_initializer())
    for name, shape in extra:
      tf.get_variable(name, shape, initializer=tf.random_normal_initializer())
    tvars = tf.trainable_variables()
    # Make LayerNorm and biases non-trivial so "equal to the HF default" cannot pass by chance.
    ops = [v.assign(tf.random_normal(v.shape)) for v in tvars]
    slots = [tf.get_variable(v.op.name + "/adam_m", v.shape, initializer=tf.ones_initializer(),
                             trainable=False) for v in tvars[:3]]
    del slots
    tf.train.get_or_create_global_step()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(ops)
      tf.train.Saver().save(sess, path)
  return path


class HfUtilTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=self.get_temp_dir())

  def test_strict_load_passes_and_values_match(self):
    ckpt = write_checkpoint(os.path.join(self.dir, "model.ckpt"))
    model = hf_util.assert_strict_hf_load(ckpt, CONFIG)
    word = tf.train.load_variable(ckpt, "bert/embeddings/word_embeddings")
    np.testing.assert_array_equal(
        model.cls.predictions.decoder.weight.detach().numpy(), word)
    kernel = tf.train.load_variable(ckpt, "bert/encoder/layer_1/output/dense/kernel")
    np.testing.assert_array_equal(
        model.bert.encoder.layer[1].output.dense.weight.detach().numpy(), kernel.T)

  def test_missing_heads_fail(self):
    ckpt = write_checkpoint(os.path.join(self.dir, "model.ckpt"), with_heads=False)
    with self.assertRaisesRegex(AssertionError, "cls.seq_relationship.weight .* not written"):
      hf_util.assert_strict_hf_load(ckpt, CONFIG)

  def test_bare_encoder_loads_into_bert_model(self):
    import transformers  # pylint: disable=g-import-not-at-top
    ckpt = write_checkpoint(os.path.join(self.dir, "model.ckpt"), with_heads=False)
    hf_util.assert_strict_hf_load(ckpt, CONFIG, model_class=transformers.BertModel)

  def test_unknown_variable_fails(self):
    ckpt = write_checkpoint(os.path.join(self.dir, "model.ckpt"),
                            extra=[("bert/encoder/layer_0/extra/kernel", [32, 32])])
    with self.assertRaisesRegex(AssertionError, "extra"):
      hf_util.assert_strict_hf_load(ckpt, CONFIG)

  def test_expected_names(self):
    self.assertEqual(hf_util.expected_hf_name("bert/encoder/layer_11/attention/self/query/kernel"),
                     ("bert.encoder.layer.11.attention.self.query.weight", True))
    self.assertEqual(hf_util.expected_hf_name("cls/predictions/output_bias"),
                     ("cls.predictions.bias", False))
    self.assertEqual(hf_util.expected_hf_name("bert/embeddings/position_embeddings"),
                     ("bert.embeddings.position_embeddings.weight", False))
    self.assertTrue(hf_util.is_optimizer_variable("bert/pooler/dense/kernel/adam_v"))


if __name__ == "__main__":
  tf.test.main()
