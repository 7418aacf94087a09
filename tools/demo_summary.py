#!/usr/bin/env python3
"""Prints and saves the demo's Table-2-style summary (task, metric, dev, test) as markdown.

  tools/demo_summary.py demo_output

Reads <dir>/pretrained/eval_results.txt and <dir>/finetune/<task>/{eval,test}_results.json (as
run_pretraining.py and run_finetune.py write them) and writes <dir>/summary.md. Tasks that did not
run are listed as such.
"""

import json
import os
import sys

from clinicalbert_tf import fileio

# The paper's Table 2 tasks, in its order, with the metric it reports.
TASKS = [
    ("mednli", "MedNLI", "accuracy"),
    ("i2b2_2006", "i2b2 2006 (de-identification)", "f1"),
    ("i2b2_2010", "i2b2 2010 (concepts)", "f1"),
    ("i2b2_2012", "i2b2 2012 (events)", "f1"),
    ("i2b2_2014", "i2b2 2014 (de-identification)", "f1"),
]
METRIC_NAMES = {"accuracy": "accuracy", "f1": "exact-span micro F1"}


def _json(path):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _key_values(path):
  if not os.path.exists(path):
    return None
  return fileio.read_key_values(path, convert=None)


def _fmt(results, metric):
  if results is None or metric not in results:
    return "not run"
  return "%.3f (n=%s)" % (results[metric], results.get("num_examples", "?"))


def summary(out_dir):
  lines = ["# clinicalbert_tf demo: results on the bundled invented samples", "",
           "These samples hold a handful of invented sentences per task, so the numbers show that "
           "every step runs end to end, not how good a model is (the paper's numbers need the real "
           "data; see README.md, Reproducing the paper).", ""]
  pre = _key_values(os.path.join(out_dir, "pretrained", "eval_results.txt"))
  if pre:
    lines += ["Pretraining (from scratch, tiny config): step %s, masked LM accuracy %s, "
              "next-sentence accuracy %s." % (pre.get("global_step"),
                                              pre.get("masked_lm_accuracy"),
                                              pre.get("next_sentence_accuracy")), ""]
  lines += ["| Task | Metric | Dev | Test |", "|---|---|---|---|"]
  for task, title, metric in TASKS:
    d = os.path.join(out_dir, "finetune", task)
    lines.append("| %s | %s | %s | %s |" % (title, METRIC_NAMES[metric],
                                            _fmt(_json(os.path.join(d, "eval_results.json")), metric),
                                            _fmt(_json(os.path.join(d, "test_results.json")), metric)))
  return "\n".join(lines) + "\n"


def main(argv):
  out_dir = argv[1] if len(argv) > 1 else "demo_output"
  text = summary(out_dir)
  fileio.write_text_atomic(os.path.join(out_dir, "summary.md"), text)
  print(text)


if __name__ == "__main__":
  main(sys.argv)
