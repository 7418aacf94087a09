"""predict.py's throughput on Spark vs the local engine, Spark's start-up cost and its scaling.

On the same notes (MTSamples transcriptions from ../shared/data/mtsamples when present: real note
lengths; else invented notes of the tiny vocabulary) and the same model (a BERT with a
token-classification head, random weights, written as run_finetune.py leaves it):

  local       `job.run_job` (predict.py --engine=local), TensorFlow on 1 thread, model loaded first;
  local[1]    `engines.spark_job.run_job` (predict.py --engine=spark) on Spark local[1], 1 thread
              a task;
  local[2]    the same on local[2] (2 tasks at once).

Each engine runs once per round (--rounds, in turn) and its best round is reported. Each Spark run
is a child process with its own session: Spark's fixed cost (JVM and session start,
then a 2-note job that starts the Python workers and loads the model once per worker) is timed
apart from the measured run over all the notes, whose notes/s is reported. Prints the rates, the
ratios against the targets (local[2] >= 1.6x local[1]; local[1] >= 0.8x local), the scaling
efficiency from 1 to 2 cores, and, on paper, what 100 M notes take at the measured per-core rate.

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/spark_bench.py --num_notes=300
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_notes  # pylint: disable=g-import-not-at-top,wrong-import-position  (benchmarks/)


flags.DEFINE_string("mtsamples", bench_notes.default_mtsamples(),
                    "MTSamples CSV (gzip); invented notes when it is not there.")
flags.DEFINE_integer("num_notes", 300, "Notes per run.")
flags.DEFINE_integer("hidden_size", 128, "Hidden size of the model.")
flags.DEFINE_integer("num_layers", 2, "Transformer layers.")
flags.DEFINE_integer("max_seq_length", 128, "Window length.")
flags.DEFINE_integer("batch_size", 16, "Windows per TensorFlow run.")
flags.DEFINE_integer("rounds", 2, "Rounds, each engine once per round in turn; the best rate of "
                     "each is reported (a shared machine's load changes during a run).")
flags.DEFINE_float("cluster_hours", 24.0, "The 100 M-note estimate: the wall time to plan for.")
flags.DEFINE_integer("cores_per_node", 16, "The 100 M-note estimate: cores per worker node.")
flags.DEFINE_string("child", None, "Internal: run one Spark measurement on this master.")
flags.DEFINE_string("work_dir", None, "Internal: the parent's working directory.")
FLAGS = flags.FLAGS

LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment", "I-treatment"]


def write_model(directory):
  """A checkpoint directory as run_finetune.py leaves it (the tiny vocabulary: every word of a real
  note that is not in it is one [UNK] piece)."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  testutil.write_model_dir(directory, labels=LABELS, max_seq_length=FLAGS.max_seq_length,
                           released=True, config=testutil.tiny_config(
                               hidden_size=FLAGS.hidden_size, num_hidden_layers=FLAGS.num_layers,
                               num_attention_heads=4, intermediate_size=4 * FLAGS.hidden_size,
                               max_position_embeddings=max(512, FLAGS.max_seq_length)))


def write_notes(path, num_notes):
  """JSON lines of `num_notes` notes; returns (source, words)."""
  texts = []
  if FLAGS.mtsamples and os.path.exists(FLAGS.mtsamples):
    texts = bench_notes.read_mtsamples(FLAGS.mtsamples, num_notes)
    source = "MTSamples transcriptions"
  else:
    from tests import testutil  # pylint: disable=g-import-not-at-top
    words = testutil.WORDS
    texts = [" ".join(words[(i * 7 + k) % len(words)] for k in range(400))
             for i in range(num_notes)]
    source = "invented notes (MTSamples not found)"
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": "n%d" % i, "text": text}) + "\n")
  return source, sum(len(t.split()) for t in texts), len(texts)


def child(master, work):
  """One Spark measurement: start-up, warm-up (workers and model), the measured run. Prints JSON."""
  from clinicalbert_tf.engines import spark as engine  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.engines import spark_job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  started = time.time()
  spark = engine.get_session(master)
  session_s = time.time() - started
  workers = spark.sparkContext.defaultParallelism
  model_dir = os.path.join(work, "model")
  t = time.time()
  spark_job.run_job(job.JobOptions(input_file=os.path.join(work, "warm.jsonl"),
                                output_file=os.path.join(work, "warm-%s.jsonl" % workers),
                                batch_size=FLAGS.batch_size), model_dir, master=master,
                 partitions=workers)
  warm_s = time.time() - t
  t = time.time()
  counts = spark_job.run_job(job.JobOptions(input_file=os.path.join(work, "notes.jsonl"),
                                         output_file=os.path.join(work, "spark-%d.jsonl" % workers),
                                         batch_size=FLAGS.batch_size),
                          model_dir, master=master, partitions=4 * workers)
  run_s = time.time() - t
  print("RESULT " + json.dumps({"session_s": session_s, "warm_s": warm_s, "run_s": run_s,
                                "notes": counts["notes"]}))


