"""serve.py under load: 1, 4 and 16 concurrent clients on 127.0.0.1 vs predict.py's batch path.

A BERT with a token-classification head (random weights, initialised as Google's released
checkpoints are, so spans are many) is written as run_finetune.py leaves it, and served by serve.py
in a child process. Notes are MTSamples transcriptions (real clinical note lengths and styles,
`--notes_file`, ../shared/data/mtsamples/ by default; invented one-line notes when absent). Each
client sends one note per POST /analyze on its own keep-alive connection, back to back, for
`--seconds`. Printed per level: requests/s, notes/s, latency p50/p95/p99, errors, and the server's
peak RSS (VmHWM). Baselines, measured in this process on its own load of the same model with the
same threads while the server idles, before and after the load levels (their mean: the machine's
other load drifts): predict.py's batch throughput over the same notes
(`inference.Predictor`, all notes at once) and the single-note model time (one note per Predictor
run). Targets: 0 errors; notes/s with 16 clients >= 0.8x the batch throughput; p99 with 1 client
< 2x the single-note time's p99.

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/serve_bench.py \
    --notes_file=../shared/data/mtsamples/mtsamples.csv.gz [--seconds=20] [--threads=2]
"""

import csv
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_notes  # pylint: disable=g-import-not-at-top,wrong-import-position  (benchmarks/)

REPO = bench_notes.REPO

flags.DEFINE_string("notes_file", bench_notes.default_mtsamples() or "",
                    "MTSamples CSV (.gz) with a `transcription` column; invented notes if absent.")
flags.DEFINE_integer("num_notes", 64, "Distinct notes sent (the first ones with text).")
flags.DEFINE_integer("hidden_size", 128, "Hidden size of the benchmark model.")
flags.DEFINE_integer("num_layers", 2, "Transformer layers.")
flags.DEFINE_integer("num_heads", 2, "Attention heads.")
flags.DEFINE_integer("intermediate_size", 512, "Feed-forward size.")
flags.DEFINE_integer("max_seq_length", 128, "Window length (the model's fine-tuning length).")
flags.DEFINE_integer("threads", 2, "TensorFlow threads of the server and of the baseline.")
flags.DEFINE_float("seconds", 20.0, "Load time per concurrency level.")
flags.DEFINE_list("clients", ["1", "4", "16"], "Concurrency levels.")
flags.DEFINE_float("max_batch_wait_ms", 5.0, "serve.py --max_batch_wait_ms.")
flags.DEFINE_integer("max_batch_size", 64, "serve.py --max_batch_size.")
FLAGS = flags.FLAGS

LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment", "I-treatment"]


def read_notes(path, num):
  """The first `num` non-empty transcriptions of MTSamples, or invented notes when absent."""
  if path and os.path.exists(path):
    return bench_notes.read_mtsamples(path, num), "MTSamples (%s)" % os.path.basename(path)
  from tests import testutil  # pylint: disable=g-import-not-at-top
  words = [t for t in testutil.vocab_tokens() if t.isalpha() and len(t) > 2]
  rng = np.random.RandomState(0)
  return ([" ".join(rng.choice(words, size=400)) for _ in range(num)],
          "invented (no %s)" % path)


def write_model(directory):
  """A checkpoint directory as run_finetune.py leaves it (random weights, as Google's released)."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  config = testutil.tiny_config(hidden_size=FLAGS.hidden_size, num_hidden_layers=FLAGS.num_layers,
                                num_attention_heads=FLAGS.num_heads,
                                intermediate_size=FLAGS.intermediate_size,
                                max_position_embeddings=max(512, FLAGS.max_seq_length))
  testutil.write_model_dir(directory, labels=LABELS, max_seq_length=FLAGS.max_seq_length,
                           config=config, released=True)


def peak_rss_mib(pid):
  """VmHWM (peak resident set) of process `pid` in MiB."""
  with open("/proc/%d/status" % pid) as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def start_server(model_dir):
  """(Popen, port) of serve.py on a free loopback port, once it logs that it serves."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO, "serve.py"), "--model_dir=" + model_dir, "--port=0",
       "--num_threads=%d" % FLAGS.threads, "--max_batch_size=%d" % FLAGS.max_batch_size,
       "--max_batch_wait_ms=%g" % FLAGS.max_batch_wait_ms], env=env, stderr=subprocess.PIPE,
      stdout=subprocess.DEVNULL, text=True)
  for line in proc.stderr:
    found = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
    if found:
      # Keep draining its log (access lines) so the pipe never fills.
      threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
      return proc, int(found.group(1))
  raise RuntimeError("serve.py exited with %s before serving" % proc.wait())


