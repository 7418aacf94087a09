"""run_pretraining.py as a process: SIGKILL and resume, and two-worker multi_worker_mirrored runs.

  * a run killed with SIGKILL after it wrote a checkpoint restarts from that checkpoint (same
    command) and ends at num_train_steps;
  * two worker processes on 127.0.0.1 with `--distribution_strategy=multi_worker_mirrored` and a
    TF_CONFIG each train a few steps on CPU; both exit 0, their weights agree (synchronous
    all-reduce), and the chief's checkpoint evaluates and passes the strict HuggingFace load.
"""

import glob
import os
import re
import signal
import time

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import pretraining
from tests import hf_util
from tests import testutil

tf.disable_v2_behavior()

SEQ = 32
PRED = 5


def _checkpoint_steps(directory):
  steps = []
  for path in glob.glob(os.path.join(directory, "model.ckpt-*.index")):
    steps.append(int(re.search(r"model\.ckpt-(\d+)\.index$", path).group(1)))
  return sorted(steps)


def _run_ours(flags, **kwargs):
  """run_pretraining.py with `flags` as a child process (see `testutil.run_module`)."""
  return testutil.run_module("run_pretraining", testutil.flag_args(flags), **kwargs)


class PretrainingReliabilityTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.config = testutil.tiny_config(vocab_size=97, num_attention_heads=2, dropout=0.1)
    cls.config_file = testutil.write_config(cls.tmp, cls.config)
    cls.records = testutil.write_pretraining_records(
        os.path.join(cls.tmp, "train.tfrecord"), 128, SEQ, PRED, cls.config.vocab_size)

  def _flags(self, output_dir, **overrides):
    flags = dict(bert_config_file=self.config_file, input_file=self.records,
                 output_dir=output_dir, max_seq_length=SEQ, max_predictions_per_seq=PRED,
                 do_train=True, train_batch_size=8, learning_rate=1e-4, num_warmup_steps=2,
                 log_every_n_steps=5)
    flags.update(overrides)
    return flags

  def test_sigkill_then_resume_ends_at_num_train_steps(self):
    out = os.path.join(self.tmp, "killed")
    total = 400
    flags = self._flags(out, num_train_steps=total, save_checkpoints_steps=10)
    proc = _run_ours(flags, popen=True)
    killed_at = None
    try:
      deadline = time.time() + 300
      while time.time() < deadline and proc.poll() is None:
        steps = [s for s in _checkpoint_steps(out) if s > 0]
        if steps and os.path.exists(os.path.join(out, "checkpoint")):
          killed_at = max(steps)
          proc.send_signal(signal.SIGKILL)
          break
        time.sleep(0.05)
    finally:
      if proc.poll() is None and killed_at is None:
        proc.kill()
      proc.communicate()
    self.assertIsNotNone(killed_at, "no checkpoint before the run ended or timed out")
    self.assertEqual(proc.returncode, -signal.SIGKILL)
    latest_before = tf.train.latest_checkpoint(out)
    self.assertIsNotNone(latest_before)
    step_before = int(re.search(r"-(\d+)$", latest_before).group(1))
    self.assertLess(step_before, total, "the run finished before it was killed")

    restarted = _run_ours(flags, timeout=600)
    self.assertIn("Restoring parameters from %s" % latest_before, restarted.stderr)
    final = tf.train.latest_checkpoint(out)
    self.assertEqual(os.path.basename(final), "model.ckpt-%d" % total)
    self.assertEqual(int(testutil.read_checkpoint(final)["global_step"]), total)
    # The restarted run trained only the remaining steps.
    self.assertIn("training from global step %d to %d" % (step_before, total), restarted.stderr)

  def test_two_workers_multi_worker_mirrored(self):
    out = os.path.join(self.tmp, "multiworker")
    flags = self._flags(out, num_train_steps=6, save_checkpoints_steps=3,
                        distribution_strategy="multi_worker_mirrored", log_every_n_steps=2)
    results = testutil.run_workers("run_pretraining", testutil.flag_args(flags))
    for index, (code, err) in enumerate(results):
      self.assertEqual(code, 0, "worker %d failed:\n%s" % (index, err[-4000:]))

    chief = tf.train.latest_checkpoint(out)
    self.assertEqual(os.path.basename(chief), "model.ckpt-6")
    # The other worker keeps its own copy (tf.estimator's tmp_worker_1); synchronous training
    # means both hold the same weights.
    other = tf.train.latest_checkpoint(os.path.join(out, "tmp_worker_1"))
    self.assertIsNotNone(other)
    a, b = testutil.read_checkpoint(chief), testutil.read_checkpoint(other)
    self.assertEqual(int(a["global_step"]), 6)
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)

    # The chief's checkpoint loads: evaluation from it, and the strict HuggingFace load.
    result = pretraining.run_pretraining(
        bert_config_file=self.config_file, input_file=self.records,
        output_dir=os.path.join(self.tmp, "eval_of_chief"), init_checkpoint=chief,
        max_seq_length=SEQ, max_predictions_per_seq=PRED, do_eval=True, max_eval_steps=2)
    self.assertTrue(np.isfinite(result["loss"]))
    hf_util.assert_strict_hf_load(chief, self.config)


if __name__ == "__main__":
  absltest.main()
