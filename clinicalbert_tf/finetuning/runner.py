"""Running a fine-tuning job: the config, the model_fn, the Runner and `run` (the script calls it).

`run(config)` reads the task once, writes the IOB files if asked, then trains, evaluates on dev and
predicts test, or runs the paper's grid (`grid.py`). A `Runner` checks the model files, converts
each split once (through the task's head), writes it as a TFRecord file, and builds one Estimator
per setting (`estimator.py`).

Every script takes the accelerator flags of `estimator.define_accelerator_flags` (the same as
run_pretraining.py's): `use_xla` and `use_amp` go to the run config, `num_accumulation_steps` and
`use_amp` to `train_op.create_train_op`, `distribution_strategy` to both. With N accumulation steps
an optimizer step covers `train_batch_size * N` examples, and the number of training steps (which
counts optimizer steps) is computed from that effective batch. Under `multi_worker_mirrored` every
worker trains on its shard of the records; evaluation and prediction run on the chief only.

`google_outputs` (run_classifier.py) gives Google's files instead of ours: `train.tf_record`,
`eval.tf_record`, `predict.tf_record`; `eval_results.txt` from the Estimator's own evaluation
(`eval_accuracy`, `eval_loss`, `global_step`, `loss`); `test_results.tsv`, one line of
tab-separated probabilities per test example. `google_record_names` (run_ner.py) names the
records so and keeps our results.
"""

import dataclasses
import os
import time
from typing import List, Optional

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import cli
from clinicalbert_tf import estimator as estimator_lib
from clinicalbert_tf import fileio
from clinicalbert_tf import hooks
from clinicalbert_tf import tasks
from clinicalbert_tf import tokenization
from clinicalbert_tf import train_op as train_op_lib
from clinicalbert_tf.finetuning import data
from clinicalbert_tf.finetuning import grid
from clinicalbert_tf.finetuning import head_record
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import metrics
from clinicalbert_tf.tasks import iob_folders

# Record file names per split: ours, and Google's (run_classifier.py, run_ner.py).
_RECORD_NAMES = {"train": "train", "dev": "dev", "test": "test"}
_GOOGLE_RECORD_NAMES = {"train": "train", "dev": "eval", "test": "predict"}


@dataclasses.dataclass
class FinetuneConfig:
  """Everything a fine-tuning run needs (run_finetune.py fills it from flags)."""
  task_name: str
  data_dir: str
  output_dir: str
  bert_config_file: Optional[str] = None
  vocab_file: Optional[str] = None
  init_checkpoint: Optional[str] = None
  do_lower_case: bool = False
  max_seq_length: int = 150
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  train_batch_size: int = 32
  eval_batch_size: int = 8
  predict_batch_size: int = 8
  learning_rate: float = 5e-5
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  iterations_per_loop: int = 1000
  log_every_n_steps: int = 100
  seed: int = 42
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  num_tpu_cores: int = 8
  # Accelerators (estimator.define_accelerator_flags).
  use_xla: bool = False
  use_amp: bool = False
  num_accumulation_steps: int = 1
  distribution_strategy: str = "none"
  # Readers.
  check_entity_text: bool = True
  include_timex3: bool = False
  # Conversion to the authors' IOB files.
  iob_output_dir: Optional[str] = None
  # Google's file names and result files (run_classifier.py), or only its record names.
  google_outputs: bool = False
  google_record_names: bool = False
  # Grid.
  grid: bool = False
  grid_learning_rates: Optional[List[float]] = None
  grid_batch_sizes: Optional[List[int]] = None
  grid_num_train_epochs: Optional[List[float]] = None
  grid_keep_checkpoints: bool = False
  # The head (run_finetune.py --head; None: the task's default head).
  head: Optional[str] = None


