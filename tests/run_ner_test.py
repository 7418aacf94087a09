"""run_ner.py: ClinicalBERT's run_i2b2.sh command line on the IOB files run_finetune.py writes.

The authors' flags and defaults; their IOB folders read with each task's own label set (so
`run_finetune.py` reads them too, with the label ids of the native files); and the same test
results as `run_finetune.py` on the native files with the same settings and seed.
"""

import json
import os

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.finetuning import runner
from clinicalbert_tf.tasks import iob_folders
from tests import testutil

TESTDATA = os.path.join(testutil.REPO, "testdata")

# The flags ClinicalBERT's run_ner.py defines, with its defaults (downstream_tasks/run_ner.py).
AUTHORS_DEFAULTS = {
    "task_name": None, "data_dir": None, "output_dir": None, "bert_config_file": None,
    "vocab_file": None, "init_checkpoint": None, "do_lower_case": False, "max_seq_length": 128,
    "do_train": True, "use_tpu": False, "do_eval": False, "do_predict": True,
    "train_batch_size": 32, "eval_batch_size": 8, "predict_batch_size": 8,
    "learning_rate": 5e-5, "num_train_epochs": 10.0, "warmup_proportion": 0.1,
    "save_checkpoints_steps": 1000, "keep_checkpoint_max": 1, "iterations_per_loop": 1000,
    "cross_val_sz": 10, "master": None, "num_tpu_cores": 8,
}


def _config(task_name, data_dir):
  return runner.FinetuneConfig(task_name=task_name, data_dir=data_dir, output_dir="")


class IobFoldersTest(testutil.TestCase):
  """In process: an IOB folder reads as the native files do (words, labels, label ids)."""

  def test_iob_folders_read_as_the_native_files(self):
    for task_name in iob_folders.IOB_TASKS:
      native_dir = os.path.join(TESTDATA, task_name)
      native = runner.make_task(_config(task_name, native_dir))
      self.assertNotIsInstance(native, iob_folders.IobFolderTask)
      iob_dir = self.temp_dir()
      tasks.convert_to_iob(native, native_dir, iob_dir)
      iob = runner.make_task(_config(task_name.upper(), iob_dir))
      self.assertIsInstance(iob, iob_folders.IobFolderTask)
      self.assertEqual(iob.get_labels(iob_dir), native.get_labels(native_dir), task_name)
      for split in tasks.SPLITS:
        ours = [(s.guid, s.words, s.labels) for s in iob.get_examples(iob_dir, split)]
        self.assertNotEmpty(ours, (task_name, split))
        self.assertEqual(ours, [(s.guid, s.words, s.labels)
                                for s in native.get_examples(native_dir, split)],
                         (task_name, split))

  def test_conll_names_of_2006(self):
    iob_dir = self.temp_dir()
    native = runner.make_task(_config("i2b2_2006", os.path.join(TESTDATA, "i2b2_2006")))
    tasks.convert_to_iob(native, os.path.join(TESTDATA, "i2b2_2006"), iob_dir)
    for split in tasks.SPLITS:
      os.rename(os.path.join(iob_dir, split + ".tsv"), os.path.join(iob_dir, split + ".conll"))
    task = runner.make_task(_config("i2b2_2006", iob_dir))
    self.assertIsInstance(task, iob_folders.IobFolderTask)
    self.assertNotEmpty(task.get_examples(iob_dir, "test"))

  def test_devel_is_the_dev_file(self):
    # BioBERT's layout names the dev file devel.tsv.
    native_dir = os.path.join(TESTDATA, "i2b2_2010")
    native = runner.make_task(_config("i2b2_2010", native_dir))
    iob_dir = self.temp_dir()
    tasks.convert_to_iob(native, native_dir, iob_dir)
    os.rename(os.path.join(iob_dir, "dev.tsv"), os.path.join(iob_dir, "devel.tsv"))
    task = runner.make_task(_config("i2b2_2010", iob_dir))
    self.assertIsInstance(task, iob_folders.IobFolderTask)
    dev = [(s.guid, s.words, s.labels) for s in task.get_examples(iob_dir, "dev")]
    self.assertNotEmpty(dev)
    self.assertEqual(dev, [(s.guid, s.words, s.labels)
                           for s in native.get_examples(native_dir, "dev")])

  def test_label_outside_the_task_set_is_named(self):
    iob_dir = self.temp_dir()
    for split in tasks.SPLITS:
      with open(os.path.join(iob_dir, split + ".tsv"), "w", encoding="utf-8") as f:
        f.write("chest B-problem\npain I-problem\n\nfever B-symptom\n")
    task = runner.make_task(_config("i2b2_2010", iob_dir))
    with self.assertRaisesRegex(fileio.InputError, r"train.tsv:4: unknown label 'B-symptom'"):
      task.get_examples(iob_dir, "train")


