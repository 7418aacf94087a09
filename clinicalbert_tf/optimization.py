"""BERT's optimizer: Adam with decoupled weight decay, linear warmup and linear decay.

The same math as google-research/bert's `optimization.py`, so that continued pretraining and
fine-tuning behave as the released models were trained:

  * learning rate: `init_lr * step / num_warmup_steps` while `step < num_warmup_steps`, otherwise
    `init_lr * (1 - min(step, num_train_steps) / num_train_steps)` (the decay is not rescaled to start
    after warmup);
  * Adam without bias correction (beta_1 0.9, beta_2 0.999, epsilon 1e-6), with decoupled weight decay
    0.01 added to the update of every variable whose name does not contain `LayerNorm`,
    `layer_norm` or `bias`;
  * gradients clipped to a global norm of 1.0;
  * slots are variables named `<variable>/adam_m` and `<variable>/adam_v` (so checkpoints keep
    Google's names) and `global_step` grows by exactly one per training step.

One deliberate difference, which does not change the math: the `global_step` increment runs after
the parameter update (a control dependency). Google's graph groups the two without an order, so
in principle the learning rate of a step could read the already-incremented step.

Speed: Google's update is about fourteen elementwise ops per variable, each a pass over memory (the
Base model's 110M parameters make that several GB per step). For plain (not distributed) variables
the same update runs as two fused kernels: `ApplyGradientDescent` with `delta = param` and
`alpha = lr * weight_decay_rate` takes the decoupled decay off the old value, then `ApplyAdam` with
`beta1_power = beta2_power = 0` (so its bias-correction factor `sqrt(1 - 0) / (1 - 0)` is exactly 1)
does `m += (g - m) (1 - b1)`, `v += (g^2 - v) (1 - b2)`, `param -= lr * m / (sqrt(v) + eps)`.
Together: `param - lr * (m / (sqrt(v) + eps) + weight_decay_rate * param)`, Google's formula.

The kernel forms `1 - b2` in float32 (0.00099998713 for 0.999, against Google's 0.001), which
would make `v` 1.3e-5 too small relative. So the gradient given to the kernel is multiplied by
`c = sqrt(0.001 / 0.00099998713)` and its `b1` is the float32 whose `1 - b1` times `c` is nearest to
0.1 (`_fused_coefficients`): then `m` and `v` are Google's within float rounding (a few ulp after
several steps; tests/optimization_test.py compares with Google's optimizer). In `create_optimizer`
`c` rides on the clipping multiply, so it costs no pass of its own.
"""

import math
import re

import numpy as np
import tensorflow.compat.v1 as tf

from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-direct-tensorflow-import

# Variables whose names match any of these get no weight decay (Google's list).
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


def learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps, global_step=None):
  """The learning rate tensor for the current `global_step` (warmup, then linear decay to 0).

  Args:
    init_lr: peak learning rate (Python float).
    num_train_steps: steps over which the rate decays linearly to zero.
    num_warmup_steps: steps of linear warmup from zero (0 or None: no warmup).
    global_step: the step variable (default: the graph's global step, created if missing).

  Returns:
    A float32 scalar tensor.
  """
  if global_step is None:
    global_step = tf.train.get_or_create_global_step()

  learning_rate = tf.constant(value=init_lr, shape=[], dtype=tf.float32)
  learning_rate = tf.train.polynomial_decay(
      learning_rate, global_step, num_train_steps, end_learning_rate=0.0, power=1.0, cycle=False)

  if num_warmup_steps:
    global_steps_int = tf.cast(global_step, tf.int32)
    warmup_steps_int = tf.constant(num_warmup_steps, dtype=tf.int32)
    warmup_percent_done = (tf.cast(global_steps_int, tf.float32) /
                           tf.cast(warmup_steps_int, tf.float32))
    warmup_learning_rate = init_lr * warmup_percent_done
    is_warmup = tf.cast(global_steps_int < warmup_steps_int, tf.float32)
    learning_rate = (1.0 - is_warmup) * learning_rate + is_warmup * warmup_learning_rate
  return learning_rate


def adam_slots(param_name, param):
  """The moments of `param`: float32 variables `<param_name>/adam_m` and `/adam_v`, zeros at first.

  Plain variables (not Optimizer slots), so their names are exactly those of Google's checkpoints
  (which HuggingFace's loader skips). Every optimizer here uses them, and `train_op` creates them
  ahead of a `tf.cond` through this function; a later call under reuse returns the same variables.
  """
  shape = param.shape.as_list()
  return tuple(tf.get_variable(name=param_name + "/" + slot, shape=shape, dtype=tf.float32,
                               trainable=False, initializer=tf.zeros_initializer())
               for slot in ("adam_m", "adam_v"))


