"""The training op: Google's optimizer with gradient accumulation, loss scaling and replicas.

`create_train_op` is `optimization.create_optimizer` (Adam with weight decay, warmup, linear decay,
clipping at global norm 1.0) when nothing else is asked for, or `lamb.create_optimizer` (NVIDIA's
LAMB, same schedule, clipping and slot names) with `optimizer="lamb"`, and adds gradient
accumulation, dynamic loss scaling for float16 and the cross-replica gradient mean under a
`tf.distribute` strategy.
"""

import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import lamb
from clinicalbert_tf import optimization

# Collection holding the local (never checkpointed) variables that gradient accumulation and loss
# scaling add, so that tests and tools can find them.
TRAINING_STATE_COLLECTION = "clinicalbert_tf_training_state"


def _local_variable(name, shape, dtype, initializer):
  """A variable that is not checkpointed (local collection) and not trained."""
  return tf.get_variable(name, shape=shape, dtype=dtype, initializer=initializer, trainable=False,
                         collections=[tf.GraphKeys.LOCAL_VARIABLES, TRAINING_STATE_COLLECTION])


def _dense(grad):
  """A gradient as a dense tensor (embedding lookups give `IndexedSlices`)."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.convert_to_tensor(grad)
  return grad


def mixed_precision_loss_scaling(loss, tvars, init_loss_scale=2.0**15, incr_every_n_steps=2000,
                                 min_loss_scale=1.0):
  """Dynamic loss scaling for float16 gradients (as NVIDIA's BERT does it).

  The loss is multiplied by a scale before differentiation so that small float16 gradients do not
  underflow, and the gradients are divided by it again. When any gradient is not finite the step
  is to be skipped and the scale halves; after `incr_every_n_steps` finite steps it doubles.

  Args:
    loss: scalar loss.
    tvars: variables to differentiate.
    init_loss_scale, incr_every_n_steps, min_loss_scale: the schedule.

  Returns:
    (grads, all_finite, update_scale_op, loss_scale): unscaled gradients, a bool tensor, the op that
    updates the scale (run it with the step) and the scale variable.
  """
  with tf.variable_scope("loss_scaling"):
    loss_scale = _local_variable("loss_scale", [], tf.float32,
                                 tf.constant_initializer(init_loss_scale))
    good_steps = _local_variable("good_steps", [], tf.int32, tf.zeros_initializer())
  grads = tf.gradients(loss * loss_scale, tvars)
  grads = [None if g is None else _dense(g) / loss_scale for g in grads]
  all_finite = _all_finite(grads)

  def _finite():
    grow = tf.greater_equal(good_steps + 1, incr_every_n_steps)
    new_scale = tf.where(grow, loss_scale * 2.0, loss_scale)
    new_good = tf.where(grow, tf.zeros_like(good_steps), good_steps + 1)
    return tf.group(loss_scale.assign(new_scale), good_steps.assign(new_good))

  def _not_finite():
    return tf.group(loss_scale.assign(tf.maximum(loss_scale * 0.5, min_loss_scale)),
                    good_steps.assign(tf.zeros_like(good_steps)))

  update_scale_op = tf.cond(all_finite, _finite, _not_finite)
  return grads, all_finite, update_scale_op, loss_scale


def _all_finite(grads):
  """A bool tensor: every entry of every gradient is finite (None gradients are skipped)."""
  return tf.reduce_all([tf.reduce_all(tf.is_finite(g)) for g in grads if g is not None])


def _in_replica_context():
  """Whether the graph is being built for the replicas of a `tf.distribute` strategy."""
  return tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()


def _cross_replica_mean(grads):
  """Averages gradients over the replicas of the current strategy (no-op without one)."""
  if not _in_replica_context():
    return grads
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return grads
  present = [i for i, g in enumerate(grads) if g is not None]
  reduced = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [_dense(grads[i]) for i in present])
  out = list(grads)
  for i, g in zip(present, reduced):
    out[i] = g
  return out


# --optimizer values and the `create_optimizer` each stands for (same signature and contract).
_CREATE_OPTIMIZER = {
    "adamw": optimization.create_optimizer,
    "lamb": lamb.create_optimizer,
}
OPTIMIZERS = tuple(_CREATE_OPTIMIZER)


def create_train_op(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu=False,
                    num_accumulation_steps=1, use_amp=False, tvars=None, optimizer="adamw"):
  """The training op: `optimization.create_optimizer` with accumulation, AMP and replicas.

  * `num_accumulation_steps` N > 1: each call of the op adds this batch's gradients to local
    (never checkpointed) accumulators; every N-th call applies their mean with one optimizer step
    and increments `global_step`. So `num_train_steps` and the learning rate schedule count
    optimizer updates, and the effective batch is N times the batch.
  * `use_amp`: dynamic loss scaling (`mixed_precision_loss_scaling`); a step whose gradients are
    not finite updates nothing but the scale (global_step still advances, so the run still ends at
    `num_train_steps`).
  * under a strategy, gradients are averaged over the replicas before the update.

  * `optimizer`: "adamw" (`optimization.create_optimizer`, Google's) or "lamb"
    (`lamb.create_optimizer`); both keep their moments in `<var>/adam_m` and `<var>/adam_v`.

  With N = 1 and no AMP this is exactly `optimization.create_optimizer(loss, ...)` (or
  `lamb.create_optimizer`).

  Returns:
    The training op.
  """
  if optimizer not in OPTIMIZERS:
    raise ValueError("optimizer=%r: expected one of %s" % (optimizer, ", ".join(OPTIMIZERS)))
  create_optimizer = _CREATE_OPTIMIZER[optimizer]
  if tvars is None:
    tvars = tf.trainable_variables()
  n = max(1, int(num_accumulation_steps or 1))

  def optimizer_step(grads):
    return create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                            tvars=tvars, grads=grads)

  if n == 1 and not use_amp and not _in_replica_context():
    return optimizer_step(None)  # Google's training op, unchanged

  global_step = tf.train.get_or_create_global_step()
  grads, all_finite, update_scale_op = _gradients(loss, tvars, use_amp)
  if n == 1 and not use_amp:
    # Replicas only: Google's update, with the gradients all-reduced.
    return optimizer_step(_cross_replica_mean(grads))

  # The update runs inside a tf.cond from here on: its slots must exist outside it.
  _create_optimizer_slots(tvars)
  if n == 1:
    grads = _cross_replica_mean(grads)
    # Replicas see the same all-reduced gradients, so they take the same branch.
    finite = _all_finite(grads)
    with tf.control_dependencies([update_scale_op]):
      return _step_or_skip(optimizer_step, grads, finite, global_step)

  accums, apply_now = _accumulate(grads, all_finite, update_scale_op, tvars, n)

  def apply_and_reset():
    mean_grads = _cross_replica_mean([a / float(n) for a in accums])
    finite = _all_finite(mean_grads) if use_amp else tf.constant(True)
    step = _step_or_skip(optimizer_step, mean_grads, finite, global_step)
    with tf.control_dependencies([step]):
      return tf.group(*[a.assign(tf.zeros_like(a)) for a in accums])

  return tf.cond(apply_now, apply_and_reset, tf.no_op)


def _gradients(loss, tvars, use_amp):
  """Dense gradients of `loss`, loss-scaled with AMP.

  Returns:
    (grads, all_finite, update_scale_op): all_finite is a bool tensor with AMP and None without;
    update_scale_op updates the loss scale (a no-op without AMP).
  """
  if use_amp:
    grads, all_finite, update_scale_op, _ = mixed_precision_loss_scaling(loss, tvars)
    return grads, all_finite, update_scale_op
  grads = [None if g is None else _dense(g) for g in tf.gradients(loss, tvars)]
  return grads, None, tf.no_op()


def _accumulate(grads, all_finite, update_scale_op, tvars, n):
  """Adds this micro-batch's gradients to local accumulators (one per variable).

  Returns:
    (accumulators, apply_now): the accumulator variables (in the order of `tvars`) and a bool
    tensor, true on every `n`-th call, after this call's gradients (and the loss scale) are in.
  """
  accums = []
  for var in tvars:
    accums.append(_local_variable(checkpoints.variable_name(var) + "/grad_accum",
                                  var.shape.as_list(), tf.float32, tf.zeros_initializer()))
  micro_step = _local_variable("grad_accum_micro_step", [], tf.int32, tf.zeros_initializer())
  finite_f = tf.constant(1.0) if all_finite is None else tf.cast(all_finite, tf.float32)
  add_ops = []
  for accum, grad in zip(accums, grads):
    if grad is not None:
      # A non-finite micro-batch (AMP) contributes nothing instead of poisoning the sum.
      add_ops.append(accum.assign_add(tf.where(finite_f > 0, grad, tf.zeros_like(grad))))
  with tf.control_dependencies(add_ops + [update_scale_op]):
    new_micro = micro_step.assign_add(1)
  return accums, tf.equal(new_micro % n, 0)


def _step_or_skip(optimizer_step, grads, finite, global_step):
  """One optimizer step with `grads` if `finite`, else only `global_step += 1` (slots must exist)."""
  def step():
    # The slots were created by `_create_optimizer_slots`; the optimizer reuses them by name.
    with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
      return optimizer_step(grads)
  return tf.cond(finite, step, lambda: tf.group(global_step.assign_add(1)))


def _create_optimizer_slots(tvars):
  """Creates `<var>/adam_m` and `/adam_v` (both optimizers' slots) outside any tf.cond."""
  for var in tvars:
    optimization.adam_slots(checkpoints.variable_name(var), var)
