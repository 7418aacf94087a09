"""Pretraining throughput: our run_pretraining.py against Google's, with and without XLA.

  PYTHONPATH=. .venv/bin/python benchmarks/pretraining_bench.py [--quick] [--configs=small,base]
      [--no_xla] [--repeats=N] [--ours_env=NAME=VALUE,...]

For each model shape (`small`: 4 layers x 256 hidden, batch 32; `base`: BERT-Base 12 x 768 with a
small batch), both scripts train from scratch on the same records (sequence length 128, 20
predictions, vocabulary 30522) in separate processes, one after the other, with XLA off and on
(ours: `--use_xla`; Google's script has no such flag, so the child process that runs it sets the
same session option, `global_jit_level=ON_1`, on its RunConfig, with
`TF_XLA_FLAGS=--tf_xla_cpu_global_jit` as ours).

Timing: each script runs in a child process (`--child=google|ours`) that adds one timer hook to
`TPUEstimator.train` (neither script's code changes; ours subclasses TPUEstimator, so it gets the
same hook). The hook records every step's wall time and the process's CPU time (all threads). After
`--warmup_steps` steps, sequences/s = batch / median step wall time, and the fastest step is shown
too; CPU-ms per sequence comes from the median step's CPU time. On a shared machine wall time moves
with other people's load (a step that lost a core takes about twice as long); CPU time per step
hardly does, so the CPU ratio is the steadier comparison. `--repeats` alternates the order and keeps
the best of each. `--ours_env` sets environment variables in ours' process only (TF reads
TF_ENABLE_ONEDNN_OPTS, TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS there), to measure
process settings before a script adopts them. For a per-op view of one step, see
benchmarks/pretraining_profile.py.

Also prints the achieved FLOP/s (model FLOPs: 3 x the forward pass's matmul FLOPs) against a
float32 matmul peak measured in the same run. The GPU runs (`--use_amp --use_xla` at the largest
batch that fits) are part (a) of benchmarks/gpu_check.sh, which calls `run_one` with `gpu=True`.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

SEQ = 128
PRED = 20
VOCAB = 30522

# The scripts `--child=<name>` runs (besides "google": tests/run_google_pretraining.py).
CHILD_SCRIPTS = {"ours": "run_pretraining.py", "finetune": "run_finetune.py"}

CONFIGS = {
    "small": dict(layers=4, hidden=256, heads=4, intermediate=1024, batch=32, steps=30),
    "base": dict(layers=12, hidden=768, heads=12, intermediate=3072, batch=4, steps=12),
}


def bert_config(c):
  return {
      "vocab_size": VOCAB, "hidden_size": c["hidden"], "num_hidden_layers": c["layers"],
      "num_attention_heads": c["heads"], "intermediate_size": c["intermediate"],
      "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
  }


def train_flops_per_sequence(c):
  """Matmul FLOPs of one training sequence: 3 x forward (backward is about 2 x forward)."""
  s, h, i, l = SEQ, c["hidden"], c["intermediate"], c["layers"]
  per_layer = 8 * s * h * h + 4 * s * s * h + 4 * s * h * i  # projections, attention, FFN
  heads = PRED * (2 * h * h + 2 * h * VOCAB) + 2 * h * h + 2 * h * 2  # MLM, pooler, NSP
  return 3 * (l * per_layer + heads)


def matmul_peak(n=2048, seconds=3.0):
  """float32 FLOP/s of a large TF matmul (graph mode, all threads), best of several runs."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  with tf.Graph().as_default():
    a = tf.Variable(tf.random.normal([n, n]))
    b = tf.Variable(tf.random.normal([n, n]))
    # Chain a few products so one session.run is mostly matmul.
    x = a
    for _ in range(4):
      x = tf.matmul(x, b) * (1.0 / n)
    out = tf.reduce_sum(x)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(out)
      best = 0.0
      end = time.time() + seconds
      while time.time() < end:
        t = time.time()
        sess.run(out)
        best = max(best, 4 * 2.0 * n ** 3 / (time.time() - t))
  return best