def define_original_flags(defaults, task_names, data_help):
  """Defines the flags Google's `run_classifier.py` and ClinicalBERT's `run_ner.py` share.

  Same names as theirs; `defaults` holds the script's own defaults (`do_lower_case`,
  `max_seq_length`, `do_train`, `do_predict`, `num_train_epochs`, `keep_checkpoint_max`, ...).
  Also the run-config flags of `estimator.define_run_config_flags`, the accelerator flags of
  `estimator.define_accelerator_flags` and `--seed`.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top  (only the scripts define flags)
  d = dict(do_lower_case=False, max_seq_length=128, do_train=False, do_eval=False,
           do_predict=False, num_train_epochs=3.0, keep_checkpoint_max=5)
  d.update(defaults)
  flags.DEFINE_string("task_name", None, "One of: %s (any case)." % ", ".join(task_names))
  flags.DEFINE_string("data_dir", None, data_help)
  flags.DEFINE_string("bert_config_file", None, "The model's bert_config.json.")
  flags.DEFINE_string("vocab_file", None, "The model's vocab.txt.")
  flags.DEFINE_string("output_dir", None, "Checkpoints, records and results go here.")
  flags.DEFINE_string("init_checkpoint", None,
                      "Checkpoint to start from (a pretrained model). Without a checkpoint in "
                      "--output_dir, --do_eval and --do_predict use it (a fine-tuned model).")
  flags.DEFINE_bool("do_lower_case", d["do_lower_case"],
                    "Lower-case the input (True for uncased models, False for cased ones).")
  flags.DEFINE_integer("max_seq_length", d["max_seq_length"],
                       "Word pieces per input, [CLS] and [SEP] included; longer inputs are cut.")
  flags.DEFINE_bool("do_train", d["do_train"], "Train on the train split.")
  flags.DEFINE_bool("do_eval", d["do_eval"], "Evaluate on the dev split.")
  flags.DEFINE_bool("do_predict", d["do_predict"], "Predict the test split.")
  flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
  flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")
  flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
  flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate for Adam.")
  flags.DEFINE_float("num_train_epochs", d["num_train_epochs"], "Training epochs.")
  flags.DEFINE_float("warmup_proportion", 0.1, "Share of training with linear warmup.")
  estimator_lib.define_run_config_flags()
  flags.FLAGS.set_default("keep_checkpoint_max", d["keep_checkpoint_max"])
  estimator_lib.define_accelerator_flags()
  flags.DEFINE_integer("seed", 42, "Random seed (graph and input shuffling; not in the "
                       "original script, which left both unseeded).")


def config_from_flags(flag_values, **overrides):
  """A FinetuneConfig from parsed absl flags (same names; `overrides` win, as in `cli`)."""
  config = cli.config_from_flags(FinetuneConfig, flag_values, **overrides)
  # The grid flags are comma lists in a string.
  for name in ("grid_learning_rates", "grid_batch_sizes", "grid_num_train_epochs"):
    value = getattr(config, name)
    if isinstance(value, str):
      items = fileio.split_comma_list(value)
      try:
        value = [int(x) if name == "grid_batch_sizes" else float(x) for x in items] or None
      except ValueError:
        raise fileio.InputError("--%s=%s: expected a comma list of numbers" %
                                (name, value)) from None
      setattr(config, name, value)
  return config


def make_task(config):
  """The task `config` names, with its reader options.

  An i2b2 task whose data_dir holds the authors' IOB files (`train.tsv`, ... or `.conll`) instead
  of the native folders reads those (`tasks.iob_folders`).
  """
  task = tasks.get_task(config.task_name, tasks.ReaderOptions(
      check_text=config.check_entity_text, include_timex3=config.include_timex3))
  if iob_folders.holds_iob_files(task, config.data_dir):
    logging.info("--data_dir=%s holds IOB files: reading them with the %s label set",
                 config.data_dir, task.name)
    task = iob_folders.IobFolderTask(task)
  return task


def model_fn_builder(bert_config, head, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, num_accumulation_steps=1,
                     use_amp=False):
  """The `model_fn` for the (TPU)Estimator: `head`'s model, trained with Google's optimizer.

  The training op is `train_op.create_train_op`: Google's `optimization.create_optimizer` itself
  with one accumulation step and no AMP outside a strategy; `num_train_steps` and
  `num_warmup_steps` count optimizer steps.
  """

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    is_real_example = tf.cast(features["is_real_example"], tf.float32)
    model_outputs = head.create_model(bert_config, is_training, features, is_real_example,
                                      use_one_hot_embeddings)
    scaffold_fn = checkpoints.init_from_checkpoint_in_model_fn(
        init_checkpoint, tf.trainable_variables(), use_tpu)

    if mode == tf.estimator.ModeKeys.TRAIN:
      train_op = train_op_lib.create_train_op(
          model_outputs["loss"], learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          num_accumulation_steps=num_accumulation_steps, use_amp=use_amp)
      # The shared Estimator's train() adds the NaN guard (NanLossHook) and the progress log.
      return tf.estimator.tpu.TPUEstimatorSpec(mode=mode, loss=model_outputs["loss"],
                                               train_op=train_op, scaffold_fn=scaffold_fn)
    if mode == tf.estimator.ModeKeys.EVAL:
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=model_outputs["loss"],
          eval_metrics=head.eval_metrics(model_outputs), scaffold_fn=scaffold_fn)
    return tf.estimator.tpu.TPUEstimatorSpec(
        mode=mode, predictions=head.predict_outputs(model_outputs),
        scaffold_fn=scaffold_fn)

  return model_fn


@dataclasses.dataclass
class PreparedSplit:
  """A split's examples, features and the TFRecord file holding them."""
  name: str
  examples: list
  features: list
  record_file: str


