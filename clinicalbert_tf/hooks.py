"""Session hooks for every training run: progress with rate and ETA, and a NaN guard.

`estimator.build_estimator`'s `train()` adds both unless the caller passes its own.
"""

import time

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import progress


class NanLossError(tf.train.NanLossDuringTrainingError):
  """The training loss became NaN or infinite; the message names the step."""

  def __init__(self, message):
    super(NanLossError, self).__init__()
    self.message = message

  def __str__(self):
    return self.message


def _global_step_read_tensor():
  """The tensor that reads the global step (the strategy-safe read the Estimator registers)."""
  reads = tf.get_collection("global_step_read_op_cache")
  if reads:
    return reads[0]
  step = tf.train.get_global_step()
  if step is None:
    raise RuntimeError("the graph has no global step")
  return tf.identity(step)


class ProgressHook(tf.train.SessionRunHook):
  """Logs the loss, steps/s, examples/s and the ETA every `every_n_steps` global steps.

  Also logs where training starts ("training from global step S to T", so a resumed run says
  where it resumed) and, at the end, the mean rate over the run. Rates are measured from the end of
  the first step, so graph building, checkpoint restoring and the first step's warm-up are not
  counted.
  """

  def __init__(self, total_steps, batch_size, every_n_steps=100, loss=None):
    """Args: total_steps: the global step training ends at (None: no ETA); batch_size: examples
    per global step; every_n_steps: log interval in global steps; loss: the loss tensor to show
    (None: the loss the Estimator registers in `tf.GraphKeys.LOSSES`, if any)."""
    self._total_steps = total_steps
    self._batch_size = batch_size
    self._every_n = max(1, int(every_n_steps or 100))
    self._loss = loss
    self._step_tensor = None
    self._last_time = None
    self._last_step = None
    self._next_log = None
    self._first_time = None
    self._first_step = None

  def begin(self):
    self._step_tensor = _global_step_read_tensor()
    if self._loss is None:
      losses = tf.get_collection(tf.GraphKeys.LOSSES)
      self._loss = losses[-1] if losses else tf.constant(float("nan"))

  def after_create_session(self, session, coord):
    start = int(session.run(self._step_tensor))
    if self._total_steps:
      logging.info("training from global step %d to %d", start, self._total_steps)
    else:
      logging.info("training from global step %d", start)

  def before_run(self, run_context):
    return tf.train.SessionRunArgs([self._step_tensor, self._loss])

  def after_run(self, run_context, run_values):
    # The step fetched with the training op may be read before or after its increment; near a log
    # point read it again, after the run, to be exact.
    step, loss = run_values.results
    step = int(step)
    now = time.time()
    if self._last_time is None:
      step = int(run_context.session.run(self._step_tensor))
      self._last_time, self._last_step = now, step
      self._first_time, self._first_step = now, step
      self._next_log = (step // self._every_n + 1) * self._every_n
      return
    if step + 1 < self._next_log:
      return
    step = int(run_context.session.run(self._step_tensor))
    if step < self._next_log:
      return
    elapsed = now - self._last_time
    steps = step - self._last_step
    if elapsed <= 0 or steps <= 0:
      return
    steps_per_sec = steps / elapsed
    examples_per_sec = steps_per_sec * self._batch_size
    eta = None
    if self._total_steps:
      # At the rate of the last interval (not the mean since the start): the steps still to go
      # cost what the interval's steps cost.
      eta = progress.eta_seconds(steps, steps + max(0, self._total_steps - step), elapsed)
      done = "step %d/%d (%.1f%%)" % (step, self._total_steps, 100.0 * step / self._total_steps)
    else:
      done = "step %d" % step
    logging.info("%s: loss %.4g, %.3g steps/s, %.4g examples/s, ETA %s", done, float(loss),
                 steps_per_sec, examples_per_sec, progress.format_duration(eta))
    self._last_time, self._last_step = now, step
    self._next_log = (step // self._every_n + 1) * self._every_n

  def end(self, session):
    if self._last_time is None:
      return
    step = int(session.run(self._step_tensor))
    elapsed = time.time() - self._first_time
    steps = step - self._first_step
    if elapsed > 0 and steps > 0:
      logging.info("trained to global step %d; %d steps after the first in %s: %.3g steps/s, "
                   "%.4g examples/s", step, steps, progress.format_duration(elapsed),
                   steps / elapsed, steps / elapsed * self._batch_size)


class NanLossHook(tf.train.SessionRunHook):
  """Stops training with `NanLossError` naming the step when the loss is NaN or infinite.

  The check runs after the step, so the step's update has been applied to the variables in memory,
  but no checkpoint of it is written: the newest checkpoint predates the failure.
  """

  def __init__(self, loss=None):
    """Args: loss: the loss tensor; None uses the loss the Estimator registers (the last entry of
    `tf.GraphKeys.LOSSES` when the session starts)."""
    self._loss = loss
    self._step_tensor = None

  def begin(self):
    if self._loss is None:
      losses = tf.get_collection(tf.GraphKeys.LOSSES)
      if not losses:
        raise RuntimeError("NanLossHook: no loss tensor given and none in tf.GraphKeys.LOSSES")
      self._loss = losses[-1]
    self._step_tensor = _global_step_read_tensor()

  def before_run(self, run_context):
    return tf.train.SessionRunArgs(self._loss)

  def after_run(self, run_context, run_values):
    loss = np.asarray(run_values.results)
    if np.all(np.isfinite(loss)):
      return
    # Read the step after the failed run: it counts the step that produced the bad loss.
    step = int(run_context.session.run(self._step_tensor))
    what = "NaN" if np.any(np.isnan(loss)) else "infinite"
    message = ("training loss is %s at global step %d; stopping. The last checkpoint before it "
               "is kept; lower --learning_rate or check the input records before resuming." %
               (what, step))
    logging.error(message)
    raise NanLossError(message)