def _child_main(impl, argv):
  """Runs one script (Google's or ours) with a step timer added to TPUEstimator.train.

  The timer records, for each training step, the wall time and the CPU time of the whole process
  (`time.process_time`, all threads), and prints them as one JSON line at the end. CPU seconds per
  step hardly change when another process takes a core, so they compare the two scripts fairly on
  a shared machine; wall time does not. Neither script's code is changed.
  """
  import json as _json  # pylint: disable=g-import-not-at-top,reimported
  import runpy  # pylint: disable=g-import-not-at-top
  if impl == "google":
    from tests import oracle  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top

  class StepTimer(tf.train.SessionRunHook):

    def __init__(self):
      self.wall, self.cpu = [], []

    def before_run(self, run_context):
      self._t = (time.perf_counter(), time.process_time())

    def after_run(self, run_context, run_values):
      self.wall.append(time.perf_counter() - self._t[0])
      self.cpu.append(time.process_time() - self._t[1])

    def end(self, session):
      print("BENCH_STEPS " + _json.dumps({"wall": self.wall, "cpu": self.cpu}), flush=True)

  original_train = tf.estimator.tpu.TPUEstimator.train

  def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
    hooks = list(hooks or []) + [StepTimer()]
    return original_train(self, input_fn, hooks=hooks, steps=steps, max_steps=max_steps,
                          saving_listeners=saving_listeners)

  tf.estimator.tpu.TPUEstimator.train = train

  if impl == "google" and os.environ.get("BENCH_GOOGLE_XLA") == "1":
    # What our --use_xla does, given to Google's script from outside: the session option
    # global_jit_level=ON_1 (TF_XLA_FLAGS has --tf_xla_cpu_global_jit). The process-wide
    # --tf_xla_auto_jit flag would instead also cluster the tf.data functions, and is slower.
    original_run_config = tf.estimator.tpu.RunConfig.__init__

    def run_config_init(self, *args, **kwargs):
      config = kwargs.get("session_config") or tf.ConfigProto(allow_soft_placement=True)
      config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
      kwargs["session_config"] = config
      original_run_config(self, *args, **kwargs)

    tf.estimator.tpu.RunConfig.__init__ = run_config_init
  sys.argv = [impl] + argv
  if impl == "google":
    runpy.run_module("tests.run_google_pretraining", run_name="__main__", alter_sys=True)
  else:
    runpy.run_path(os.path.join(REPO_ROOT, CHILD_SCRIPTS[impl]), run_name="__main__")


def child_env(gpu=False):
  """The environment of a `--child` process: this repository importable, no GPU unless `gpu`."""
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO_ROOT
  if not gpu:
    env["CUDA_VISIBLE_DEVICES"] = ""
  env["TF_CPP_MIN_LOG_LEVEL"] = "1"
  env.pop("TF_XLA_FLAGS", None)
  return env


def run_child(impl, flags, env, batch, warmup_steps, timeout):
  """Runs `--child=impl` with the script's `flags`; returns its step statistics.

  Returns:
    {"wall_seq_s": batch / median step wall time after `warmup_steps`, "fastest_seq_s",
     "cpu_s_per_seq": median step CPU time / batch, "run_wall": the child's wall seconds}.

  Raises:
    RuntimeError: the child failed (with the tail of its stderr) or timed too few steps.
  """
  cmd = [sys.executable, os.path.abspath(__file__), "--child=" + impl, "--"] + list(flags)
  t = time.time()
  proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=timeout)
  wall = time.time() - t
  if proc.returncode != 0:
    raise RuntimeError("%s failed:\n%s" % (impl, proc.stderr[-4000:]))
  found = re.findall(r"^BENCH_STEPS (.*)$", proc.stdout, flags=re.M)
  if not found:
    raise RuntimeError("%s: no step timings in its output" % impl)
  timings = json.loads(found[-1])
  step_wall = timings["wall"][warmup_steps:]
  step_cpu = timings["cpu"][warmup_steps:]
  if not step_wall:
    raise RuntimeError("%s: only %d steps timed" % (impl, len(timings["wall"])))
  return dict(wall_seq_s=batch / statistics.median(step_wall),
              fastest_seq_s=batch / min(step_wall),
              cpu_s_per_seq=statistics.median(step_cpu) / batch, run_wall=wall)


