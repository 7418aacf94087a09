"""Our BertModel against Google's (bert-tensorflow 1.0.4): names, shapes, outputs, checkpoints."""

import json
import math
import os

from absl.testing import absltest
import numpy as np

from tests import oracle
import tensorflow.compat.v1 as tf

from clinicalbert_tf import modeling
from tests import testutil

_BATCH, _SEQ = 3, 12


def _tiny_config_dict(type_vocab_size, hidden_act):
  return {
      "vocab_size": 101,
      "hidden_size": 64,
      "num_hidden_layers": 2,
      "num_attention_heads": 4,
      "intermediate_size": 128,
      "hidden_act": hidden_act,
      "hidden_dropout_prob": 0.1,
      "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": 32,
      "type_vocab_size": type_vocab_size,
      # Large weights make pre-activations of several units, where the two GELU forms and any
      # slip in the attention mask change the outputs by far more than the tolerance.
      "initializer_range": 0.5,
  }


def _batch(type_vocab_size, seed=0):
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(1, 101, size=(_BATCH, _SEQ)).astype(np.int32)
  lengths = [_SEQ, 7, 3]  # Full, half and mostly padding.
  input_mask = np.zeros((_BATCH, _SEQ), np.int32)
  segment_ids = np.zeros((_BATCH, _SEQ), np.int32)
  for i, n in enumerate(lengths):
    input_mask[i, :n] = 1
    input_ids[i, n:] = 0
    segment_ids[i, n // 2:n] = 1 if type_vocab_size == 2 else (i + 1) % type_vocab_size
  return input_ids, input_mask, segment_ids


def _erf_gelu_for_google(x):
  # Google's get_activation passes functions through, so this gives its model the exact GELU.
  return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def _run_model(module, config, batch, checkpoint=None, save_to=None, is_training=False):
  """Builds `module.BertModel` in a fresh graph and returns (outputs, {name: shape})."""
  input_ids, input_mask, segment_ids = batch
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(42)
    ids = tf.placeholder(tf.int32, [None, None])
    mask = tf.placeholder(tf.int32, [None, None])
    segs = tf.placeholder(tf.int32, [None, None])
    model = module.BertModel(config=config, is_training=is_training, input_ids=ids,
                             input_mask=mask, token_type_ids=segs)
    shapes = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
    saver = tf.train.Saver()
    with tf.Session() as sess:
      if checkpoint:
        saver.restore(sess, checkpoint)
      else:
        sess.run(tf.global_variables_initializer())
      feed = {ids: input_ids, mask: input_mask, segs: segment_ids}
      outputs = sess.run({
          "sequence": model.get_sequence_output(),
          "pooled": model.get_pooled_output(),
          "all_layers": model.get_all_encoder_layers(),
          "embedding": model.get_embedding_output(),
          "table": model.get_embedding_table(),
      }, feed)
      if save_to:
        saver.save(sess, save_to)
  return outputs, shapes


def _run_gradients(module, config, batch, checkpoint):
  """{variable name: gradient} of a fixed linear function of the outputs (no dropout)."""
  input_ids, input_mask, segment_ids = batch
  rng = np.random.RandomState(5)
  with tf.Graph().as_default():
    model = module.BertModel(config=config, is_training=False, input_ids=tf.constant(input_ids),
                             input_mask=tf.constant(input_mask),
                             token_type_ids=tf.constant(segment_ids))
    sequence = model.get_sequence_output()
    pooled = model.get_pooled_output()
    loss = (tf.reduce_sum(sequence * rng.randn(*sequence.shape.as_list()).astype(np.float32)) +
            tf.reduce_sum(pooled * rng.randn(*pooled.shape.as_list()).astype(np.float32)))
    tvars = tf.trainable_variables()
    grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, tvars)]
    with tf.Session() as sess:
      tf.train.Saver().restore(sess, checkpoint)
      values = sess.run(grads)
  return {v.op.name: g for v, g in zip(tvars, values)}


# Rows of each sequence in `_batch` to compute: repeats, [CLS], padding and the last position.
_POSITIONS = np.array([[3, 0, 11, 3], [1, 6, 0, 0], [2, 9, 1, 0]], np.int32)


