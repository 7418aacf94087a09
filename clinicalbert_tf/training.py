"""Estimator machinery shared by `run_pretraining.py` and `run_finetune.py`.

Google's scripts each build a `TPUEstimator` (which falls back to CPU/GPU when `use_tpu` is False),
load `init_checkpoint` by name and train with `optimization.create_optimizer`. This module does that
once, and adds what a long run on shared hardware needs:

  * `make_run_config`: Google's TPU `RunConfig` (honouring `keep_checkpoint_max`, which Google's
    scripts never passed on), or an Estimator `RunConfig` with a `tf.distribute` strategy
    (`mirrored`, or `multi_worker_mirrored` configured by `TF_CONFIG`); XLA auto-clustering.
  * `build_estimator`: the `TPUEstimator` as Google builds it, or an `Estimator` that accepts the same
    `model_fn` (a `TPUEstimatorSpec` is converted) and `input_fn(params)` (`params["batch_size"]` is
    the per-replica batch) under a strategy. Its `train()` adds a NaN guard and a progress log.
  * `create_train_op`: `optimization.create_optimizer` plus gradient accumulation, dynamic loss
    scaling for mixed precision and the cross-replica gradient mean under a strategy.
  * `init_from_checkpoint`: Google's by-name loading, with a count in the log and a clear error when
    a shape differs.
  * `ProgressHook` (loss, steps/s, examples/s, ETA) and `NanLossHook` (stops naming the step).
  * `enable_xla_from_argv`: scripts call it before `absl.app.run` so that `--use_xla` reaches CPU
    clusters too.
  * `define_run_config_flags` / `run_config_flag_values`: the checkpointing, logging and TPU flags
    both scripts take (Google's names, defaults and help), defined and read in one place.

Under a strategy the Estimator reports (logs, `loss` summary, the NaN guard) the loss summed over
replicas, as `tf.estimator` does for losses the optimizer did not scale; the gradients are averaged.
"""

import math
import os
import re
import time

from absl import flags
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import optimization

DISTRIBUTION_STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")

# The flags `define_run_config_flags` defines, in the order `make_run_config` takes them.
RUN_CONFIG_FLAGS = ("save_checkpoints_steps", "keep_checkpoint_max", "iterations_per_loop",
                    "use_tpu", "tpu_name", "tpu_zone", "gcp_project", "master", "num_tpu_cores",
                    "log_every_n_steps")


def define_run_config_flags():
  """Defines the checkpointing, logging and TPU flags of run_pretraining.py and run_finetune.py.

  Names, defaults and help are Google's (`keep_checkpoint_max` and `log_every_n_steps` are
  additions). Call once, at a script's top level.
  """
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")
  flags.DEFINE_integer("keep_checkpoint_max", 5,
                       "How many recent checkpoints to keep in output_dir (0: all). Google's "
                       "scripts accepted no such flag; ClinicalBERT's command line passes it.")
  flags.DEFINE_integer("iterations_per_loop", 1000,
                       "How many steps to make in each estimator call.")
  flags.DEFINE_bool("use_tpu", False, "Whether to use TPU or GPU/CPU.")
  flags.DEFINE_string(
      "tpu_name", None,
      "The Cloud TPU to use for training. This should be either the name used when creating the "
      "Cloud TPU, or a grpc://ip.address.of.tpu:8470 url.")
  flags.DEFINE_string(
      "tpu_zone", None,
      "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will attempt "
      "to automatically detect the GCE project from metadata.")
  flags.DEFINE_string(
      "gcp_project", None,
      "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we will "
      "attempt to automatically detect the GCE project from metadata.")
  flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL.")
  flags.DEFINE_integer("num_tpu_cores", 8,
                       "Only used if `use_tpu` is True. Total number of TPU cores to use.")
  flags.DEFINE_integer("log_every_n_steps", 100,
                       "Log loss, steps/s, examples/s and ETA (and write summaries) every N steps.")


