"""Held-out evaluation in run_pretraining.py: --eval_input_file, --eval_every_n_steps,
--keep_best_checkpoint (clinicalbert_tf/pretraining.py, clinicalbert_tf/eval_history.py).

  * the evaluation records are the --eval_input_file ones: evaluating during training equals a
    --do_eval run on those records alone from the same checkpoint, and differs from the training
    records' metrics (the evaluation records' masked tokens are all one id);
  * eval_history.jsonl has one line per multiple of N, TensorBoard's `<output_dir>/eval` the same
    steps; best/ holds the lowest-masked_lm_loss checkpoint, which evaluates to that loss again;
  * a resumed run appends (a cut-short last line dropped, no step twice), and after a crash
    between a save and its evaluation the resumed run's first save is evaluated;
  * bad --eval_input_file values and flag combinations are one error naming the flag;
  * under multi_worker_mirrored only the chief evaluates.

Tiny model (2 layers, hidden 32, vocab 97), records written directly (tests/testutil.py).
"""

import collections
import glob
import json
import os
import shutil

from absl.testing import absltest
import tensorflow.compat.v1 as tf

from clinicalbert_tf import eval_history
from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining
from tests import testutil

tf.disable_v2_behavior()

SEQ = 32
PRED = 5
VOCAB = 97
# The masked-LM label of every prediction in the evaluation records.
EVAL_TOKEN = 7
METRICS = ("masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss", "next_sentence_accuracy",
           "loss")


def _one_token_records(path, num, seed):
  """Pretraining records whose masked_lm_ids are all EVAL_TOKEN (padding positions stay 0)."""
  with tf.io.TFRecordWriter(path) as writer:
    for raw in testutil.pretraining_examples(num, SEQ, PRED, VOCAB, seed=seed):
      example = tf.train.Example.FromString(raw)
      feature = example.features.feature
      ids = feature["masked_lm_ids"].int64_list.value
      weights = feature["masked_lm_weights"].float_list.value
      for i, weight in enumerate(weights):
        if weight > 0:
          ids[i] = EVAL_TOKEN
      writer.write(example.SerializeToString())
  return path


def _event_values(directory, tag):
  """[(step, value)] of scalar `tag` in the event files directly under `directory`."""
  out = []
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    for event in tf.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          out.append((int(event.step), value.simple_value))
  return out


def _history_lines(output_dir):
  with open(os.path.join(output_dir, eval_history.HISTORY_FILE), encoding="utf-8") as f:
    return f.read().splitlines()


def _steps(output_dir):
  return [json.loads(line)["global_step"] for line in _history_lines(output_dir)]


