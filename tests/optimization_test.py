"""Our optimizer against Google's (bert-tensorflow 1.0.4): same variables, slots and global step."""

from absl.testing import absltest
import numpy as np

from tests import oracle
import tensorflow.compat.v1 as tf

from clinicalbert_tf import optimization
from tests import testutil

_NUM_TRAIN_STEPS = 10
_NUM_WARMUP_STEPS = 2
_INIT_LR = 0.1  # Large, so that one step's differences are far above the tolerance.


def _initial_values():
  rng = np.random.RandomState(7)
  return {
      "layer/dense/kernel": rng.randn(6, 4).astype(np.float32),
      "layer/dense/bias": rng.randn(4).astype(np.float32),
      "layer/LayerNorm/gamma": (1 + 0.1 * rng.randn(4)).astype(np.float32),
      "layer/LayerNorm/beta": rng.randn(4).astype(np.float32),
      "head/output_weights": rng.randn(3, 4).astype(np.float32),
      "head/layer_norm_scale": rng.randn(3).astype(np.float32),
  }


def _batches():
  rng = np.random.RandomState(11)
  return [rng.randn(5, 6).astype(np.float32) for _ in range(3)]


def _google_create_optimizer_in_order(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu):
  """Google's create_optimizer, with its global-step increment ordered after the update.

  Google groups `global_step.assign(global_step + 1)` with the parameter updates without an order,
  so the learning rate of a step may read the step before or after the increment, and which one
  varies from run to run (seen here: the same three steps gave different weights in repeated runs).
  Its comments state the intended rule (the rate of step s uses s). To compare against that rule
  deterministically, the increment Google's code creates is made to wait for every update op its
  optimizer created; nothing else in Google's code is touched.
  """
  graph = tf.get_default_graph()
  global_step = tf.train.get_or_create_global_step()
  first_new_op = len(graph.get_operations())

  def assign_after_updates(value):
    initializers = {v.initializer for v in tf.global_variables()}  # The slots' zero-fills.
    updates = [op for op in graph.get_operations()[first_new_op:]
               if op.type == "Assign" and op not in initializers]
    with tf.control_dependencies(updates):
      return tf.assign(global_step, value)

  global_step.assign = assign_after_updates
  return oracle.optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                              use_tpu)


def _train(create_optimizer, scale):
  """Runs three steps; returns ({variable name: value}, global_step, learning rates seen)."""
  with tf.Graph().as_default():
    variables = {name: tf.get_variable(name, initializer=value)
                 for name, value in _initial_values().items()}
    x = tf.placeholder(tf.float32, [None, 6])
    h = tf.matmul(x, variables["layer/dense/kernel"]) + variables["layer/dense/bias"]
    h = h * variables["layer/LayerNorm/gamma"] + variables["layer/LayerNorm/beta"]
    logits = tf.matmul(h, variables["head/output_weights"], transpose_b=True)
    logits += variables["head/layer_norm_scale"]
    # `scale` sets the gradient norm: large values exercise the global-norm clipping.
    loss = scale * tf.reduce_mean(tf.square(tf.tanh(logits) - 0.5))
    train_op = create_optimizer(loss, _INIT_LR, _NUM_TRAIN_STEPS, _NUM_WARMUP_STEPS, False)
    global_step = tf.train.get_global_step()
    config = tf.ConfigProto(inter_op_parallelism_threads=1, intra_op_parallelism_threads=1)
    with tf.Session(config=config) as sess:
      sess.run(tf.global_variables_initializer())
      for batch in _batches():
        sess.run(train_op, {x: batch})
      values = {v.op.name: sess.run(v) for v in tf.global_variables()}
      step = sess.run(global_step)
  return values, step


class OptimizationOracleTest(testutil.TestCase):

  def _compare(self, scale):
    ours, ours_step = _train(optimization.create_optimizer, scale)
    google, google_step = _train(_google_create_optimizer_in_order, scale)
    self.assertEqual(ours_step, 3)
    self.assertEqual(ours_step, google_step)
    self.assertEqual(set(ours), set(google))
    for name in _initial_values():
      self.assertIn(name + "/adam_m", ours)
      self.assertIn(name + "/adam_v", ours)
    for name, value in google.items():
      np.testing.assert_allclose(ours[name], value, rtol=0, atol=1e-6, err_msg=name)
    # The variables really moved (the comparison is not between two untouched copies).
    start = _initial_values()
    for name in start:
      self.assertGreater(np.abs(ours[name] - start[name]).max(), 1e-3, name)

  def test_three_steps_across_warmup_small_gradients(self):
    self._compare(scale=0.01)

  def test_three_steps_across_warmup_clipped_gradients(self):
    self._compare(scale=1000.0)

  def test_learning_rate_schedule(self):
    with tf.Graph().as_default():
      step = tf.placeholder(tf.int64, [])
      lr = optimization.learning_rate_schedule(1.0, 10, 4, global_step=step)
      with tf.Session() as sess:
        got = [sess.run(lr, {step: s}) for s in range(12)]
    # Warmup 0, .25, .5, .75, then Google's un-rescaled linear decay 1 - s/10, 0 after the end.
    expected = [0.0, 0.25, 0.5, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0]
    np.testing.assert_allclose(got, expected, atol=1e-7)

  def test_weight_decay_exclusions(self):
    opt = optimization.AdamWeightDecayOptimizer(
        0.1, weight_decay_rate=0.01,
        exclude_from_weight_decay=list(optimization.EXCLUDE_FROM_WEIGHT_DECAY))
    self.assertTrue(opt._do_use_weight_decay("bert/encoder/layer_0/output/dense/kernel"))
    for name in ("bert/embeddings/LayerNorm/gamma", "x/layer_norm_scale", "cls/predictions/output_bias"):
      self.assertFalse(opt._do_use_weight_decay(name), name)


if __name__ == "__main__":
  absltest.main()
