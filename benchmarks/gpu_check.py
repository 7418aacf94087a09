"""The measurements of benchmarks/gpu_check.sh, one per call, so that the shell can time each out.

  python benchmarks/gpu_check.py info     --workdir=W
  python benchmarks/gpu_check.py prepare  --mode=gpu|smoke --workdir=W --timeout=S --name=prepare
  python benchmarks/gpu_check.py pretrain --impl=google|ours|ours_amp_xla ...
  python benchmarks/gpu_check.py finetune [--amp_xla] ...
  python benchmarks/gpu_check.py predict ...
  python benchmarks/gpu_check.py table --mode=... --workdir=W

`prepare` writes random-initialised, generated inputs only (a vocabulary, a BERT config, pretraining
records, an i2b2 2010 IOB training file); nothing is downloaded. Each measurement writes its result
as `W/results/<name>.json`; `table` prints them all (and the statuses the shell wrote for parts that
failed or timed out in `W/status/`).

  pretrain  (a) pretraining_bench.run_one: Google's run_pretraining.py (bert-tensorflow 1.0.4) or
            ours, in a child process with the step timer hook; sequences/s from the median step
            after the warm-up steps. The batch is the first of the mode's list that trains without
            running out of GPU memory; ours start from the batch Google's got.
  finetune  (b) run_finetune.py --do_train on the generated i2b2 2010 IOB file, through the same
            child timer hook (`--child=finetune`); examples/s from the median step.
  predict   (c) predict.py's path (predict_bench.run_ours: inference.load_model + Predictor) with
            the model dir that (b)'s float32 run_finetune.py left, on generated one-line notes;
            model loading and a warm-up pass are not timed.

Modes: `gpu` (BERT-Base, sequence length 128; see MODES) and `smoke` (a tiny model for a couple of
steps on CPU, to exercise the same code: not a measurement).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, BENCH_DIR)

import pretraining_bench  # pylint: disable=g-import-not-at-top,wrong-import-position

BASE = {k: v for k, v in pretraining_bench.CONFIGS["base"].items() if k not in ("batch", "steps")}

MODES = {
    "gpu": dict(
        label="BERT-Base (12 x 768)", model=BASE, vocab_size=pretraining_bench.VOCAB,
        records=256, pretrain_batches=(128, 96, 64, 48, 32), pretrain_steps=30,
        pretrain_warmup=10, finetune_batch=32, finetune_steps=40, finetune_warmup=10,
        notes=2000, predict_batch=64, rounds=2),
    "smoke": dict(
        label="tiny (1 x 32)", model=dict(layers=1, hidden=32, heads=2, intermediate=64),
        vocab_size=200, records=32, pretrain_batches=(8, 4), pretrain_steps=3, pretrain_warmup=1,
        finetune_batch=4, finetune_steps=3, finetune_warmup=1, notes=24, predict_batch=8,
        rounds=1),
}

SEQ = pretraining_bench.SEQ
PRED = pretraining_bench.PRED
WORDS_PER_NOTE = 60
ENTITY_TYPES = ("problem", "test", "treatment")  # i2b2 2010's

# What TF and XLA say when GPU memory runs out (lower case; "Dst tensor is not initialized" is a
# host-to-GPU copy that found no memory).
OOM_MARKERS = ("resourceexhaustederror", "resource_exhausted", "oom when allocating",
               "out of memory", "dst tensor is not initialized")

PRETRAIN_IMPLS = {  # --impl: (script in the child, --use_xla, --use_amp, title)
    "google": ("google", False, False, "Google's run_pretraining.py, float32"),
    "ours": ("ours", False, False, "ours run_pretraining.py, float32"),
    "ours_amp_xla": ("ours", True, True, "ours --use_amp --use_xla"),
}
TARGET = 2.5  # ours --use_amp --use_xla / Google's float32, sequences/s

# A flag no script defines: GPU_CHECK_FAIL=<part> gives it to that part's script, which then fails
# as it would on any bad command line (for the tests of the failure path).
FORCED_FAILURE_FLAG = "--gpu_check_forced_failure=1"


class CheckError(Exception):
  """A measurement failed; the message is one line for the report."""


def write_result(workdir, name, result):
  from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
  fileio.write_json_atomic(os.path.join(workdir, "results", name + ".json"), result)


def read_result(workdir, name):
  path = os.path.join(workdir, "results", name + ".json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def vocab_tokens(size):
  """The test vocabulary (its words make predict_bench's notes) then `w00000`... up to `size`."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  tokens = testutil.vocab_tokens()
  return tokens + ["w%05d" % i for i in range(size - len(tokens))]


def training_words(size):
  """Whole-word tokens of the vocabulary: each is one word piece."""
  return [t for t in vocab_tokens(size) if t.isalnum() and len(t) > 2]


def iob_sentences(num, words, max_words, seed=0):
  """`num` sentences of (word, IOB2 label): random words, entities of 1-3 words on about 30%."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  words = np.array(words)  # once: choice() would convert a list on every call
  for _ in range(num):
    n = rng.randint(max_words // 2, max_words + 1)
    labels, i = [], 0
    while i < n:
      if rng.rand() < 0.15:
        kind = ENTITY_TYPES[rng.randint(len(ENTITY_TYPES))]
        length = min(n - i, rng.randint(1, 4))
        labels += ["B-" + kind] + ["I-" + kind] * (length - 1)
        i += length
      else:
        labels.append("O")
        i += 1
    yield list(zip(rng.choice(words, size=n), labels))


def prepare(args, m):
  """The generated inputs: vocab.txt, bert_config.json, records, finetune/train.tsv."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
  w = args.workdir
  info(args)  # TensorFlow is imported anyway: saves the shell a process of its own (smoke run)
  fileio.write_text_atomic(os.path.join(w, "vocab.txt"),
                           "\n".join(vocab_tokens(m["vocab_size"])) + "\n")
  config = pretraining_bench.bert_config(m["model"])
  config["vocab_size"] = m["vocab_size"]
  testutil.write_config(os.path.join(w, "bert_config.json"), config)
  testutil.write_pretraining_records(os.path.join(w, "records.tfrecord"), m["records"], SEQ, PRED,
                                     m["vocab_size"])
  # One window per sentence ([CLS] + words + [SEP]); num_train_epochs=1 gives finetune_steps.
  lines = []
  words = training_words(m["vocab_size"])
  for sentence in iob_sentences(m["finetune_batch"] * m["finetune_steps"], words, SEQ - 2):
    lines += ["%s %s" % pair for pair in sentence] + [""]
  os.makedirs(os.path.join(w, "finetune_data"), exist_ok=True)
  fileio.write_text_atomic(os.path.join(w, "finetune_data", "train.tsv"), "\n".join(lines))
  print("prepared: %s config, vocabulary of %d, %d pretraining records, %d fine-tuning sentences"
        % (m["label"], m["vocab_size"], m["records"], m["finetune_batch"] * m["finetune_steps"]))


def is_oom(error):
  """Whether a failed run's message says that GPU memory ran out."""
  text = str(error).lower()
  return any(marker in text for marker in OOM_MARKERS)


def first_batch_that_fits(measure, batches):
  """Calls `measure(batch)` for each batch in turn until one does not run out of GPU memory.

  Returns:
    (batch, measure's result, [batches that ran out of memory]).

  Raises:
    CheckError: every batch ran out of memory, or a run failed for another reason.
  """
  oom = []
  for batch in batches:
    try:
      return batch, measure(batch), oom
    except RuntimeError as e:
      if not is_oom(e):
        raise CheckError("batch %d: %s" % (batch, str(e).strip()[-2000:])) from None
      print("batch %d: out of GPU memory, trying a smaller one" % batch, flush=True)
      oom.append(batch)
  raise CheckError("out of GPU memory at every batch of %s" % ",".join(map(str, batches)))


def pretrain(args, m):
  """(a): one implementation's sequences/s at the largest batch of the list that fits."""
  child, use_xla, use_amp, title = PRETRAIN_IMPLS[args.impl]
  w = args.workdir
  batches = list(m["pretrain_batches"])
  google = read_result(w, "pretrain_google") if args.impl != "google" else None
  if google:  # the same batch as Google's, unless it does not fit
    batches = [b for b in batches if b <= google["batch"]]
  deadline = time.time() + args.timeout - 5
  out_dir = os.path.join(w, "pretrain_out")
  config_file = os.path.join(w, "bert_config.json")
  records = os.path.join(w, "records.tfrecord")

  def measure(batch):
    c = dict(m["model"], batch=batch, steps=m["pretrain_steps"])
    left = deadline - time.time()
    if left < 10:
      raise CheckError("no time left for batch %d" % batch)
    try:
      if args.force_failure:
        return run_forced_failure(child, batch, m, left)
      return pretraining_bench.run_one(child, config_file, records, out_dir, c, use_xla,
                                       m["pretrain_warmup"], left, use_amp=use_amp,
                                       gpu=args.mode == "gpu")
    except subprocess.TimeoutExpired:
      raise CheckError("batch %d: timed out after %.0fs" % (batch, left)) from None
    finally:
      shutil.rmtree(out_dir, ignore_errors=True)  # BERT-Base checkpoints are 1.3 GB

  batch, r, oom = first_batch_that_fits(measure, batches)
  write_result(w, args.name, dict(title=title, batch=batch, oom=oom, rate=r["wall_seq_s"],
                                  fastest=r["fastest_seq_s"], steps=m["pretrain_steps"],
                                  warmup=m["pretrain_warmup"], run_wall=r["run_wall"]))
  print("%s: batch %d, %.1f sequences/s" % (title, batch, r["wall_seq_s"]))


def run_forced_failure(child, batch, m, timeout):
  """The child script with a flag it does not define (GPU_CHECK_FAIL): it fails, as it should."""
  flags = ["--train_batch_size=%d" % batch, FORCED_FAILURE_FLAG]
  return pretraining_bench.run_child(child, flags, pretraining_bench.child_env(), batch,
                                     m["pretrain_warmup"], timeout)


def finetune(args, m):
  """(b): run_finetune.py's training examples/s, float32 or --use_amp --use_xla."""
  w = args.workdir
  batch = m["finetune_batch"]
  out_dir = os.path.join(w, "finetune_" + ("amp_xla" if args.amp_xla else "float32"))
  flags = ["--task_name=i2b2_2010", "--data_dir=" + os.path.join(w, "finetune_data"),
           "--bert_config_file=" + os.path.join(w, "bert_config.json"),
           "--vocab_file=" + os.path.join(w, "vocab.txt"), "--output_dir=" + out_dir,
           "--do_train", "--max_seq_length=%d" % SEQ, "--train_batch_size=%d" % batch,
           "--num_train_epochs=1", "--save_checkpoints_steps=1000000",
           "--log_every_n_steps=1000000"]
  if args.amp_xla:
    flags += ["--use_amp", "--use_xla"]
  if args.force_failure:
    flags.append(FORCED_FAILURE_FLAG)
  try:
    r = pretraining_bench.run_child("finetune", flags,
                                    pretraining_bench.child_env(gpu=args.mode == "gpu"), batch,
                                    m["finetune_warmup"], args.timeout - 5)
  except RuntimeError as e:
    raise CheckError(str(e).strip()[-2000:]) from None
  except subprocess.TimeoutExpired:
    raise CheckError("timed out after %.0fs" % (args.timeout - 5)) from None
  finally:
    if args.amp_xla:  # (c) reads only the float32 model
      shutil.rmtree(out_dir, ignore_errors=True)
  title = "--use_amp --use_xla" if args.amp_xla else "float32"
  write_result(w, args.name, dict(title=title, batch=batch, rate=r["wall_seq_s"],
                                  fastest=r["fastest_seq_s"], steps=m["finetune_steps"],
                                  warmup=m["finetune_warmup"], run_wall=r["run_wall"]))
  print("fine-tuning %s: batch %d, %.1f examples/s" % (title, batch, r["wall_seq_s"]))


def predict(args, m):
  """(c): notes/s of predict.py's path with (b)'s float32 model directory."""
  if args.mode != "gpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  from absl import logging  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  import predict_bench  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  model_dir = os.path.join(args.workdir, "finetune_float32")
  if args.force_failure:
    model_dir = os.path.join(args.workdir, "no_such_model")
  if not os.path.exists(os.path.join(model_dir, "finetune_head.json")):
    raise CheckError("no fine-tuned model in %s (written by the finetune part)" % model_dir)
  model = inference.load_model(model_dir)
  notes = predict_bench.make_notes(m["notes"], WORDS_PER_NOTE)
  predict_bench.run_ours(model, notes[:max(8, m["notes"] // 20)], m["predict_batch"])  # warm-up
  times = [predict_bench.run_ours(model, notes, m["predict_batch"])[0] for _ in range(m["rounds"])]
  model.close()
  words = sum(len(n.split()) for n in notes)
  seconds = statistics.median(times)
  write_result(args.workdir, args.name, dict(
      title="predict.py path", batch=m["predict_batch"], notes=len(notes), words=words,
      rate=len(notes) / seconds, words_rate=words / seconds))
  print("predict: %d notes, %.1f notes/s" % (len(notes), len(notes) / seconds))


def info(args):
  """TensorFlow's version and the GPUs it sees: W/info.txt (for the table), W/tf_gpus.txt."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  described = []
  for gpu in gpus:
    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability")
    described.append("%s (%s%s)" % (gpu.name, details.get("device_name", "?"),
                                    ", compute capability %d.%d" % capability
                                    if capability else ""))
  lines = ["TensorFlow %s (built with CUDA: %s) sees %d GPU(s)%s" % (
      tf.__version__, tf.test.is_built_with_cuda(), len(gpus),
      ": " + "; ".join(described) if described else "")]
  if importlib.util.find_spec("bert") is None:
    lines.append("Google's BERT (bert-tensorflow 1.0.4, package `bert`) is not installed: part "
                 "(a) needs it")
  from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
  fileio.write_text_atomic(os.path.join(args.workdir, "info.txt"), "\n".join(lines) + "\n")
  fileio.write_text_atomic(os.path.join(args.workdir, "tf_gpus.txt"), "TF_GPUS=%d\n" % len(gpus))
  print("\n".join(lines))


def _status(workdir, name):
  path = os.path.join(workdir, "status", name)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return f.read().strip()
  return "not run"


def table(args, m):
  """Prints (a)-(d) from the results and statuses in the work folder."""
  w = args.workdir
  smoke = args.mode == "smoke"
  mark = " (CPU smoke run, not a measurement)" if smoke else ""
  print()
  print("== GPU check results%s ==" % mark)
  for name in ("gpu.txt", "info.txt"):
    path = os.path.join(w, name)
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
          print("(d) " + line)
  print("(a) pretraining, %s, seq %d, %d predictions: sequences/s, median step after %d warm-up "
        "steps of %d%s" % (m["label"], SEQ, PRED, m["pretrain_warmup"], m["pretrain_steps"], mark))
  if not smoke:
    print("    float32 = TensorFlow's default for both scripts (TF32 matmuls on Ampere and newer "
          "GPUs)")
  google = read_result(w, "pretrain_google")
  for impl, (_, _, _, title) in PRETRAIN_IMPLS.items():
    r = read_result(w, "pretrain_" + impl)
    if r is None:
      print("    %-38s %s" % (title, _status(w, "pretrain_" + impl)))
      continue
    line = "    %-38s batch %3d  %9.1f seq/s" % (title, r["batch"], r["rate"])
    if r["oom"]:
      line += "  (out of memory at batch %s)" % ",".join(map(str, r["oom"]))
    if impl != "google" and google:
      ratio = r["rate"] / google["rate"]
      line += "  %.2fx Google's" % ratio
      if impl == "ours_amp_xla":
        line += (" (target on a GPU: >= %.1fx)" % TARGET if smoke else
                 " (target >= %.1fx: %s)" % (TARGET, "met" if ratio >= TARGET else "NOT met"))
        if r["batch"] != google["batch"]:
          line += "; batch differs from Google's %d" % google["batch"]
    print(line)
  print("(b) fine-tuning run_finetune.py, i2b2 2010 token classification (generated), %s, seq %d: "
        "examples/s, median step after %d warm-up steps of %d%s" % (
            m["label"], SEQ, m["finetune_warmup"], m["finetune_steps"], mark))
  base = read_result(w, "finetune")
  for name in ("finetune", "finetune_amp_xla"):
    r = read_result(w, name)
    title = "--use_amp --use_xla" if name.endswith("amp_xla") else "float32"
    if r is None:
      print("    %-38s %s" % (title, _status(w, name)))
      continue
    line = "    %-38s batch %3d  %9.1f examples/s" % (title, r["batch"], r["rate"])
    if name != "finetune" and base:
      line += "  %.2fx float32" % (r["rate"] / base["rate"])
    print(line)
  print("(c) predict.py path (inference.load_model + Predictor), (b)'s float32 model, generated "
        "one-line notes of ~%d words%s" % (WORDS_PER_NOTE, mark))
  r = read_result(w, "predict")
  if r is None:
    print("    %-38s %s" % ("notes/s", _status(w, "predict")))
  else:
    print("    %-38s batch %3d  %9.1f notes/s  (%.0f words/s, %d notes)" % (
        "predict", r["batch"], r["rate"], r["words_rate"], r["notes"]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("part", choices=["info", "prepare", "pretrain", "finetune", "predict",
                                       "table"])
  parser.add_argument("--mode", choices=sorted(MODES), default="gpu")
  parser.add_argument("--workdir")
  parser.add_argument("--name", help="the result's name (the shell's part name)")
  parser.add_argument("--timeout", type=float, default=600,
                      help="seconds this part may take (the shell's `timeout` is the backstop)")
  parser.add_argument("--impl", choices=sorted(PRETRAIN_IMPLS), default="google")
  parser.add_argument("--amp_xla", action="store_true", help="finetune with --use_amp --use_xla")
  parser.add_argument("--force_failure", action="store_true",
                      help="make this part's script fail (GPU_CHECK_FAIL; for tests)")
  args = parser.parse_args()
  if not args.workdir:
    parser.error("--workdir is required")
  if args.part == "info":
    info(args)
    return
  args.name = args.name or args.part
  m = MODES[args.mode]
  try:
    {"prepare": prepare, "pretrain": pretrain, "finetune": finetune, "predict": predict,
     "table": table}[args.part](args, m)
  except CheckError as e:
    sys.exit("gpu_check: %s: %s" % (args.name, e))


if __name__ == "__main__":
  main()
