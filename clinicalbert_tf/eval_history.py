"""Evaluation during pretraining: `eval_history.jsonl`, the best checkpoint, and when to evaluate.

`run_pretraining.py --eval_every_n_steps=N` evaluates the checkpoint saved at each multiple of N
global steps; this module holds what that evaluation leaves behind and decides when it is due:

  * `<output_dir>/eval_history.jsonl`: one JSON object per evaluation (`global_step`, the five
    metrics, `checkpoint`), appended whole (one write, flushed and fsynced). A line cut short by a
    crash is dropped when the file is next read or appended to; a step that already has a line is
    skipped, never written twice, so a resumed run keeps the earlier lines.
  * `<output_dir>/best/` (`--keep_best_checkpoint`): a copy of the checkpoint with the lowest
    `masked_lm_loss` in the history, with its own `checkpoint` state file (so
    `tf.train.latest_checkpoint(<output_dir>/best)` finds it) and `best_eval.json` (its step and
    metrics). It is built in a temporary folder and renamed into place.
  * `EvalListener`: a `CheckpointSaverListener` (the Estimator calls it after each save) that
    evaluates when a save reaches the next multiple of N; `CheckpointPollingHook` drives the same
    listener where the Estimator takes no listeners (multi-worker training).

Remote folders (`gs://...`) are written through `tf.io.gfile`: the history is rewritten whole
(object stores cannot append) and `best/` is written in place, without the local atomicity.
"""

import glob
import json
import os
import re
import shutil

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio

HISTORY_FILE = "eval_history.jsonl"
BEST_DIR = "best"
BEST_EVAL_FILE = "best_eval.json"
# The evaluation metrics a history line keeps (Google's `metric_fn` keys and the total loss).
METRICS = ("masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss", "next_sentence_accuracy",
           "loss")

_STEP_RE = re.compile(r"-(\d+)$")


def _is_remote(path):
  return "://" in path


def history_path(output_dir):
  """`<output_dir>/eval_history.jsonl`."""
  return os.path.join(output_dir, HISTORY_FILE)


def best_dir(output_dir):
  """`<output_dir>/best`."""
  return os.path.join(output_dir, BEST_DIR)


def checkpoint_step(checkpoint_path):
  """The global step in a checkpoint prefix `.../model.ckpt-N` (None if it has none)."""
  match = _STEP_RE.search(checkpoint_path or "")
  return int(match.group(1)) if match else None


def history_record(result, checkpoint_path):
  """The history line for an `Estimator.evaluate` result: global_step, METRICS, checkpoint."""
  record = {"global_step": int(result["global_step"])}
  for key in METRICS:
    record[key] = float(result[key])
  record["checkpoint"] = checkpoint_path
  return record


def _read_text(path):
  if _is_remote(path):
    if not tf.io.gfile.exists(path):
      return ""
    with tf.io.gfile.GFile(path, "r") as f:
      return f.read()
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except FileNotFoundError:
    return ""
  except (OSError, UnicodeDecodeError) as e:
    raise fileio.InputError("%s cannot be read (%s)" % (path, e)) from None


def read_history(path):
  """The records of an `eval_history.jsonl`, in file order ([] when it does not exist).

  A last line without its newline is the remains of an append cut short by a crash: it is left
  out (and `append_history` removes it).

  Raises:
    InputError: a complete line is not a JSON object with an integer `global_step`.
  """
  text = _read_text(path)
  lines = text.split("\n")
  # The piece after the last newline is empty (file ends whole) or an interrupted append.
  records = []
  for number, line in enumerate(lines[:-1], 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError as e:
      raise fileio.InputError("%s:%d: not a JSON line (%s); remove the line or the file" %
                              (path, number, e)) from None
    if not isinstance(record, dict) or not isinstance(record.get("global_step"), int):
      raise fileio.InputError("%s:%d: expected a JSON object with an integer global_step" %
                              (path, number))
    records.append(record)
  return records


def _drop_partial_tail(path):
  """Truncates a local file after its last newline (the remains of an interrupted append)."""
  try:
    with open(path, "rb") as f:
      data = f.read()  # a history is one short line per evaluation
  except FileNotFoundError:
    return
  if not data or data.endswith(b"\n"):
    return
  keep = data.rfind(b"\n") + 1
  logging.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run",
                  path, len(data) - keep)
  with open(path, "rb+") as f:
    f.truncate(keep)
    f.flush()
    os.fsync(f.fileno())