def run_one(impl, config_file, records, out_dir, c, use_xla, warmup_steps, timeout,
            use_amp=False, gpu=False, ours_env=None):
  """Trains c["steps"] steps; returns `run_child`'s step statistics.

  `use_amp` adds ours' --use_amp; `gpu` leaves the GPU visible (benchmarks/gpu_check.py);
  `ours_env` ({name: value}) is added to ours' environment only (`--ours_env`).
  """
  flags = ["--bert_config_file=" + config_file, "--input_file=" + records,
           "--output_dir=" + out_dir, "--do_train=True", "--max_seq_length=%d" % SEQ,
           "--max_predictions_per_seq=%d" % PRED, "--train_batch_size=%d" % c["batch"],
           "--num_train_steps=%d" % c["steps"], "--num_warmup_steps=2",
           "--save_checkpoints_steps=100000"]
  env = child_env(gpu)
  if impl == "google":
    if use_xla:
      env["TF_XLA_FLAGS"] = "--tf_xla_cpu_global_jit"
      env["BENCH_GOOGLE_XLA"] = "1"
  else:
    flags += ["--use_xla=%s" % use_xla] + (["--use_amp"] if use_amp else [])
    env.update(ours_env or {})
  shutil.rmtree(out_dir, ignore_errors=True)
  return run_child(impl, flags, env, c["batch"], warmup_steps, timeout)


def _better(a, b):
  """Keeps the better of two repeats: the faster median step and the lower CPU per sequence."""
  if a is None:
    return b
  return dict(wall_seq_s=max(a["wall_seq_s"], b["wall_seq_s"]),
              fastest_seq_s=max(a["fastest_seq_s"], b["fastest_seq_s"]),
              cpu_s_per_seq=min(a["cpu_s_per_seq"], b["cpu_s_per_seq"]),
              run_wall=b["run_wall"])


