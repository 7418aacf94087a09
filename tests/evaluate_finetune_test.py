"""run_finetune's official scores: i2b2 2006 / 2014 test predictions through the i2b2 2014 scorer.

No model is trained: the predictions are the test sentences' gold labels with a few entities taken
out, and the expected numbers are counted by hand from testdata/i2b2_2014/test/210-01.xml.
"""

import json
import os

from absl.testing import absltest

from clinicalbert_tf import tasks
from clinicalbert_tf.evaluation import finetune
from clinicalbert_tf.evaluation import readers
from clinicalbert_tf.finetuning import grid
from tests import testutil


def without(examples, words):
  """Each example's gold labels, with the entities over any of `words` predicted as O."""
  result = []
  for e in examples:
    labels = list(e.labels)
    for start, end, _ in tasks.iob_to_spans(e.labels):
      if any(w in words for w in e.words[start:end]):
        labels[start:end] = ["O"] * (end - start)
    result.append(labels)
  return result


class OfficialScoresTest(testutil.TestCase):

  def test_i2b2_2014_predictions(self):
    task = tasks.get_task("i2b2_2014")
    data_dir = os.path.join(testutil.REPO, "testdata", "i2b2_2014")
    examples = task.get_examples(data_dir, "test")
    predicted = without(examples, {"Ines", "librarian"})
    out = self.temp_dir()
    metrics = finetune.official_scores(task, examples, predicted, out, "test")
    # 8 gold tags; Ines Aldana (DOCTOR) and librarian (PROFESSION) missed: strict P 1, R 6/8.
    self.assertAlmostEqual(metrics["i2b2_2014_strict_micro_f1"], 2 * 0.75 / 1.75)
    self.assertAlmostEqual(metrics["i2b2_2014_relaxed_micro_f1"], 2 * 0.75 / 1.75)
    # 15 gold tokens (2073 08 08, Edda Morrow, Pinecrest Clinic, Ines Aldana, 8 7 73, 71,
    # librarian, 4B); 3 missed.
    self.assertAlmostEqual(metrics["i2b2_2014_binary_token_recall"], 12 / 15)
    self.assertAlmostEqual(metrics["i2b2_2014_token_micro_f1"], 2 * 0.8 / 1.8)
    # HIPAA: the two DATEs, PATIENT and AGE, all found.
    self.assertAlmostEqual(metrics["i2b2_2014_hipaa_strict_micro_f1"], 1.0)
    # The gold XML written holds the source file's tags.
    source = readers.read_i2b2_2014(os.path.join(data_dir, "test", "210-01.xml"))
    written = readers.read_i2b2_2014(os.path.join(out, "test_i2b2_2014", "gold", "210-01.xml"))
    self.assertEqual(written.text, source.text)
    self.assertEqual(sorted((s.start, s.end, s.type, s.tag) for s in written.spans),
                     sorted((s.start, s.end, s.type, s.tag) for s in source.spans))
    with open(os.path.join(out, "test_i2b2_2014_report.json"), encoding="utf-8") as f:
      report = json.load(f)
    strict = [s for s in report["system_ids"][0]["evaluations"] if s["label"] == "Strict"][0]
    self.assertEqual((strict["tp"], strict["fp"], strict["fn"]), (6, 0, 2))
    with open(os.path.join(out, "test_i2b2_2014_report.txt"), encoding="utf-8") as f:
      self.assertTrue(f.read().startswith("Token (1) "))
    # Dev predictions are not scored (the official scores are the test set's).
    self.assertEqual(finetune.official_scores(task, examples, predicted, out, "eval"), {})

  def test_i2b2_2006_predictions(self):
    task = tasks.get_task("i2b2_2006")
    data_dir = os.path.join(testutil.REPO, "testdata", "i2b2_2006")
    examples = task.get_examples(data_dir, "test")
    out = self.temp_dir()
    metrics = finetune.official_scores(task, examples, without(examples, {"71"}), out, "test")
    # 6 PHI (ID, HOSPITAL, PATIENT, DATE, AGE, DOCTOR); the AGE missed.
    self.assertAlmostEqual(metrics["i2b2_2014_strict_micro_f1"], 2 * (5 / 6) / (1 + 5 / 6))
    system = readers.read_i2b2_2014(os.path.join(out, "test_i2b2_2014", "system", "601.xml"))
    self.assertEqual(sorted(s.tag for s in system.spans),
                     ["DATE", "ID", "LOCATION", "NAME", "NAME"])

  def test_grid_summary_shows_both(self):
    summary = {"task": "i2b2_2014", "metric": "f1", "points": [], "best": {"setting": "x"},
               "test": {"f1": 0.5, "precision": 0.5, "recall": 0.5,
                        "i2b2_2014_token_micro_f1": 0.61, "i2b2_2014_strict_micro_f1": 0.52,
                        "i2b2_2014_relaxed_micro_f1": 0.53, "i2b2_2014_hipaa_strict_micro_f1": 0.54,
                        "i2b2_2014_binary_token_recall": 0.95}}
    text = grid.format_grid_markdown(summary)
    self.assertIn("Test (x): f1 = 0.5000", text)
    self.assertIn("official i2b2 2014 scorer (micro): Token F1 = 0.6100, Strict F1 = 0.5200, "
                  "Relaxed F1 = 0.5300, HIPAA Strict F1 = 0.5400, binary token recall = 0.9500",
                  text)


if __name__ == "__main__":
  absltest.main()
