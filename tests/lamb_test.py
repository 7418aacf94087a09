"""LAMB (clinicalbert_tf/lamb.py): against TensorFlow Addons, against numpy, and in pretraining.

  * `LambOptimizer` and `lamb.create_optimizer` against `tfa.optimizers.LAMB` (tensorflow-addons
    0.23.0, test-only, same process, graph mode) over 3 steps, variables and moments compared after
    every step; tfa is configured as NVIDIA (its `exclude_from_layer_adaptation` defaults to the
    weight-decay exclusions; NVIDIA adapts every variable), and tfa's default is shown to differ.
  * an independent numpy LAMB written from NVIDIA's formula (schedule, clipping, t = step + 1),
    and the one difference tfa cannot be configured to share: `train_op` advances global_step on an
    AMP step it skips, so t runs ahead of tfa's count of updates (checked against numpy).
  * `run_pretraining.py --optimizer=lamb` on the tiny model: Google's names plus `adam_m`, `adam_v`
    and `global_step` only, a strict HuggingFace load, accumulation 2 x 4 and a MirroredStrategy
    run equal to a batch of 8, and the two-phase recipe (length 32, then length 64 from the
    phase-1 checkpoint).
"""

import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import hf
from clinicalbert_tf import lamb
from clinicalbert_tf import optimization
from clinicalbert_tf import pretraining
from clinicalbert_tf import train_op
from tests import hf_util
from tests import testutil

tf.disable_v2_behavior()

# Test-only oracle; imported after disable_v2_behavior so that it builds graph-mode ops.
import tensorflow_addons as tfa  # pylint: disable=g-import-not-at-top,g-bad-import-order

_EXCLUDE = list(optimization.EXCLUDE_FROM_WEIGHT_DECAY)
# A regular expression that matches no name: tfa then adapts every variable, as NVIDIA does (an
# empty list would fall back to the weight-decay exclusions).
_MATCHES_NOTHING = ["(?!)"]
_STEPS = 3
_NUM_TRAIN_STEPS = 10  # the linear decay gives 1.0, 0.9, 0.8 x init_lr over the 3 steps

SEQ = 32
PRED = 5


def _initial_values():
  rng = np.random.RandomState(3)
  return {
      "layer/dense/kernel": rng.randn(6, 4).astype(np.float32),
      "layer/dense/bias": rng.randn(4).astype(np.float32),  # no weight decay
      "layer/LayerNorm/gamma": (1 + 0.1 * rng.randn(4)).astype(np.float32),  # no weight decay
      "head/output_weights": rng.randn(3, 4).astype(np.float32),
      "head/zero_kernel": np.zeros([2, 3], np.float32),  # ||w|| = 0 at first: trust ratio 1.0
      "head/frozen_bias": rng.randn(5).astype(np.float32),  # gradient 0: ||u|| = 0, ratio 1.0
  }


def _gradients(scale):
  """Per step {name: gradient}; `scale` sets the global norm (> 1 exercises the clipping)."""
  rng = np.random.RandomState(5)
  steps = []
  for _ in range(_STEPS):
    grads = {name: (scale * rng.randn(*value.shape)).astype(np.float32)
             for name, value in _initial_values().items()}
    grads["head/frozen_bias"] = np.zeros_like(grads["head/frozen_bias"])
    steps.append(grads)
  return steps


def _snapshot(sess, variables, slots):
  """{name: value} of the variables and of their moments as `<name>/adam_m`, `<name>/adam_v`."""
  out = {name: sess.run(var) for name, var in variables.items()}
  for name, (m, v) in slots.items():
    out[name + "/adam_m"] = sess.run(m)
    out[name + "/adam_v"] = sess.run(v)
  return out


