"""Fine-tuning scores and result files.

  ner_metrics             exact-span micro precision / recall / F1 and a per-type report (seqeval,
                          IOB2, strict mode: an entity counts only when its span and type match);
  classification_metrics  accuracy and a confusion matrix;
  write_results           `<prefix>_results.txt` (Google's sorted `key = value` lines, per-type
                          scores and the confusion matrix flattened) and `<prefix>_results.json`.
"""

import os

from absl import logging
import numpy as np

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks


def ner_metrics(gold, predicted):
  """Exact-span micro P/R/F1 and a per-type report (seqeval, IOB2, strict mode).

  Args:
    gold, predicted: lists (one per sentence) of IOB2 label lists.

  Returns:
    {"precision", "recall", "f1", "per_type": {type: {precision, recall, f1, support}}}.
  """
  from seqeval import metrics as seqeval_metrics  # pylint: disable=g-import-not-at-top
  from seqeval import scheme as seqeval_scheme  # pylint: disable=g-import-not-at-top
  kwargs = dict(mode="strict", scheme=seqeval_scheme.IOB2, zero_division=0)
  gold_types = {tasks.label_type(l) for s in gold for l in s if l != "O"}
  per_type = {}
  if gold_types or any(l != "O" for s in predicted for l in s):
    report = seqeval_metrics.classification_report(gold, predicted, output_dict=True, **kwargs)
    for name, values in report.items():
      if name.endswith(" avg"):
        continue
      per_type[name] = {"precision": float(values["precision"]), "recall": float(values["recall"]),
                        "f1": float(values["f1-score"]), "support": int(values["support"])}
  return {
      "precision": float(seqeval_metrics.precision_score(gold, predicted, **kwargs)),
      "recall": float(seqeval_metrics.recall_score(gold, predicted, **kwargs)),
      "f1": float(seqeval_metrics.f1_score(gold, predicted, **kwargs)),
      "per_type": per_type,
  }


def classification_metrics(gold, predicted, label_list):
  """Accuracy and a confusion matrix (rows gold, columns predicted, in `label_list` order)."""
  index = {label: i for i, label in enumerate(label_list)}
  matrix = np.zeros([len(label_list), len(label_list)], dtype=np.int64)
  for g, p in zip(gold, predicted):
    matrix[index[g], index[p]] += 1
  correct = int(np.trace(matrix))
  return {
      "accuracy": correct / max(1, len(gold)),
      "confusion_matrix": {"labels": list(label_list), "rows_gold_columns_predicted":
                           matrix.tolist()},
  }


def flatten_results(results):
  """{key: value} for the `key = value` file: per-type NER scores as `<type>_<metric>`, the
  confusion matrix as `confusion_<gold>_as_<predicted>`."""
  flat = {}
  for key, value in results.items():
    if key == "per_type":
      for typ, scores in value.items():
        for metric, v in scores.items():
          flat["%s_%s" % (typ, metric)] = v
    elif key == "confusion_matrix":
      labels = value["labels"]
      for g, row in zip(labels, value["rows_gold_columns_predicted"]):
        for p, count in zip(labels, row):
          flat["confusion_%s_as_%s" % (g, p)] = count
    else:
      flat[key] = value
  return flat


def format_results(results):
  """Google's `key = value` lines (sorted), per-type NER scores flattened to `<type>_<metric>`."""
  return fileio.format_key_values(flatten_results(results))


def write_results(output_dir, prefix, results):
  """Writes `<prefix>_results.txt` (key = value) and `<prefix>_results.json`."""
  fileio.write_key_values(os.path.join(output_dir, prefix + "_results.txt"),
                          flatten_results(results))
  fileio.write_json_atomic(os.path.join(output_dir, prefix + "_results.json"), results)
  logging.info("***** %s results *****", prefix)
  for line in format_results({k: v for k, v in results.items() if k != "per_type"}).splitlines():
    logging.info("  %s", line)
