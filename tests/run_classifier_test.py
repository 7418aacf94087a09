"""run_classifier.py against Google's run_classifier.py (bert-tensorflow 1.0.4), run unmodified.

On invented MRPC- and CoLA-format data (testdata/glue) and a tiny BERT: the same examples and
features as Google's processors and converter; the same flags and defaults; byte-identical
TFRecord files; from the same fine-tuned checkpoint the same `eval_results.txt` (keys, and values
within 1e-4) and `test_results.tsv` (within 1e-5), with each script's checkpoint evaluated in the
other script, and with a fine-tuned model given only as --init_checkpoint (no training).
"""

import json
import os
import shutil

from absl import flags
from absl.testing import absltest

from tests import oracle
from tests import testutil
# pylint: disable=g-import-not-at-top,wrong-import-position
from bert import run_classifier as google_run_classifier

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf import tokenization
from clinicalbert_tf.finetuning import data

GLUE = os.path.join(testutil.REPO, "testdata", "glue")
_GOOGLE_PROCESSORS = {"cola": google_run_classifier.ColaProcessor,
                      "mnli": google_run_classifier.MnliProcessor,
                      "mrpc": google_run_classifier.MrpcProcessor,
                      "xnli": google_run_classifier.XnliProcessor}


def _google_examples(task_name, data_dir, split):
  processor = _GOOGLE_PROCESSORS[task_name]()
  read = {"train": processor.get_train_examples, "dev": processor.get_dev_examples,
          "test": processor.get_test_examples}[split]
  return [(e.guid, e.text_a, e.text_b or None, e.label) for e in read(data_dir)]


def _our_examples(task_name, data_dir, split):
  return [(e.guid, e.text_a, e.text_b, e.label)
          for e in tasks.get_task(task_name).get_examples(data_dir, split)]


def _write_rows(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join("\t".join(r) + "\n" for r in rows))


class ReadersAndFeaturesTest(testutil.TestCase):
  """In process: examples and features equal Google's."""

  def test_mrpc_and_cola_examples_equal_googles(self):
    for task_name, folder in (("mrpc", "MRPC"), ("cola", "CoLA")):
      for split in tasks.SPLITS:
        ours = _our_examples(task_name, os.path.join(GLUE, folder), split)
        self.assertNotEmpty(ours)
        self.assertEqual(ours, _google_examples(task_name, os.path.join(GLUE, folder), split),
                         (task_name, split))

  def test_mnli_and_xnli_examples_equal_googles(self):
    d = self.temp_dir()
    header = ["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p",
              "sentence1", "sentence2", "label1", "gold_label"]
    mnli = [header] + [[str(i), "7", "%dn" % i, "g", "", "", "", "",
                        "He had a \"cough\" %d." % i, "She denies pain.", "x",
                        ("neutral", "entailment", "contradiction")[i % 3]] for i in range(5)]
    for name in ("train.tsv", "dev_matched.tsv", "test_matched.tsv"):
      _write_rows(os.path.join(d, name), mnli)
    _write_rows(os.path.join(d, "multinli", "multinli.train.zh.tsv"),
                [["premise", "hypo", "label"], ["a b", "c", "contradictory"],
                 ["d", "e", "neutral"]])
    _write_rows(os.path.join(d, "xnli.dev.tsv"),
                [["language", "gold_label"] + ["x"] * 6] +
                [[lang, "entailment", "", "", "", "", "s1 %s" % lang, "s2"] for lang in
                 ("en", "zh", "fr", "zh")])
    for task_name, splits in (("mnli", tasks.SPLITS), ("xnli", ("train", "dev"))):
      for split in splits:
        ours = _our_examples(task_name, d, split)
        self.assertNotEmpty(ours)
        self.assertEqual(ours, _google_examples(task_name, d, split), (task_name, split))
    with self.assertRaisesRegex(fileio.InputError, "no test split"):
      tasks.get_task("xnli").get_examples(d, "test")

  def test_short_row_is_named(self):
    d = self.temp_dir()
    _write_rows(os.path.join(d, "train.tsv"), [["Quality", "a", "b", "c", "d"], ["1", "x"]])
    with self.assertRaisesRegex(fileio.InputError, r"train.tsv:2: expected at least 4 "):
      tasks.get_task("MRPC").get_examples(d, "train")

  def test_features_equal_googles(self):
    # Length 16 cuts the long pairs and sentences (Google's truncation rules for both).
    vocab_file = testutil.write_vocab(self.temp_dir())
    for lower in (True, False):
      ours_tok = tokenization.FullTokenizer(vocab_file, do_lower_case=lower)
      google_tok = oracle.tokenization.FullTokenizer(vocab_file, do_lower_case=lower)
      for task_name, folder in (("mrpc", "MRPC"), ("cola", "CoLA")):
        data_dir = os.path.join(GLUE, folder)
        task = tasks.get_task(task_name)
        labels = task.get_labels(data_dir)
        label_map = {l: i for i, l in enumerate(labels)}
        google_examples = _GOOGLE_PROCESSORS[task_name]().get_train_examples(data_dir)
        cut = 0
        for i, (ours, theirs) in enumerate(zip(task.get_examples(data_dir, "train"),
                                               google_examples)):
          feature, truncated = data.convert_sentence_pair(i, ours, label_map, 16, ours_tok)
          cut += truncated
          g = google_run_classifier.convert_single_example(i, theirs, labels, 16, google_tok)
          self.assertEqual((feature.input_ids, feature.input_mask, feature.segment_ids,
                            feature.label_id),
                           (g.input_ids, g.input_mask, g.segment_ids, g.label_id),
                           (task_name, i))
        self.assertGreater(cut, 0, task_name)  # the test did exercise truncation