def _run_ours(grads_per_step, learning_rate=None, init_lr=None):
  """Our LAMB over the given gradients; a snapshot after each step.

  learning_rate: a constant, for `LambOptimizer` itself (no clipping, global step + 1 by hand);
  init_lr: for `lamb.create_optimizer` (Google's schedule over _NUM_TRAIN_STEPS, no warmup, and
  clipping at global norm 1.0).
  """
  with tf.Graph().as_default():
    variables = {name: tf.get_variable(name, initializer=value)
                 for name, value in _initial_values().items()}
    names = sorted(variables)
    tvars = [variables[n] for n in names]
    feeds = [tf.placeholder(tf.float32, variables[n].shape) for n in names]
    global_step = tf.train.get_or_create_global_step()
    if init_lr is None:
      opt = lamb.LambOptimizer(learning_rate, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999,
                               epsilon=1e-6, exclude_from_weight_decay=_EXCLUDE)
      apply_op = opt.apply_gradients(zip(feeds, tvars), global_step=global_step)
      with tf.control_dependencies([apply_op]):
        step_op = tf.group(apply_op, global_step.assign_add(1))
    else:
      step_op = lamb.create_optimizer(None, init_lr, _NUM_TRAIN_STEPS, 0, False, tvars=tvars,
                                      grads=feeds)
    graph = tf.get_default_graph()
    slots = {n: (graph.get_tensor_by_name(n + "/adam_m:0"),
                 graph.get_tensor_by_name(n + "/adam_v:0")) for n in names}
    snapshots = []
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for grads in grads_per_step:
        sess.run(step_op, {f: grads[n] for f, n in zip(feeds, names)})
        snapshots.append(_snapshot(sess, variables, slots))
      final_step = sess.run(global_step)
  return snapshots, final_step


def _run_tfa(grads_per_step, learning_rates, clip, exclude_from_layer_adaptation):
  """tfa's LAMB over the given gradients and per-step learning rates; a snapshot after each step."""
  with tf.Graph().as_default():
    variables = {name: tf.get_variable(name, initializer=value, use_resource=True)
                 for name, value in _initial_values().items()}
    names = sorted(variables)
    feeds = [tf.placeholder(tf.float32, variables[n].shape) for n in names]
    lr = tf.placeholder(tf.float32, [])
    kwargs = {"global_clipnorm": 1.0} if clip else {}
    opt = tfa.optimizers.LAMB(
        learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-6, weight_decay=0.01,
        exclude_from_weight_decay=_EXCLUDE,
        exclude_from_layer_adaptation=exclude_from_layer_adaptation, **kwargs)
    step_op = opt.apply_gradients(zip(feeds, [variables[n] for n in names]))
    slots = {n: (opt.get_slot(variables[n], "m"), opt.get_slot(variables[n], "v")) for n in names}
    snapshots = []
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for grads, rate in zip(grads_per_step, learning_rates):
        feed = {f: grads[n] for f, n in zip(feeds, names)}
        feed[lr] = rate
        sess.run(step_op, feed)
        snapshots.append(_snapshot(sess, variables, slots))
  return snapshots


def _numpy_lamb(grads_per_step, learning_rates, first_t=1, clip=True, adapt_excluded=True):
  """NVIDIA's LAMB in float64 numpy, written from the formula; a snapshot after each step.

  first_t: the bias-correction step of the first update; adapt_excluded: apply the trust ratio to
  the variables excluded from weight decay (NVIDIA) or not (tfa's default).
  """
  w = {n: v.astype(np.float64) for n, v in _initial_values().items()}
  m = {n: np.zeros_like(v) for n, v in w.items()}
  v = {n: np.zeros_like(x) for n, x in w.items()}
  snapshots = []
  for k, (grads, rate) in enumerate(zip(grads_per_step, learning_rates)):
    grads = {n: g.astype(np.float64) for n, g in grads.items()}
    if clip:
      norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
      grads = {n: g * 1.0 / max(norm, 1.0) for n, g in grads.items()}
    t = first_t + k
    for n in sorted(w):
      excluded = any(pattern in n for pattern in ("LayerNorm", "layer_norm", "bias"))
      m[n] = 0.9 * m[n] + 0.1 * grads[n]
      v[n] = 0.999 * v[n] + 0.001 * grads[n] ** 2
      u = (m[n] / (1 - 0.9 ** t)) / (np.sqrt(v[n] / (1 - 0.999 ** t)) + 1e-6)
      if not excluded:
        u = u + 0.01 * w[n]
      w_norm, u_norm = np.linalg.norm(w[n]), np.linalg.norm(u)
      ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
      if excluded and not adapt_excluded:
        ratio = 1.0
      w[n] = w[n] - ratio * rate * u
    snap = dict(w)
    snap.update({n + "/adam_m": x for n, x in m.items()})
    snap.update({n + "/adam_v": x for n, x in v.items()})
    snapshots.append({n: x.copy() for n, x in snap.items()})
  return snapshots


def _schedule(init_lr, first_step=0):
  """Google's linear decay over _NUM_TRAIN_STEPS (no warmup) at steps first_step, first_step + 1."""
  return [init_lr * (1.0 - s / _NUM_TRAIN_STEPS) for s in range(first_step, first_step + _STEPS)]


def _max_difference(a, b, names):
  return max(float(np.max(np.abs(a[n] - b[n]))) for n in names)


