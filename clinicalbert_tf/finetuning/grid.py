"""The paper's fine-tuning grid: train each setting, pick the best on dev, report test for it.

The grid is learning rate x batch size x epochs (`PAPER_LEARNING_RATES`, `PAPER_BATCH_SIZES`, the
head's `paper_epochs`), each overridable by a flag. Results go to `grid_summary.json` and a
markdown table, `grid_summary.md`.

A grid batch size is a `train_batch_size`: with `--num_accumulation_steps` N an optimizer step
covers N batches, and each setting's steps are computed from that effective batch (as a single run
computes them, `Runner.num_train_steps`).
"""

import glob
import os
import time

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import progress

# The paper's fine-tuning grid (the epochs depend on the head).
PAPER_LEARNING_RATES = (2e-5, 3e-5, 5e-5)
PAPER_BATCH_SIZES = (16, 32)


def grid_points(config, head):
  """The (learning rate, batch size, epochs) settings of the grid, in order."""
  learning_rates = config.grid_learning_rates or PAPER_LEARNING_RATES
  batch_sizes = config.grid_batch_sizes or PAPER_BATCH_SIZES
  epochs = config.grid_num_train_epochs or head.paper_epochs
  return [(float(lr), int(bs), float(ep))
          for lr in learning_rates for bs in batch_sizes for ep in epochs]


def point_name(learning_rate, batch_size, epochs):
  return "lr%g_bs%d_ep%g" % (learning_rate, batch_size, epochs)


def remove_checkpoints(model_dir):
  """Deletes a model directory's checkpoints (keeps results and event files)."""
  for path in glob.glob(os.path.join(model_dir, "model.ckpt-*")) + \
      glob.glob(os.path.join(model_dir, "checkpoint")) + \
      glob.glob(os.path.join(model_dir, "graph.pbtxt")):
    os.remove(path)


def run_grid(config, runner):
  """The paper's grid: train each setting, score dev, pick the best, report test for it.

  Each setting trains in `<output_dir>/grid/<setting>/` (dev results there). The best setting by
  the head's metric on dev (F1 for NER, accuracy for NLI) -- the first in grid order on a tie -- is
  evaluated on test, with results and predictions in `output_dir`. Only the best setting's
  checkpoint is kept unless `grid_keep_checkpoints`. Writes `grid_summary.md` and
  `grid_summary.json`.

  Args:
    config: the `runner.FinetuneConfig`.
    runner: a `runner.Runner` for it.

  Returns:
    The summary dict.
  """
  if config.distribution_strategy == "multi_worker_mirrored":
    # Each setting is a new training in this process; a worker starts its cluster server once.
    raise fileio.InputError(
        "--grid cannot run with --distribution_strategy=multi_worker_mirrored (a worker trains "
        "one model per process): use mirrored or none, or run each setting without --grid")
  metric = runner.head.metric
  points = grid_points(config, runner.head)
  accumulation = config.num_accumulation_steps
  runner.split("test")  # fail early if there is no test split
  rows = []
  best = None
  start_all = time.time()
  for n, (lr, bs, ep) in enumerate(points, 1):
    name = point_name(lr, bs, ep)
    model_dir = os.path.join(config.output_dir, "grid", name)
    logging.info("grid point %d/%d: learning_rate=%g batch=%d (x %d accumulation steps = %d per "
                 "optimizer step) epochs=%g -> %s", n, len(points), lr, bs, accumulation,
                 runner.effective_batch_size(bs), ep, model_dir)
    steps, seconds = runner.train(model_dir, lr, bs, ep)
    dev = runner.evaluate(model_dir, "dev", "eval")
    row = {"setting": name, "learning_rate": lr, "train_batch_size": bs, "num_train_epochs": ep,
           "steps": steps, "train_seconds": round(seconds, 1), "dev_" + metric: dev[metric],
           "dev_loss": dev["loss"]}
    rows.append(row)
    improved = best is None or dev[metric] > best["dev_" + metric]
    if improved:
      if best is not None and not config.grid_keep_checkpoints:
        remove_checkpoints(best["model_dir"])
      best = dict(row, model_dir=model_dir)
    elif not config.grid_keep_checkpoints:
      remove_checkpoints(model_dir)
    elapsed = time.time() - start_all
    logging.info("grid point %d/%d done: %s dev %s=%.4f (best so far %s %.4f); %.0fs elapsed, "
                 "about %.0fs left", n, len(points), name, metric, dev[metric], best["setting"],
                 best["dev_" + metric], elapsed, progress.eta_seconds(n, len(points), elapsed))
  test = runner.evaluate(best["model_dir"], "test", "test", output_dir=config.output_dir)
  summary = {
      "task": config.task_name,
      "metric": metric,
      "seed": config.seed,
      "max_seq_length": config.max_seq_length,
      "num_accumulation_steps": accumulation,
      "points": rows,
      "best": {k: v for k, v in best.items()},
      "test": {k: v for k, v in test.items() if k != "per_type"},
  }
  if "per_type" in test:
    summary["test_per_type"] = test["per_type"]
  fileio.write_json_atomic(os.path.join(config.output_dir, "grid_summary.json"), summary)
  fileio.write_text_atomic(os.path.join(config.output_dir, "grid_summary.md"),
                           format_grid_markdown(summary))
  logging.info("grid: best %s (dev %s %.4f), test %s %.4f", best["setting"], metric,
               best["dev_" + metric], metric, test[metric])
  return summary


def format_grid_markdown(summary):
  """A markdown table of the grid, the chosen setting marked, and its test score."""
  metric = summary["metric"]
  lines = ["# Fine-tuning grid: %s" % summary["task"], "",
           "Selected by dev %s; test reported for the selected setting only." % metric, "",
           "| setting | learning rate | batch | epochs | steps | dev %s | dev loss | |" % metric,
           "|---|---|---|---|---|---|---|---|"]
  for row in summary["points"]:
    mark = "**selected**" if row["setting"] == summary["best"]["setting"] else ""
    lines.append("| %s | %g | %d | %g | %d | %.4f | %.4f | %s |" % (
        row["setting"], row["learning_rate"], row["train_batch_size"], row["num_train_epochs"],
        row["steps"], row["dev_" + metric], row["dev_loss"], mark))
  accumulation = summary.get("num_accumulation_steps", 1)
  if accumulation > 1:
    lines += ["", "Batch: per step before accumulation; %d steps accumulated, so each optimizer "
              "step covers %d times the batch." % (accumulation, accumulation)]
  test = summary["test"]
  lines += ["", "Test (%s): %s = %.4f" % (summary["best"]["setting"], metric, test[metric])]
  if "precision" in test and "recall" in test:  # span scores (NER) come with both
    lines[-1] += ", precision = %.4f, recall = %.4f" % (test["precision"], test["recall"])
  if "i2b2_2014_strict_micro_f1" in test:  # i2b2 2006 / 2014: the official scorer's too
    lines.append("Test, official i2b2 2014 scorer (micro): Token F1 = %.4f, Strict F1 = %.4f, "
                 "Relaxed F1 = %.4f, HIPAA Strict F1 = %.4f, binary token recall = %.4f" % tuple(
                     test["i2b2_2014_" + k] for k in (
                         "token_micro_f1", "strict_micro_f1", "relaxed_micro_f1",
                         "hipaa_strict_micro_f1", "binary_token_recall")))
  return "\n".join(lines) + "\n"