def run_config_flag_values(flag_values):
  """{name: value} of the `define_run_config_flags` flags, as keyword arguments."""
  return {name: flag_values[name].value for name in RUN_CONFIG_FLAGS}

# Collection holding the local (never checkpointed) variables that gradient accumulation and loss
# scaling add, so that tests and tools can find them.
TRAINING_STATE_COLLECTION = "clinicalbert_tf_training_state"


class NanLossError(tf.train.NanLossDuringTrainingError):
  """The training loss became NaN or infinite; the message names the step."""

  def __init__(self, message):
    super(NanLossError, self).__init__()
    self.message = message

  def __str__(self):
    return self.message


# ------------------------------------------------------------------------------------------------
# RunConfig and Estimator
# ------------------------------------------------------------------------------------------------


def make_strategy(distribution_strategy):
  """Returns the `tf.distribute` strategy named by the flag, or None for "none".

  `multi_worker_mirrored` reads the cluster from the `TF_CONFIG` environment variable (as
  `tf.estimator` does); without one it is a single local worker.
  """
  if distribution_strategy in (None, "", "none"):
    return None
  if distribution_strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  if distribution_strategy == "multi_worker_mirrored":
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  raise fileio.InputError("--distribution_strategy=%r: expected one of %s" %
                          (distribution_strategy, ", ".join(DISTRIBUTION_STRATEGIES)))


def enable_xla_auto_clustering():
  """Turns on XLA auto-clustering for this process, CPU included.

  The session option `global_jit_level` alone clusters only GPU ops; CPU clusters need the
  `--tf_xla_cpu_global_jit` flag, which TensorFlow reads when it first initialises its devices
  (the first session, or listing devices). Scripts run by `absl.app` must therefore call
  `enable_xla_from_argv(sys.argv)` before `app.run`.
  """
  flags = os.environ.get("TF_XLA_FLAGS", "")
  if "--tf_xla_cpu_global_jit" not in flags:
    os.environ["TF_XLA_FLAGS"] = (flags + " --tf_xla_cpu_global_jit").strip()


def enable_xla_from_argv(argv):
  """Calls `enable_xla_auto_clustering` if `argv` turns on `--use_xla`; for scripts, before app.run.

  TensorFlow reads `TF_XLA_FLAGS` once, when it first initialises its devices, and `absl.app.run`
  does that before `main` (an init callback of `tf.distribute` lists the GPUs). So a script that
  sets the flag from `main` is too late for CPU clusters; scanning argv first is not.
  """
  value = None
  for arg in argv[1:]:
    if arg in ("--use_xla", "-use_xla"):
      value = True
    elif arg in ("--nouse_xla", "-nouse_xla"):
      value = False
    elif arg.startswith(("--use_xla=", "-use_xla=")):
      value = arg.split("=", 1)[1].strip().lower() in ("1", "true", "t", "yes", "y")
  if value:
    enable_xla_auto_clustering()
  return bool(value)


def make_session_config(use_xla=False, use_amp=False):
  """A `ConfigProto` with XLA auto-clustering and/or the automatic mixed precision rewrite."""
  config = tf.ConfigProto(allow_soft_placement=True)
  if use_xla:
    enable_xla_auto_clustering()
    config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
  if use_amp:
    # Grappler's float16 rewrite (GPU only; on a machine without a GPU it is skipped with a log
    # line). The loss scaling that float16 gradients need is in `create_train_op`.
    from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-import-not-at-top
    config.graph_options.rewrite_options.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
  return config


