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
"""

import re

import tensorflow.compat.v1 as tf

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
  (grads, _) = tf.clip_by_global_norm(grads, clip_norm=1.0)

  apply_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)

  # AdamWeightDecayOptimizer does not touch global_step (Google's design); increment it once,
  # after the update, so this step's learning rate always saw the old value.
  with tf.control_dependencies([apply_op]):
    train_op = global_step.assign_add(1)
  return tf.group(apply_op, train_op)


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
    assignments = []
    for (grad, param) in grads_and_vars:
      if grad is None or param is None:
        continue

      param_name = self._get_variable_name(param.name)

      # Slots are plain variables (not Optimizer slots) so their names are exactly
      # `<param>/adam_m` and `<param>/adam_v`, as in Google's checkpoints.
      m = tf.get_variable(name=param_name + "/adam_m", shape=param.shape.as_list(),
                          dtype=tf.float32, trainable=False, initializer=tf.zeros_initializer())
      v = tf.get_variable(name=param_name + "/adam_v", shape=param.shape.as_list(),
                          dtype=tf.float32, trainable=False, initializer=tf.zeros_initializer())

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

  def _do_use_weight_decay(self, param_name):
    """Whether to use L2 weight decay for `param_name`."""
    if not self.weight_decay_rate:
      return False
    if self.exclude_from_weight_decay:
      for r in self.exclude_from_weight_decay:
        if re.search(r, param_name) is not None:
          return False
    return True

  def _get_variable_name(self, param_name):
    """Get the variable name from the tensor name."""
    m = re.match("^(.*):\\d+$", param_name)
    if m is not None:
      param_name = m.group(1)
    return param_name
