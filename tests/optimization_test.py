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


def _apply_steps(make_optimizer, use_resource, num_steps=8, size=(37, 29), lr=0.1):
  """Runs `num_steps` updates of two variables (one decayed, one excluded) with fixed gradients.

  Returns ({variable name: value}, the op types of the graph, {variable name: initial value}).
  """
  rng = np.random.RandomState(3)
  grads = [[(rng.randn(*size) * scale).astype(np.float32) for _ in range(2)]
           for scale in np.geomspace(1e-3, 3.0, num_steps)]
  with tf.Graph().as_default() as graph:
    initial = {name: rng.randn(*size).astype(np.float32)
               for name in ("w/kernel", "w/LayerNorm/gamma")}
    params = [tf.get_variable(name, initializer=value, use_resource=use_resource)
              for name, value in initial.items()]
    feeds = [tf.placeholder(tf.float32, size) for _ in params]
    with tf.variable_scope("", use_resource=use_resource):
      op = make_optimizer().apply_gradients(zip(feeds, params))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for step_grads in grads:
        sess.run(op, dict(zip(feeds, step_grads)))
      values = {v.op.name: sess.run(v) for v in tf.global_variables()}
    types = {o.type for o in graph.get_operations()}
  return values, types, initial


def _optimizer(module, **kwargs):
  args = dict(learning_rate=0.1, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
              exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
  args.update(kwargs)
  return lambda: module.AdamWeightDecayOptimizer(**args)


class FusedAdamTest(testutil.TestCase):
  """The fused kernels (ApplyGradientDescent + ApplyAdam) against Google's elementwise update."""

  def _check(self, use_resource, expect_fused, **kwargs):
    ours, types, initial = _apply_steps(_optimizer(optimization, **kwargs), use_resource)
    google, _, _ = _apply_steps(_optimizer(oracle.optimization, **kwargs), use_resource)
    self.assertEqual(set(ours), set(google))
    self.assertIn("w/kernel/adam_m", ours)
    self.assertIn("w/LayerNorm/gamma/adam_v", ours)
    fused = {"ResourceApplyAdam", "ApplyAdam"} & types
    self.assertEqual(bool(fused), expect_fused, types)
    for name, value in google.items():
      # Moments are compared relative to their size (v spans 1e-12 to 10 here).
      scale = max(1.0, float(np.abs(value).max()))
      np.testing.assert_allclose(ours[name] / scale, value / scale, rtol=0, atol=1e-6,
                                 err_msg=name)
    # Eight steps at learning rate 0.1 moved the weights far more than the tolerance.
    for name, value in initial.items():
      self.assertGreater(np.abs(ours[name] - value).max(), 0.1, name)

  def test_ref_variables_equal_google_over_eight_steps(self):
    self._check(use_resource=False, expect_fused=True)

  def test_resource_variables_equal_google_over_eight_steps(self):
    self._check(use_resource=True, expect_fused=True)

  def test_betas_outside_the_fused_range_use_googles_ops(self):
    self._check(use_resource=False, expect_fused=False, beta_1=0.3)

  def test_no_weight_decay(self):
    self._check(use_resource=False, expect_fused=True, weight_decay_rate=0.0)

  def test_fused_coefficients_give_googles_float32_factors(self):
    for beta_1, beta_2 in ((0.9, 0.999), (0.9, 0.98), (0.8, 0.9999)):
      beta1, factor = optimization._fused_coefficients(beta_1, beta_2)
      f32 = np.float32
      self.assertEqual(f32(beta1), beta1)  # exact in float32, so 1 - beta1 is too
      k1 = 1.0 - beta1
      k2 = float(f32(1.0) - f32(beta_2))
      # The kernel's gradient factors against Google's float32 constants.
      self.assertAlmostEqual(k1 * factor / float(f32(1.0 - beta_1)), 1.0, delta=4e-7)
      self.assertAlmostEqual(k2 * factor**2 / float(f32(1.0 - beta_2)), 1.0, delta=1e-12)
      # The moments' own factors: 1 - k2 is float32(beta_2) exactly.
      self.assertEqual(f32(1.0 - k2), f32(beta_2))


if __name__ == "__main__":
  absltest.main()