class Runner(object):
  """Checks the model files, converts the task's splits once, trains/evaluates models on them."""

  def __init__(self, config, task):
    self.config = config
    self.task = task
    self._splits = {}
    c = config
    for flag in ("bert_config_file", "vocab_file", "output_dir"):
      if not getattr(c, flag):
        raise fileio.InputError("--%s is required to train or evaluate" % flag)
    self.bert_config = checkpoints.load_bert_config(c.bert_config_file)
    # Without the file name, as run_finetune.py has always worded it.
    checkpoints.check_max_seq_length(c.max_seq_length, self.bert_config)
    if not os.path.isfile(c.vocab_file):
      raise fileio.InputError("--vocab_file=%s: no such file" % c.vocab_file)
    try:
      tokenization.validate_case_matches_checkpoint(c.do_lower_case, c.init_checkpoint)
    except ValueError as e:
      raise fileio.InputError(str(e)) from None
    self.tokenizer = tokenization.FullTokenizer(vocab_file=c.vocab_file,
                                                do_lower_case=c.do_lower_case)
    checkpoints.check_vocab_matches_config(len(self.tokenizer.vocab), self.bert_config,
                                           c.vocab_file)
    checkpoints.check_case_matches_vocab(self.tokenizer.vocab, c.do_lower_case, c.vocab_file)
    if c.num_accumulation_steps is None or c.num_accumulation_steps < 1:
      raise fileio.InputError("--num_accumulation_steps=%s: expected a positive integer" %
                              c.num_accumulation_steps)
    fileio.check_output_dir(c.output_dir)
    self.head = heads.head_for_task(task, task.get_labels(c.data_dir), c.head)
    if c.max_seq_length < self.head.min_seq_length:
      raise fileio.InputError("--max_seq_length=%d leaves no room for words" % c.max_seq_length)
    os.makedirs(c.output_dir, exist_ok=True)

  def split(self, name):
    """The PreparedSplit for `name` (converted and written once)."""
    if name not in self._splits:
      c = self.config
      examples = self.task.get_examples(c.data_dir, name)
      if not examples:
        raise fileio.InputError("--data_dir=%s: the %s split is empty" % (c.data_dir, name))
      features = self.head.convert_examples(examples, c.max_seq_length, self.tokenizer, name)
      if name != "train" and c.use_tpu:
        batch = c.eval_batch_size if name == "dev" else c.predict_batch_size
        while len(features) % batch:
          features.append(self.head.padding_feature(c.max_seq_length))
      names = (_GOOGLE_RECORD_NAMES if c.google_outputs or c.google_record_names
               else _RECORD_NAMES)
      record_file = os.path.join(c.output_dir, "%s.tf_record" % names[name])
      data.write_records(record_file, self.head, features)
      self._splits[name] = PreparedSplit(name, examples, features, record_file)
    return self._splits[name]

  @property
  def is_chief(self):
    """False on the workers of a multi_worker_mirrored cluster other than the chief.

    Those train (their checkpoints go to tf.estimator's `tmp_worker_<n>` folders) and stop:
    evaluation and prediction, the chief's results, run on the chief only.
    """
    return estimator_lib.is_chief(self.config.distribution_strategy)

  def effective_batch_size(self, batch_size):
    """Examples per optimizer step: `batch_size` (global) times the accumulation steps."""
    return batch_size * self.config.num_accumulation_steps

  def num_train_steps(self, batch_size, epochs):
    """Optimizer steps for `epochs` over the train split, at the effective batch size."""
    num_features = len(self.split("train").features)
    return max(1, int(num_features / self.effective_batch_size(batch_size) * epochs))

  def estimator(self, model_dir, learning_rate, batch_size, epochs, init_checkpoint):
    """The Estimator for one setting (`init_checkpoint` None: restore from model_dir only)."""
    c = self.config
    num_train_steps = num_warmup_steps = None
    if epochs:
      num_train_steps = self.num_train_steps(batch_size, epochs)
      num_warmup_steps = int(num_train_steps * c.warmup_proportion)
    model_fn = model_fn_builder(
        bert_config=self.bert_config, head=self.head, init_checkpoint=init_checkpoint,
        learning_rate=learning_rate, num_train_steps=num_train_steps,
        num_warmup_steps=num_warmup_steps, use_tpu=c.use_tpu, use_one_hot_embeddings=c.use_tpu,
        num_accumulation_steps=c.num_accumulation_steps, use_amp=c.use_amp)
    run_config = estimator_lib.make_run_config(
        model_dir, save_checkpoints_steps=c.save_checkpoints_steps,
        keep_checkpoint_max=c.keep_checkpoint_max, iterations_per_loop=c.iterations_per_loop,
        use_tpu=c.use_tpu, tpu_name=c.tpu_name, tpu_zone=c.tpu_zone, gcp_project=c.gcp_project,
        master=c.master, num_tpu_cores=c.num_tpu_cores, log_every_n_steps=c.log_every_n_steps,
        seed=c.seed, distribution_strategy=c.distribution_strategy, use_xla=c.use_xla,
        use_amp=c.use_amp)
    return estimator_lib.build_estimator(
        model_fn, run_config, train_batch_size=batch_size, eval_batch_size=c.eval_batch_size,
        predict_batch_size=c.predict_batch_size, use_tpu=c.use_tpu,
        distribution_strategy=c.distribution_strategy,
        num_accumulation_steps=c.num_accumulation_steps), num_train_steps

  def train(self, model_dir, learning_rate, batch_size, epochs):
    """Trains one setting into `model_dir`. Returns (number of steps, seconds)."""
    c = self.config
    train = self.split("train")
    estimator, num_train_steps = self.estimator(model_dir, learning_rate, batch_size, epochs,
                                                c.init_checkpoint)
    effective_batch = self.effective_batch_size(batch_size)
    # The steps count optimizer steps, each of effective_batch examples.
    logging.info("training: %d examples (%d windows), batch %d x %d accumulation steps = %d per "
                 "step, %g epochs -> %d steps, lr %g", len(train.examples), len(train.features),
                 batch_size, c.num_accumulation_steps, effective_batch, epochs, num_train_steps,
                 learning_rate)
    input_fn = data.input_fn_builder(train.record_file, self.head, c.max_seq_length,
                                     is_training=True, drop_remainder=True,
                                     num_examples=len(train.features), seed=c.seed)
    hook = hooks.ProgressHook(num_train_steps, effective_batch, max(1, c.log_every_n_steps))
    start = time.time()
    estimator.train(input_fn=input_fn, max_steps=num_train_steps, hooks=[hook])
    if self.is_chief:  # the other workers' checkpoints are in their tmp_worker_<n> folders
      head_record.write(model_dir, self.head, self.task, c.do_lower_case, c.max_seq_length,
                        c.bert_config_file, c.vocab_file, task_name=c.task_name)
    return num_train_steps, time.time() - start

  def evaluate(self, model_dir, split_name, prefix, output_dir=None):
    """Predicts `split_name` with the latest checkpoint in `model_dir`, scores and writes results.

    Args:
      model_dir: where the checkpoint is.
      split_name: `dev` or `test`.
      prefix: `eval` or `test` (file names: `<prefix>_results.txt`, ...).
      output_dir: where results go (default model_dir).

    Returns:
      The results dict (as written to `<prefix>_results.json`).
    """
    output_dir = output_dir or model_dir
    estimator, split, input_fn, _ = self._eval_estimator_and_input(model_dir, split_name)
    loss_sum = label_count = 0.0
    outputs = []
    for feature, prediction in zip(split.features, estimator.predict(input_fn=input_fn)):
      if not feature.is_real_example:
        continue
      loss_sum += float(prediction["loss_sum"])
      label_count += float(prediction["label_count"])
      outputs.append(prediction)
    num_real = sum(f.is_real_example for f in split.features)
    if len(outputs) != num_real:
      raise RuntimeError("the model returned %d predictions for %d inputs" %
                         (len(outputs), num_real))
    # From --init_checkpoint (no checkpoint in model_dir) the step is the fresh graph's, 0, as in
    # the Estimator's own evaluation: init_from_checkpoint sets the model's variables only.
    global_step = (int(estimator.get_variable_value(tf.GraphKeys.GLOBAL_STEP))
                   if tf.train.latest_checkpoint(model_dir) else 0)
    results = {"global_step": global_step, "loss": loss_sum / max(1.0, label_count),
               "num_examples": len(split.examples), "split": split_name}
    predicted = self.head.assemble_predictions(split.examples, split.features, outputs)
    results.update(self.head.score(split.examples, predicted))
    results.update(self.head.write_predictions(self.task, split.examples, predicted, outputs,
                                               output_dir, prefix) or {})
    metrics.write_results(output_dir, prefix, results)
    return results

  def _eval_estimator_and_input(self, model_dir, split_name):
    """(Estimator for the model to evaluate, the split, its input_fn, steps).

    The model is model_dir's latest checkpoint; with none there, --init_checkpoint's variables,
    as Google's run_classifier.py does (its Estimator finds no checkpoint and runs the variables
    `init_from_checkpoint` set): how a released fine-tuned model is evaluated.
    """
    c = self.config
    init_checkpoint = None
    if not tf.train.latest_checkpoint(model_dir):
      if not c.init_checkpoint:
        raise fileio.InputError("no checkpoint in %s to evaluate: train first (--do_train) or "
                                "name the model with --init_checkpoint" % model_dir)
      init_checkpoint = c.init_checkpoint
      logging.info("no checkpoint in %s: evaluating --init_checkpoint=%s", model_dir,
                   init_checkpoint)
    split = self.split(split_name)
    estimator, _ = self.estimator(model_dir, 0.0, c.train_batch_size, None, init_checkpoint)
    input_fn = data.input_fn_builder(split.record_file, self.head, c.max_seq_length,
                                     is_training=False, drop_remainder=c.use_tpu)
    batch = c.eval_batch_size if split_name == "dev" else c.predict_batch_size
    # Off TPU the Estimator reads the file to its end; a TPU needs the count (padded batches).
    steps = len(split.features) // batch if c.use_tpu else None
    return estimator, split, input_fn, steps

  def google_evaluate(self, model_dir):
    """Google's `--do_eval`: the Estimator's evaluation of dev, written to `eval_results.txt`.

    Returns:
      The Estimator's results ({"eval_accuracy", "eval_loss", "global_step", "loss"} for the
      sequence head), as Google's `run_classifier.py` writes them.
    """
    estimator, _, input_fn, steps = self._eval_estimator_and_input(model_dir, "dev")
    result = estimator.evaluate(input_fn=input_fn, steps=steps)
    fileio.write_key_values(os.path.join(model_dir, "eval_results.txt"), result)
    logging.info("***** Eval results *****")
    for line in fileio.format_key_values(result).splitlines():
      logging.info("  %s", line)
    return result

  def google_predict(self, model_dir):
    """Google's `--do_predict`: `test_results.tsv`, each test example's probabilities in a line.

    Returns:
      The probabilities, one list per test example (padding left out).
    """
    estimator, split, input_fn, _ = self._eval_estimator_and_input(model_dir, "test")
    rows = []
    for feature, prediction in zip(split.features, estimator.predict(input_fn=input_fn)):
      if feature.is_real_example:
        rows.append(list(prediction["probabilities"]))
    if len(rows) != len(split.examples):
      raise RuntimeError("the model returned %d predictions for %d examples" %
                         (len(rows), len(split.examples)))
    # str() of each float32, as Google writes them.
    fileio.write_text_atomic(os.path.join(model_dir, "test_results.tsv"),
                             "".join("\t".join(str(p) for p in row) + "\n" for row in rows))
    logging.info("wrote the probabilities of %d test examples to %s", len(rows),
                 os.path.join(model_dir, "test_results.tsv"))
    return rows