def make_run_config(output_dir,
                    save_checkpoints_steps=1000,
                    keep_checkpoint_max=5,
                    iterations_per_loop=1000,
                    use_tpu=False,
                    tpu_name=None,
                    tpu_zone=None,
                    gcp_project=None,
                    master=None,
                    num_tpu_cores=8,
                    distribution_strategy="none",
                    use_xla=False,
                    log_every_n_steps=100,
                    seed=None,
                    use_amp=False,
                    save_summary_steps=None):
  """Builds the RunConfig for `build_estimator`.

  With `distribution_strategy="none"` this is Google's `tf.estimator.tpu.RunConfig` (TPU cluster
  resolver when `use_tpu` and `tpu_name`, `PER_HOST_V2` input), plus `keep_checkpoint_max`. With a
  strategy it is a `tf.estimator.RunConfig` whose `train_distribute` is that strategy (evaluation
  runs undistributed, so metrics cover every example once).

  Args:
    output_dir: model directory (checkpoints, summaries).
    save_checkpoints_steps: checkpoint every this many global steps.
    keep_checkpoint_max: how many recent checkpoints to keep (0 or None: all).
    iterations_per_loop: TPU steps per host loop (ignored off TPU, as in Google's scripts).
    use_tpu, tpu_name, tpu_zone, gcp_project, master, num_tpu_cores: Google's TPU flags.
    distribution_strategy: "none", "mirrored" or "multi_worker_mirrored".
    use_xla: XLA auto-clustering (JIT) of the graph.
    log_every_n_steps: loss / steps-per-second log and summary interval.
    seed: graph-level random seed (None: not fixed).
    use_amp: enable the float16 graph rewrite (GPU).
    save_summary_steps: TensorBoard summary interval (None: max(log_every_n_steps, 100), so that a
      chatty log does not also write summaries every step; Google's is 100).

  Returns:
    A `tf.estimator.tpu.RunConfig` or `tf.estimator.RunConfig`.
  """
  if distribution_strategy not in DISTRIBUTION_STRATEGIES:
    raise fileio.InputError("--distribution_strategy=%r: expected one of %s" %
                            (distribution_strategy, ", ".join(DISTRIBUTION_STRATEGIES)))
  if use_tpu and distribution_strategy != "none":
    raise fileio.InputError("--use_tpu and --distribution_strategy=%s cannot be combined" %
                            distribution_strategy)
  session_config = make_session_config(use_xla=use_xla, use_amp=use_amp)
  keep = keep_checkpoint_max if keep_checkpoint_max else None
  log_every = max(1, int(log_every_n_steps or 100))
  if save_summary_steps is None:
    save_summary_steps = max(log_every, 100)

  if distribution_strategy == "none":
    tpu_cluster_resolver = None
    if use_tpu and tpu_name:
      tpu_cluster_resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
          tpu_name, zone=tpu_zone, project=gcp_project)
    return tf.estimator.tpu.RunConfig(
        cluster=tpu_cluster_resolver,
        master=master,
        model_dir=output_dir,
        save_checkpoints_steps=save_checkpoints_steps,
        keep_checkpoint_max=keep,
        log_step_count_steps=log_every,
        save_summary_steps=save_summary_steps,
        tf_random_seed=seed,
        session_config=session_config,
        tpu_config=tf.estimator.tpu.TPUConfig(
            iterations_per_loop=iterations_per_loop,
            num_shards=num_tpu_cores,
            per_host_input_for_training=tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2))

  strategy = make_strategy(distribution_strategy)
  return tf.estimator.RunConfig(
      model_dir=output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      keep_checkpoint_max=keep,
      log_step_count_steps=log_every,
      save_summary_steps=save_summary_steps,
      tf_random_seed=seed,
      session_config=session_config,
      train_distribute=strategy)


def _add_default_hooks(hooks, max_steps, batch_size, log_every_n_steps):
  """Prepends a NanLossHook and appends a ProgressHook unless the caller passed its own."""
  hooks = list(hooks or [])
  if not any(isinstance(h, NanLossHook) for h in hooks):
    # First in the list, so it fires before the Estimator's own NanTensorHook (which does not say
    # at which step).
    hooks.insert(0, NanLossHook())
  if not any(isinstance(h, ProgressHook) for h in hooks):
    hooks.append(ProgressHook(max_steps, batch_size, log_every_n_steps))
  return hooks


