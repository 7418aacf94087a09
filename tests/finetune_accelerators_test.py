"""The accelerator flags on the fine-tuning scripts: accumulation, AMP, multi-worker, XLA, flags.

run_finetune.py, run_classifier.py and run_ner.py take `--use_xla`, `--use_amp`,
`--num_accumulation_steps` and `--distribution_strategy` from `estimator.define_accelerator_flags`
(as run_pretraining.py does), and train with `train_op.create_train_op`:

  * 2 accumulated batches of 4 give the weights of one batch of 8 (MedNLI: the sequence head's loss
    is the mean over examples, so a batch's loss is the mean of its halves'), and the fine-tuning
    input gives the same examples in the same order whatever the batch size;
  * `--use_amp` on CPU (loss scaling only; the float16 rewrite needs a GPU) gives float32's results
    and checkpoint;
  * two multi_worker_mirrored workers on 127.0.0.1 end with the same weights; only the chief
    evaluates;
  * `--use_xla` compiles clusters with XLA on CPU and trains;
  * the four flags are the same objects (default, help, type) on all four training scripts;
  * bad combinations are one-line errors.

Tiny invented model and MedNLI-format data (tests/testutil.py words); dropout off where runs are
compared value by value.
"""

import json
import os
import random
import subprocess
import sys
from unittest import mock

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import estimator
from clinicalbert_tf import fileio
from clinicalbert_tf import train_op
from clinicalbert_tf.finetuning import data as data_lib
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import runner
from tests import testutil

tf.disable_v2_behavior()

SEQ = 24
NUM_TRAIN = 32  # 4 optimizer steps of 8 per epoch
CUES = {"entailment": "stable", "contradiction": "failure", "neutral": "history"}
SCRIPTS = ("run_pretraining", "run_finetune", "run_classifier", "run_ner")


def write_mednli(folder, seed=3, sizes=(NUM_TRAIN, 12, 12)):
  """Invented MedNLI-format jsonl files: the hypothesis' cue word decides the label."""
  rng = random.Random(seed)
  words = [w for w in testutil.WORDS if w not in CUES.values()]
  for split, size in zip(("train", "dev", "test"), sizes):
    with open(os.path.join(folder, "mli_%s_v1.jsonl" % split), "w") as f:
      for i in range(size):
        label = sorted(CUES)[i % 3]
        premise = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
        hypothesis = [rng.choice(words) for _ in range(rng.randint(2, 5))]
        hypothesis.insert(rng.randint(0, len(hypothesis)), CUES[label])
        f.write(json.dumps({"sentence1": premise, "sentence2": " ".join(hypothesis),
                            "gold_label": label, "pairID": "%s-%d" % (split, i)}) + "\n")


def _accelerator_flags(script):
  """{name: [default, help, flag class, enum values]} of the four flags, from a child process."""
  code = ("import json, %s; from absl import flags; f = flags.FLAGS; "
          "print(json.dumps({n: [f[n].default, f[n].help, type(f[n]).__name__, "
          "sorted(getattr(f[n].parser, 'enum_values', None) or [])] for n in %r}))" %
          (script, list(estimator.ACCELERATOR_FLAGS)))
  out = subprocess.run([sys.executable, "-c", code], env=testutil.script_env(),
                       capture_output=True, text=True, check=True, cwd=testutil.REPO).stdout
  return json.loads(out.strip().splitlines()[-1])


class FinetuneAcceleratorsTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.data = os.path.join(cls.dir, "mednli")
    os.makedirs(cls.data)
    write_mednli(cls.data)
    cls.vocab = testutil.write_vocab(cls.dir)
    cls.bert_config = testutil.tiny_config(dropout=0.0)
    cls.config_file = testutil.write_config(cls.dir, cls.bert_config)
    cls.init = testutil.write_checkpoint(os.path.join(cls.dir, "init", "model.ckpt"),
                                         cls.bert_config, released=True)

  def _config(self, **overrides):
    values = dict(task_name="mednli", data_dir=self.data, output_dir=self.temp_dir(),
                  bert_config_file=self.config_file, vocab_file=self.vocab,
                  init_checkpoint=self.init, max_seq_length=SEQ, train_batch_size=8,
                  eval_batch_size=8, predict_batch_size=8, learning_rate=1e-3,
                  num_train_epochs=0.75, warmup_proportion=0.0, save_checkpoints_steps=1000,
                  log_every_n_steps=1, seed=5)
    values.update(overrides)
    return runner.FinetuneConfig(**values)

  def _flags(self, output_dir, **overrides):
    flags = dict(task_name="mednli", data_dir=self.data, output_dir=output_dir,
                 bert_config_file=self.config_file, vocab_file=self.vocab,
                 init_checkpoint=self.init, max_seq_length=SEQ, train_batch_size=8,
                 eval_batch_size=8, learning_rate=1e-3, num_train_epochs=0.75,
                 log_every_n_steps=1, do_train=True)
    flags.update(overrides)
    return testutil.flag_args(flags)

  def _latest(self, config):
    return testutil.read_checkpoint(tf.train.latest_checkpoint(config.output_dir))

  # -- input order ---------------------------------------------------------------------------

  def test_training_input_order_does_not_depend_on_the_batch_size(self):
    head = heads.SequenceClassificationHead(sorted(CUES))
    path = os.path.join(self.temp_dir(), "train.tf_record")
    features = [data_lib.PairFeatures([i + 1] * SEQ, [1] * SEQ, [0] * SEQ, i % 3, example_index=i)
                for i in range(NUM_TRAIN)]
    data_lib.write_records(path, head, features)
    fn = data_lib.input_fn_builder(path, head, SEQ, is_training=True, drop_remainder=True,
                                   num_examples=NUM_TRAIN, seed=5)

    def first_ids(batch_size, batches):
      with tf.Graph().as_default(), tf.Session() as sess:
        tf.set_random_seed(5)
        ids = tf.data.make_one_shot_iterator(fn({"batch_size": batch_size})).get_next()
        return np.concatenate([sess.run(ids["input_ids"])[:, 0] for _ in range(batches)])

    big, small = first_ids(8, 6), first_ids(4, 12)
    self.assertAllEqual(small, big)
    self.assertNotEqual(list(big[:NUM_TRAIN]), list(range(1, NUM_TRAIN + 1)))  # it is shuffled

  # -- accumulation and AMP (in process) -----------------------------------------------------

  def test_accumulation_2x4_equals_one_batch_of_8(self):
    # The head's own dropout (0.1, Google's value) would draw different masks for [4] and [8].
    with mock.patch.object(heads, "HEAD_DROPOUT", 0.0):
      big = self._config(do_train=True)
      acc = self._config(do_train=True, train_batch_size=4, num_accumulation_steps=2)
      runner.run(big)
      with self.assertLogs("absl", level="INFO") as logs:
        runner.run(acc)
    self.assertIn("batch 4 x 2 accumulation steps = 8 per step, 0.75 epochs -> 3 steps",
                  "\n".join(logs.output))
    a, b = self._latest(big), self._latest(acc)
    self.assertEqual(int(a["global_step"]), 3)
    self.assertEqual(int(b["global_step"]), 3)
    self.assertEqual(sorted(b), sorted(a))  # accumulators are local, never checkpointed
    self.assertFalse([n for n in b if "grad_accum" in n])
    moved = 0
    init = testutil.read_checkpoint(self.init)
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
      moved += name in init and not np.allclose(a[name], init[name])
    self.assertGreater(moved, 10)  # training changed the encoder, not only the head

  def test_amp_on_cpu_equals_float32(self):
    plain = self._config(do_train=True, do_eval=True)
    amp = self._config(do_train=True, do_eval=True, use_amp=True)
    with mock.patch.object(heads, "HEAD_DROPOUT", 0.0):
      r_plain = runner.run(plain)["eval"]
      r_amp = runner.run(amp)["eval"]
    self.assertEqual(r_amp["global_step"], 3)
    self.assertAllClose(r_amp["loss"], r_plain["loss"], rtol=1e-5)
    self.assertEqual(r_amp["accuracy"], r_plain["accuracy"])
    a, b = self._latest(plain), self._latest(amp)
    self.assertEqual(sorted(b), sorted(a))  # the loss scale is not checkpointed
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)

  def test_one_accumulation_step_without_amp_is_googles_op(self):
    # The same graph as optimization.create_optimizer: no accumulator or loss-scale variables.
    with tf.Graph().as_default():
      features = {"input_ids": tf.ones([2, SEQ], tf.int32), "input_mask": tf.ones([2, SEQ],
                                                                                   tf.int32),
                  "segment_ids": tf.zeros([2, SEQ], tf.int32), "label_ids": tf.zeros([2],
                                                                                     tf.int32),
                  "is_real_example": tf.ones([2], tf.int32)}
      model_fn = runner.model_fn_builder(self.bert_config, heads.SequenceClassificationHead(
          sorted(CUES)), None, 1e-3, 3, 0, False, False)
      model_fn(features, None, tf.estimator.ModeKeys.TRAIN, {})
      self.assertEqual(tf.get_collection(train_op.TRAINING_STATE_COLLECTION), [])

  def test_grid_counts_optimizer_steps_at_the_effective_batch(self):
    # 32 examples, batch 4 x 2 accumulated = 8 per optimizer step, 1.5 epochs: 6 steps (not 12).
    config = self._config(grid=True, grid_learning_rates=[1e-3], grid_batch_sizes=[4],
                          grid_num_train_epochs=[1.5], num_accumulation_steps=2)
    summary = runner.run(config)["grid"]
    self.assertEqual([p["steps"] for p in summary["points"]], [6])
    self.assertEqual(summary["num_accumulation_steps"], 2)
    model_dir = os.path.join(config.output_dir, "grid", "lr0.001_bs4_ep1.5")
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-6")
    with open(os.path.join(config.output_dir, "grid_summary.md")) as f:
      self.assertIn("2 steps accumulated", f.read())

  def test_grid_with_multi_worker_mirrored_is_an_input_error(self):
    config = self._config(grid=True, distribution_strategy="multi_worker_mirrored")
    with self.assertRaisesRegex(fileio.InputError, "--grid cannot run with "
                                "--distribution_strategy=multi_worker_mirrored"):
      runner.run(config)
    self.assertEqual(os.listdir(config.output_dir), [])  # refused before anything was written

  # -- processes -------------------------------------------------------------------------------

  def test_two_workers_multi_worker_mirrored(self):
    out = os.path.join(self.temp_dir(), "multiworker")
    args = self._flags(out, do_eval=True, distribution_strategy="multi_worker_mirrored")
    results = testutil.run_workers("run_finetune", args)
    for index, (code, err) in enumerate(results):
      self.assertEqual(code, 0, "worker %d failed:\n%s" % (index, err[-4000:]))
    self.assertIn("evaluation and prediction run on the chief only", results[1][1])

    chief = tf.train.latest_checkpoint(out)
    self.assertEqual(os.path.basename(chief), "model.ckpt-3")
    other = tf.train.latest_checkpoint(os.path.join(out, "tmp_worker_1"))
    self.assertIsNotNone(other)
    a, b = testutil.read_checkpoint(chief), testutil.read_checkpoint(other)
    self.assertEqual(sorted(b), sorted(a))
    self.assertEqual(int(a["global_step"]), 3)
    init = testutil.read_checkpoint(self.init)
    self.assertFalse(np.allclose(a["bert/pooler/dense/kernel"], init["bert/pooler/dense/kernel"]))
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)
    # The chief evaluated dev from its checkpoint; the other worker wrote no results.
    with open(os.path.join(out, "eval_results.json")) as f:
      result = json.load(f)
    self.assertEqual(result["global_step"], 3)
    self.assertEqual(result["num_examples"], 12)
    self.assertFalse(os.path.exists(os.path.join(out, "tmp_worker_1", "eval_results.json")))

  def test_two_workers_with_an_indivisible_batch_is_one_line(self):
    args = self._flags(self.temp_dir(), train_batch_size=7,
                       distribution_strategy="multi_worker_mirrored")
    for returncode, err in testutil.run_workers("run_finetune", args):
      self.assertEqual(returncode, 1, err[-4000:])
      self.assertNotIn("Traceback", err)
      self.assertIn("run_finetune.py: error: the training batch size 7 is not divisible by the 2 "
                    "replicas of the distribution strategy", err)

  def test_script_use_xla_compiles(self):
    out = self.temp_dir()
    proc = testutil.run_module("run_finetune", self._flags(out, use_xla=True),
                               env={"TF_CPP_MIN_LOG_LEVEL": "0"}, timeout=300)
    self.assertIn("Compiled cluster using XLA", proc.stderr)
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(out)), "model.ckpt-3")

  def test_bad_combinations_are_one_line_errors(self):
    cases = [
        (dict(use_tpu=True, distribution_strategy="mirrored"),
         "--use_tpu and --distribution_strategy=mirrored cannot be combined"),
        (dict(num_accumulation_steps=0), "--num_accumulation_steps=0: expected a positive "
         "integer"),
    ]
    for overrides, message in cases:
      proc = testutil.run_module("run_finetune", self._flags(self.temp_dir(), **overrides),
                                 check=False, timeout=300)
      self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
      self.assertNotIn("Traceback", proc.stderr)
      self.assertIn("run_finetune.py: error: " + message, proc.stderr)

  def test_the_four_flags_are_the_same_on_every_training_script(self):
    flags = {script: _accelerator_flags(script) for script in SCRIPTS}
    expected = {"use_xla": False, "use_amp": False, "num_accumulation_steps": 1,
                "distribution_strategy": "none"}
    reference = flags["run_pretraining"]
    self.assertEqual({n: v[0] for n, v in reference.items()}, expected)
    self.assertEqual(reference["distribution_strategy"][3],
                     sorted(estimator.DISTRIBUTION_STRATEGIES))
    for script in SCRIPTS[1:]:
      self.assertEqual(flags[script], reference, script)


if __name__ == "__main__":
  absltest.main()