def uses_weight_decay(param_name, weight_decay_rate, exclude_from_weight_decay):
  """Google's rule: decay when the rate is non-zero and no exclusion pattern matches the name."""
  if not weight_decay_rate:
    return False
  return not any(re.search(r, param_name) is not None for r in exclude_from_weight_decay or ())


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                     tvars=None, grads=None):
  """Creates the training op: clipped gradients, AdamWeightDecay, global step + 1.

  Args:
    loss: scalar loss tensor.
    init_lr: peak learning rate.
    num_train_steps: total training steps (the decay reaches zero there).
    num_warmup_steps: linear warmup steps.
    use_tpu: wrap the optimizer in a `CrossShardOptimizer` (TPU only).
    tvars: (optional) variables to train; default all trainable variables.
    grads: (optional) precomputed gradients for `tvars` (e.g. accumulated or unscaled ones);
      default `tf.gradients(loss, tvars)`.

  Returns:
    The training op.
  """
  global_step = tf.train.get_or_create_global_step()
  learning_rate = learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps, global_step)

  optimizer = AdamWeightDecayOptimizer(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY))

  if use_tpu:
    optimizer = tf.tpu.CrossShardOptimizer(optimizer)

  if tvars is None:
    tvars = tf.trainable_variables()
  if grads is None:
    grads = tf.gradients(loss, tvars)

  # This is how the model was pre-trained.
  if use_tpu:
    (grads, _) = tf.clip_by_global_norm(grads, clip_norm=1.0)
    apply_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)
  else:
    # tf.clip_by_global_norm's scale; the optimizer applies it (with the fused kernels' gradient
    # factor folded in) instead of a separate multiply per gradient.
    clip_scale = _clip_by_global_norm_scale(grads, clip_norm=1.0)
    apply_op = optimizer._apply_scaled_gradients(zip(grads, tvars), clip_scale)  # pylint: disable=protected-access

  # AdamWeightDecayOptimizer does not touch global_step (Google's design); increment it once,
  # after the update, so this step's learning rate always saw the old value.
  with tf.control_dependencies([apply_op]):
    train_op = global_step.assign_add(1)
  return tf.group(apply_op, train_op)


def _clip_by_global_norm_scale(grads, clip_norm):
  """The factor `tf.clip_by_global_norm(grads, clip_norm)` multiplies every gradient by.

  The same ops as TF's: the global norm over the gradients (of an `IndexedSlices` its values, as
  given), `clip_norm * min(1 / norm, 1 / clip_norm)`, NaN when the norm is not finite.
  """
  with tf.name_scope("clip_by_global_norm"):
    use_norm = tf.linalg.global_norm(grads)
    scale_for_finite = clip_norm * tf.minimum(
        1.0 / use_norm, tf.constant(1.0, dtype=use_norm.dtype) / clip_norm)
    return scale_for_finite + (use_norm - use_norm)