def run_child(master, work):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child=" + master,
                         "--work_dir=" + work, "--batch_size=%d" % FLAGS.batch_size],
                        env=env, capture_output=True, text=True, timeout=3000)
  for line in proc.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  raise SystemExit("child %s failed:\n%s" % (master, proc.stderr[-3000:]))


def main(argv):
  del argv
  if FLAGS.child:
    child(FLAGS.child, FLAGS.work_dir)
    return
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="spark_bench-") as work:
    write_model(os.path.join(work, "model"))
    source, words, num_notes = write_notes(os.path.join(work, "notes.jsonl"), FLAGS.num_notes)
    with open(os.path.join(work, "notes.jsonl")) as f, \
        open(os.path.join(work, "warm.jsonl"), "w") as warm:
      warm.writelines([next(f), next(f)])
    print("notes: %d %s, %d words (%.0f words/note); model %d layers x %d hidden, length %d, "
          "batch %d; CPUs here: %d (load average %.1f: a shared machine)" % (
              num_notes, source, words, words / num_notes, FLAGS.num_layers, FLAGS.hidden_size,
              FLAGS.max_seq_length, FLAGS.batch_size, os.cpu_count(), os.getloadavg()[0]))
    model = model_lib.load_model(os.path.join(work, "model"), num_threads=1)
    local_s = None
    results = {}
    for _ in range(FLAGS.rounds):
      t = time.time()
      job.run_job(model, job.JobOptions(input_file=os.path.join(work, "notes.jsonl"),
                                        output_file=os.path.join(work, "local.jsonl"),
                                        batch_size=FLAGS.batch_size))
      local_s = min(local_s or float("inf"), time.time() - t)
      for master in ("local[1]", "local[2]"):
        r = run_child(master, work)
        if master not in results or r["run_s"] < results[master]["run_s"]:
          results[master] = r
    model.close()
    same = all(open(os.path.join(work, "local.jsonl"), "rb").read() ==
               open(os.path.join(work, "spark-%d.jsonl" % n), "rb").read() for n in (1, 2))

  local_rate = num_notes / local_s
  rates = {m: r["notes"] / r["run_s"] for m, r in results.items()}
  print("%-22s %10s %12s %14s" % ("engine", "notes/s", "run (s)", "start-up (s)"))
  print("%-22s %10.2f %12.1f %14s" % ("local (1 thread)", local_rate, local_s, "-"))
  for master, r in results.items():
    print("%-22s %10.2f %12.1f %14.1f" % ("spark " + master, rates[master], r["run_s"],
                                          r["session_s"] + r["warm_s"]))
  one, two = rates["local[1]"], rates["local[2]"]
  print("Spark start-up: session %.1fs + first job (Python workers, model loads) %.1fs on "
        "local[2]" % (results["local[2]"]["session_s"], results["local[2]"]["warm_s"]))
  print("outputs equal to the local engine's (bytes): %s" % same)
  print("local[2] / local[1] = %.2fx (target >= 1.6x); scaling efficiency 1 -> 2 cores: %.0f%%" %
        (two / one, 100.0 * two / (2 * one)))
  print("spark local[1] / local = %.2fx (target >= 0.8x)" % (one / local_rate))
  per_core = one
  core_hours = 1e8 / per_core / 3600.0
  efficiency = min(1.0, two / (2 * one))
  cores = core_hours / FLAGS.cluster_hours / max(efficiency, 0.5)
  print("100 M notes at %.2f notes/s per core (this model, these notes): %.0f core-hours; in "
        "%.0f h "
        "about %.0f cores = %.0f nodes of %d cores (at %.0f%% scaling efficiency, floored at 50%%)"
        % (per_core, core_hours, FLAGS.cluster_hours, cores, cores / FLAGS.cores_per_node + 0.5,
           FLAGS.cores_per_node, 100 * max(efficiency, 0.5)))


if __name__ == "__main__":
  app.run(main)