def main():
  if len(sys.argv) > 1 and sys.argv[1].startswith("--child="):
    # Internal: one timed training run (see _child_main); argv after "--" are the script's flags.
    _child_main(sys.argv[1].split("=", 1)[1], sys.argv[3:])
    return

  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--configs", default="small,base")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--warmup_steps", type=int, default=3)
  parser.add_argument("--no_xla", action="store_true", help="skip the XLA runs")
  parser.add_argument("--quick", action="store_true", help="fewer steps")
  parser.add_argument("--timeout", type=int, default=900)
  parser.add_argument("--json", help="also write the results here")
  parser.add_argument("--ours_env", default="",
                      help="NAME=VALUE,... added to ours' environment only, to measure process "
                      "settings (e.g. TF_ENABLE_ONEDNN_OPTS=1, TF_NUM_INTRAOP_THREADS=1)")
  args = parser.parse_args()
  ours_env = dict(kv.split("=", 1) for kv in args.ours_env.split(",") if kv)

  from tests import testutil  # pylint: disable=g-import-not-at-top

  tmp = tempfile.mkdtemp(prefix="pretraining_bench-")
  try:
    records = testutil.write_pretraining_records(os.path.join(tmp, "records.tfrecord"), 256, SEQ,
                                                 PRED, VOCAB)
    peak = matmul_peak()
    print("float32 matmul peak (2048^3 x 4 chained, graph mode, %d cores): %.1f GFLOP/s" %
          (os.cpu_count(), peak / 1e9))
    if ours_env:
      print("ours' environment adds: %s" % args.ours_env)
    print("per run: seq/s from the median step (wall) and the fastest step; CPU-ms per sequence "
          "from the median step's process CPU time (all threads)")
    results = []
    for name in args.configs.split(","):
      c = dict(CONFIGS[name])
      if args.quick:
        c["steps"] = max(args.warmup_steps + 4, c["steps"] // 2)
      config_file = testutil.write_config(os.path.join(tmp, name + "_config.json"), bert_config(c))
      flops = train_flops_per_sequence(c)
      for use_xla in ([False] if args.no_xla else [False, True]):
        best = {"google": None, "ours": None}
        for rep in range(args.repeats):
          order = ["google", "ours"] if (rep + use_xla) % 2 == 0 else ["ours", "google"]
          for impl in order:
            r = run_one(impl, config_file, records, os.path.join(tmp, "out"), c, use_xla,
                        args.warmup_steps, args.timeout, ours_env=ours_env)
            best[impl] = _better(best[impl], r)
        g, o = best["google"], best["ours"]
        row = dict(config=name, layers=c["layers"], hidden=c["hidden"], batch=c["batch"],
                   steps=c["steps"], xla=use_xla, google=g, ours=o,
                   wall_ratio=o["wall_seq_s"] / g["wall_seq_s"],
                   cpu_ratio=g["cpu_s_per_seq"] / o["cpu_s_per_seq"],
                   ours_gflops_median=o["wall_seq_s"] * flops / 1e9,
                   ours_gflops_fastest=o["fastest_seq_s"] * flops / 1e9,
                   google_gflops_fastest=g["fastest_seq_s"] * flops / 1e9)
        results.append(row)
        print("%-5s %2dx%-4d batch %-2d xla=%-5s | seq/s median step: google %6.2f ours %6.2f "
              "(%.2fx) | fastest step: google %6.2f ours %6.2f (%.2fx) | CPU-ms/seq: google %.0f "
              "ours %.0f (ours %.2fx less CPU) | ours %.0f-%.0f GFLOP/s = %.0f-%.0f%% of peak "
              "(Google's fastest %.0f GFLOP/s)" %
              (name, c["layers"], c["hidden"], c["batch"], use_xla, g["wall_seq_s"],
               o["wall_seq_s"], row["wall_ratio"], g["fastest_seq_s"], o["fastest_seq_s"],
               o["fastest_seq_s"] / g["fastest_seq_s"], 1e3 * g["cpu_s_per_seq"],
               1e3 * o["cpu_s_per_seq"], row["cpu_ratio"], row["ours_gflops_median"],
               row["ours_gflops_fastest"], 100 * row["ours_gflops_median"] * 1e9 / peak,
               100 * row["ours_gflops_fastest"] * 1e9 / peak, row["google_gflops_fastest"]))
        sys.stdout.flush()
    print()
    print("summary (ours / Google's; CPU ratio = Google's CPU-s per sequence / ours):")
    for name in args.configs.split(","):
      rows = {r["xla"]: r for r in results if r["config"] == name}
      line = "  %-5s no XLA: %.2fx wall (median step), %.2fx CPU" % (
          name, rows[False]["wall_ratio"], rows[False]["cpu_ratio"])
      if True in rows:
        line += ("; XLA: %.2fx wall, %.2fx CPU; XLA gain (CPU) ours %.2fx, Google's %.2fx" %
                 (rows[True]["wall_ratio"], rows[True]["cpu_ratio"],
                  rows[False]["ours"]["cpu_s_per_seq"] / rows[True]["ours"]["cpu_s_per_seq"],
                  rows[False]["google"]["cpu_s_per_seq"] / rows[True]["google"]["cpu_s_per_seq"]))
      print(line)
    print("GPU (--use_amp --use_xla): not run here; on a GPU machine: bash benchmarks/gpu_check.sh")
    if args.json:
      with open(args.json, "w", encoding="utf-8") as f:
        json.dump(dict(peak_flops=peak, results=results), f, indent=2)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