class _GuardedTPUEstimator(tf.estimator.tpu.TPUEstimator):
  """Google's TPUEstimator whose `train()` adds the NaN guard and the progress log."""

  def __init__(self, *args, **kwargs):
    self._examples_per_step = kwargs.pop("examples_per_step")
    self._guard_hooks = not kwargs.get("use_tpu")
    # TPUEstimator clears config.log_step_count_steps (it adds its own logging hooks).
    self._progress_every_n = kwargs["config"].log_step_count_steps
    super(_GuardedTPUEstimator, self).__init__(*args, **kwargs)
    if self._guard_hooks and self._progress_every_n:
      # Off TPU, TPUEstimator divides the interval of its global_step/sec + examples/sec log by
      # iterations_per_loop (one session.run is a whole loop on TPU), which makes Google's CPU runs
      # log every step; restore the asked-for interval.
      self._log_every_n_steps = self._progress_every_n

  def _assert_members_are_not_overridden(self):
    # Estimator forbids overriding `train` unless this is overridden (TPUEstimator does the same).
    pass

  def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
    """`TPUEstimator.train`, with `NanLossHook` and `ProgressHook` added (off TPU)."""
    if not self._guard_hooks:
      return super(_GuardedTPUEstimator, self).train(input_fn, hooks, steps, max_steps,
                                                     saving_listeners)
    hooks = _add_default_hooks(hooks, max_steps, self._examples_per_step,
                               self._progress_every_n)
    return super(_GuardedTPUEstimator, self).train(input_fn, hooks, steps, max_steps,
                                                   saving_listeners)


class _DistributedEstimator(tf.estimator.Estimator):
  """An Estimator with a strategy that takes TPUEstimator-style `model_fn` and `input_fn`.

  `model_fn(features, labels, mode, params)` may return a `TPUEstimatorSpec` (converted with
  `as_estimator_spec`); variables it creates get `ONLY_FIRST_REPLICA` aggregation so that the
  optimizer's own assignments (which see already all-reduced gradients) are allowed in replica
  context. `input_fn(params)` sees `params["batch_size"]` = the per-replica batch and
  `params["input_context"]` (a `tf.distribute.InputContext` or None) for sharding.
  """

  def __init__(self, model_fn, config, params, batch_sizes, examples_per_step):
    self._batch_sizes = batch_sizes
    self._examples_per_step = examples_per_step
    self._user_model_fn = model_fn
    super(_DistributedEstimator, self).__init__(
        model_fn=self._wrapped_model_fn, config=config, params=params)

  def _assert_members_are_not_overridden(self):
    # `train`, `evaluate` and `predict` are wrapped on purpose (see the class docstring).
    pass

  def _wrapped_model_fn(self, features, labels, mode, params):
    params = dict(params or {})
    params.setdefault("batch_size", self._batch_sizes.get(mode))

    def creator(next_creator, **kwargs):
      if kwargs.get("aggregation") in (None, tf.VariableAggregation.NONE):
        kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
      return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
      spec = self._user_model_fn(features, labels, mode, params)
    if isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec):
      spec = spec.as_estimator_spec()
    return spec

  def _wrap_input_fn(self, input_fn, mode):
    global_batch = self._batch_sizes.get(mode)
    strategy = self.config.train_distribute if mode == tf.estimator.ModeKeys.TRAIN else None

    def wrapped(params, input_context=None):
      params = dict(params or {})
      batch = global_batch
      replicas = input_context.num_replicas_in_sync if input_context else (
          strategy.num_replicas_in_sync if strategy is not None else 1)
      if batch is not None and mode == tf.estimator.ModeKeys.TRAIN and replicas > 1:
        if batch % replicas:
          raise fileio.InputError(
              "the training batch size %d is not divisible by the %d replicas of the "
              "distribution strategy" % (batch, replicas))
        batch //= replicas
      params["batch_size"] = batch
      params["input_context"] = input_context
      return input_fn(params)

    return wrapped

  def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
    """`Estimator.train` with the NaN guard and the progress log."""
    hooks = _add_default_hooks(hooks, max_steps, self._examples_per_step,
                               self.config.log_step_count_steps)
    if getattr(self.config, "_distribute_coordinator_mode", None):
      # Multi-worker (TF_CONFIG): `Estimator.train` refuses the coordinator's independent-worker
      # mode; `train_and_evaluate` runs it (each worker trains; evaluation would need an
      # "evaluator" task, which this cluster has none of). Its worker calls this `train` again
      # on a copy with the coordinator mode cleared.
      if steps is not None or max_steps is None:
        raise ValueError("multi-worker training needs max_steps (not steps)")
      tf.estimator.train_and_evaluate(
          self,
          tf.estimator.TrainSpec(input_fn=input_fn, max_steps=max_steps, hooks=hooks),
          tf.estimator.EvalSpec(input_fn=input_fn, steps=1))
      return self
    return super(_DistributedEstimator, self).train(
        self._wrap_input_fn(input_fn, tf.estimator.ModeKeys.TRAIN), hooks=hooks, steps=steps,
        max_steps=max_steps, saving_listeners=saving_listeners)

  def evaluate(self, input_fn, steps=None, hooks=None, checkpoint_path=None, name=None):
    """`Estimator.evaluate` with `params["batch_size"]` set to the eval batch size."""
    return super(_DistributedEstimator, self).evaluate(
        self._wrap_input_fn(input_fn, tf.estimator.ModeKeys.EVAL), steps=steps, hooks=hooks,
        checkpoint_path=checkpoint_path, name=name)

  def predict(self, input_fn, predict_keys=None, hooks=None, checkpoint_path=None,
              yield_single_examples=True):
    """`Estimator.predict` with `params["batch_size"]` set to the predict batch size."""
    return super(_DistributedEstimator, self).predict(
        self._wrap_input_fn(input_fn, tf.estimator.ModeKeys.PREDICT), predict_keys=predict_keys,
        hooks=hooks, checkpoint_path=checkpoint_path,
        yield_single_examples=yield_single_examples)


