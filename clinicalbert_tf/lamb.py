"""LAMB (layer-wise adaptive moments) as NVIDIA's BERT recipe uses it, with Google's names.

The optimizer of NVIDIA's DeepLearningExamples `TensorFlow/LanguageModeling/BERT/optimization.py`
(`LAMBOptimizer`), for large global batches (You et al., "Large Batch Optimization for Deep
Learning: Training BERT in 76 minutes"). For each variable w with (clipped) gradient g, at update
number t = 1, 2, ...:

    m = beta_1 m + (1 - beta_1) g             v = beta_2 v + (1 - beta_2) g^2
    u = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
    u += weight_decay_rate * w                (not for names matching EXCLUDE_FROM_WEIGHT_DECAY)
    r = ||w|| / ||u||                         (1.0 when either norm is 0; for every variable)
    w -= r * learning_rate * u

with beta_1 0.9, beta_2 0.999, epsilon 1e-6, weight decay 0.01 and Google's exclusions
("LayerNorm", "layer_norm", "bias"). Norms are over the whole variable (a "layer" is a variable).

How this fits the rest of the project:

  * slots are plain variables `<variable>/adam_m` and `<variable>/adam_v`, exactly the names of
    Google's AdamWeightDecay: HuggingFace's `load_tf_weights_in_bert` (and `export_hf.py`) skip
    them, `train_op._create_optimizer_slots` creates them outside a `tf.cond` for both optimizers,
    and a checkpoint of one optimizer continues with the other (e.g. phase 2 of a two-phase run);
  * t comes from `global_step`: t = global_step + 1, read before the step's increment, so the
    first update of a run from scratch (global_step 0) uses t = 1. NVIDIA increments global_step
    before the update and reads t = global_step, the same number. A resumed run continues t with
    the restored global_step; a run from `--init_checkpoint` restores neither global_step nor the
    slots (only trainable variables), so t and the moments restart together;
  * the learning rate is Google's (`optimization.learning_rate_schedule`: linear warmup, then
    linear decay from `init_lr`), and gradients are clipped to a global norm of 1.0 first, as in
    `optimization.create_optimizer`.

Where NVIDIA's and TensorFlow Addons' `tfa.optimizers.LAMB` differ, this follows NVIDIA:

  * trust ratio: NVIDIA applies r to every variable, also those excluded from weight decay; tfa
    skips r (uses 1.0) for names matching `exclude_from_layer_adaptation`, which defaults to
    `exclude_from_weight_decay`, so with Google's exclusions tfa does not adapt biases and
    LayerNorm. (tfa matches NVIDIA given an `exclude_from_layer_adaptation` that matches nothing.)
  * step count: tfa's t is its `iterations + 1`, which counts applied updates; here t follows
    `global_step`, which `train_op` also advances on an AMP step it skips (non-finite gradients),
    so after k skipped steps t is k ahead of the number of updates (NVIDIA does not advance
    global_step on a skipped step).
  * bias correction, weight decay (added to u before the norms) and epsilon (outside the square
    root) are the same in both.

Differences from NVIDIA's recipe besides the optimizer itself: NVIDIA's schedule for LAMB is a
polynomial decay of power 0.5 after warmup; here it is Google's linear one. With gradient
accumulation NVIDIA clips each micro-batch before summing; here the mean of the accumulated
gradients is clipped once, as Google's clipping of one batch. (NVIDIA's first release counted t
with a Python counter per variable at graph-building time; its later release, followed here, reads
global_step.)
"""

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import optimization


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu, tvars=None,
                     grads=None):
  """Creates the training op: clipped gradients, LAMB, global step + 1.

  The contract of `optimization.create_optimizer`, with `LambOptimizer` in place of
  AdamWeightDecay.

  Args:
    loss: scalar loss tensor (unused when `grads` is given).
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
  logging.info("Optimizer: LAMB (weight decay 0.01, trust ratio on every variable)")
  global_step = tf.train.get_or_create_global_step()
  learning_rate = optimization.learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps,
                                                      global_step)

  optimizer = LambOptimizer(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=list(optimization.EXCLUDE_FROM_WEIGHT_DECAY))

  if use_tpu:
    optimizer = tf.tpu.CrossShardOptimizer(optimizer)

  if tvars is None:
    tvars = tf.trainable_variables()
  if grads is None:
    grads = tf.gradients(loss, tvars)

  (grads, _) = tf.clip_by_global_norm(grads, clip_norm=1.0)

  apply_op = optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)

  # LambOptimizer reads global_step but does not advance it; the increment waits for the update,
  # so this step's learning rate and bias correction both saw the old value.
  with tf.control_dependencies([apply_op]):
    train_op = global_step.assign_add(1)
  return tf.group(apply_op, train_op)


class LambOptimizer(tf.train.Optimizer):
  """LAMB with NVIDIA's bias correction and trust ratio; Google's slot names (see module doc)."""

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="LambOptimizer"):
    """Constructs a LambOptimizer.

    Args:
      learning_rate: float or scalar tensor.
      weight_decay_rate: decoupled weight decay, added to the update as `rate * param` before the
        trust ratio is taken.
      beta_1: first-moment decay.
      beta_2: second-moment decay.
      epsilon: added to the square root of the bias-corrected second moment.
      exclude_from_weight_decay: regular expressions; matching variable names get no decay (they
        keep the trust ratio, as in NVIDIA's optimizer).
      name: optimizer name.
    """
    super(LambOptimizer, self).__init__(False, name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay

  def apply_gradients(self, grads_and_vars, global_step=None, name=None):
    """Applies one LAMB step to every (gradient, variable) pair; reads, never advances, the step.

    Args:
      grads_and_vars: (gradient, variable) pairs; pairs with a None entry are skipped.
      global_step: the step variable; the bias correction uses global_step + 1 (default: the
        graph's global step, created if missing).
      name: name of the returned op.

    Returns:
      An op that updates the variables and their `adam_m` / `adam_v` slots.
    """
    if global_step is None:
      global_step = tf.train.get_or_create_global_step()
    # t = 1 at the first update of a run (see the module docstring).
    steps = tf.cast(global_step, tf.float32) + 1.0
    beta_1_correction = 1.0 - tf.pow(tf.constant(self.beta_1, tf.float32), steps)
    beta_2_correction = 1.0 - tf.pow(tf.constant(self.beta_2, tf.float32), steps)

    assignments = []
    for (grad, param) in grads_and_vars:
      if grad is None or param is None:
        continue

      param_name = checkpoints.variable_name(param)

      m, v = optimization.adam_slots(param_name, param)

      if isinstance(grad, tf.IndexedSlices):
        grad = tf.convert_to_tensor(grad)

      next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
      next_v = tf.multiply(self.beta_2, v) + tf.multiply(1.0 - self.beta_2, tf.square(grad))

      # Bias-corrected moments (Google's AdamWeightDecay has none; LAMB's trust ratio needs the
      # update's true scale relative to the weight decay term).
      update = (next_m / beta_1_correction) / (tf.sqrt(next_v / beta_2_correction) + self.epsilon)

      if optimization.uses_weight_decay(param_name, self.weight_decay_rate,
                                        self.exclude_from_weight_decay):
        update += self.weight_decay_rate * param

      # Layer-wise trust ratio, for every variable (NVIDIA); 1.0 where a norm is 0 (a variable
      # initialised to zeros, or one that gets no update), which also keeps 0/0 out.
      w_norm = tf.norm(param)
      u_norm = tf.norm(update)
      safe_u_norm = tf.where(u_norm > 0.0, u_norm, tf.ones_like(u_norm))
      ratio = tf.where(tf.logical_and(w_norm > 0.0, u_norm > 0.0), w_norm / safe_u_norm,
                       tf.ones_like(w_norm))

      next_param = param - ratio * self.learning_rate * update

      assignments.extend([param.assign(next_param), m.assign(next_m), v.assign(next_v)])
    return tf.group(*assignments, name=name)
