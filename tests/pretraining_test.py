"""Tests of clinicalbert_tf.pretraining / run_pretraining.py that need no oracle: input checks,
errors, the NaN guard, gradient accumulation, progress logging, summaries and checkpoint keeping.

Tiny model (2 layers, hidden 32, vocab 97), records written directly
(tests/testutil.py).
"""

import glob
import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import hooks
from clinicalbert_tf import pretraining
from tests import testutil

tf.disable_v2_behavior()

SEQ = 32
PRED = 5


def _run_ours(flags, **kwargs):
  """run_pretraining.py with `flags` as a child process (see `testutil.run_module`)."""
  return testutil.run_module("run_pretraining", testutil.flag_args(flags), **kwargs)


class PretrainingTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.config, cls.config_file, cls.records, cls.init = testutil.write_pretraining_setup(
        cls.tmp, SEQ, PRED)

  def _flags(self, **overrides):
    flags = dict(bert_config_file=self.config_file, input_file=self.records,
                 output_dir=self.temp_dir(), init_checkpoint=self.init, max_seq_length=SEQ,
                 max_predictions_per_seq=PRED, train_batch_size=8, eval_batch_size=8,
                 max_eval_steps=2, num_train_steps=3, num_warmup_steps=1, learning_rate=1e-3,
                 save_checkpoints_steps=100, shuffle_buffer_size=0)
    flags.update(overrides)
    return flags

  # -- input checks -------------------------------------------------------------------------------

  def test_records_with_another_max_seq_length(self):
    with self.assertRaises(fileio.InputError) as cm:
      pretraining.run_pretraining(do_eval=True, **self._flags(max_seq_length=64))
    message = str(cm.exception)
    self.assertIn("max_seq_length=32", message)
    self.assertIn("--max_seq_length=64", message)
    self.assertIn(self.records, message)

  def test_records_with_another_max_predictions_per_seq(self):
    with self.assertRaises(fileio.InputError) as cm:
      pretraining.run_pretraining(do_eval=True, **self._flags(max_predictions_per_seq=20))
    message = str(cm.exception)
    self.assertIn("max_predictions_per_seq=5", message)
    self.assertIn("--max_predictions_per_seq=20", message)

  def test_not_pretraining_records(self):
    path = os.path.join(self.temp_dir(), "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(tf.train.Example().SerializeToString())
    with self.assertRaisesRegex(fileio.InputError, "missing feature.*input_ids"):
      pretraining.run_pretraining(do_eval=True, **self._flags(input_file=path))

  def test_missing_inputs_are_input_errors(self):
    with self.assertRaisesRegex(fileio.InputError, "bert_config_file=.*no such file"):
      pretraining.run_pretraining(do_eval=True, **self._flags(bert_config_file="/nonexistent.json"))
    with self.assertRaisesRegex(fileio.InputError, "--input_file: no file matches"):
      pretraining.run_pretraining(do_eval=True, **self._flags(input_file="/nonexistent/*.tfrecord"))
    with self.assertRaisesRegex(fileio.InputError, "--init_checkpoint=.*no checkpoint"):
      pretraining.run_pretraining(do_eval=True, **self._flags(init_checkpoint="/nonexistent/ckpt"))
    with self.assertRaisesRegex(fileio.InputError, "do_train or --do_eval"):
      pretraining.run_pretraining(**self._flags())

  def test_script_reports_one_line_errors(self):
    out = self.temp_dir()
    cases = [
        (dict(bert_config_file=os.path.join(out, "missing.json"), input_file=self.records),
         "bert_config_file"),
        (dict(bert_config_file=self.config_file, input_file=os.path.join(out, "none-*.tfrecord")),
         "input_file"),
    ]
    for flags, flag_name in cases:
      proc = _run_ours(dict(flags, output_dir=out, do_train=True), check=False, timeout=120)
      self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
      self.assertNotIn("Traceback", proc.stderr)
      lines = [l for l in proc.stderr.splitlines() if "run_pretraining.py: error:" in l]
      self.assertEqual(len(lines), 1, proc.stderr[-2000:])
      self.assertIn("--" + flag_name, lines[0])

  # -- init_checkpoint ----------------------------------------------------------------------------

  def test_init_checkpoint_shape_mismatch_names_variable_and_shapes(self):
    config = testutil.tiny_config(vocab_size=120, num_attention_heads=2, dropout=0.0)
    config_file = testutil.write_config(self.temp_dir(), config)
    with self.assertRaises(fileio.InputError) as cm:
      pretraining.run_pretraining(do_eval=True, **self._flags(bert_config_file=config_file))
    message = str(cm.exception)
    self.assertIn("bert/embeddings/word_embeddings", message)
    self.assertIn("[97, 32]", message)
    self.assertIn("[120, 32]", message)

  def test_init_checkpoint_logs_count(self):
    with self.assertLogs("absl", level="INFO") as logs:
      pretraining.run_pretraining(do_eval=True, **self._flags(max_eval_steps=1))
    n_vars = len(testutil.read_checkpoint(self.init))
    self.assertTrue(any("initialised %d of %d variables" % (n_vars, n_vars) in line
                        for line in logs.output), [l for l in logs.output if "initialised" in l])

  # -- NaN guard ----------------------------------------------------------------------------------

  def test_nan_loss_stops_naming_the_step(self):
    # Records 16..23 (the third batch with shuffling off) have NaN weights.
    records = testutil.write_pretraining_records(
        os.path.join(self.temp_dir(), "nan.tfrecord"), 64, SEQ, PRED, self.config.vocab_size,
        nan_weight_records=range(16, 24))
    flags = self._flags(input_file=records, num_train_steps=10, save_checkpoints_steps=2)
    with self.assertRaises(hooks.NanLossError) as cm:
      pretraining.run_pretraining(do_train=True, **flags)
    self.assertIn("NaN at global step 3", str(cm.exception))
    # The newest checkpoint predates the NaN step.
    self.assertEqual(tf.train.latest_checkpoint(flags["output_dir"]),
                     os.path.join(flags["output_dir"], "model.ckpt-2"))

  def test_nan_loss_script_error(self):
    records = testutil.write_pretraining_records(
        os.path.join(self.temp_dir(), "nan.tfrecord"), 16, SEQ, PRED, self.config.vocab_size,
        nan_weight_records=range(16))
    # The script has no shuffle flag, so it shuffles unseeded with Google's buffer of 100: with one
    # NaN record in 16, about one run in twenty drew 40 clean examples and finished. Every record
    # NaN makes the first step's loss NaN whatever the order.
    flags = self._flags(input_file=records, do_train=True, num_train_steps=5)
    flags.pop("shuffle_buffer_size")
    proc = _run_ours(flags, check=False, timeout=180)
    self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, r"run_pretraining.py: error: training loss is NaN at global "
                     r"step 1\b")

  # -- accumulation, progress, summaries, checkpoints ------------------------------------------

  def test_accumulation_equals_the_larger_batch(self):
    # With the same number of masks in every record, the masked-LM loss of a batch of 8 is the mean
    # of its two halves' losses, so 2 x 4 accumulated must match one batch of 8.
    records = testutil.write_pretraining_records(
        os.path.join(self.temp_dir(), "acc.tfrecord"), 64, SEQ, PRED, self.config.vocab_size,
        full_masks=True)
    big = self._flags(input_file=records, train_batch_size=8, num_train_steps=3)
    acc = self._flags(input_file=records, train_batch_size=4, num_accumulation_steps=2,
                      num_train_steps=3)
    r_big = pretraining.run_pretraining(do_train=True, do_eval=True, **big)
    r_acc = pretraining.run_pretraining(do_train=True, do_eval=True, **acc)
    self.assertEqual(r_acc["global_step"], 3)
    self.assertResultsClose(r_acc, r_big, rtol=1e-5)
    a = testutil.read_checkpoint(tf.train.latest_checkpoint(big["output_dir"]))
    b = testutil.read_checkpoint(tf.train.latest_checkpoint(acc["output_dir"]))
    self.assertEqual(sorted(a), sorted(b))  # accumulators are not checkpointed
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)

  def test_amp_loss_scaling_matches_float32_on_cpu(self):
    # Without a GPU the float16 rewrite is skipped, so only the dynamic loss scaling runs: scaling
    # by a power of two and back is exact, and the result must equal plain float32 training.
    plain = self._flags(num_train_steps=3)
    amp = self._flags(num_train_steps=3, use_amp=True)
    r_plain = pretraining.run_pretraining(do_train=True, do_eval=True, **plain)
    r_amp = pretraining.run_pretraining(do_train=True, do_eval=True, **amp)
    self.assertEqual(r_amp["global_step"], 3)
    self.assertResultsClose(r_amp, r_plain, rtol=1e-5)
    a = testutil.read_checkpoint(tf.train.latest_checkpoint(plain["output_dir"]))
    b = testutil.read_checkpoint(tf.train.latest_checkpoint(amp["output_dir"]))
    self.assertEqual(sorted(a), sorted(b))  # the loss scale is not checkpointed

  def test_script_use_xla_compiles(self):
    out = self.temp_dir()
    flags = self._flags(output_dir=out, do_train=True, num_train_steps=2, use_xla=True)
    flags.pop("shuffle_buffer_size")
    proc = _run_ours(flags, env={"TF_CPP_MIN_LOG_LEVEL": "0"}, timeout=300)
    self.assertIn("Compiled cluster using XLA", proc.stderr)
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(out)), "model.ckpt-2")

  def test_progress_summaries_and_keep_checkpoint_max(self):
    flags = self._flags(num_train_steps=6, save_checkpoints_steps=1, keep_checkpoint_max=2,
                        log_every_n_steps=2)
    with self.assertLogs("absl", level="INFO") as logs:
      pretraining.run_pretraining(do_train=True, **flags)
    progress = [l for l in logs.output if "steps/s" in l]
    self.assertTrue(progress, "no progress line")
    self.assertRegex("\n".join(progress), r"step 6/6 \(100.0%\): loss [\d.e+]+, [\d.e+]+ steps/s, "
                     r"[\d.e+]+ examples/s, ETA 0m00s")
    out = flags["output_dir"]
    indexes = sorted(os.path.basename(p)
                     for p in glob.glob(os.path.join(out, "model.ckpt-*.index")))
    self.assertEqual(indexes, ["model.ckpt-5.index", "model.ckpt-6.index"])
    tags = set()
    for path in glob.glob(os.path.join(out, "events.out.tfevents.*")):
      for event in tf.train.summary_iterator(path):
        for value in event.summary.value:
          tags.add(value.tag)
    for tag in ("loss", "learning_rate", "masked_lm_accuracy", "masked_lm_loss",
                "next_sentence_loss"):
      self.assertIn(tag, tags)

  def test_eval_results_file_format(self):
    flags = self._flags(max_eval_steps=1)
    result = pretraining.run_pretraining(do_eval=True, **flags)
    with open(os.path.join(flags["output_dir"], "eval_results.txt"), encoding="utf-8") as f:
      lines = f.read().splitlines()
    self.assertEqual([l.split(" = ")[0] for l in lines],
                     ["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
                      "next_sentence_accuracy", "next_sentence_loss"])
    self.assertEqual(lines[0], "global_step = 0")
    self.assertEqual(lines[1], "loss = %s" % str(result["loss"]))


if __name__ == "__main__":
  absltest.main()