def run(config):
  """Runs what `config` asks: conversion, training, dev evaluation, test prediction, or the grid.

  Returns:
    {"eval": results or None, "test": results or None, "grid": summary or None,
     "converted": {split: path} or None}.
  """
  outcome = {"eval": None, "test": None, "grid": None, "converted": None}
  task = make_task(config)
  if config.iob_output_dir:
    outcome["converted"] = tasks.convert_to_iob(task, config.data_dir, config.iob_output_dir)
    logging.info("wrote IOB files: %s", ", ".join(sorted(outcome["converted"].values())))
  if config.grid:
    outcome["grid"] = grid.run_grid(config, Runner(config, task))
    return outcome
  if not (config.do_train or config.do_eval or config.do_predict):
    if not config.iob_output_dir:
      raise fileio.InputError("nothing to do: pass --do_train, --do_eval, --do_predict, --grid or "
                              "--iob_output_dir")
    return outcome
  runner = Runner(config, task)
  if config.do_train:
    runner.train(config.output_dir, config.learning_rate, config.train_batch_size,
                 config.num_train_epochs)
  if not runner.is_chief:
    if config.do_eval or config.do_predict:
      logging.info("evaluation and prediction run on the chief only; this worker is done")
    return outcome
  if config.do_eval:
    outcome["eval"] = (runner.google_evaluate(config.output_dir) if config.google_outputs else
                       runner.evaluate(config.output_dir, "dev", "eval"))
  if config.do_predict:
    outcome["test"] = (runner.google_predict(config.output_dir) if config.google_outputs else
                       runner.evaluate(config.output_dir, "test", "test"))
  return outcome