class _Base(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.config, cls.config_file, cls.train_records, cls.init = testutil.write_pretraining_setup(
        cls.tmp, SEQ, PRED)
    cls.eval_records = _one_token_records(os.path.join(cls.tmp, "eval.tfrecord"), 32, seed=3)

  @classmethod
  def flags(cls, **overrides):
    flags = dict(bert_config_file=cls.config_file, input_file=cls.train_records,
                 eval_input_file=cls.eval_records, init_checkpoint=cls.init,
                 max_seq_length=SEQ, max_predictions_per_seq=PRED, train_batch_size=8,
                 eval_batch_size=8, max_eval_steps=2, num_train_steps=6, num_warmup_steps=1,
                 learning_rate=1e-3, save_checkpoints_steps=1, shuffle_buffer_size=0)
    flags.update(overrides)
    return flags

  def evaluate_alone(self, checkpoint, input_file):
    """A --do_eval run (no new flags) of `checkpoint` on `input_file`, in a fresh folder."""
    out = self.temp_dir()
    result = pretraining.run_pretraining(**self.flags(
        output_dir=out, input_file=input_file, eval_input_file=None, init_checkpoint=checkpoint,
        do_eval=True))
    # Without the new flags nothing new is written (Google's outputs only).
    self.assertFalse(os.path.exists(os.path.join(out, eval_history.HISTORY_FILE)))
    self.assertFalse(os.path.exists(os.path.join(out, eval_history.BEST_DIR)))
    return result


class EvalDuringTrainingTest(_Base):
  """One run: 6 steps, a checkpoint each step (1 kept), evaluation every 2, best kept, --do_eval."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.out = os.path.join(cls.tmp, "run")
    cls.result = pretraining.run_pretraining(**cls.flags(
        output_dir=cls.out, do_train=True, do_eval=True, eval_every_n_steps=2,
        keep_checkpoint_max=1, keep_best_checkpoint=True))
    cls.history = [json.loads(line) for line in _history_lines(cls.out)]

  def test_one_history_line_per_multiple_of_n(self):
    # Checkpoints were saved at every step; only the multiples of 2 are evaluated.
    self.assertEqual([r["global_step"] for r in self.history], [2, 4, 6])
    for record in self.history:
      self.assertEqual(set(record), {"global_step", "checkpoint"} | set(METRICS))
      self.assertEqual(record["checkpoint"],
                       os.path.join(self.out, "model.ckpt-%d" % record["global_step"]))

  def test_tensorboard_eval_folder_has_the_evaluations(self):
    events = _event_values(os.path.join(self.out, "eval"), "masked_lm_loss")
    self.assertEqual(sorted({step for step, _ in events}), [2, 4, 6])
    by_step = {r["global_step"]: r["masked_lm_loss"] for r in self.history}
    for step, value in events:
      self.assertAllClose(value, by_step[step], rtol=1e-6)

  def test_evaluates_the_eval_input_file_records(self):
    final = os.path.join(self.out, "model.ckpt-6")
    alone = self.evaluate_alone(final, self.eval_records)
    on_train = self.evaluate_alone(final, self.train_records)
    for key in METRICS:
      self.assertAllClose(self.result[key], alone[key], rtol=1e-5, msg=key)
      self.assertAllClose(self.history[-1][key], alone[key], rtol=1e-5, msg=key)
    # The two record sets give different metrics, so the comparison above can tell them apart.
    self.assertGreater(abs(on_train["masked_lm_loss"] - alone["masked_lm_loss"]), 0.05)
    self.assertEqual(self.result["global_step"], 6)
    # --do_eval still writes eval_results.txt, from the final checkpoint on the eval records.
    written = fileio.read_key_values(os.path.join(self.out, pretraining.EVAL_RESULTS_FILE))
    self.assertAllClose(written["masked_lm_loss"], alone["masked_lm_loss"], rtol=1e-5)

  def test_best_checkpoint_is_the_lowest_loss_and_reevaluates_to_it(self):
    best_dir = os.path.join(self.out, "best")
    with open(os.path.join(best_dir, "best_eval.json"), encoding="utf-8") as f:
      best = json.load(f)
    lowest = min(self.history, key=lambda r: r["masked_lm_loss"])
    self.assertEqual(best["global_step"], lowest["global_step"])
    self.assertEqual(best["masked_lm_loss"], lowest["masked_lm_loss"])
    path = tf.train.latest_checkpoint(best_dir)
    self.assertEqual(path, os.path.join(best_dir, "model.ckpt-%d" % lowest["global_step"]))
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
      self.assertTrue(os.path.exists(path + suffix), suffix)
    self.assertEqual(int(testutil.read_checkpoint(path)["global_step"]), lowest["global_step"])
    # keep_checkpoint_max=1 still rules the run's own folder; no temporary folder is left.
    self.assertEqual(sorted(os.path.basename(p) for p in
                            glob.glob(os.path.join(self.out, "model.ckpt-*.index"))),
                     ["model.ckpt-6.index"])
    self.assertEqual(glob.glob(os.path.join(self.out, ".best*")), [])
    again = self.evaluate_alone(path, self.eval_records)
    self.assertAllClose(again["masked_lm_loss"], best["masked_lm_loss"], rtol=1e-5)


class ResumeTest(_Base):

  def test_resumed_run_appends_without_duplicates(self):
    out = self.temp_dir()
    flags = self.flags(output_dir=out, do_train=True, eval_every_n_steps=2,
                       save_checkpoints_steps=2, max_eval_steps=1)
    pretraining.run_pretraining(**dict(flags, num_train_steps=4))
    first = _history_lines(out)
    self.assertEqual(_steps(out), [2, 4])
    # An append cut short by a crash.
    with open(os.path.join(out, eval_history.HISTORY_FILE), "a", encoding="utf-8") as f:
      f.write('{"global_step": 6, "masked_lm_lo')
    # The resumed run saves step 4 again as it starts; that save is not evaluated twice.
    pretraining.run_pretraining(**dict(flags, num_train_steps=6))
    lines = _history_lines(out)
    self.assertEqual(lines[:2], first)
    self.assertEqual(_steps(out), [2, 4, 6])
    steps = collections.Counter(step for step, _ in _event_values(os.path.join(out, "eval"),
                                                                  "masked_lm_loss"))
    self.assertEqual(steps, {2: 1, 4: 1, 6: 1})


class MirroredTest(_Base):

  def test_listener_under_a_strategy(self):
    # The strategy's Estimator (estimator._DistributedEstimator) takes the listener too.
    out = self.temp_dir()
    pretraining.run_pretraining(**self.flags(
        output_dir=out, do_train=True, num_train_steps=2, save_checkpoints_steps=2,
        eval_every_n_steps=2, max_eval_steps=1, distribution_strategy="mirrored"))
    self.assertEqual(_steps(out), [2])
    self.assertEqual([s for s, _ in _event_values(os.path.join(out, "eval"), "masked_lm_loss")],
                     [2])


def _fake_checkpoint(directory, step):
  """Files named as a checkpoint's, with contents that tell the steps apart."""
  prefix = os.path.join(directory, "model.ckpt-%d" % step)
  for suffix in (".index", ".data-00000-of-00001", ".meta"):
    with open(prefix + suffix, "w", encoding="utf-8") as f:
      f.write("step %d %s\n" % (step, suffix))
  return prefix


class ListenerTest(testutil.TestCase):
  """EvalListener and the history/best helpers with a scripted evaluation (no model)."""

  def _listener(self, out, losses, evaluated, keep_best=True):

    def evaluate(path):
      step = eval_history.checkpoint_step(path)
      evaluated.append(step)
      return {"global_step": step, "masked_lm_loss": losses[step], "masked_lm_accuracy": 0.5,
              "next_sentence_loss": 0.7, "next_sentence_accuracy": 0.5, "loss": 1.0}

    listener = eval_history.EvalListener(evaluate, out, 2, keep_best=keep_best)
    listener.begin()
    return listener

  def test_evaluates_multiples_once_and_keeps_the_lowest(self):
    out = self.temp_dir()
    evaluated = []
    listener = self._listener(out, {2: 3.0, 4: 1.0, 6: 2.0}, evaluated)
    for step in (0, 1, 2, 3, 4, 4, 5, 6):
      _fake_checkpoint(out, step)
      listener.after_save(None, step)
    self.assertEqual(evaluated, [2, 4, 6])
    self.assertEqual(_steps(out), [2, 4, 6])
    best = os.path.join(out, "best")
    self.assertEqual(tf.train.latest_checkpoint(best), os.path.join(best, "model.ckpt-4"))
    self.assertEqual(sorted(os.listdir(best)),
                     ["best_eval.json", "checkpoint", "model.ckpt-4.data-00000-of-00001",
                      "model.ckpt-4.index", "model.ckpt-4.meta"])
    with open(os.path.join(best, "model.ckpt-4.index"), encoding="utf-8") as f:
      self.assertEqual(f.read(), "step 4 .index\n")
    self.assertEqual(eval_history.read_best_eval(best)["global_step"], 4)

  def test_a_save_left_unevaluated_by_a_crash_is_evaluated_when_saved_again(self):
    out = self.temp_dir()
    evaluated = []
    listener = self._listener(out, {2: 3.0, 4: 1.0}, evaluated, keep_best=False)
    _fake_checkpoint(out, 2)
    listener.after_save(None, 2)
    # Crash after the save at 4, before its line: the resumed run saves 4 again first.
    _fake_checkpoint(out, 4)
    listener = self._listener(out, {2: 3.0, 4: 1.0}, evaluated, keep_best=False)
    listener.after_save(None, 4)
    listener.after_save(None, 4)
    self.assertEqual(evaluated, [2, 4])
    self.assertEqual(_steps(out), [2, 4])

  def test_best_folder_caught_up_and_swap_restored_after_a_crash(self):
    out = self.temp_dir()
    evaluated = []
    listener = self._listener(out, {2: 3.0, 4: 1.0}, evaluated)
    for step in (2, 4):
      _fake_checkpoint(out, step)
      listener.after_save(None, step)
    best = os.path.join(out, "best")
    # A crash between the two renames of the swap: best/ moved aside, the new one not in place.
    os.replace(best, os.path.join(out, ".best.old-12345"))
    os.makedirs(os.path.join(out, ".best.tmp-12345"))
    self._listener(out, {}, evaluated)
    self.assertEqual(eval_history.read_best_eval(best)["global_step"], 4)
    self.assertEqual(glob.glob(os.path.join(out, ".best*")), [])
    # A crash after the history line, before the copy: best/ still holds step 2.
    shutil.rmtree(best)
    record = json.loads(_history_lines(out)[0])
    eval_history.copy_best_checkpoint(record["checkpoint"], best, record)
    self._listener(out, {}, evaluated)
    self.assertEqual(tf.train.latest_checkpoint(best), os.path.join(best, "model.ckpt-4"))
    self.assertEqual(evaluated, [2, 4])

  def test_history_drops_a_cut_short_line_and_names_a_bad_one(self):
    path = os.path.join(self.temp_dir(), eval_history.HISTORY_FILE)
    with open(path, "w", encoding="utf-8") as f:
      f.write('{"global_step": 2, "masked_lm_loss": 1.0}\n{"global_step": 4, "mas')
    self.assertEqual([r["global_step"] for r in eval_history.read_history(path)], [2])
    self.assertTrue(eval_history.append_history(path, {"global_step": 4, "masked_lm_loss": 0.5}))
    self.assertFalse(eval_history.append_history(path, {"global_step": 4, "masked_lm_loss": 9.0}))
    with open(path, encoding="utf-8") as f:
      self.assertEqual(f.read(), '{"global_step": 2, "masked_lm_loss": 1.0}\n'
                       '{"global_step": 4, "masked_lm_loss": 0.5}\n')
    with open(path, "a", encoding="utf-8") as f:
      f.write("not json\n")
    with self.assertRaisesRegex(fileio.InputError, r"eval_history.jsonl:3: not a JSON line"):
      eval_history.read_history(path)


class BadFlagsTest(_Base):

  def _error(self, **overrides):
    out = os.path.join(self.temp_dir(), "not_created")
    with self.assertRaises(fileio.InputError) as cm:
      pretraining.run_pretraining(**self.flags(output_dir=out, **overrides))
    # Refused before anything was built or written.
    self.assertFalse(os.path.exists(out))
    return str(cm.exception)

  def test_bad_eval_input_file(self):
    message = self._error(do_eval=True, eval_input_file="/nonexistent/*.tfrecord")
    self.assertIn("--eval_input_file: no file matches", message)

    other = testutil.write_pretraining_records(
        os.path.join(self.temp_dir(), "seq16.tfrecord"), 4, 16, PRED, VOCAB)
    message = self._error(do_train=True, eval_every_n_steps=2, eval_input_file=other)
    self.assertTrue(message.startswith("--eval_input_file: %s" % other), message)
    self.assertIn("max_seq_length=16 but --max_seq_length=32", message)

    cut = os.path.join(self.temp_dir(), "cut.tfrecord")
    with open(self.eval_records, "rb") as f:
      data = f.read()
    with open(cut, "wb") as f:
      f.write(data[:-7])
    message = self._error(do_eval=True, eval_input_file="%s,%s" % (self.eval_records, cut))
    self.assertRegex(message, r"^--eval_input_file: %s is cut short" % cut)

  def test_flag_combinations(self):
    self.assertIn("needs --do_train", self._error(do_eval=True, eval_every_n_steps=2))
    message = self._error(do_train=True, eval_every_n_steps=3, save_checkpoints_steps=2)
    self.assertIn("--eval_every_n_steps=3 is not a multiple of --save_checkpoints_steps=2", message)
    self.assertIn("--save_checkpoints_steps=1", message)
    self.assertIn("needs --eval_every_n_steps", self._error(do_train=True,
                                                            keep_best_checkpoint=True))
    self.assertIn("nothing evaluates", self._error(do_train=True))
    self.assertIn("--eval_every_n_steps=-1", self._error(do_train=True, eval_every_n_steps=-1))

  def test_script_reports_one_line(self):
    out = self.temp_dir()
    flags = self.flags(output_dir=out, do_eval=True,
                       eval_input_file=os.path.join(out, "none-*.tfrecord"))
    flags.pop("shuffle_buffer_size")
    proc = testutil.run_module("run_pretraining", testutil.flag_args(flags), check=False,
                               timeout=120)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if "run_pretraining.py: error:" in l]
    self.assertEqual(len(lines), 1, proc.stderr[-2000:])
    self.assertIn("--eval_input_file: no file matches", lines[0])


