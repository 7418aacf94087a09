"""A checkpoint our code saves loads into HuggingFace's BertForPreTraining, strictly, with equal outputs.

The checkpoint has Google's `cls/` pretraining heads (named as Google's run_pretraining.py names
them) and the optimizer's `adam_m`/`adam_v` slots and `global_step` (saved after one training step),
so it looks like what continued pretraining writes. `hf_util.assert_strict_hf_load` checks that every
non-optimizer variable landed by value on a parameter and that every parameter came from the
checkpoint; then HuggingFace's outputs are compared with ours for both GELU forms.
"""

import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import modeling
from clinicalbert_tf import optimization
from tests import hf_util
from tests import testutil

tf.disable_v2_behavior()


def _config(hidden_act):
  return modeling.BertConfig(
      vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=128, hidden_act=hidden_act, hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1, max_position_embeddings=32, type_vocab_size=2,
      # Large weights: the GELU forms then differ by far more than the tolerance.
      initializer_range=0.5)


def _pretraining_heads(config, model):
  """Google's pretraining heads (variable names as in its run_pretraining.py)."""
  sequence_output = model.get_sequence_output()  # [B, S, H]
  with tf.variable_scope("cls/predictions"):
    with tf.variable_scope("transform"):
      transformed = modeling.dense(
          sequence_output, config.hidden_size,
          activation=modeling.get_activation(config.hidden_act),
          kernel_initializer=modeling.create_initializer(config.initializer_range))
      transformed = modeling.layer_norm(transformed)
    output_bias = tf.get_variable("output_bias", shape=[config.vocab_size],
                                  initializer=tf.random_normal_initializer(stddev=0.5))
    # [B, S, V]: the decoder is tied to the word embeddings.
    mlm_logits = tf.einsum("bsh,vh->bsv", transformed, model.get_embedding_table()) + output_bias
  with tf.variable_scope("cls/seq_relationship"):
    output_weights = tf.get_variable(
        "output_weights", shape=[2, config.hidden_size],
        initializer=modeling.create_initializer(config.initializer_range))
    nsp_bias = tf.get_variable("output_bias", shape=[2],
                               initializer=tf.random_normal_initializer(stddev=0.5))
    nsp_logits = tf.matmul(model.get_pooled_output(), output_weights, transpose_b=True) + nsp_bias
  return mlm_logits, nsp_logits


def _batch():
  rng = np.random.RandomState(3)
  ids = rng.randint(1, 97, size=(3, 10)).astype(np.int64)
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  ids[mask == 0] = 0
  segments = np.zeros_like(ids)
  segments[0, 5:] = 1
  segments[1, 3:6] = 1
  return ids, mask, segments


def _save_and_run_ours(config, ckpt):
  """Trains one step (so optimizer slots exist), saves, and returns our outputs on the batch."""
  ids, mask, segments = _batch()
  with tf.Graph().as_default():
    tf.set_random_seed(5)
    input_ids = tf.placeholder(tf.int32, [None, None])
    input_mask = tf.placeholder(tf.int32, [None, None])
    segment_ids = tf.placeholder(tf.int32, [None, None])
    model = modeling.BertModel(config, False, input_ids, input_mask, segment_ids)
    mlm_logits, nsp_logits = _pretraining_heads(config, model)
    loss = tf.reduce_mean(tf.square(mlm_logits)) + tf.reduce_mean(tf.square(nsp_logits))
    train_op = optimization.create_optimizer(loss, 1e-3, 10, 0, False)
    feed = {input_ids: ids, input_mask: mask, segment_ids: segments}
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(train_op, feed)
      tf.train.Saver().save(sess, ckpt)
      return sess.run({
          "sequence": model.get_sequence_output(),
          "pooled": model.get_pooled_output(),
          "mlm": mlm_logits,
          "nsp": nsp_logits,
      }, feed)


class HuggingFaceCompatibilityTest(testutil.TestCase):

  def _check(self, hidden_act):
    import torch  # pylint: disable=g-import-not-at-top
    config = _config(hidden_act)
    ckpt = os.path.join(self.temp_dir(), "model.ckpt")
    ours = _save_and_run_ours(config, ckpt)

    names = [name for name, _ in tf.train.list_variables(ckpt)]
    self.assertIn("cls/predictions/transform/LayerNorm/gamma", names)
    self.assertIn("bert/pooler/dense/kernel/adam_m", names)
    self.assertIn("global_step", names)

    hf_model = hf_util.assert_strict_hf_load(ckpt, config)
    ids, mask, segments = _batch()
    with torch.no_grad():
      out = hf_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     token_type_ids=torch.tensor(segments), output_hidden_states=True)
      pooled = hf_model.bert.pooler(out.hidden_states[-1])
    np.testing.assert_allclose(out.hidden_states[-1].numpy(), ours["sequence"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(pooled.numpy(), ours["pooled"], rtol=0, atol=1e-5)
    # Logits are larger numbers (big test weights): compare relative to their scale.
    mlm_scale = np.abs(ours["mlm"]).max()
    np.testing.assert_allclose(out.prediction_logits.numpy() / mlm_scale, ours["mlm"] / mlm_scale,
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.seq_relationship_logits.numpy(), ours["nsp"], rtol=0, atol=1e-5)
    return hf_model, ours

  def test_gelu_tanh_maps_to_hf_gelu_new(self):
    hf_model, _ = self._check("gelu")
    self.assertEqual(hf_model.config.hidden_act, "gelu_new")

  def test_gelu_exact_maps_to_hf_gelu(self):
    hf_model, _ = self._check("gelu_exact")
    self.assertEqual(hf_model.config.hidden_act, "gelu")

  def test_wrong_gelu_form_is_detected(self):
    # Guards the two tests above: loading tanh-GELU weights as HF's erf "gelu" gives outputs
    # outside the tolerance, so the comparisons can fail.
    import torch  # pylint: disable=g-import-not-at-top
    config = _config("gelu")
    ckpt = os.path.join(self.temp_dir(), "model.ckpt")
    ours = _save_and_run_ours(config, ckpt)
    wrong = _config("gelu_exact")
    hf_model = hf_util.assert_strict_hf_load(ckpt, wrong)
    ids, mask, segments = _batch()
    with torch.no_grad():
      out = hf_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     token_type_ids=torch.tensor(segments), output_hidden_states=True)
    self.assertGreater(np.abs(out.hidden_states[-1].numpy() - ours["sequence"]).max(), 1e-4)


if __name__ == "__main__":
  absltest.main()