class RunNerTest(testutil.TestCase):

  def test_flags_and_defaults_are_the_authors(self):
    ours = testutil.flag_defaults("run_ner")
    for name, default in AUTHORS_DEFAULTS.items():
      self.assertIn(name, ours)
      self.assertEqual(ours[name], default, name)

  def test_run_i2b2_command_line_gives_run_finetunes_results(self):
    d = self.temp_dir()
    vocab_file = testutil.write_vocab(d)
    config = testutil.tiny_config(max_position_embeddings=160)
    config_file = testutil.write_config(d, config)
    ckpt = testutil.write_checkpoint(os.path.join(d, "bert_model.ckpt"), config, released=True)
    native_dir, iob_dir = os.path.join(TESTDATA, "i2b2_2006"), os.path.join(d, "iob")
    testutil.run_module("run_finetune", ["--task_name=i2b2_2006", "--data_dir=" + native_dir,
                                         "--iob_output_dir=" + iob_dir])
    # run_i2b2.sh's command line, paths changed (the shell removes its quotes); run_finetune.py
    # gets the same settings on the native files.
    settings = [
        "--task_name=i2b2_2006", "--vocab_file=" + vocab_file,
        "--bert_config_file=" + config_file, "--init_checkpoint=" + ckpt,
        "--num_train_epochs=2", "--learning_rate=2e-5", "--train_batch_size=16",
        "--max_seq_length=150", "--save_checkpoints_steps=2000"]
    proc = testutil.run_module("run_ner", [
        "--do_train=True", "--do_eval=True", "--do_predict=True", "--data_dir=" + iob_dir,
        "--output_dir=" + os.path.join(d, "ner")] + settings + ["--cv_iter=9"])
    # A flag run_ner.py does not define is named, and the run goes on.
    self.assertIn("does not define: --cv_iter", proc.stderr)
    testutil.run_module("run_finetune", [
        "--do_train", "--do_eval", "--do_predict", "--data_dir=" + native_dir,
        "--output_dir=" + os.path.join(d, "finetune"), "--do_lower_case=False"] + settings)
    for name in ("eval_results.json", "test_results.json"):
      results = []
      for run in ("ner", "finetune"):
        with open(os.path.join(d, run, name), encoding="utf-8") as f:
          results.append(json.load(f))
      # run_finetune on the native test files also reports the official i2b2 2014 scorer's numbers
      # (run_ner reads IOB files, which have no notes to score that way).
      official = {k for k in results[1] if k.startswith("i2b2_2014_")}
      self.assertEqual(bool(official), name == "test_results.json", name)
      for k in official:
        del results[1][k]
      self.assertIn("f1", results[0])
      self.assertEqual(results[0]["f1"], results[1]["f1"], name)
      # The loss shows any difference in the model or its inputs.
      self.assertEqual(results[0].pop("split"), results[1].pop("split"))
      self.assertAllClose(results[0], results[1], rtol=1e-6, atol=1e-7, msg=name)
    for run in ("ner", "finetune"):
      self.assertTrue(os.path.isfile(os.path.join(d, run, "test_predictions.txt")))
    with open(os.path.join(d, "ner", "test_predictions.txt"), encoding="utf-8") as a, \
        open(os.path.join(d, "finetune", "test_predictions.txt"), encoding="utf-8") as b:
      self.assertEqual(a.read(), b.read())
    # Google's record names.
    self.assertTrue(os.path.isfile(os.path.join(d, "ner", "predict.tf_record")))

  def test_evaluate_a_fine_tuned_model_given_only_as_init_checkpoint(self):
    # As Google's run_classifier.py (tests/run_classifier_test.py holds the oracle test): with no
    # checkpoint in --output_dir, run_ner.py and run_finetune.py evaluate --init_checkpoint. The
    # expected results: the same model restored from the folder it was saved in (the old path).
    d = self.temp_dir()
    native_dir = os.path.join(TESTDATA, "i2b2_2006")
    config = testutil.tiny_config()
    num_labels = len(tasks.get_task("i2b2_2006").get_labels(native_dir))
    trained_dir = os.path.join(d, "trained")
    finetuned = testutil.write_checkpoint(os.path.join(trained_dir, "model.ckpt"), config,
                                          heads="token_classification", num_labels=num_labels,
                                          seed=3)
    common = ["--task_name=i2b2_2006", "--data_dir=" + native_dir, "--max_seq_length=48",
              "--vocab_file=" + testutil.write_vocab(d),
              "--bert_config_file=" + testutil.write_config(d, config),
              "--do_train=False", "--do_eval=True", "--do_predict=True"]
    testutil.run_module("run_finetune", common + ["--output_dir=" + trained_dir])
    runs = {"run_finetune": os.path.join(d, "finetune"), "run_ner": os.path.join(d, "ner")}
    for script, output_dir in runs.items():
      # Neither a checkpoint in --output_dir nor --init_checkpoint: one line saying so.
      proc = testutil.run_module(script, common + ["--output_dir=" + output_dir], check=False)
      self.assertEqual(proc.returncode, 1, proc.stderr)
      self.assertIn("%s.py: error: no checkpoint in %s to evaluate" % (script, output_dir),
                    proc.stderr)
      testutil.run_module(script, common + ["--output_dir=" + output_dir,
                                            "--init_checkpoint=" + finetuned])
      self.assertFalse(os.path.isfile(os.path.join(output_dir, "checkpoint")), script)
    for name in ("eval_results.json", "test_results.json"):
      with open(os.path.join(trained_dir, name), encoding="utf-8") as f:
        expected = json.load(f)
      self.assertIn("f1", expected)
      for script, output_dir in runs.items():
        with open(os.path.join(output_dir, name), encoding="utf-8") as f:
          self.assertEqual(json.load(f), expected, (script, name))
    with open(os.path.join(trained_dir, "test_predictions.txt"), encoding="utf-8") as a, \
        open(os.path.join(runs["run_ner"], "test_predictions.txt"), encoding="utf-8") as b:
      self.assertEqual(a.read(), b.read())


if __name__ == "__main__":
  absltest.main()
