"""Per-op CPU time of one pretraining step, ours against Google's run_pretraining.py model_fn.

  PYTHONPATH=. .venv/bin/python benchmarks/pretraining_profile.py [--impl=ours|google|both]
      [--config=small|base] [--steps=3] [--top=25] [--threads=intra,inter]

Builds each script's training graph (its own `model_fn`, TRAIN mode, so Google's optimizer and
ours) on fed random batches of the shape `pretraining_bench.py` uses, runs a few warm-up steps, then
traces `--steps` steps with `RunOptions(trace_level=FULL_TRACE)` and sums each op's time from the
step stats (`all_end_rel_micros`: an op's wall time, all its intra-op threads together). Prints the
time per step grouped by op type and by where in the model (embeddings, attention, FFN, layer
norm, heads, gradients, optimizer), and the process CPU time per step of untraced runs
(`--steps=0`: only that). Traced times are each op's wall time: ops that run side by side
(inter-op parallelism) each count their full duration, so `--threads=1,1` gives the cleanest
split of the work.
"""

import argparse
import collections
import os
import re
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
# A site package is also called `benchmarks`, so the bench module is imported from its folder.
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import pretraining_bench  # pylint: disable=g-import-not-at-top,wrong-import-position


def _features(c, rng):
  import numpy as np  # pylint: disable=g-import-not-at-top
  b, s, p = c["batch"], pretraining_bench.SEQ, pretraining_bench.PRED
  input_mask = np.ones((b, s), np.int32)
  input_mask[:, s - 16:] = 0  # some padding, as real records have
  return {
      "input_ids": rng.randint(5, pretraining_bench.VOCAB, (b, s)).astype(np.int32),
      "input_mask": input_mask,
      "segment_ids": np.concatenate([np.zeros((b, s // 2)), np.ones((b, s // 2))], 1).astype(
          np.int32),
      "masked_lm_positions": np.tile(np.arange(1, 1 + 5 * p, 5), (b, 1)).astype(np.int32),
      "masked_lm_ids": rng.randint(5, pretraining_bench.VOCAB, (b, p)).astype(np.int32),
      "masked_lm_weights": np.ones((b, p), np.float32),
      "next_sentence_labels": rng.randint(0, 2, (b, 1)).astype(np.int32),
  }


def _region(name):
  """Where in the model an op belongs, from its name."""
  grad = "gradients" in name.split("/")[0] or name.startswith("gradients")
  if re.search(r"adam|AdamWeightDecay|clip_by_global_norm|global_norm|/Assign|^Assign|"
               r"PolynomialDecay|ApplyAdam|^mul_\d|^add_\d|^sub_\d|^truediv|^Sqrt|^Square", name):
    if not grad:
      return "optimizer"
  where = "other"
  if "word_embeddings" in name or "/embeddings/" in name or "embeddings" in name:
    where = "embeddings"
  if "LayerNorm" in name or "moments" in name or "batchnorm" in name:
    where = "layer_norm"
  elif "/attention/self" in name:
    where = "attention"
  elif "/attention/output" in name:
    where = "attention_output"
  elif "/intermediate/" in name:
    where = "ffn_intermediate"
  elif re.search(r"layer_\d+/output/", name):
    where = "ffn_output"
  elif "cls/predictions" in name:
    where = "mlm_head"
  elif "cls/seq_relationship" in name:
    where = "nsp_head"
  elif "pooler" in name:
    where = "pooler"
  return ("grad:" if grad else "fwd:") + where


def profile(impl, c, steps, top, threads):
  """Builds, warms up and traces `impl`'s training step; prints the tables."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if impl == "google":
    from tests import oracle  # pylint: disable=g-import-not-at-top,unused-import
    from bert import run_pretraining as google_rp  # pylint: disable=g-import-not-at-top
    from bert import modeling as google_modeling  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import pretraining  # pylint: disable=g-import-not-at-top

  config_dict = pretraining_bench.bert_config(c)
  rng = np.random.RandomState(0)
  data = _features(c, rng)
  with tf.Graph().as_default():
    tf.set_random_seed(1)
    features = {k: tf.placeholder(tf.as_dtype(v.dtype), v.shape, name=k) for k, v in data.items()}
    if impl == "google":
      fn = google_rp.model_fn_builder(google_modeling.BertConfig.from_dict(config_dict), None,
                                      1e-4, 1000, 10, False, False)
    else:
      fn = pretraining.model_fn_builder(modeling.BertConfig.from_dict(config_dict), None, 1e-4,
                                        1000, 10, False, False)
    spec = fn(features, None, tf.estimator.ModeKeys.TRAIN, {"batch_size": c["batch"]})
    train_op, loss = spec.train_op, spec.loss
    feed = {features[k]: v for k, v in data.items()}
    config = tf.ConfigProto(allow_soft_placement=True)
    if threads:
      config.intra_op_parallelism_threads = threads[0]
      config.inter_op_parallelism_threads = threads[1]
    with tf.Session(config=config) as sess:
      sess.run(tf.global_variables_initializer())
      for _ in range(3):
        sess.run(train_op, feed)
      cpu, wall = [], []
      for _ in range(5):
        t = (time.process_time(), time.perf_counter())
        sess.run(train_op, feed)
        cpu.append(time.process_time() - t[0])
        wall.append(time.perf_counter() - t[1])
      by_type = collections.Counter()
      by_region = collections.Counter()
      by_region_type = collections.Counter()
      count_type = collections.Counter()
      for _ in range(steps):
        meta = tf.RunMetadata()
        sess.run(train_op, feed, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                 run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
          if "cpu" not in dev.device.lower() or "stream" in dev.device.lower():
            continue
          for node in dev.node_stats:
            name = node.node_name
            if name in ("_SOURCE", "_SINK"):
              continue
            op = node.timeline_label.split("(")[0].split("=")[-1].strip() or "?"
            m = re.search(r"= (\w+)\(", node.timeline_label)
            op = m.group(1) if m else node.timeline_label.split(":")[-1].strip()
            us = node.all_end_rel_micros
            by_type[op] += us
            count_type[op] += 1
            region = _region(name)
            by_region[region] += us
            by_region_type[(region, op)] += us
  if not steps:
    print("== %s %s threads %s: untraced step median CPU %.1f ms, wall %.1f ms (CPU/seq %.1f ms)" % (
        impl, c["name"], threads or "default", 1e3 * sorted(cpu)[len(cpu) // 2],
        1e3 * sorted(wall)[len(wall) // 2], 1e3 * sorted(cpu)[len(cpu) // 2] / c["batch"]))
    return
  total = sum(by_type.values()) / steps / 1e3
  print("== %s %s: untraced step median CPU %.1f ms, wall %.1f ms (CPU/seq %.1f ms); traced op "
        "time %.1f ms/step, %d op runs/step" % (
            impl, c["name"], 1e3 * sorted(cpu)[len(cpu) // 2], 1e3 * sorted(wall)[len(wall) // 2],
            1e3 * sorted(cpu)[len(cpu) // 2] / c["batch"], total,
            sum(count_type.values()) // steps))
  print("-- by op type (ms/step, count/step)")
  for op, us in by_type.most_common(top):
    print("  %-32s %8.2f  %5d" % (op, us / steps / 1e3, count_type[op] // steps))
  print("-- by region (ms/step)")
  for region, us in sorted(by_region.items(), key=lambda kv: -kv[1]):
    print("  %-24s %8.2f" % (region, us / steps / 1e3))
  print("-- top (region, op type)")
  for (region, op), us in by_region_type.most_common(top):
    print("  %-24s %-28s %8.2f" % (region, op, us / steps / 1e3))
  sys.stdout.flush()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--impl", default="both")
  parser.add_argument("--config", default="small")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--threads", default="", help="intra,inter (default: TF's)")
  args = parser.parse_args()
  c = dict(pretraining_bench.CONFIGS[args.config], name=args.config)
  threads = tuple(int(x) for x in args.threads.split(",")) if args.threads else None
  if args.impl == "both":
    # Separate processes: Google's import installs its stand-ins and absl flags.
    import subprocess  # pylint: disable=g-import-not-at-top
    for impl in ("google", "ours"):
      subprocess.run([sys.executable, os.path.abspath(__file__), "--impl=" + impl,
                      "--config=" + args.config, "--steps=%d" % args.steps,
                      "--top=%d" % args.top, "--threads=" + args.threads], check=True)
    return
  profile(args.impl, c, args.steps, args.top, threads)


if __name__ == "__main__":
  main()