class MultiWorkerTest(_Base):

  def test_only_the_chief_evaluates(self):
    out = os.path.join(self.temp_dir(), "multiworker")
    flags = self.flags(output_dir=out, do_train=True, num_train_steps=4, save_checkpoints_steps=2,
                       eval_every_n_steps=2, keep_best_checkpoint=True, max_eval_steps=1,
                       distribution_strategy="multi_worker_mirrored")
    flags.pop("shuffle_buffer_size")
    results = testutil.run_workers("run_pretraining", testutil.flag_args(flags), timeout=400)
    for index, (returncode, err) in enumerate(results):
      self.assertEqual(returncode, 0, "worker %d failed:\n%s" % (index, err[-4000:]))
    self.assertEqual(_steps(out), [2, 4])
    self.assertIsNotNone(tf.train.latest_checkpoint(os.path.join(out, "best")))
    self.assertEqual(sorted({s for s, _ in _event_values(os.path.join(out, "eval"),
                                                         "masked_lm_loss")}), [2, 4])
    # The other worker trained only.
    self.assertEqual(glob.glob(os.path.join(out, "tmp_worker_1", "eval*")), [])
    self.assertEqual(glob.glob(os.path.join(out, "tmp_worker_1", "best")), [])


if __name__ == "__main__":
  absltest.main()
