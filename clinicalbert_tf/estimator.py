"""Estimator construction shared by `run_pretraining.py` and `run_finetune.py`.

Google's scripts each build a `TPUEstimator` (which falls back to CPU/GPU when `use_tpu` is False).
This module does that once, and adds what a long run on shared hardware needs:

  * `make_run_config`: Google's TPU `RunConfig` (honouring `keep_checkpoint_max`, which Google's
    scripts never passed on), or an Estimator `RunConfig` with a `tf.distribute` strategy
    (`mirrored`, or `multi_worker_mirrored` configured by `TF_CONFIG`); XLA auto-clustering.
  * `build_estimator`: the `TPUEstimator` as Google builds it, or an `Estimator` that accepts the
    same `model_fn` (a `TPUEstimatorSpec` is converted) and `input_fn(params)` (`params["batch_size"]`
    is the per-replica batch) under a strategy. Its `train()` adds the NaN guard and the progress log
    of `hooks.py`.
  * `enable_xla_from_argv`: `cli.run` calls it before `absl.app.run` so that `--use_xla` reaches CPU
    clusters too.
  * `define_run_config_flags`: the checkpointing, logging and TPU flags both scripts take (Google's
    names, defaults and help), defined in one place (read, like every flag, by
    `cli.config_from_flags`).
  * `define_accelerator_flags`: `--use_xla`, `--use_amp`, `--num_accumulation_steps` and
    `--distribution_strategy`, the same on every training script.

The training op (accumulation, loss scaling, clipping) is in `train_op.py`, checkpoint
initialisation in `checkpoints.py`.

Under a strategy the Estimator reports (logs, `loss` summary, the NaN guard) the loss summed over
replicas, as `tf.estimator` does for losses the optimizer did not scale; the gradients are averaged.
"""

import json
import os

from absl import flags
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import hooks as hooks_lib

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


# The flags `define_accelerator_flags` defines (none of them is in Google's scripts).
ACCELERATOR_FLAGS = ("use_xla", "use_amp", "num_accumulation_steps", "distribution_strategy")


def define_accelerator_flags():
  """Defines `--use_xla`, `--use_amp`, `--num_accumulation_steps`, `--distribution_strategy`.

  The same four switches on run_pretraining.py and every fine-tuning script, with the same
  meaning: they go to `make_run_config` (XLA, the float16 rewrite, the strategy) and to
  `train_op.create_train_op` (accumulation, loss scaling, the cross-replica mean). Call once, at a
  script's top level.
  """
  flags.DEFINE_bool("use_xla", False, "Compile the graph with XLA (auto-clustering).")
  flags.DEFINE_bool("use_amp", False,
                    "float16 automatic mixed precision with dynamic loss scaling (GPU).")
  flags.DEFINE_integer("num_accumulation_steps", 1,
                       "Accumulate gradients over this many batches per optimizer step; the "
                       "effective batch is train_batch_size * num_accumulation_steps and the "
                       "number of training steps counts optimizer steps.")
  flags.DEFINE_enum("distribution_strategy", "none", list(DISTRIBUTION_STRATEGIES),
                    "none: Google's TPUEstimator (CPU/one GPU); mirrored: all local GPUs; "
                    "multi_worker_mirrored: several machines described by TF_CONFIG. "
                    "train_batch_size is the global batch.")


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


def is_chief(distribution_strategy):
  """Whether this process evaluates, predicts and writes results for the run.

  Always, unless `distribution_strategy` is `multi_worker_mirrored`; then only the chief of the
  TF_CONFIG cluster (True without one): the `chief` task, or worker 0 of a cluster without one
  (as `tf.estimator` picks it).
  """
  if distribution_strategy != "multi_worker_mirrored":
    return True
  tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
  task = tf_config.get("task", {})
  cluster = tf_config.get("cluster", {})
  if not task:
    return True
  if task.get("type") == "chief":
    return True
  return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def enable_xla_auto_clustering():
  """Turns on XLA auto-clustering for this process, CPU included.

  The session option `global_jit_level` alone clusters only GPU ops; CPU clusters need the
  `--tf_xla_cpu_global_jit` flag, which TensorFlow reads when it first initialises its devices
  (the first session, or listing devices). Scripts run by `absl.app` must therefore set it before
  `app.run`: `cli.run` calls `enable_xla_from_argv(sys.argv)` for scripts with a `--use_xla` flag.
  """
  xla_flags = os.environ.get("TF_XLA_FLAGS", "")
  if "--tf_xla_cpu_global_jit" not in xla_flags:
    os.environ["TF_XLA_FLAGS"] = (xla_flags + " --tf_xla_cpu_global_jit").strip()


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
    # line). The loss scaling that float16 gradients need is in `train_op.create_train_op`.
    from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-import-not-at-top
    rewrite_options = config.graph_options.rewrite_options
    rewrite_options.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
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
  common = dict(
      model_dir=output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      keep_checkpoint_max=keep,
      log_step_count_steps=log_every,
      save_summary_steps=save_summary_steps,
      tf_random_seed=seed,
      session_config=session_config)

  if distribution_strategy == "none":
    tpu_cluster_resolver = None
    if use_tpu and tpu_name:
      tpu_cluster_resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
          tpu_name, zone=tpu_zone, project=gcp_project)
    return tf.estimator.tpu.RunConfig(
        cluster=tpu_cluster_resolver,
        master=master,
        tpu_config=tf.estimator.tpu.TPUConfig(
            iterations_per_loop=iterations_per_loop,
            num_shards=num_tpu_cores,
            per_host_input_for_training=tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2),
        **common)

  return tf.estimator.RunConfig(train_distribute=make_strategy(distribution_strategy), **common)


def _add_default_hooks(hooks, max_steps, batch_size, log_every_n_steps):
  """Prepends a `hooks.NanLossHook` and appends a `hooks.ProgressHook`, unless `hooks` has its own."""
  hooks = list(hooks or [])
  if not any(isinstance(h, hooks_lib.NanLossHook) for h in hooks):
    # First in the list, so it fires before the Estimator's own NanTensorHook (which does not say
    # at which step).
    hooks.insert(0, hooks_lib.NanLossHook())
  if not any(isinstance(h, hooks_lib.ProgressHook) for h in hooks):
    hooks.append(hooks_lib.ProgressHook(max_steps, batch_size, log_every_n_steps))
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
    """`TPUEstimator.train`, with `hooks.NanLossHook` and `hooks.ProgressHook` added (off TPU)."""
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

  `train()` on the returned estimator adds a `hooks.NanLossHook` (first, so a NaN stops training
  with the step named) and a `hooks.ProgressHook` (steps/s, examples/s, ETA every
  `log_step_count_steps`) unless the caller passes its own instances in `hooks`.

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
