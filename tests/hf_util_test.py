"""Tests for tests/hf_util.py: the strict HuggingFace load catches what the converter skips."""

import os

from absl.testing import absltest
import numpy as np

from tests import hf_util
from tests import testutil

CONFIG = testutil.tiny_config()


def write_checkpoint(path, with_heads=True, extra=()):
  """A randomly initialised Google-format checkpoint (with Adam slots and global_step)."""
  return testutil.write_checkpoint(path, CONFIG, heads="pretraining" if with_heads else None,
                                   extra_variables=extra)


class HfUtilTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()

  def test_strict_load_passes_and_values_match(self):
    ckpt = write_checkpoint(os.path.join(self.dir, "model.ckpt"))
    model = hf_util.assert_strict_hf_load(ckpt, CONFIG)
    stored = testutil.read_checkpoint(ckpt)
    word = stored["bert/embeddings/word_embeddings"]
    np.testing.assert_array_equal(
        model.cls.predictions.decoder.weight.detach().numpy(), word)
    kernel = stored["bert/encoder/layer_1/output/dense/kernel"]
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
  absltest.main()