class LambOracleTest(testutil.TestCase):
  """Our LAMB against tfa's and against numpy, graph level."""

  def _assert_steps_close(self, ours, reference, rtol=1e-5, atol=1e-6):
    self.assertEqual(len(ours), _STEPS)
    self.assertEqual(len(reference), _STEPS)
    for step, (a, b) in enumerate(zip(ours, reference)):
      self.assertEqual(sorted(a), sorted(b))
      for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol,
                                   err_msg="step %d: %s" % (step + 1, name))

  def _assert_moved(self, snapshots):
    start = _initial_values()
    for name, value in start.items():
      moved = float(np.max(np.abs(snapshots[-1][name] - value)))
      if name == "head/frozen_bias":
        self.assertEqual(moved, 0.0, name)  # no gradient, no decay: ratio 1.0, no NaN
      else:
        self.assertGreater(moved, 1e-3, name)

  def test_optimizer_matches_tfa_constant_learning_rate(self):
    grads = _gradients(scale=0.3)
    ours, step = _run_ours(grads, learning_rate=0.05)
    self.assertEqual(step, _STEPS)
    theirs = _run_tfa(grads, [0.05] * _STEPS, clip=False,
                      exclude_from_layer_adaptation=_MATCHES_NOTHING)
    self._assert_steps_close(ours, theirs)
    self._assert_moved(ours)

  def test_create_optimizer_matches_tfa_with_schedule_and_clipping(self):
    grads = _gradients(scale=10.0)  # global norm far above 1.0
    ours, step = _run_ours(grads, init_lr=0.1)
    self.assertEqual(step, _STEPS)
    theirs = _run_tfa(grads, _schedule(0.1), clip=True,
                      exclude_from_layer_adaptation=_MATCHES_NOTHING)
    self._assert_steps_close(ours, theirs)
    self._assert_moved(ours)

  def test_tfa_default_layer_adaptation_differs_on_excluded_variables(self):
    # The one configurable difference: tfa's default does not adapt biases and LayerNorm. The
    # comparison above must be able to see it.
    grads = _gradients(scale=0.3)
    ours, _ = _run_ours(grads, learning_rate=0.05)
    default = _run_tfa(grads, [0.05] * _STEPS, clip=False, exclude_from_layer_adaptation=None)
    for name in ("layer/dense/bias", "layer/LayerNorm/gamma"):
      self.assertGreater(_max_difference(ours[-1], default[-1], [name]), 1e-3, name)
    for name in ("layer/dense/kernel", "head/output_weights"):
      np.testing.assert_allclose(ours[-1][name], default[-1][name], rtol=1e-5, atol=1e-6)

  def test_create_optimizer_matches_numpy(self):
    grads = _gradients(scale=10.0)
    ours, _ = _run_ours(grads, init_lr=0.1)
    reference = _numpy_lamb(grads, _schedule(0.1))
    self._assert_steps_close(ours, reference)
    # The comparison sees the details: t off by one, tfa's default exclusions, no clipping.
    names = sorted(_initial_values())
    for wrong in (_numpy_lamb(grads, _schedule(0.1), first_t=2),
                  _numpy_lamb(grads, _schedule(0.1), adapt_excluded=False),
                  _numpy_lamb(grads, _schedule(0.1), clip=False)):
      self.assertGreater(_max_difference(ours[-1], wrong[-1], names), 1e-4)

  def test_amp_skipped_step_advances_the_bias_correction_step(self):
    # Not configurable in tfa (its t counts applied updates): with AMP, a step with non-finite
    # gradients updates nothing but still advances global_step, so the next update uses t = 2.
    grads = _gradients(scale=10.0)
    poisoned = {n: np.full_like(g, np.inf) for n, g in grads[0].items()}
    feeds_per_step = [poisoned] + grads[:_STEPS - 1]
    with tf.Graph().as_default():
      variables = {name: tf.get_variable(name, initializer=value)
                   for name, value in _initial_values().items()}
      names = sorted(variables)
      feeds = {n: tf.placeholder(tf.float32, variables[n].shape) for n in names}
      # d loss / d w = the fed gradient.
      loss = tf.add_n([tf.reduce_sum(feeds[n] * variables[n]) for n in names])
      op = train_op.create_train_op(loss, 0.1, _NUM_TRAIN_STEPS, 0, use_amp=True,
                                    tvars=[variables[n] for n in names], optimizer="lamb")
      graph = tf.get_default_graph()
      slots = {n: (graph.get_tensor_by_name(n + "/adam_m:0"),
                   graph.get_tensor_by_name(n + "/adam_v:0")) for n in names}
      snapshots = []
      with tf.Session() as sess:
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        for step_grads in feeds_per_step:
          sess.run(op, {feeds[n]: step_grads[n] for n in names})
          snapshots.append(_snapshot(sess, variables, slots))
        self.assertEqual(sess.run(tf.train.get_global_step()), _STEPS)
    for name, value in _initial_values().items():
      self.assertAllEqual(snapshots[0][name], value)  # skipped
      self.assertAllEqual(snapshots[0][name + "/adam_m"], np.zeros_like(value))
    # Two updates, at global steps 1 and 2: t = 2, 3 and the learning rates of steps 1, 2.
    reference = _numpy_lamb(grads[:_STEPS - 1], _schedule(0.1, first_step=1)[:2], first_t=2)
    for got, want in zip(snapshots[1:], reference):
      for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    counted = _numpy_lamb(grads[:_STEPS - 1], _schedule(0.1, first_step=1)[:2], first_t=1)
    self.assertGreater(_max_difference(snapshots[-1], counted[-1], sorted(_initial_values())),
                       1e-4)

  def test_slots_are_created_once_for_both_optimizers(self):
    # train_op creates `adam_m` / `adam_v` outside its tf.cond; LAMB inside it must reuse them.
    with tf.Graph().as_default():
      w = tf.get_variable("layer/dense/kernel", initializer=np.ones([2, 2], np.float32))
      train_op.create_train_op(tf.reduce_sum(w * w), 0.1, 10, 0, num_accumulation_steps=2,
                               tvars=[w], optimizer="lamb")
      names = sorted(v.op.name for v in tf.global_variables())
    self.assertEqual(names, ["global_step", "layer/dense/kernel", "layer/dense/kernel/adam_m",
                             "layer/dense/kernel/adam_v"])