class AdamWeightDecayOptimizer(tf.train.Optimizer):
  """Adam with "correct" (decoupled) L2 weight decay and no bias correction."""

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="AdamWeightDecayOptimizer"):
    """Constructs an AdamWeightDecayOptimizer.

    Args:
      learning_rate: float or scalar tensor.
      weight_decay_rate: decoupled weight decay, added to the update as `rate * param`.
      beta_1: first-moment decay.
      beta_2: second-moment decay.
      epsilon: added to the square root of the second moment.
      exclude_from_weight_decay: regular expressions; matching variable names get no decay.
      name: optimizer name.
    """
    super(AdamWeightDecayOptimizer, self).__init__(False, name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay

  def apply_gradients(self, grads_and_vars, global_step=None, name=None):
    """Applies one Adam step to every (gradient, variable) pair; ignores `global_step`."""
    return self._apply_scaled_gradients(grads_and_vars, None, name=name)

  def _apply_scaled_gradients(self, grads_and_vars, grad_scale, name=None):
    """`apply_gradients` with every gradient first multiplied by the scalar `grad_scale`.

    `grad_scale` None means 1. The scaling is what `tf.clip_by_global_norm` does to the gradients
    (IndexedSlices: to their values, before they are summed into a dense gradient).
    """
    assignments = []
    for (grad, param) in grads_and_vars:
      if grad is None or param is None:
        continue

      param_name = self._get_variable_name(param.name)

      m, v = adam_slots(param_name, param)

      kind = _fused_kind(param, m, v, self.beta_1, self.beta_2)
      if kind is not None:
        if isinstance(grad, tf.IndexedSlices):
          grad = tf.convert_to_tensor(grad)
        assignments.append(self._fused_update(kind, grad, grad_scale, param, m, v, param_name))
        continue

      if grad_scale is not None:
        if isinstance(grad, tf.IndexedSlices):
          grad = tf.IndexedSlices(grad.values * grad_scale, grad.indices, grad.dense_shape)
        else:
          grad = grad * grad_scale
      if isinstance(grad, tf.IndexedSlices):
        grad = tf.convert_to_tensor(grad)

      # Standard Adam moments.
      next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
      next_v = tf.multiply(self.beta_2, v) + tf.multiply(1.0 - self.beta_2, tf.square(grad))

      update = next_m / (tf.sqrt(next_v) + self.epsilon)

      # Adding the squared weights to the loss would interact with m and v; decaying the weights
      # directly is the "decoupled" weight decay of Loshchilov & Hutter.
      if self._do_use_weight_decay(param_name):
        update += self.weight_decay_rate * param

      next_param = param - self.learning_rate * update

      assignments.extend([param.assign(next_param), m.assign(next_m), v.assign(next_v)])
    return tf.group(*assignments, name=name)

  def _fused_update(self, kind, grad, grad_scale, param, m, v, param_name):
    """Google's update of one variable as two fused kernels (see the module docstring).

    Args:
      kind: "ref" or "resource" (`_fused_kind`).
      grad: dense gradient, same shape as `param`.
      grad_scale: scalar the gradient is multiplied by first, or None.
      param, m, v: the variable and its two slots.
      param_name: the variable's name (for the weight decay exclusions).

    Returns:
      The op that updates `param`, `m` and `v`.
    """
    beta1, factor = _fused_coefficients(self.beta_1, self.beta_2)
    if grad_scale is None:
      grad = grad * factor
    else:
      grad = grad * (grad_scale * factor)
    lr = tf.convert_to_tensor(self.learning_rate, dtype=tf.float32)
    decay = []
    if self._do_use_weight_decay(param_name):
      # The decay reads the old value: it must wait for this step's gradient (and so for every
      # read of the variable in the forward and backward pass, which the gradients' global norm
      # depends on).
      with tf.control_dependencies([grad]):
        alpha = lr * self.weight_decay_rate
        if kind == "resource":
          decay = [tf.raw_ops.ResourceApplyGradientDescent(
              var=param.handle, alpha=alpha, delta=param.read_value())]
        else:
          decay = [tf.raw_ops.ApplyGradientDescent(
              var=param._ref(), alpha=alpha, delta=param.value()).op]  # pylint: disable=protected-access
    with tf.control_dependencies(decay):
      args = dict(beta1_power=tf.constant(0.0), beta2_power=tf.constant(0.0), lr=lr,
                  beta1=tf.constant(beta1, tf.float32),
                  beta2=tf.constant(self.beta_2, tf.float32),
                  epsilon=tf.constant(self.epsilon, tf.float32), grad=grad)
      if kind == "resource":
        return tf.raw_ops.ResourceApplyAdam(var=param.handle, m=m.handle, v=v.handle, **args)
      return tf.raw_ops.ApplyAdam(var=param._ref(), m=m._ref(), v=v._ref(), **args).op  # pylint: disable=protected-access

  def _do_use_weight_decay(self, param_name):
    """Whether to use L2 weight decay for `param_name`."""
    return uses_weight_decay(param_name, self.weight_decay_rate, self.exclude_from_weight_decay)

  def _get_variable_name(self, param_name):
    """Get the variable name from the tensor name."""
    m = re.match("^(.*):\\d+$", param_name)
    if m is not None:
      param_name = m.group(1)
    return param_name


def _fused_coefficients(beta_1, beta_2):
  """(b1 for ApplyAdam, gradient factor c) that make its float32 moments Google's.

  ApplyAdam's moments are `m (1 - k1) + k1 c g` and `v (1 - k2) + k2 c^2 g^2` with
  `k = 1 - float32(b)` formed in float32 (exact for b in [0.5, 1): a multiple of 2^-24). Google's
  are `float32(b1) m + float32(1 - b1) g` and `float32(b2) v + float32(1 - b2) g^2`. So `b2` is
  passed as is (`1 - k2` is float32(b2) exactly), `c = sqrt(float32(1 - b2) / k2)`, and `k1` is
  the multiple of 2^-24 nearest to `float32(1 - b1) / c`.
  """
  f32 = np.float32
  k2 = float(f32(1.0) - f32(beta_2))
  factor = math.sqrt(float(f32(1.0 - beta_2)) / k2)
  k1 = round(float(f32(1.0 - beta_1)) / factor * 2.0**24) / 2.0**24
  return 1.0 - k1, factor


def _fused_kind(param, m, v, beta_1, beta_2):
  """"ref" or "resource" when the fused kernels can update these variables, else None.

  Only plain float32 variables of one kind qualify: under a `tf.distribute` strategy (mirrored
  variables, whose assignments the strategy must see) the update stays Google's ops, and so it
  does for betas outside [0.5, 1), where `_fused_coefficients` does not hold.
  """
  if tf.distribute.has_strategy() or not (0.5 <= beta_1 < 1.0 and 0.5 <= beta_2 < 1.0):
    return None
  variables = (param, m, v)
  if any(x.dtype.base_dtype != tf.float32 for x in variables):
    return None
  if all(type(x) is resource_variable_ops.ResourceVariable for x in variables):  # pylint: disable=unidiomatic-typecheck
    return "resource"
  if all(getattr(x, "op", None) is not None and x.op.type == "VariableV2" for x in variables):
    return "ref"
  return None