def tf_checkpoint_in(directory):
  """Whether `directory` holds a checkpoint state file (a run saved a model there)."""
  return os.path.isfile(os.path.join(directory, "checkpoint"))


class ScriptsTest(testutil.TestCase):
  """Both scripts as child processes on a tiny BERT; each evaluates the other's checkpoint."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab_file = testutil.write_vocab(cls.dir)
    cls.config_file = testutil.write_config(cls.dir, testutil.tiny_config())
    cls.ckpt = testutil.write_checkpoint(os.path.join(cls.dir, "bert_model.ckpt"),
                                         testutil.tiny_config(), released=True)

  def _flags(self, task_name, folder, output_dir, do_train=True):
    return {"task_name": task_name, "data_dir": os.path.join(GLUE, folder),
            "vocab_file": self.vocab_file, "bert_config_file": self.config_file,
            "init_checkpoint": self.ckpt, "output_dir": output_dir, "max_seq_length": 32,
            "train_batch_size": 4, "num_train_epochs": 1.0, "do_train": do_train,
            "do_eval": True, "do_predict": True}

  def _ours(self, flags, extra=()):
    return testutil.run_module("run_classifier", testutil.flag_args(flags) + list(extra))

  def _google(self, flags):
    return testutil.run_module("tests.run_google_classifier", testutil.flag_args(flags))

  @staticmethod
  def _results(output_dir):
    results = fileio.read_key_values(os.path.join(output_dir, "eval_results.txt"))
    with open(os.path.join(output_dir, "test_results.tsv"), encoding="utf-8") as f:
      probabilities = [[float(x) for x in line.split("\t")] for line in f.read().splitlines()]
    return results, probabilities

  def _assert_same_results(self, ours_dir, google_dir, num_test):
    ours, ours_probabilities = self._results(ours_dir)
    google, google_probabilities = self._results(google_dir)
    self.assertEqual(sorted(ours), ["eval_accuracy", "eval_loss", "global_step", "loss"])
    self.assertEqual(sorted(ours), sorted(google))
    self.assertEqual(ours["global_step"], google["global_step"])
    for key in ("eval_accuracy", "eval_loss", "loss"):
      self.assertAlmostEqual(ours[key], google[key], delta=1e-4, msg=key)
    self.assertLen(ours_probabilities, num_test)
    self.assertAllClose(ours_probabilities, google_probabilities, rtol=0, atol=1e-5)

  def _assert_same_records(self, ours_dir, google_dir, names):
    for name in names:
      with open(os.path.join(ours_dir, name), "rb") as a, \
          open(os.path.join(google_dir, name), "rb") as b:
        self.assertEqual(a.read(), b.read(), name)

  def test_mrpc_each_checkpoint_in_the_other_script(self):
    ours_dir, google_dir = self.temp_dir(), self.temp_dir()
    # Ours trains (and tolerates a flag it does not define, naming it); Google's trains.
    proc = self._ours(self._flags("MRPC", "MRPC", ours_dir), ["--keep_checkpont_max=2"])
    self.assertIn("does not define: --keep_checkpont_max", proc.stderr)
    self._google(self._flags("MRPC", "MRPC", google_dir))
    self._assert_same_records(ours_dir, google_dir,
                              ("train.tf_record", "eval.tf_record", "predict.tf_record"))
    # Google's script evaluates and predicts with our checkpoint, and ours with Google's.
    google_on_ours, ours_on_google = self.temp_dir() + "/g", self.temp_dir() + "/o"
    shutil.copytree(ours_dir, google_on_ours)
    shutil.copytree(google_dir, ours_on_google)
    self._google(self._flags("MRPC", "MRPC", google_on_ours, do_train=False))
    self._ours(self._flags("MRPC", "MRPC", ours_on_google, do_train=False))
    self._assert_same_results(ours_dir, google_on_ours, 5)
    self._assert_same_results(ours_on_google, google_dir, 5)
    with open(os.path.join(ours_dir, "finetune_head.json"), encoding="utf-8") as f:
      record = json.load(f)
    self.assertEqual((record["head"], record["labels"], record["task_name"]),
                     ("sequence_classification", ["0", "1"], "mrpc"))

  def test_cola_single_sentences(self):
    google_dir, ours_dir = self.temp_dir(), self.temp_dir() + "/ours"
    self._google(self._flags("cola", "CoLA", google_dir))
    # Our script in a copy of Google's output: the checkpoint is at its last step, so training
    # adds nothing; the records are rewritten by ours, and the results come from Google's model.
    shutil.copytree(google_dir, ours_dir)
    for name in ("train.tf_record", "eval.tf_record", "predict.tf_record", "eval_results.txt",
                 "test_results.tsv"):
      os.remove(os.path.join(ours_dir, name))
    self._ours(self._flags("cola", "CoLA", ours_dir))
    self._assert_same_records(ours_dir, google_dir,
                              ("train.tf_record", "eval.tf_record", "predict.tf_record"))
    self._assert_same_results(ours_dir, google_dir, 5)

  def test_fine_tuned_model_given_only_as_init_checkpoint(self):
    # How a released fine-tuned model is evaluated: no --do_train, a fresh --output_dir, the model
    # as --init_checkpoint. Google's Estimator finds no checkpoint in its model_dir and evaluates
    # and predicts with the variables init_from_checkpoint set; ours must do the same (it refused).
    finetuned = testutil.write_checkpoint(
        os.path.join(self.temp_dir(), "finetuned", "model.ckpt"), testutil.tiny_config(),
        heads="sequence_classification", num_labels=2, seed=7)
    ours_dir, google_dir = self.temp_dir() + "/ours", self.temp_dir() + "/google"
    for run, output_dir in ((self._google, google_dir), (self._ours, ours_dir)):
      values = self._flags("MRPC", "MRPC", output_dir, do_train=False)
      values["init_checkpoint"] = finetuned
      run(values)
      self.assertFalse(tf_checkpoint_in(output_dir), output_dir)
    self._assert_same_results(ours_dir, google_dir, 5)
    results, probabilities = self._results(ours_dir)
    self.assertEqual(results["global_step"], 0)
    # The fine-tuned output layer (N(0, 0.2) weights), not a fresh one: far from uniform.
    self.assertGreater(max(abs(p[0] - 0.5) for p in probabilities), 0.01)

  def test_flags_and_defaults_are_googles(self):
    # Ours from a child process: both scripts define the same names, and one FLAGS holds one.
    ours = testutil.flag_defaults("run_classifier")
    google = {f.name: f.default for f in
              flags.FLAGS.get_flags_for_module(google_run_classifier.__name__)}
    self.assertGreater(len(google), 20)
    for name, default in google.items():
      self.assertIn(name, ours)
      self.assertEqual(ours[name], default, name)
    self.assertTrue(ours["do_lower_case"])

  def test_casing_must_match_a_known_checkpoint(self):
    init = os.path.join(self.dir, "cased_L-12_H-768_A-12", "bert_model.ckpt")
    with self.assertRaises(ValueError) as google_error:
      oracle.tokenization.validate_case_matches_checkpoint(True, init)
    values = self._flags("mrpc", "MRPC", self.temp_dir())
    values["init_checkpoint"] = init
    proc = testutil.run_module("run_classifier", testutil.flag_args(values), check=False)
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertIn("run_classifier.py: error: " + str(google_error.exception).splitlines()[0],
                  proc.stderr)


if __name__ == "__main__":
  absltest.main()