def load(port, notes, clients, seconds):
  """Runs `clients` threads for `seconds`. Returns (latencies in s, errors, elapsed s)."""
  latencies, errors = [], [0]
  lock = threading.Lock()
  stop_at = time.perf_counter() + seconds
  bodies = [json.dumps({"text": t}).encode() for t in notes]

  def client(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    i = k
    mine = []
    while time.perf_counter() < stop_at:
      began = time.perf_counter()
      try:
        conn.request("POST", "/analyze", body=bodies[i % len(bodies)],
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
      except (OSError, http.client.HTTPException):
        ok = False
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
      if ok:
        mine.append(time.perf_counter() - began)
      else:
        with lock:
          errors[0] += 1
      i += clients
    conn.close()
    with lock:
      latencies.extend(mine)

  began = time.perf_counter()
  threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return latencies, errors[0], time.perf_counter() - began


def baselines(model, items):
  """(predict.py's batch throughput in notes/s, [one-note Predictor times in s]) on `items`."""
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  began = time.perf_counter()
  list(inference.Predictor(model).predict(items))
  rate = len(items) / (time.perf_counter() - began)
  single = []
  for item in items:
    began = time.perf_counter()
    list(inference.Predictor(model).predict([item]))
    single.append(time.perf_counter() - began)
  return rate, single


def main(argv):
  del argv
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  from absl import logging  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  notes, source = read_notes(FLAGS.notes_file, FLAGS.num_notes)
  root = tempfile.mkdtemp(prefix="serve_bench-")
  proc = None
  try:
    model_dir = os.path.join(root, "model")
    write_model(model_dir)
    proc, port = start_server(model_dir)

    # Baselines in this process while the server idles, before and after the load (the machine's
    # other load drifts; the mean of the two is compared).
    model = inference.load_model(model_dir, num_threads=FLAGS.threads)
    items = [readers.Note(str(i), t, "bench", "bench") for i, t in enumerate(notes)]
    list(inference.Predictor(model).predict(items[:4]))  # warm-up
    before_rate, single = baselines(model, items)

    words = sum(len(n.split()) for n in notes)
    print("model: %d layers, hidden %d, max_seq_length %d; %d threads; serve.py --max_batch_size"
          "=%d --max_batch_wait_ms=%g" % (FLAGS.num_layers, FLAGS.hidden_size,
                                          FLAGS.max_seq_length, FLAGS.threads,
                                          FLAGS.max_batch_size, FLAGS.max_batch_wait_ms))
    print("notes: %d from %s, %.0f words and %.0f characters on average" % (
        len(notes), source, words / len(notes), sum(map(len, notes)) / len(notes)))
    print("%7s %10s %9s %9s %9s %9s %7s %13s" % ("clients", "requests/s", "notes/s", "p50 ms",
                                                  "p95 ms", "p99 ms", "errors",
                                                  "server RSS MiB"))
    results = {}
    load(port, notes[:2], 1, 1.0)  # warm-up of the server's session
    for level in [int(c) for c in FLAGS.clients]:
      latencies, errors, elapsed = load(port, notes, level, FLAGS.seconds)
      rate = len(latencies) / elapsed
      p = [1000 * np.percentile(latencies, q) if latencies else float("nan")
           for q in (50, 95, 99)]
      results[level] = (rate, p, errors)
      print("%7d %10.1f %9.1f %9.1f %9.1f %9.1f %7d %13.0f" % (
          level, rate, rate, p[0], p[1], p[2], errors, peak_rss_mib(proc.pid)))
    after_rate, single_after = baselines(model, items)
    model.close()
    batch_rate = (before_rate + after_rate) / 2
    single += single_after
    print("predict.py batch path (Predictor, all notes): %.1f notes/s (%.1f before the load, %.1f "
          "after)" % (batch_rate, before_rate, after_rate))
    print("single-note model time (Predictor, one note): p50 %.1f ms, p99 %.1f ms" % (
        1000 * np.percentile(single, 50), 1000 * np.percentile(single, 99)))
    total_errors = sum(r[2] for r in results.values())
    print("errors: %d (target 0)" % total_errors)
    if 16 in results:
      print("16 clients: %.2fx predict.py's batch throughput (target >= 0.8x)" % (
          results[16][0] / batch_rate))
    if 1 in results:
      print("1 client: p99 %.1f ms = %.2fx the single-note p99 (target < 2x)" % (
          results[1][1][2], results[1][1][2] / (1000 * np.percentile(single, 99))))
  finally:
    if proc is not None:
      proc.terminate()
      proc.wait(60)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
