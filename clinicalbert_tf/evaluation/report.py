"""What every scorer's report shares: P/R/F from counts, and the plain-text report with its JSON twin."""

import json
import math
import os

from clinicalbert_tf import fileio


def f_score(precision, recall, beta=1.0):
  """F-beta = (1 + b^2) P R / (b^2 P + R); 0.0 when both are 0 (F2 weighs recall 4x precision)."""
  denominator = beta * beta * precision + recall
  return (1 + beta * beta) * precision * recall / denominator if denominator else 0.0


def prf(tp, fp, fn):
  """{"precision", "recall", "f1", "f2"} from true positive, false positive and false negative
  counts (0.0 where a denominator is 0)."""
  p = tp / float(tp + fp) if tp + fp else 0.0
  r = tp / float(tp + fn) if tp + fn else 0.0
  return {"precision": p, "recall": r, "f1": f_score(p, r), "f2": f_score(p, r, 2.0)}


def json_safe(value):
  """`value` with NaN (a macro average over no note) as None, so the JSON stays standard."""
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  return value


def json_path(output_file):
  """The JSON twin of a report: `report.txt` -> `report.json` (`report` -> `report.json`)."""
  stem, suffix = os.path.splitext(output_file)
  return (output_file if suffix == ".json" else stem) + ".json"


def write_report(output_file, text, result):
  """Writes the plain-text report to `output_file` and `result` as JSON next to it (atomically)."""
  fileio.write_text_atomic(output_file, text)
  fileio.write_text_atomic(json_path(output_file),
                           json.dumps(json_safe(result), indent=2, sort_keys=True) + "\n")
