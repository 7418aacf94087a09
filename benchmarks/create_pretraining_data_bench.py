"""Benchmark: our create_pretraining_data.py against Google's, same inputs, same flags, same bytes.

Generates (or takes with --corpus) a pretraining corpus of at least --size_mb megabytes of invented
clinical-style text (tests/pretraining_corpus.py) and a ~28,500-token cased vocabulary, then runs, in
turn, Google's script (`python -m bert.create_pretraining_data`, bert-tensorflow 1.0.4) and ours with
ClinicalBERT's flags (--do_lower_case=False --max_seq_length=128 --max_predictions_per_seq=20
--masked_lm_prob=0.15 --random_seed=12345 --dupe_factor=5), each in its own process, and prints:

  * wall seconds (interpreter start and imports included: TensorFlow for Google's, not ours), CPU
    seconds (user + system) and instances/s for each run;
  * peak RSS of each process (`os.wait4`'s rusage of that child: ru_maxrss; the largest over runs);
  * the ratios ours/Google's against the targets (>= 10x throughput in wall and in CPU time,
    <= 0.5x peak RSS), both programs measured in the same run;
  * whether the output files are byte-identical (they must be).

The machine is shared: the load average is printed before and after, and CPU seconds are reported
next to wall seconds because they depend less on what else is running. --repeat runs each program
several times (alternating) and reports the fastest wall time and the smallest CPU time of each.

Usage (from the repository root):
  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/create_pretraining_data_bench.py \\
      [--size_mb=5.5] [--corpus=FILE --vocab=FILE] [--repeat=1] [--work_dir=DIR] [--keep]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "create_pretraining_data.py")
sys.path.insert(0, ROOT)
from tests import pretraining_corpus  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_float("size_mb", 5.5, "Size of the generated corpus in megabytes (10^6 bytes).")
flags.DEFINE_string("corpus", None, "Use this text file instead of generating one.")
flags.DEFINE_string("vocab", None, "Use this vocabulary instead of generating one.")
flags.DEFINE_integer("repeat", 1, "Runs of each program (alternating); the fastest wall time and "
                     "the smallest CPU time count.")
flags.DEFINE_string("work_dir", None, "Where to put the corpus and outputs (default: a temp dir).")
flags.DEFINE_bool("keep", False, "Keep the work directory.")

CLINICALBERT_FLAGS = ["--do_lower_case=False", "--max_seq_length=128", "--max_predictions_per_seq=20",
                      "--masked_lm_prob=0.15", "--random_seed=12345", "--dupe_factor=5"]


def run_child(args, log_path):
  """Runs `args` (stderr to `log_path`); returns (wall s, CPU s, peak RSS bytes) of that child."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  with open(log_path, "wb") as log:
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)
    # wait4 gives this child's own rusage (not the sum over every child so far).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      raise SystemExit("%s failed (%d):\n%s" % (" ".join(args[:3]), proc.returncode,
                                                f.read()[-3000:]))
  return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main(argv):
  del argv
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="cpd_bench-")
  os.makedirs(work, exist_ok=True)
  try:
    vocab = FLAGS.vocab or os.path.join(work, "vocab.txt")
    if not FLAGS.vocab:
      pretraining_corpus.make_vocab(vocab, extra_words=28400)
    corpus = FLAGS.corpus or os.path.join(work, "corpus.txt")
    if not FLAGS.corpus:
      pretraining_corpus.write_corpus_of_size(corpus, int(FLAGS.size_mb * 1e6))
    size = os.path.getsize(corpus)
    with open(vocab, encoding="utf-8") as f:
      vocab_lines = sum(1 for _ in f)
    print("corpus: %s (%.2f MB), vocabulary: %d lines" % (corpus, size / 1e6, vocab_lines))
    print("flags: " + " ".join(CLINICALBERT_FLAGS))
    print("load average before: %.2f %.2f %.2f" % os.getloadavg(), flush=True)

    outputs = {"google": os.path.join(work, "google.tfrecord"),
               "ours": os.path.join(work, "ours.tfrecord")}
    commands = {
        "google": [sys.executable, "-m", "bert.create_pretraining_data"],
        "ours": [sys.executable, SCRIPT],
    }
    results = {"google": [], "ours": []}
    for _ in range(FLAGS.repeat):
      for who in ("google", "ours"):
        args = commands[who] + ["--input_file=" + corpus, "--output_file=" + outputs[who],
                                "--vocab_file=" + vocab] + CLINICALBERT_FLAGS
        results[who].append(run_child(args, os.path.join(work, who + ".log")))
    print("load average after:  %.2f %.2f %.2f" % os.getloadavg())

    with open(outputs["ours"] + ".json", encoding="utf-8") as f:
      instances = json.load(f)["instances"]
    with open(outputs["google"], "rb") as f:
      google_bytes = f.read()
    with open(outputs["ours"], "rb") as f:
      identical = f.read() == google_bytes

    best = {who: (min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs))
            for who, runs in results.items()}
    print()
    print("%-8s %9s %9s %13s %14s" % ("", "wall s", "CPU s", "instances/s", "peak RSS MB"))
    for who in ("google", "ours"):
      wall, cpu, rss = best[who]
      print("%-8s %9.2f %9.2f %13.0f %14.1f" % (who, wall, cpu, instances / wall, rss / 1e6))
    speed = best["google"][0] / best["ours"][0]
    cpu_ratio = best["google"][1] / best["ours"][1]
    rss_ratio = best["ours"][2] / best["google"][2]
    print()
    print("instances: %d; output %.1f MB; byte-identical: %s" % (
        instances, len(google_bytes) / 1e6, "yes" if identical else "NO"))
    print("throughput ours/Google (wall): %.2fx  (target >= 10x: %s)" % (
        speed, "met" if speed >= 10 else "NOT met"))
    print("CPU time Google/ours:          %.2fx  (target >= 10x: %s)" % (
        cpu_ratio, "met" if cpu_ratio >= 10 else "NOT met"))
    print("peak RSS ours/Google:          %.3fx (target <= 0.5x: %s)" % (
        rss_ratio, "met" if rss_ratio <= 0.5 else "NOT met"))
    if FLAGS.repeat > 1:
      for who in ("google", "ours"):
        print("%-6s wall / CPU s per run: %s" % (who, ", ".join(
            "%.2f / %.2f" % r[:2] for r in results[who])))
      print("per-run CPU ratios Google/ours: %s" % ", ".join(
          "%.2fx" % (g[1] / o[1]) for g, o in zip(results["google"], results["ours"])))
    if not identical:
      raise SystemExit("outputs differ")
  finally:
    if not FLAGS.keep and not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