def append_history(path, record):
  """Appends `record` as one JSON line, unless its `global_step` already has one.

  Local files: one `write` of the whole line, then flush and fsync, after removing an incomplete
  last line. Remote files are rewritten whole through `tf.io.gfile`.

  Returns:
    True if the line was written, False if the step was already in the history (kept as it was).
  """
  existing = read_history(path)
  if any(r["global_step"] == record["global_step"] for r in existing):
    logging.info("%s already has global step %d; not evaluated twice", path, record["global_step"])
    return False
  line = json.dumps(record, sort_keys=True) + "\n"
  if _is_remote(path):
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in existing) + line
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(text)
    return True
  _drop_partial_tail(path)
  with open(path, "a", encoding="utf-8") as f:
    f.write(line)
    f.flush()
    os.fsync(f.fileno())
  return True


def best_record(records):
  """The record with the lowest `masked_lm_loss` (the earliest of equals); None for no records."""
  best = None
  for record in records:
    if best is None or record["masked_lm_loss"] < best["masked_lm_loss"]:
      best = record
  return best


def checkpoint_files(checkpoint_path):
  """The files of a checkpoint prefix: `.index`, `.data-*` and `.meta` when present."""
  if _is_remote(checkpoint_path):
    match, prefix = tf.io.gfile.glob, checkpoint_path
  else:
    match, prefix = glob.glob, glob.escape(checkpoint_path)
  return sorted(match(prefix + ".index") + match(prefix + ".data-*") + match(prefix + ".meta"))


def _state_file_text(name):
  # What `tf.train.update_checkpoint_state` writes for one relative checkpoint.
  return 'model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (name, name)