class LambPretrainingTest(testutil.TestCase):
  """run_pretraining with --optimizer=lamb on the tiny model."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.config, cls.config_file, cls.records, cls.init = testutil.write_pretraining_setup(
        cls.tmp, SEQ, PRED, full_masks=True)
    cls.model_names = sorted(testutil.read_checkpoint(cls.init))

  def _flags(self, **overrides):
    flags = dict(bert_config_file=self.config_file, input_file=self.records,
                 output_dir=self.temp_dir(), init_checkpoint=self.init, max_seq_length=SEQ,
                 max_predictions_per_seq=PRED, train_batch_size=8, eval_batch_size=8,
                 max_eval_steps=2, num_train_steps=3, num_warmup_steps=1, learning_rate=1e-2,
                 save_checkpoints_steps=100, shuffle_buffer_size=0, optimizer="lamb")
    flags.update(overrides)
    return flags

  def _assert_google_names(self, values):
    expected = set(self.model_names) | {"global_step"}
    expected |= {n + "/" + slot for n in self.model_names for slot in ("adam_m", "adam_v")}
    self.assertEqual(sorted(values), sorted(expected))

  def test_accumulation_and_strategy_match_one_batch_of_8(self):
    # As for Adam (pretraining_test): every record has the same number of masks, so 2 x 4
    # accumulated is one batch of 8.
    big = self._flags(train_batch_size=8)
    acc = self._flags(train_batch_size=4, num_accumulation_steps=2)
    r_big = pretraining.run_pretraining(do_train=True, do_eval=True, **big)
    r_acc = pretraining.run_pretraining(do_train=True, do_eval=True, **acc)
    self.assertEqual(r_acc["global_step"], 3)
    self.assertTrue(np.isfinite(r_acc["loss"]))
    self.assertResultsClose(r_acc, r_big, rtol=1e-5)
    a = testutil.read_checkpoint(tf.train.latest_checkpoint(big["output_dir"]))
    b = testutil.read_checkpoint(tf.train.latest_checkpoint(acc["output_dir"]))
    self._assert_google_names(a)
    self._assert_google_names(b)  # accumulators are not checkpointed
    for name in a:
      if "attention/self/key/bias" in name:
        # Softmax ignores a shift shared by all keys, so this gradient is 0 up to float noise,
        # and the trust ratio scales any nonzero update to lr * ||w||: the two runs' noise
        # moves it differently (Adam's epsilon keeps such a step negligible).
        continue
      np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # Under a tf.distribute strategy (MirroredStrategy, one CPU replica here: the update runs in
    # replica context on mirrored variables) the same weights.
    mirrored = self._flags(train_batch_size=8, distribution_strategy="mirrored")
    pretraining.run_pretraining(do_train=True, **mirrored)
    c = testutil.read_checkpoint(tf.train.latest_checkpoint(mirrored["output_dir"]))
    self._assert_google_names(c)
    for name in a:
      np.testing.assert_allclose(c[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)
    # LAMB, not Adam, wrote them: Adam from the same start gives other weights.
    adam = self._flags(optimizer="adamw")
    pretraining.run_pretraining(do_train=True, **adam)
    d = testutil.read_checkpoint(tf.train.latest_checkpoint(adam["output_dir"]))
    kernel = "bert/encoder/layer_0/attention/self/query/kernel"
    self.assertGreater(float(np.max(np.abs(a[kernel] - d[kernel]))), 1e-4)

  def test_two_phase_recipe(self):
    # Phase 1: length-32 records, through the script, from the init checkpoint.
    phase1 = self._flags(do_train=True, num_train_steps=3)
    phase1.pop("shuffle_buffer_size")
    proc = testutil.run_module("run_pretraining", testutil.flag_args(phase1), timeout=300)
    self.assertIn("Optimizer: LAMB", proc.stderr)  # --optimizer reached the training op
    p1_prefix = tf.train.latest_checkpoint(phase1["output_dir"])
    self.assertEqual(os.path.basename(p1_prefix), "model.ckpt-3")
    p1 = testutil.read_checkpoint(p1_prefix)
    self._assert_google_names(p1)

    # Phase 2: length-64 records with 10 predictions, a new output_dir, its own steps and warmup.
    records64 = testutil.write_pretraining_records(
        os.path.join(self.temp_dir(), "train64.tfrecord"), 32, 64, 10, self.config.vocab_size)
    phase2 = self._flags(input_file=records64, init_checkpoint=p1_prefix, max_seq_length=64,
                         max_predictions_per_seq=10, num_train_steps=3, num_warmup_steps=2,
                         learning_rate=5e-3, save_checkpoints_steps=1, keep_checkpoint_max=0)
    result = pretraining.run_pretraining(do_train=True, do_eval=True, **phase2)
    self.assertEqual(result["global_step"], 3)
    self.assertTrue(np.isfinite(result["loss"]))

    # Step 1 of phase 2 ran at learning rate 0 (warmup at step 0): it holds the phase-1 weights
    # exactly, the position embeddings beyond 32 (which phase 1 never fed) included.
    start = testutil.read_checkpoint(os.path.join(phase2["output_dir"], "model.ckpt-1"))
    self._assert_google_names(start)
    for name in self.model_names:
      self.assertAllEqual(start[name], p1[name])
    position = "bert/embeddings/position_embeddings"
    self.assertEqual(start[position].shape, (64, 32))
    self.assertAllEqual(start[position][SEQ:], p1[position][SEQ:])
    # Only trainable variables come from --init_checkpoint (Google's rule): global_step restarts
    # and the moments start from zero, so after one step m = 0.1 g and v = 0.001 g^2, m^2 / v = 10.
    self.assertEqual(int(start["global_step"]), 1)
    for name in self.model_names:
      m, v = start[name + "/adam_m"], start[name + "/adam_v"]
      nonzero = v > 1e-20  # away from float32 underflow
      if nonzero.any():
        np.testing.assert_allclose(m[nonzero] ** 2 / v[nonzero], 10.0, rtol=1e-3, err_msg=name)
    moment = "cls/predictions/transform/dense/kernel/adam_m"
    self.assertGreater(_max_difference(start, p1, [moment]), 0.0)

    # Then it trains at length 64: the rows beyond 32 move (by about 1e-4; weight decay alone would
    # move them by orders of magnitude less), so gradients reach them.
    final_prefix = tf.train.latest_checkpoint(phase2["output_dir"])
    self.assertEqual(os.path.basename(final_prefix), "model.ckpt-3")
    final = testutil.read_checkpoint(final_prefix)
    self.assertGreater(float(np.abs(final[position][SEQ:] - p1[position][SEQ:]).max()), 1e-6)
    hf_util.assert_strict_hf_load(final_prefix, self.config)
    # export_hf.py's reader takes it too, leaving out exactly the optimizer state.
    _, head, _, skipped = hf.checkpoint_to_hf_tensors(final_prefix, self.config.to_dict(),
                                                      head="pretraining")
    self.assertEqual(head, "pretraining")
    self.assertEqual(skipped, sorted(n for n in final if n not in self.model_names))


if __name__ == "__main__":
  absltest.main()