def build_estimator(model_fn,
                    run_config,
                    train_batch_size,
                    eval_batch_size,
                    predict_batch_size=None,
                    use_tpu=False,
                    distribution_strategy="none",
                    params=None,
                    num_accumulation_steps=1):
  """Builds the Estimator that trains/evaluates `model_fn`.

  Without a strategy this is Google's `TPUEstimator` (with `use_tpu=False` it runs on CPU/GPU),
  so `model_fn` may return a `TPUEstimatorSpec` and `input_fn(params)` reads
  `params["batch_size"]`. With a strategy it is an `Estimator` that accepts the same functions
  (see `_DistributedEstimator`); `train_batch_size` stays the global batch and is split over the
  replicas.

  `train()` on the returned estimator adds a `NanLossHook` (first, so a NaN stops training with
  the step named) and a `ProgressHook` (steps/s, examples/s, ETA every `log_step_count_steps`)
  unless the caller passes its own instances in `hooks`.

  Args:
    model_fn: `model_fn(features, labels, mode, params)`.
    run_config: from `make_run_config`.
    train_batch_size, eval_batch_size, predict_batch_size: global batch sizes.
    use_tpu: as Google's flag.
    distribution_strategy: must match the one given to `make_run_config`.
    params: extra entries for `params` (copied).
    num_accumulation_steps: only used for the examples/s of the progress log (one global step
      then covers `train_batch_size * num_accumulation_steps` examples).

  Returns:
    A `tf.estimator.tpu.TPUEstimator` or `tf.estimator.Estimator`.
  """
  examples_per_step = train_batch_size * max(1, int(num_accumulation_steps or 1))
  if distribution_strategy in (None, "", "none"):
    return _GuardedTPUEstimator(
        use_tpu=use_tpu,
        model_fn=model_fn,
        config=run_config,
        params=dict(params) if params else None,
        train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size,
        predict_batch_size=predict_batch_size,
        examples_per_step=examples_per_step)
  if getattr(run_config, "train_distribute", None) is None:
    raise ValueError("build_estimator: distribution_strategy=%s needs a RunConfig made with the "
                     "same distribution_strategy" % distribution_strategy)
  batch_sizes = {
      tf.estimator.ModeKeys.TRAIN: train_batch_size,
      tf.estimator.ModeKeys.EVAL: eval_batch_size,
      tf.estimator.ModeKeys.PREDICT: predict_batch_size or eval_batch_size,
  }
  return _DistributedEstimator(model_fn, run_config, dict(params or {}), batch_sizes,
                               examples_per_step)