def _run_at_positions(module, config, batch, checkpoint, positions=None):
  """Rows of the last layer at `_POSITIONS`, the pooled output and every variable's gradient.

  With `positions`, `module.BertModel(output_positions=positions)` computes the rows; without,
  they are gathered from the full sequence output (what Google's model can do). The loss is a
  fixed linear function of the rows and the pooled output, so the gradients compare too.
  """
  input_ids, input_mask, segment_ids = batch
  rng = np.random.RandomState(7)
  with tf.Graph().as_default():
    kwargs = {} if positions is None else {"output_positions": tf.constant(positions)}
    model = module.BertModel(config=config, is_training=False, input_ids=tf.constant(input_ids),
                             input_mask=tf.constant(input_mask),
                             token_type_ids=tf.constant(segment_ids), **kwargs)
    rows = model.get_sequence_output()
    if positions is None:
      rows = tf.gather(rows, _POSITIONS, batch_dims=1)
    pooled = model.get_pooled_output()
    loss = (tf.reduce_sum(rows * rng.randn(*_POSITIONS.shape, config.hidden_size)) +
            tf.reduce_sum(pooled * rng.randn(_BATCH, config.hidden_size)))
    tvars = tf.trainable_variables()
    grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, tvars)]
    with tf.Session() as sess:
      tf.train.Saver().restore(sess, checkpoint)
      rows_value, pooled_value, grad_values = sess.run([rows, pooled, grads])
  return rows_value, pooled_value, {v.op.name: g for v, g in zip(tvars, grad_values)}


class ModelingOracleTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()

  def _check_against_google(self, type_vocab_size, ours_act, google_act):
    config_dict = _tiny_config_dict(type_vocab_size, ours_act)
    ours_config = modeling.BertConfig.from_dict(config_dict)
    google_config = oracle.modeling.BertConfig.from_dict(dict(config_dict, hidden_act=google_act))
    batch = _batch(type_vocab_size)
    ckpt = os.path.join(self.tmp, "google_%d_%s" % (type_vocab_size, ours_act))

    google_out, google_shapes = _run_model(oracle.modeling, google_config, batch, save_to=ckpt)
    ours_out, ours_shapes = _run_model(modeling, ours_config, batch, checkpoint=ckpt)

    self.assertEqual(ours_shapes, google_shapes)
    self.assertIn("bert/embeddings/LayerNorm/gamma", ours_shapes)
    self.assertIn("bert/encoder/layer_1/attention/self/query/kernel", ours_shapes)
    self.assertIn("bert/pooler/dense/kernel", ours_shapes)
    for key in ("sequence", "pooled", "embedding", "table"):
      np.testing.assert_allclose(ours_out[key], google_out[key], rtol=0, atol=1e-5, err_msg=key)
    for ours_layer, google_layer in zip(ours_out["all_layers"], google_out["all_layers"]):
      np.testing.assert_allclose(ours_layer, google_layer, rtol=0, atol=1e-5)
    return ours_out

  def test_outputs_equal_google_gelu_tanh_two_segments(self):
    self._check_against_google(2, "gelu", "gelu")

  def test_outputs_equal_google_gelu_tanh_sixteen_segments(self):
    self._check_against_google(16, "gelu", "gelu")

  def test_outputs_equal_google_gelu_exact(self):
    self._check_against_google(2, "gelu_exact", _erf_gelu_for_google)
    self._check_against_google(16, "gelu_exact", _erf_gelu_for_google)

  def test_gradients_equal_google(self):
    # GELU and layer norm have hand-written gradients, attention scales the queries: every
    # variable's gradient against automatic differentiation of Google's graph.
    for act in ("gelu", "gelu_exact"):
      config_dict = _tiny_config_dict(2, act)
      google_act = act if act == "gelu" else _erf_gelu_for_google
      batch = _batch(2)
      ckpt = os.path.join(self.tmp, "grads_" + act)
      _run_model(oracle.modeling, oracle.modeling.BertConfig.from_dict(
          dict(config_dict, hidden_act=google_act)), batch, save_to=ckpt)
      google = _run_gradients(oracle.modeling, oracle.modeling.BertConfig.from_dict(
          dict(config_dict, hidden_act=google_act)), batch, ckpt)
      ours = _run_gradients(modeling, modeling.BertConfig.from_dict(config_dict), batch, ckpt)
      self.assertEqual(set(ours), set(google))
      largest = max(float(np.abs(value).max()) for value in google.values())
      for name, value in google.items():
        if name.endswith("/key/bias"):
          # Its true gradient is 0 (a softmax ignores a constant added to a row): both are
          # float32 rounding noise, far below everything else.
          self.assertLess(float(np.abs(value).max()), 1e-6 * largest, name)
          self.assertLess(float(np.abs(ours[name]).max()), 1e-6 * largest, name)
          continue
        scale = float(np.abs(value).max())
        np.testing.assert_allclose(ours[name] / scale, value / scale, rtol=0, atol=1e-5,
                                   err_msg="%s %s" % (act, name))

  def test_output_positions_equal_google_rows_and_gradients(self):
    # The last layer computed only at some rows (pretraining's masked positions) must give Google's
    # full model's rows there, its pooled output, and the same gradient for every variable.
    config_dict = _tiny_config_dict(2, "gelu")
    batch = _batch(2)
    ckpt = os.path.join(self.tmp, "positions")
    _run_model(oracle.modeling, oracle.modeling.BertConfig.from_dict(config_dict), batch,
               save_to=ckpt)
    google_rows, google_pooled, google_grads = _run_at_positions(
        oracle.modeling, oracle.modeling.BertConfig.from_dict(config_dict), batch, ckpt)
    rows, pooled, grads = _run_at_positions(
        modeling, modeling.BertConfig.from_dict(config_dict), batch, ckpt, positions=_POSITIONS)
    self.assertEqual(rows.shape, (_BATCH, _POSITIONS.shape[1], 64))
    np.testing.assert_allclose(rows, google_rows, rtol=0, atol=1e-5)
    np.testing.assert_allclose(pooled, google_pooled, rtol=0, atol=1e-5)
    self.assertEqual(set(grads), set(google_grads))
    largest = max(float(np.abs(value).max()) for value in google_grads.values())
    for name, value in google_grads.items():
      if name.endswith("/key/bias"):
        continue  # zero up to rounding noise (test_gradients_equal_google)
      scale = float(np.abs(value).max())
      self.assertGreater(scale, 1e-6 * largest, name)
      np.testing.assert_allclose(grads[name] / scale, value / scale, rtol=0, atol=1e-5,
                                 err_msg=name)

  def test_gelu_gradient(self):
    with tf.Graph().as_default(), tf.Session() as sess:
      x = tf.constant(np.linspace(-6, 6, 241), tf.float32)
      ours, google = sess.run([tf.gradients(modeling.gelu(x), x)[0],
                               tf.gradients(oracle.modeling.gelu(x), x)[0]])
    np.testing.assert_allclose(ours, google, rtol=0, atol=2e-6)
    # Against the float64 derivative of the tanh form (float32 tanh near 1 costs Google's
    # automatic gradient 4e-6 at x = 4.85, and ours the same).
    x64 = np.linspace(-6, 6, 241)
    c = np.sqrt(2 / np.pi)
    t = np.tanh(c * (x64 + 0.044715 * x64**3))
    exact = 0.5 * (1 + t) + 0.5 * x64 * (1 - t**2) * c * (1 + 3 * 0.044715 * x64**2)
    np.testing.assert_allclose(ours, exact, rtol=0, atol=5e-6)

  def test_dropout_distribution_and_gradient(self):
    shape = (400, 500)
    with tf.Graph().as_default(), tf.Session() as sess:
      tf.set_random_seed(3)
      x = tf.constant(np.full(shape, 2.0, np.float32))
      y = modeling.dropout(x, 0.1)
      g = tf.gradients(tf.reduce_sum(y * 3.0), x)[0]
      y_value, g_value = sess.run([y, g])
    self.assertEqual(y.shape.as_list(), list(shape))
    kept = y_value != 0
    # Kept values are x / (1 - rate), dropped ones exactly 0; the gradient is the same factor.
    np.testing.assert_allclose(y_value[kept], 2.0 / 0.9, rtol=1e-7)
    np.testing.assert_allclose(g_value, np.where(kept, 3.0 / 0.9, 0.0), rtol=1e-7)
    # 200,000 draws: the kept fraction is 0.9 within 5 standard deviations (0.00067 each).
    self.assertAlmostEqual(kept.mean(), 0.9, delta=5 * np.sqrt(0.9 * 0.1 / kept.size))

  def test_gelu_forms_differ(self):
    # Guards the test above: the two forms really give different outputs on these weights.
    config_dict = _tiny_config_dict(2, "gelu")
    batch = _batch(2)
    ckpt = os.path.join(self.tmp, "for_forms")
    tanh_out, _ = _run_model(modeling, modeling.BertConfig.from_dict(config_dict), batch,
                             save_to=ckpt)
    exact_out, _ = _run_model(modeling, modeling.BertConfig.from_dict(
        dict(config_dict, hidden_act="gelu_exact")), batch, checkpoint=ckpt)
    self.assertGreater(np.abs(tanh_out["sequence"] - exact_out["sequence"]).max(), 1e-6)

  def test_google_assignment_map_covers_our_checkpoint(self):
    config = modeling.BertConfig.from_dict(_tiny_config_dict(2, "gelu"))
    ckpt = os.path.join(self.tmp, "ours")
    _run_model(modeling, config, _batch(2), save_to=ckpt)
    saved = {name for name, _ in tf.train.list_variables(ckpt)}
    for module in (oracle.modeling, modeling):
      with tf.Graph().as_default():
        oracle_model_config = oracle.modeling.BertConfig.from_dict(_tiny_config_dict(2, "gelu"))
        oracle.modeling.BertModel(oracle_model_config, False,
                                  tf.placeholder(tf.int32, [2, 8]))
        tvars = tf.trainable_variables()
        assignment_map, initialized = module.get_assignment_map_from_checkpoint(tvars, ckpt)
        self.assertEqual(set(assignment_map), saved)
        self.assertEqual({v.op.name for v in tvars}, saved)
        for v in tvars:
          self.assertIn(v.name, initialized)

  def test_dropout_only_when_training(self):
    config = modeling.BertConfig.from_dict(_tiny_config_dict(2, "gelu"))
    batch = _batch(2)
    ckpt = os.path.join(self.tmp, "dropout")
    eval_a, _ = _run_model(modeling, config, batch, save_to=ckpt)
    eval_b, _ = _run_model(modeling, config, batch, checkpoint=ckpt)
    np.testing.assert_array_equal(eval_a["sequence"], eval_b["sequence"])
    train, _ = _run_model(modeling, config, batch, checkpoint=ckpt, is_training=True)
    self.assertGreater(np.abs(train["sequence"] - eval_a["sequence"]).max(), 1e-3)

  def test_one_hot_embeddings_match_gather(self):
    config = modeling.BertConfig.from_dict(_tiny_config_dict(2, "gelu"))
    input_ids, _, _ = _batch(2)
    with tf.Graph().as_default():
      ids = tf.constant(input_ids)
      with tf.variable_scope("a"):
        out_gather, table = modeling.embedding_lookup(ids, 101, 16, use_one_hot_embeddings=False)
      with tf.variable_scope("a", reuse=True):
        out_one_hot, _ = modeling.embedding_lookup(ids, 101, 16, use_one_hot_embeddings=True)
      with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        a, b = sess.run([out_gather, out_one_hot])
    np.testing.assert_allclose(a, b, atol=1e-7)
    self.assertEqual(a.shape, (_BATCH, _SEQ, 16))

  def test_config_round_trip_keeps_unknown_keys(self):
    path = os.path.join(self.tmp, "bert_config.json")
    with open(path, "w") as f:
      json.dump(dict(_tiny_config_dict(2, "gelu"), model_type="bert", extra=[1, 2]), f)
    config = modeling.BertConfig.from_json_file(path)
    self.assertEqual(config.extra, [1, 2])
    self.assertEqual(config.hidden_size, 64)
    again = json.loads(config.to_json_string())
    self.assertEqual(again["model_type"], "bert")
    google = oracle.modeling.BertConfig.from_json_file(path)
    self.assertEqual(config.to_json_string(), google.to_json_string())
    self.assertEqual(set(modeling.BertConfig(vocab_size=10).to_dict()),
                     set(oracle.modeling.BertConfig(vocab_size=10).to_dict()))

  def test_activations(self):
    for name in ("gelu", "gelu_exact", "relu", "tanh"):
      self.assertIsNotNone(modeling.get_activation(name))
    self.assertIsNone(modeling.get_activation("linear"))
    self.assertIsNone(modeling.get_activation(""))
    with self.assertRaisesRegex(ValueError, "swish.*gelu_exact"):
      modeling.get_activation("swish")
    with tf.Graph().as_default(), tf.Session() as sess:
      x = tf.constant(np.linspace(-5, 5, 101), tf.float32)
      ours, google = sess.run([modeling.gelu(x), oracle.modeling.gelu(x)])
      np.testing.assert_allclose(ours, google, atol=1e-7)
      exact = sess.run(modeling.gelu_exact(x))
      self.assertGreater(np.abs(exact - ours).max(), 1e-4)

  def test_shape_errors_name_the_numbers(self):
    config = modeling.BertConfig.from_dict(_tiny_config_dict(2, "gelu"))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "40.*32"):
        modeling.BertModel(config, False, tf.zeros([2, 40], tf.int32))
    with tf.Graph().as_default():
      bad = modeling.BertConfig.from_dict(dict(_tiny_config_dict(2, "gelu"), num_attention_heads=5))
      with self.assertRaisesRegex(ValueError, r"\(64\).*\(5\)"):
        modeling.BertModel(bad, False, tf.zeros([2, 8], tf.int32))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "actual rank `3`"):
        modeling.BertModel(config, False, tf.zeros([2, 8, 1], tf.int32))


if __name__ == "__main__":
  absltest.main()
