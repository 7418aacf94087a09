"""Kill anywhere: each long-running script SIGKILLed at a few points, then rerun to the end.

For every script (format_notes, create_pretraining_data, run_pretraining, run_finetune,
extract_features, predict, deidentify) on tiny invented inputs: an uninterrupted run gives the
reference outputs; then the script runs into a fresh folder and is killed with SIGKILL (when a
given log line appears, or after a delay), twice, and finally runs to the end. While each run
goes, the output folder is polled: every file under a final name must be complete at every poll
(equal to the reference run's bytes where the outputs are deterministic; JSON parses; a
checkpoint's `.index` loads with its data). After the last run the deterministic outputs must
equal the reference run's, and training must end at num_train_steps with a loadable checkpoint.

Temporary names (`.<name>.tmp-<pid>`, TensorFlow's `*_temp*` / `*.tempstate*`) are exempt, and so
are TensorBoard event files (append-only logs that TensorBoard reads up to a torn last record).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from absl.testing import absltest

from tests import testutil

TESTDATA = os.path.join(testutil.REPO, "testdata")


def _is_temporary(rel):
  return any(p.startswith(".") or "_temp" in p or ".tempstate" in p or ".tmp" in p
             for p in rel.split(os.sep))


def _is_event_file(rel):
  return os.path.basename(rel).startswith("events.out.tfevents")


def _is_checkpoint_part(rel):
  return re.search(r"\.(index|data-\d+-of-\d+)$", rel) is not None


def snapshot(directory, cache=None):
  """{relative path: bytes} of every final-named file under `directory` (events excluded).

  `cache` ({rel: (stat key, bytes)}) spares re-reading files whose size and mtime are unchanged.
  """
  out = {}
  cache = {} if cache is None else cache
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, directory)
      if _is_temporary(rel) or _is_event_file(rel):
        continue
      try:
        st = os.stat(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if rel in cache and cache[rel][0] == key:
          out[rel] = cache[rel][1]
          continue
        with open(path, "rb") as f:
          out[rel] = f.read()
        cache[rel] = (key, out[rel])
      except FileNotFoundError:  # renamed or removed between listing and reading
        pass
  return out


def check_checkpoints(directory):
  """Problems with the checkpoints under `directory`: each `.index` must load with its data."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  problems = []
  for index in glob.glob(os.path.join(directory, "**", "*.index"), recursive=True):
    if _is_temporary(os.path.relpath(index, directory)):
      continue
    prefix = index[:-len(".index")]
    try:
      reader = tf.train.load_checkpoint(prefix)
      for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except
      problems.append("%s does not load: %s" % (prefix, str(e).splitlines()[0]))
  state = os.path.join(directory, "checkpoint")
  if os.path.exists(state):
    latest = tf.train.latest_checkpoint(directory)
    if latest is None or not os.path.exists(latest + ".index"):
      problems.append("%s names a checkpoint that is not there (%r)" % (state, latest))
  return problems


class KillTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(cls.root)
    cls.config_file = testutil.write_config(cls.root, testutil.tiny_config(dropout=0.0))
    cls.init = testutil.write_checkpoint(os.path.join(cls.root, "init", "bert_model.ckpt"),
                                         testutil.tiny_config(), heads="pretraining")
    cls.logs = os.path.join(cls.root, "logs")
    os.makedirs(cls.logs)

  # ---------------------------------------------------------------------------------------------

  def watch(self, module, args, out_dir, reference=None, kill_on=None, delay=0.0,
            exact=lambda rel: True):
    """Runs `module args`, polling `out_dir`; kills it when `kill_on` (a regex) shows in its
    stderr, `delay` seconds later (or `delay` after the start when `kill_on` is None; never when
    both are None). Returns (killed, stderr, problems)."""
    log = os.path.join(self.logs, "%s-%d.log" % (module, len(os.listdir(self.logs))))
    with open(log, "w") as err:
      proc = subprocess.Popen([sys.executable, "-m", module] + list(args),
                              env=testutil.script_env(), stdout=err, stderr=subprocess.STDOUT)
    start, triggered, killed = time.time(), None, False
    problems, cache = [], {}
    if kill_on is None and delay:
      triggered = start
    while True:
      done = proc.poll() is not None
      for rel, data in snapshot(out_dir, cache).items():
        problem = self.incomplete(rel, data, reference, exact)
        if problem and problem not in problems:
          problems.append(problem)
      if done:
        break
      if triggered is None and kill_on is not None:
        with open(log, errors="replace") as f:
          if re.search(kill_on, f.read(), re.M):
            triggered = time.time()
      if triggered is not None and time.time() - triggered >= delay:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
        # One more look at what the kill left.
        for rel, data in snapshot(out_dir).items():
          problem = self.incomplete(rel, data, reference, exact)
          if problem and problem not in problems:
            problems.append(problem)
        break
      time.sleep(0.05)
    with open(log, errors="replace") as f:
      stderr = f.read()
    if not killed and proc.returncode != 0:
      self.fail("%s failed (%d):\n%s" % (module, proc.returncode, stderr[-3000:]))
    problems.extend(check_checkpoints(out_dir))
    return killed, stderr, problems

  @staticmethod
  def incomplete(rel, data, reference, exact):
    """Why the final-named file `rel` looks incomplete, or None."""
    if reference is not None and rel in reference and exact(rel):
      if data != reference[rel]:
        return "%s differs from the uninterrupted run's (%d vs %d bytes)" % (
            rel, len(data), len(reference[rel]))
      return None
    if rel.endswith(".json"):
      try:
        json.loads(data.decode("utf-8"))
      except ValueError:
        return "%s is not complete JSON (%d bytes)" % (rel, len(data))
    elif rel.endswith(".jsonl"):
      for line in data.decode("utf-8", "replace").splitlines():
        try:
          json.loads(line)
        except ValueError:
          return "%s has an incomplete JSON line (%d bytes)" % (rel, len(data))
      if data and not data.endswith(b"\n"):
        return "%s does not end with a newline (%d bytes)" % (rel, len(data))
    return None

  def kill_and_rerun(self, module, args_for, kills, exact=lambda rel: True, min_killed=1,
                     reference_run=True):
    """The reference run, `kills` killed runs into one folder, then a run to the end.

    Args:
      args_for: out_dir -> the script's flags.
      kills: (kill_on regex or None, delay) per killed run; a negative delay is that fraction
        of the uninterrupted run's wall time (so the kill lands late in the run on any machine).
      exact: rel -> whether the file must equal the reference run's bytes.
      min_killed: how many of the runs must really have been killed before they ended.
      reference_run: False where nothing is compared with an uninterrupted run (then the
        reference snapshot is empty).
    Returns:
      (reference snapshot, final snapshot, out_dir, reference dir).
    """
    ref_dir = os.path.join(self.root, module + "_ref")
    t0 = time.time()
    reference = {}
    if reference_run:
      killed, _, problems = self.watch(module, args_for(ref_dir), ref_dir)
      self.assertFalse(killed)
      self.assertEqual(problems, [])
      reference = snapshot(ref_dir)
      self.assertTrue(reference, "%s wrote nothing" % module)
    ref_seconds = time.time() - t0
    out_dir = os.path.join(self.root, module)
    n_killed = 0
    for kill_on, delay in kills:
      # A late kill (a fraction of the reference run's time) can miss when this run goes faster
      # than the reference did (another process left the machine): then try again, earlier.
      for scale in ((1.0, 0.6, 0.3) if delay < 0 else (1.0,)):
        wait = (-delay * ref_seconds if delay < 0 else delay) * scale
        killed, stderr, problems = self.watch(module, args_for(out_dir), out_dir, reference,
                                              kill_on=kill_on, delay=wait, exact=exact)
        self.assertEqual(problems, [], "%s killed at %r + %.1f s:\n%s" % (
            module, kill_on, wait, stderr[-2000:]))
        if killed:
          break
      n_killed += killed
    self.assertGreaterEqual(n_killed, min_killed, "%s ended before every kill" % module)
    killed, _, problems = self.watch(module, args_for(out_dir), out_dir, reference, exact=exact)
    self.assertEqual(problems, [])
    final = snapshot(out_dir)
    for rel in reference:
      if exact(rel):
        self.assertIn(rel, final)
        self.assertEqual(final[rel], reference[rel], "%s: %s differs after the rerun"
                         % (module, rel))
    sys.stderr.write("%s: %d kills, %.1f s\n" % (module, n_killed, time.time() - t0))
    return reference, final, out_dir, ref_dir

  # ---------------------------------------------------------------------------------------------

  def test_1_format_notes_and_create_pretraining_data(self):
    notes = os.path.join(TESTDATA, "NOTEEVENTS_sample.csv")

    def format_args(out):
      return ["--input_file=" + notes, "--output_dir=" + os.path.join(out, "sentences"),
              "--all_notes_file=" + os.path.join(out, "all_notes.txt"), "--num_workers=2",
              "--progress_seconds=0"]

    _, final, _, _ = self.kill_and_rerun(
        "format_notes", format_args, [(r"Reading ", 0.3), (r"Reading ", 1.2)],
        exact=lambda rel: not rel.endswith(".json"))
    # Sidecars hold the run's time; the rest of them must match.
    self.assertIn("all_notes.txt.json", final)

    corpus = os.path.join(self.root, "format_notes_ref", "all_notes.txt")

    def records_args(out):
      return ["--input_file=" + corpus, "--output_file=" + os.path.join(out, "all.tfrecord"),
              "--vocab_file=" + self.vocab, "--max_seq_length=32",
              "--max_predictions_per_seq=5", "--random_seed=7", "--dupe_factor=20"]

    self.kill_and_rerun("create_pretraining_data", records_args,
                        [(r"read \d+ documents", 0.0), (r"made \d+ instances", 0.0)],
                        exact=lambda rel: not rel.endswith(".json"))

  def test_2_run_pretraining(self):
    records = os.path.join(self.root, "records.tfrecord")
    testutil.write_pretraining_records(records, 64, 32, 5, len(testutil.vocab_tokens()))

    def args(out):
      return ["--bert_config_file=" + self.config_file, "--input_file=" + records,
              "--output_dir=" + out, "--do_train=True", "--do_eval=True",
              "--train_batch_size=4", "--eval_batch_size=4", "--max_seq_length=32",
              "--max_predictions_per_seq=5", "--num_train_steps=6", "--num_warmup_steps=1",
              "--save_checkpoints_steps=2", "--max_eval_steps=2", "--init_checkpoint=" + self.init]

    def exact(rel):  # training resumed from a checkpoint is not bit-identical
      return False

    _, final, out_dir, _ = self.kill_and_rerun(
        "run_pretraining", args, [(r"Saving checkpoints for 2 ", 0.0), (r"Saving checkpoints "
                                                                        r"for 4 ", 0.3)],
        exact=exact, reference_run=False)
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(out_dir)), "model.ckpt-6")
    results = final["eval_results.txt"].decode()
    self.assertIn("global_step = 6", results)
    keys = [l.split(" = ")[0] for l in results.splitlines()]
    for key in ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy", "loss"):
      self.assertIn(key, keys)

  def test_3_run_finetune_predict_deidentify(self):
    def args(out):
      return ["--task_name=i2b2_2010", "--data_dir=" + os.path.join(TESTDATA, "i2b2_2010"),
              "--bert_config_file=" + self.config_file, "--vocab_file=" + self.vocab,
              "--init_checkpoint=" + self.init, "--output_dir=" + out, "--do_lower_case=True",
              "--max_seq_length=24", "--do_train=True", "--do_predict=True",
              "--train_batch_size=4", "--learning_rate=1e-4", "--num_train_epochs=1",
              "--save_checkpoints_steps=4", "--seed=3"]

    def exact(rel):
      # After training: results and predictions come from the last checkpoint, which a rerun
      # reaches by resuming; they must equal the uninterrupted run's. Checkpoints, graphs and
      # the training's own records are checked for completeness only.
      return not (_is_checkpoint_part(rel) or rel == "checkpoint"
                  or rel.endswith((".pbtxt", ".meta")))

    # Killed once after the first checkpoint (the rerun resumes), once after training.
    _, final, model_dir, _ = self.kill_and_rerun(
        "run_finetune", args, [(r"Saving checkpoints for 4 ", 0.0),
                               (r"Loss for final step", 0.0)], exact=exact)
    self.assertTrue(any(r.startswith("test_results") for r in final), sorted(final))

    notes_dir = os.path.join(self.root, "notes")
    os.makedirs(notes_dir)
    with open(os.path.join(TESTDATA, "i2b2_2010", "test", "test_data", "note-201.txt")) as f:
      text = f.read()
    for i in range(40):
      with open(os.path.join(notes_dir, "note-%03d.txt" % i), "w") as f:
        f.write(text * (1 + i % 3))
    model = os.path.join(self.root, "run_finetune_ref")

    def predict_args(out):
      return ["--model_dir=" + model, "--input_file=%s/*.txt" % notes_dir,
              "--output_file=" + os.path.join(out, "spans.jsonl")]

    self.kill_and_rerun("predict", predict_args, [(None, -0.8)])

    def deid_args(out):
      return ["--model_dir=" + model, "--input_file=%s/*.txt" % notes_dir,
              "--output_dir=" + os.path.join(out, "notes"),
              "--output_file=" + os.path.join(out, "phi.jsonl"), "--min_phi_probability=0.01"]

    self.kill_and_rerun("deidentify", deid_args, [(None, -0.85)])

  def test_4_extract_features(self):
    lines = os.path.join(self.root, "lines.txt")
    with open(lines, "w") as f:
      for i in range(300):
        f.write("the patient denies chest pain %d ||| no fever %d\n" % (i, i * 7))

    def args(out):
      return ["--input_file=" + lines, "--output_file=" + os.path.join(out, "features.jsonl"),
              "--bert_config_file=" + self.config_file, "--init_checkpoint=" + self.init,
              "--vocab_file=" + self.vocab, "--layers=-1,-2", "--max_seq_length=24",
              "--batch_size=8"]

    self.kill_and_rerun("extract_features", args, [(None, -0.8)])


if __name__ == "__main__":
  absltest.main()