def copy_best_checkpoint(checkpoint_path, target_dir, record):
  """Makes `target_dir` a one-checkpoint folder holding a copy of `checkpoint_path` and `record`.

  The copy (checkpoint files, `checkpoint` state file, `best_eval.json`) is written into a
  temporary folder beside `target_dir`, which then replaces `target_dir` by renames: the old folder
  is moved aside first (`restore_interrupted_swap` puts it back if a crash comes between the two
  renames) and removed last.

  Returns:
    The checkpoint prefix inside `target_dir`.

  Raises:
    InputError: the checkpoint has no `.index` file (it was deleted before it could be copied).
  """
  files = checkpoint_files(checkpoint_path)
  if not any(f.endswith(".index") for f in files):
    raise fileio.InputError("%s: no checkpoint to copy into %s" % (checkpoint_path, target_dir))
  name = os.path.basename(checkpoint_path)
  if _is_remote(target_dir):
    tf.io.gfile.makedirs(target_dir)
    for path in files:
      tf.io.gfile.copy(path, os.path.join(target_dir, os.path.basename(path)), overwrite=True)
    best_eval = json.dumps(record, indent=2, sort_keys=True) + "\n"
    for file_name, text in ((BEST_EVAL_FILE, best_eval), ("checkpoint", _state_file_text(name))):
      with tf.io.gfile.GFile(os.path.join(target_dir, file_name), "w") as f:
        f.write(text)
    return os.path.join(target_dir, name)

  parent, base = os.path.split(os.path.abspath(target_dir))
  tmp = os.path.join(parent, ".%s.tmp-%d" % (base, os.getpid()))
  old = os.path.join(parent, ".%s.old-%d" % (base, os.getpid()))
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    for path in files:
      shutil.copyfile(path, os.path.join(tmp, os.path.basename(path)))
    fileio.write_json_atomic(os.path.join(tmp, BEST_EVAL_FILE), record)
    fileio.write_text_atomic(os.path.join(tmp, "checkpoint"), _state_file_text(name))
    if os.path.exists(target_dir):
      os.replace(target_dir, old)
    os.replace(tmp, target_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  shutil.rmtree(old, ignore_errors=True)
  return os.path.join(target_dir, name)


def restore_interrupted_swap(target_dir):
  """Puts back the previous best folder when a crash came between `copy_best_checkpoint`'s renames.

  Leftover temporary folders of interrupted copies are removed.
  """
  if _is_remote(target_dir):
    return
  parent, base = os.path.split(os.path.abspath(target_dir))
  olds = sorted(glob.glob(os.path.join(parent, ".%s.old-*" % glob.escape(base))))
  if olds and not os.path.exists(target_dir):
    logging.warning("restoring %s from %s (a best-checkpoint copy was interrupted)", target_dir,
                    olds[-1])
    os.replace(olds[-1], target_dir)
    olds = olds[:-1]
  for path in olds + glob.glob(os.path.join(parent, ".%s.tmp-*" % glob.escape(base))):
    shutil.rmtree(path, ignore_errors=True)


def read_best_eval(target_dir):
  """The `best_eval.json` record of a best folder; None when there is none or it is unreadable."""
  path = os.path.join(target_dir, BEST_EVAL_FILE)
  try:
    return json.loads(_read_text(path) or "null")
  except ValueError:
    return None


class EvalListener(tf.train.CheckpointSaverListener):
  """Evaluates the checkpoint just saved when it reaches the next multiple of `every_n_steps`.

  A save at global step S is evaluated when S // N > L // N, L being the highest step in the
  history (0 when it is empty): with checkpoints saved at the multiples of N that is each
  multiple exactly once. The step-0 save of a fresh run, and the save a resumed run makes at the
  step it resumes from, are not evaluated again; a save that a crash left unevaluated (checkpoint
  written, history line not yet) is, when the resumed run saves it again. Each evaluation is
  appended to the history (`append_history`) and, with `keep_best`, copied to `best/` when its
  `masked_lm_loss` is the lowest so far (`copy_best_checkpoint`).
  """

  def __init__(self, evaluate_fn, output_dir, every_n_steps, keep_best=False):
    """Args:
      evaluate_fn: `evaluate_fn(checkpoint_path)` -> the `Estimator.evaluate` result dict.
      output_dir: the training run's model folder (checkpoints, history, best/).
      every_n_steps: N > 0.
      keep_best: keep the lowest-`masked_lm_loss` checkpoint in `<output_dir>/best`.
    """
    self._evaluate_fn = evaluate_fn
    self._output_dir = output_dir
    self._every_n = int(every_n_steps)
    self._keep_best = keep_best
    self._history = history_path(output_dir)

  def begin(self):
    records = read_history(self._history)
    if self._keep_best:
      self._repair_best(records)

  def _repair_best(self, records):
    """After a crash, `best/` may be mid-swap or behind the history's best: bring it up to date."""
    target = best_dir(self._output_dir)
    restore_interrupted_swap(target)
    best = best_record(records)
    if best is None:
      return
    current = read_best_eval(target)
    if current and current.get("global_step") == best["global_step"]:
      return
    if checkpoint_files(best["checkpoint"]):
      logging.info("best/ is behind %s; copying global step %d", self._history,
                   best["global_step"])
      copy_best_checkpoint(best["checkpoint"], target, best)
    else:
      logging.warning("%s: the best evaluation (global step %d) has no checkpoint left to copy",
                      self._history, best["global_step"])

  def after_save(self, session, global_step_value):
    """Evaluates the checkpoint just saved if it is due (see the class docstring)."""
    del session  # the evaluation reads the checkpoint file, in its own graph
    path = tf.train.latest_checkpoint(self._output_dir)
    if checkpoint_step(path) != int(global_step_value):
      path = os.path.join(self._output_dir, "model.ckpt-%d" % int(global_step_value))
    self.maybe_evaluate(path)

  def maybe_evaluate(self, checkpoint_path):
    """Evaluates `checkpoint_path` if its step reaches a multiple of N past the history.

    Returns:
      The history record written, or None when nothing was due.
    """
    step = checkpoint_step(checkpoint_path)
    if step is None:
      return None
    records = read_history(self._history)
    last = max([r["global_step"] for r in records] + [0])
    if step // self._every_n <= last // self._every_n:
      return None
    logging.info("***** Evaluating %s (every %d steps) *****", checkpoint_path, self._every_n)
    result = self._evaluate_fn(checkpoint_path)
    record = history_record(result, checkpoint_path)
    logging.info("eval at global step %d: %s", record["global_step"],
                 ", ".join("%s = %.6g" % (k, record[k]) for k in METRICS))
    if not append_history(self._history, record):
      return None
    if self._keep_best:
      best = best_record(records + [record])
      if best is record:
        target = copy_best_checkpoint(checkpoint_path, best_dir(self._output_dir), record)
        logging.info("new best masked_lm_loss %.6g at global step %d: copied to %s",
                     record["masked_lm_loss"], record["global_step"], target)
    return record


class CheckpointPollingHook(tf.train.SessionRunHook):
  """Drives an `EvalListener` from the newest checkpoint in its folder, after each step and at end.

  For multi-worker training, where `Estimator.train` refuses saving listeners: the chief's
  checkpoint hook runs after the hooks passed to `train`, so a save at step S is seen (and
  evaluated) after step S + 1; the last save, made when the session ends, is evaluated by
  `maybe_evaluate` after `train` returns. Reading the `checkpoint` state file each step is cheap
  next to a multi-worker step.
  """

  def __init__(self, listener, output_dir):
    self._listener = listener
    self._output_dir = output_dir
    self._seen = None

  def begin(self):
    self._listener.begin()

  def _poll(self):
    path = tf.train.latest_checkpoint(self._output_dir)
    if path and path != self._seen:
      self._seen = path
      self._listener.maybe_evaluate(path)

  def after_run(self, run_context, run_values):
    del run_context, run_values
    self._poll()

  def end(self, session):
    del session
    self._poll()