# ------------------------------------------------------------------------------------------------
# Hooks
# ------------------------------------------------------------------------------------------------


def _global_step_read_tensor():
  """The tensor that reads the global step (the strategy-safe read the Estimator registers)."""
  reads = tf.get_collection("global_step_read_op_cache")
  if reads:
    return reads[0]
  step = tf.train.get_global_step()
  if step is None:
    raise RuntimeError("the graph has no global step")
  return tf.identity(step)


def format_duration(seconds):
  """`93784` -> `'1d02h03m'`, `3725` -> `'1h02m05s'`, `65` -> `'1m05s'`."""
  if seconds is None or not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  if days:
    return "%dd%02dh%02dm" % (days, hours, minutes)
  if hours:
    return "%dh%02dm%02ds" % (hours, minutes, secs)
  return "%dm%02ds" % (minutes, secs)


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
    self.last_rates = None  # (steps_per_sec, examples_per_sec, eta_seconds) of the last log line

  def begin(self):
    self._step_tensor = _global_step_read_tensor()
    if self._loss is None:
      losses = tf.get_collection(tf.GraphKeys.LOSSES)
      self._loss = losses[-1] if losses else tf.constant(float("nan"))

  def after_create_session(self, session, coord):
    start = int(session.run(self._step_tensor))
    if self._total_steps:
      tf.logging.info("training from global step %d to %d", start, self._total_steps)
    else:
      tf.logging.info("training from global step %d", start)

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
      eta = max(0, self._total_steps - step) / steps_per_sec
      done = "step %d/%d (%.1f%%)" % (step, self._total_steps, 100.0 * step / self._total_steps)
    else:
      done = "step %d" % step
    tf.logging.info("%s: loss %.4g, %.3g steps/s, %.4g examples/s, ETA %s", done, float(loss),
                    steps_per_sec, examples_per_sec, format_duration(eta))
    self.last_rates = (steps_per_sec, examples_per_sec, eta)
    self._last_time, self._last_step = now, step
    self._next_log = (step // self._every_n + 1) * self._every_n

  def end(self, session):
    if self._last_time is None:
      return
    step = int(session.run(self._step_tensor))
    elapsed = time.time() - self._first_time
    steps = step - self._first_step
    if elapsed > 0 and steps > 0:
      tf.logging.info("trained to global step %d; %d steps after the first in %s: %.3g steps/s, "
                      "%.4g examples/s", step, steps, format_duration(elapsed), steps / elapsed,
                      steps / elapsed * self._batch_size)


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
    tf.logging.error(message)
    raise NanLossError(message)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def resolve_checkpoint(init_checkpoint):
  """`init_checkpoint` as a checkpoint prefix (a directory gives its latest checkpoint).

  Raises:
    InputError: no checkpoint there.
  """
  path = init_checkpoint
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      raise fileio.InputError("--init_checkpoint=%s is a directory without a checkpoint" % path)
    return latest
  if not tf.io.gfile.exists(path + ".index") and not tf.io.gfile.exists(path):
    raise fileio.InputError(
        "--init_checkpoint=%s: no checkpoint (expected %s.index and its data files)" % (path, path))
  return path


def _variable_name(var):
  name = var.name
  m = re.match("^(.*):\\d+$", name)
  return m.group(1) if m else name


def init_from_checkpoint(init_checkpoint, tvars=None):
  """Initialises the variables that `init_checkpoint` holds, by name, as Google's scripts do.

  Call it inside `model_fn` after the model is built. Variables the checkpoint lacks keep their
  initialisers (e.g. a fresh classifier head); checkpoint entries the model lacks (optimizer slots,
  heads of another task) are ignored.

  Args:
    init_checkpoint: checkpoint prefix or directory (its latest checkpoint).
    tvars: variables to initialise (default: all trainable variables).

  Returns:
    The sorted names of the initialised variables (without ":0").

  Raises:
    InputError: no checkpoint, or a variable whose shape differs from the checkpoint's (the message
      names the variable and both shapes).
  """
  path = resolve_checkpoint(init_checkpoint)
  if tvars is None:
    tvars = tf.trainable_variables()
  try:
    ckpt_shapes = dict(tf.train.list_variables(path))
  except (tf.errors.OpError, ValueError) as e:
    raise fileio.InputError("--init_checkpoint=%s cannot be read: %s" % (path, e)) from e

  assignment_map = {}
  for var in tvars:
    name = _variable_name(var)
    if name not in ckpt_shapes:
      continue
    want = var.shape.as_list()
    have = list(ckpt_shapes[name])
    if want != have:
      raise fileio.InputError(
          "--init_checkpoint=%s: variable %s has shape %s in the checkpoint but %s in the model "
          "(is bert_config_file the config of this checkpoint, e.g. the same vocab_size?)" %
          (path, name, have, want))
    assignment_map[name] = var

  if assignment_map:
    tf.train.init_from_checkpoint(path, assignment_map)
  names = sorted(assignment_map)
  missing = sorted(_variable_name(v) for v in tvars if _variable_name(v) not in assignment_map)
  tf.logging.info("init_checkpoint %s: initialised %d of %d variables", path, len(names),
                  len(tvars))
  for name in missing:
    tf.logging.info("  not in init_checkpoint (kept its initialiser): %s", name)
  return names


def init_from_checkpoint_in_model_fn(init_checkpoint, tvars, use_tpu):
  """`init_from_checkpoint` as a model_fn needs it; returns the TPUEstimatorSpec `scaffold_fn`.

  On TPU the assignment must run inside the scaffold (Google's pattern), so this returns a
  `scaffold_fn` doing it; elsewhere it initialises now and returns None. No checkpoint: None.
  """
  if not init_checkpoint:
    return None
  if use_tpu:
    def tpu_scaffold():
      init_from_checkpoint(init_checkpoint, tvars)
      return tf.train.Scaffold()
    return tpu_scaffold
  init_from_checkpoint(init_checkpoint, tvars)
  return None


# ------------------------------------------------------------------------------------------------
# Training op: accumulation, loss scaling, replicas
# ------------------------------------------------------------------------------------------------


def _local_variable(name, shape, dtype, initializer):
  """A variable that is not checkpointed (local collection) and not trained."""
  var = tf.get_variable(name, shape=shape, dtype=dtype, initializer=initializer, trainable=False,
                        collections=[tf.GraphKeys.LOCAL_VARIABLES, TRAINING_STATE_COLLECTION])
  return var


def _dense(grad):
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
  all_finite = tf.reduce_all([tf.reduce_all(tf.is_finite(g)) for g in grads if g is not None])

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


def _cross_replica_mean(grads):
  """Averages gradients over the replicas of the current strategy (no-op without one)."""
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
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


def create_train_op(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu=False,
                    num_accumulation_steps=1, use_amp=False, tvars=None):
  """The training op: `optimization.create_optimizer` with accumulation, AMP and replicas.

  * `num_accumulation_steps` N > 1: each call of the op adds this batch's gradients to local
    (never checkpointed) accumulators; every N-th call applies their mean with one optimizer step
    and increments `global_step`. So `num_train_steps` and the learning rate schedule count
    optimizer updates, and the effective batch is N times the batch.
  * `use_amp`: dynamic loss scaling (`mixed_precision_loss_scaling`); a step whose gradients are
    not finite updates nothing but the scale (global_step still advances, so the run still ends at
    `num_train_steps`).
  * under a strategy, gradients are averaged over the replicas before the update.

  With N = 1 and no AMP this is exactly `optimization.create_optimizer(loss, ...)`.

  Returns:
    The training op.
  """
  if tvars is None:
    tvars = tf.trainable_variables()
  n = max(1, int(num_accumulation_steps or 1))
  distributed = tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()
  if n == 1 and not use_amp and not distributed:
    return optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                                         tvars=tvars)

  global_step = tf.train.get_or_create_global_step()
  if use_amp:
    grads, all_finite, update_scale_op, _ = mixed_precision_loss_scaling(loss, tvars)
  else:
    grads = [None if g is None else _dense(g) for g in tf.gradients(loss, tvars)]
    all_finite, update_scale_op = None, tf.no_op()

  if n == 1:
    grads = _cross_replica_mean(grads)
    if all_finite is None:
      with tf.control_dependencies([update_scale_op]):
        return optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                             use_tpu, tvars=tvars, grads=grads)
    _create_optimizer_slots(tvars)
    # Replicas see the same all-reduced gradients, so they take the same branch.
    all_finite = tf.reduce_all([tf.reduce_all(tf.is_finite(g)) for g in grads if g is not None])
    with tf.control_dependencies([update_scale_op]):
      return tf.cond(
          all_finite,
          lambda: _reusing_create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                            use_tpu, tvars, grads),
          lambda: tf.group(global_step.assign_add(1)))

  # Gradient accumulation.
  accums = []
  for var in tvars:
    accums.append(_local_variable(_variable_name(var) + "/grad_accum", var.shape.as_list(),
                                  tf.float32, tf.zeros_initializer()))
  micro_step = _local_variable("grad_accum_micro_step", [], tf.int32, tf.zeros_initializer())
  finite_f = tf.constant(1.0) if all_finite is None else tf.cast(all_finite, tf.float32)
  add_ops = []
  for accum, grad in zip(accums, grads):
    if grad is not None:
      # A non-finite micro-batch (AMP) contributes nothing instead of poisoning the sum.
      add_ops.append(accum.assign_add(tf.where(finite_f > 0, grad, tf.zeros_like(grad))))
  with tf.control_dependencies(add_ops + [update_scale_op]):
    new_micro = micro_step.assign_add(1)
  apply_now = tf.equal(new_micro % n, 0)
  _create_optimizer_slots(tvars)

  def _apply():
    mean_grads = [a / float(n) for a in accums]
    mean_grads = _cross_replica_mean(mean_grads)
    if use_amp:
      finite = tf.reduce_all([tf.reduce_all(tf.is_finite(g)) for g in mean_grads])
    else:
      finite = tf.constant(True)
    train = tf.cond(
        finite,
        lambda: _reusing_create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                          use_tpu, tvars, mean_grads),
        lambda: tf.group(global_step.assign_add(1)))
    with tf.control_dependencies([train]):
      return tf.group(*[a.assign(tf.zeros_like(a)) for a in accums])

  return tf.cond(apply_now, _apply, tf.no_op)


def _create_optimizer_slots(tvars):
  """Creates `<var>/adam_m` and `/adam_v` outside any tf.cond, for `_reusing_create_optimizer`."""
  for var in tvars:
    name = _variable_name(var)
    for slot in ("adam_m", "adam_v"):
      tf.get_variable(name + "/" + slot, shape=var.shape.as_list(), dtype=tf.float32,
                      trainable=False, initializer=tf.zeros_initializer())


def _reusing_create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu, tvars,
                              grads):
  """`create_optimizer` whose slot variables were created beforehand (reused by name)."""
  with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
    return optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps,
                                         use_tpu, tvars=tvars, grads=grads)
