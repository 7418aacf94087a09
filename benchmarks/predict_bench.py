"""Prediction throughput on raw notes: predict.py's path vs transformers' token-classification
pipeline, on the same exported model, the same notes, CPU, the same number of threads.

A BERT with a token-classification head (7 labels, as i2b2 2010), initialised as Google's
released checkpoints are (so its labels vary from word to word and spans are many), is written as a
checkpoint directory (as run_finetune.py leaves it) and exported with `hf.export_checkpoint` to a
HuggingFace directory. Invented notes (one line each, whitespace-separated words of the vocabulary,
so both sides see the same words) go through:

  ours          `inference.load_model` + `inference.Predictor` (what predict.py runs), model loaded;
  transformers  `pipeline("token-classification", aggregation_strategy="first", batch_size=16)`.

Model loading is not timed; rounds alternate the two (median reported), so a change in the load of
a shared machine hits both alike. Prints notes/s of each, the ratio ours / transformers (target
>= 1.5) and how often the two agree on a note's spans (start, end, label).

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/predict_bench.py [--threads=2]

`--notes=real` measures real notes (the first 300 MTSamples transcriptions from
../shared/data/mtsamples/ by default, `--notes_path` for another MTSamples CSV or a folder of .txt
notes) with a fine-tuned model (`--model_dir`; by default a 6-layer, 384-wide BERT with random
weights and a 30,522-entry WordPiece vocabulary trained on the notes themselves):

  ours          the whole predict.py path, default windows, and with each `--window_contexts` value
                (its spans compared with the default's);
  pipelines     transformers' pipeline("token-classification", aggregation_strategy="first",
                stride=S) at the model's max_seq_length (tokenizer.model_max_length), for each
                `--strides` value, on PyTorch and on ONNX Runtime (optimum's
                ORTModelForTokenClassification, the model exported by optimum); ONNX Runtime gets
                --threads intra-op threads and PyTorch one thread while it runs;
  model call    sequences/s of 512 of our windows x max_seq_length, batch --batch_size: our
                TensorFlow session (every position, as the SavedModel; and at the positions
                predict.py reads) vs an ONNX Runtime session on the same ONNX file;
  --int8        ONNX Runtime's dynamic int8 quantization of that file: its model-call speed and
                how many of float32's entities the int8 pipeline finds.

Rounds alternate every contestant; medians are reported with the range.

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/predict_bench.py --notes=real \
      [--model_dir=DIR] [--notes_path=PATH] [--num_notes=300] [--rounds=3]
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_integer("hidden_size", 256, "Hidden size.")
flags.DEFINE_integer("num_layers", 4, "Transformer layers.")
flags.DEFINE_integer("num_heads", 4, "Attention heads.")
flags.DEFINE_integer("intermediate_size", 1024, "Feed-forward size.")
flags.DEFINE_enum("notes", "invented", ["invented", "real"],
                  "invented: short one-line notes of the test vocabulary; real: --notes_path.")
flags.DEFINE_string("notes_path", None,
                    "--notes=real: an MTSamples CSV (.csv/.csv.gz) or a folder of .txt notes "
                    "(default: ../shared/data/mtsamples/mtsamples.csv.gz).")
flags.DEFINE_string("model_dir", None,
                    "--notes=real: a fine-tuned token-classification model directory "
                    "(run_finetune.py's output_dir); default: a random 6-layer, 384-wide BERT "
                    "with a vocabulary trained on the notes.")
flags.DEFINE_list("strides", ["16", "64"], "--notes=real: the pipelines' stride values.")
flags.DEFINE_list("pipelines", ["onnxruntime", "pytorch"],
                  "--notes=real: the pipelines' backends (onnxruntime, pytorch).")
flags.DEFINE_list("window_contexts", ["16"],
                  "--notes=real: also run ours with these --window_context values.")
flags.DEFINE_bool("int8", True, "--notes=real: also measure ONNX Runtime's dynamic int8.")
flags.DEFINE_bool("bf16", True, "--notes=real: also run ours with --use_bf16 (alone and with each "
                  "--window_contexts value).")
flags.DEFINE_integer("num_notes", None, "Notes per round (default 200 invented, 300 real).")
flags.DEFINE_integer("words_per_note", 60, "Words per note (one line).")
flags.DEFINE_integer("max_seq_length", 128, "Window length (the model's fine-tuning length).")
flags.DEFINE_integer("batch_size", 16, "Batch size of both.")
flags.DEFINE_integer("threads", 2, "CPU threads of both (TF intra/inter op, torch).")
flags.DEFINE_integer("rounds", 3, "Rounds, alternating the two implementations.")
FLAGS = flags.FLAGS

LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment", "I-treatment"]


def write_model(directory):
  """A checkpoint directory (bert_config.json, vocab.txt, finetune_head.json, checkpoint)."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  config = testutil.tiny_config(hidden_size=FLAGS.hidden_size,
                                num_hidden_layers=FLAGS.num_layers,
                                num_attention_heads=FLAGS.num_heads,
                                intermediate_size=FLAGS.intermediate_size,
                                max_position_embeddings=max(512, FLAGS.max_seq_length))
  testutil.write_model_dir(directory, labels=LABELS, max_seq_length=FLAGS.max_seq_length,
                           config=config, released=True)


def make_notes(num, words_per_note, seed=0):
  """`num` one-line notes of words of the tiny test vocabulary, about `words_per_note` each."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  words = [t for t in testutil.vocab_tokens() if t.isalpha() and len(t) > 2 and t.islower()]
  rng = np.random.RandomState(seed)
  return [" ".join(rng.choice(words, size=rng.randint(words_per_note // 2, words_per_note + 1)))
          for _ in range(num)]


def run_ours(model, notes, batch_size=None):
  """predict.py's path over `notes`: (seconds, spans per note); batch_size default --batch_size."""
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  items = [inference.readers.Note(str(i), t, "bench", "bench") for i, t in enumerate(notes)]
  start = time.perf_counter()
  predictor = inference.Predictor(model, batch_size or FLAGS.batch_size)
  out = [[(s.start, s.end, s.label) for s in spans] for _, spans in predictor.predict(items)]
  return time.perf_counter() - start, out


def run_hf(pipe, notes):
  start = time.perf_counter()
  results = pipe(notes, batch_size=FLAGS.batch_size)
  out = [[(int(e["start"]), int(e["end"]), e["entity_group"]) for e in r] for r in results]
  return time.perf_counter() - start, out


def main_invented():
  """Short invented notes: ours vs transformers' pipeline (PyTorch), notes/s and agreement."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import hf  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  torch.set_num_threads(FLAGS.threads)
  root = tempfile.mkdtemp(prefix="predict_bench-")
  try:
    model_dir = os.path.join(root, "model")
    os.makedirs(model_dir)
    write_model(model_dir)
    hf_dir = os.path.join(root, "hf")
    hf.export_checkpoint(os.path.join(model_dir, "bert_config.json"), model_dir,
                         os.path.join(model_dir, "vocab.txt"), True, hf_dir,
                         head="token_classification", labels=LABELS)
    model = inference.load_model(model_dir, num_threads=FLAGS.threads)
    pipe = transformers.pipeline("token-classification", model=hf_dir, tokenizer=hf_dir,
                                 aggregation_strategy="first", device=-1)
    notes = make_notes(FLAGS.num_notes or 200, FLAGS.words_per_note)
    run_ours(model, notes[:20])  # warm-up (first session runs, allocation)
    run_hf(pipe, notes[:20])
    ours_times, hf_times = [], []
    for _ in range(FLAGS.rounds):
      t, ours = run_ours(model, notes)
      ours_times.append(t)
      t, theirs = run_hf(pipe, notes)
      hf_times.append(t)
    agree = sum(a == b for a, b in zip(ours, theirs))
    words = sum(len(n.split()) for n in notes)
    ours_rate = len(notes) / statistics.median(ours_times)
    hf_rate = len(notes) / statistics.median(hf_times)
    print("model: %d layers, hidden %d; %d notes of ~%d words (%d words), batch %d, %d threads" % (
        FLAGS.num_layers, FLAGS.hidden_size, len(notes), FLAGS.words_per_note, words,
        FLAGS.batch_size, FLAGS.threads))
    print("ours (predict.py path):          %8.1f notes/s  %9.0f words/s" % (
        ours_rate, ours_rate * words / len(notes)))
    print("transformers pipeline (first):   %8.1f notes/s  %9.0f words/s" % (
        hf_rate, hf_rate * words / len(notes)))
    print("ratio ours / transformers: %.2fx (target >= 1.5x)" % (ours_rate / hf_rate))
    print("notes with identical spans: %d of %d (%.1f%%); entities: ours %d, transformers %d" % (
        agree, len(notes), 100.0 * agree / len(notes), sum(map(len, ours)),
        sum(map(len, theirs))))
    model.close()
  finally:
    shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# --notes=real
# ---------------------------------------------------------------------------------------------

# The default model of --notes=real when no --model_dir is given (MiniLM's shape).
REAL_CONFIG = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536, max_position_embeddings=512)


def write_real_model(directory, notes):
  """A model directory with random (released-style) weights and a vocabulary trained on `notes`."""
  import tokenizers  # pylint: disable=g-import-not-at-top  (test-only, with transformers)
  from tests import testutil  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import checkpoints  # pylint: disable=g-import-not-at-top
  os.makedirs(directory)
  trainer = tokenizers.BertWordPieceTokenizer(lowercase=True)
  trainer.train_from_iterator(notes, vocab_size=30522, show_progress=False)
  trainer.save_model(directory)  # vocab.txt
  with open(os.path.join(directory, "vocab.txt"), encoding="utf-8") as f:
    vocab_size = sum(1 for _ in f)
  config = testutil.tiny_config(vocab_size=vocab_size, **REAL_CONFIG)
  testutil.write_config(directory, config)
  testutil.write_checkpoint(os.path.join(directory, "model.ckpt-1"), config,
                            heads="token_classification", num_labels=len(LABELS), released=True)
  with open(os.path.join(directory, checkpoints.HEAD_RECORD_FILE), "w") as f:
    json.dump({"head": "token_classification", "labels": LABELS, "do_lower_case": True,
               "max_seq_length": FLAGS.max_seq_length, "task_name": "i2b2_2010"}, f)


def _median(values):
  return "%.1f (%.1f-%.1f)" % (statistics.median(values), min(values), max(values))


def _spans_of(pipeline_output):
  return [set((int(e["start"]), int(e["end"]), e["entity_group"]) for e in r)
          for r in pipeline_output]


def _agreement(reference, other):
  """'found F of R (P%), notes identical N' : `other`'s agreement with `reference` (span sets)."""
  same = sum(len(a & b) for a, b in zip(reference, other))
  total = sum(map(len, reference))
  identical = sum(a == b for a, b in zip(reference, other))
  return "%d of %d entities (%.1f%%), %d of %d notes identical" % (
      same, total, 100.0 * same / max(1, total), identical, len(reference))


def _ort_options(threads):
  """ONNX Runtime session options: `threads` intra-op threads, one inter-op."""
  import onnxruntime  # pylint: disable=g-import-not-at-top  (test-only)
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = threads
  options.inter_op_num_threads = 1
  return options


def _ort_session(path, threads):
  import onnxruntime  # pylint: disable=g-import-not-at-top  (test-only)
  return onnxruntime.InferenceSession(path, _ort_options(threads),
                                      providers=["CPUExecutionProvider"])


def raw_model_call(model, windows, ort_sessions, rounds, bf16=None):
  """{name: [sequences/s per round]}: `windows` (features) through our session and ORT's
  (and our --use_bf16 session `bf16`)."""
  from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
  batch = FLAGS.batch_size
  arrays = {k: np.array([getattr(f, k) for f in windows], dtype=np.int32)
            for k in model_lib.SERVING_INPUTS}

  def ours_of(m):
    fetch = m.outputs["probabilities"]
    return lambda begin: m.session.run(
        fetch, {m.inputs[k]: v[begin:begin + batch] for k, v in arrays.items()})

  def ort(session):
    names = {"input_ids": "input_ids", "attention_mask": "input_mask",
             "token_type_ids": "segment_ids"}
    wanted = [i.name for i in session.get_inputs()]
    as64 = {n: arrays[names[n]].astype(np.int64) for n in wanted}
    return lambda begin: session.run(None, {n: v[begin:begin + batch] for n, v in as64.items()})

  def at_positions(begin):  # predict.py's call: the rows it reads (`LoadedModel.probabilities`)
    model.probabilities(windows[begin:begin + batch], batch)

  runners = [("ours (TensorFlow session)", ours_of(model))] + [
      (name, ort(session)) for name, session in ort_sessions]
  if model.output_positions is not None:
    runners.append(("ours at the positions read (predict.py)", at_positions))
  if bf16 is not None:
    runners.append(("ours --use_bf16", ours_of(bf16)))
  rates = {name: [] for name, _ in runners}
  for _, run in runners:  # warm-up
    run(0)
  for _ in range(rounds):
    for name, run in runners:
      start = time.perf_counter()
      for begin in range(0, len(windows), batch):
        run(begin)
      rates[name].append(len(windows) / (time.perf_counter() - start))
  return rates


def main_real():
  """Real notes: ours vs transformers' pipeline with stride on PyTorch and ONNX Runtime."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from optimum.exporters.onnx import main_export  # pylint: disable=g-import-not-at-top
  from optimum.onnxruntime import ORTModelForTokenClassification  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import hf  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import bench_notes  # pylint: disable=g-import-not-at-top  (benchmarks/)
  logging.set_verbosity(logging.WARNING)
  transformers.logging.set_verbosity_error()
  path = FLAGS.notes_path or bench_notes.default_mtsamples()
  if not path or not os.path.exists(path):
    raise SystemExit("--notes=real: no notes (give --notes_path: an MTSamples CSV or a folder of "
                     ".txt notes)")
  notes, described = bench_notes.read_notes(path, FLAGS.num_notes or 300)
  threads = FLAGS.threads
  root = tempfile.mkdtemp(prefix="predict_bench-")
  try:
    model_dir = FLAGS.model_dir
    if not model_dir:
      model_dir = os.path.join(root, "model")
      write_real_model(model_dir, notes)
    model = inference.load_model(model_dir, num_threads=threads)
    bf16 = inference.load_model(model_dir, num_threads=threads, use_bf16=True) if FLAGS.bf16 else None
    length = model.max_seq_length
    hf_dir, onnx_dir = os.path.join(root, "hf"), os.path.join(root, "onnx")
    hf.export_checkpoint(model.files.bert_config_file, model.files.checkpoint,
                         model.files.vocab_file, bool(model.record.do_lower_case), hf_dir,
                         head="token_classification", labels=model.label_list)
    main_export(hf_dir, onnx_dir, task="token-classification")
    onnx_files = [("onnxruntime", "model.onnx")]
    if FLAGS.int8:
      from onnxruntime import quantization  # pylint: disable=g-import-not-at-top
      quantization.quantize_dynamic(os.path.join(onnx_dir, "model.onnx"),
                                    os.path.join(onnx_dir, "model_int8.onnx"),
                                    weight_type=quantization.QuantType.QInt8)
      onnx_files.append(("onnxruntime int8", "model_int8.onnx"))
    # The pipeline's windows: the model's fine-tuning length, as ours.
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir, model_max_length=length)
    items = [inference.readers.Note(str(i), t, "bench", "bench") for i, t in enumerate(notes)]

    def run_ours(context, use_bf16=False):
      predictor = inference.Predictor(bf16 if use_bf16 else model, FLAGS.batch_size,
                                      window_context=context)
      start = time.perf_counter()
      out = [set((s.start, s.end, s.label) for s in spans)
             for _, spans in predictor.predict(items)]
      return time.perf_counter() - start, out

    def make_pipeline(backend, stride, file_name="model.onnx"):
      if backend == "pytorch":
        hf_model = transformers.AutoModelForTokenClassification.from_pretrained(hf_dir)
      else:
        hf_model = ORTModelForTokenClassification.from_pretrained(
            onnx_dir, file_name=file_name, session_options=_ort_options(threads))
      pipe = transformers.pipeline("token-classification", model=hf_model, tokenizer=tokenizer,
                                   aggregation_strategy="first", stride=stride)

      def run():
        # PyTorch's own threads would compete with ONNX Runtime's: one while ORT runs.
        torch.set_num_threads(threads if backend == "pytorch" else 1)
        start = time.perf_counter()
        out = _spans_of(pipe(notes, batch_size=FLAGS.batch_size))
        return time.perf_counter() - start, out
      return run

    contestants = [("ours (predict.py)", lambda: run_ours(None))]
    contestants += [("ours --window_context=%s" % c, lambda c=c: run_ours(int(c)))
                    for c in FLAGS.window_contexts]
    if FLAGS.bf16:
      contestants.append(("ours --use_bf16", lambda: run_ours(None, True)))
      contestants += [("ours --use_bf16 --window_context=%s" % c,
                       lambda c=c: run_ours(int(c), True)) for c in FLAGS.window_contexts]
    for backend in FLAGS.pipelines:
      for stride in FLAGS.strides:
        contestants.append(("pipeline %s stride=%s" % (backend, stride),
                            make_pipeline(backend, int(stride))))
    if FLAGS.int8 and "16" in FLAGS.strides:
      contestants.append(("pipeline onnxruntime int8 stride=16",
                          make_pipeline("onnxruntime", 16, "model_int8.onnx")))
    times = {name: [] for name, _ in contestants}
    spans = {}
    for _ in range(FLAGS.rounds):
      for name, run in contestants:
        seconds, spans[name] = run()
        times[name].append(seconds)
    pieces = sum(len(model.tokenizer.tokenize(t)) for t in notes)
    words = sum(len(t.split()) for t in notes)
    with open(model.files.bert_config_file, encoding="utf-8") as f:
      config = json.load(f)
    print("notes: %s: %d notes, %d words, %d word pieces; model: %s (%d layers, hidden %d), "
          "max_seq_length %d, batch %d, %d threads, %d rounds (median, range)" % (
              described, len(notes), words, pieces, FLAGS.model_dir or "random weights",
              config["num_hidden_layers"], config["hidden_size"], length, FLAGS.batch_size,
              threads, FLAGS.rounds))
    ours_name = contestants[0][0]
    ours_median = statistics.median(times[ours_name])
    print("%-40s %22s %9s  %s" % ("whole process", "wall s", "ours/this", "of predict.py's entities, "
                                  "this finds"))
    for name, _ in contestants:
      median = statistics.median(times[name])
      print("%-40s %22s %8.2fx  %s" % (name, _median(times[name]), median / ours_median,
                                       _agreement(spans[ours_name], spans[name])))
    if FLAGS.int8 and "16" in FLAGS.strides and "onnxruntime" in FLAGS.pipelines:
      print("int8 vs float32 (both the ONNX Runtime pipeline, stride 16): " + _agreement(
          spans["pipeline onnxruntime stride=16"], spans["pipeline onnxruntime int8 stride=16"]))
    # The model call alone: windows of the real notes, full length first.
    examples = model.head.prediction_examples(
        [s for t in notes for block in inference.text.note_sentences(t, model.word_rules)
         for s in block])
    windows = model.head.convert_examples(examples, length, model.tokenizer)
    windows = sorted(windows, key=lambda f: -sum(f.input_mask))[:512]
    sessions = [(name, _ort_session(os.path.join(onnx_dir, f), threads)) for name, f in onnx_files]
    rates = raw_model_call(model, windows, sessions, FLAGS.rounds, bf16)
    ours_rate = statistics.median(rates["ours (TensorFlow session)"])
    print("model call: %d windows x %d, batch %d   sequences/s, and ours (float32) / this" % (
        len(windows), length, FLAGS.batch_size))
    for name, values in rates.items():
      print("  %-38s %22s  %.2fx" % (name, _median(values), ours_rate / statistics.median(values)))
    model.close()
    if bf16 is not None:
      bf16.close()
  finally:
    shutil.rmtree(root, ignore_errors=True)


def main(argv):
  del argv
  if FLAGS.notes == "real":
    if not FLAGS["batch_size"].present:
      FLAGS.batch_size = 32  # predict.py's --predict_batch_size
    main_real()
  else:
    main_invented()


if __name__ == "__main__":
  app.run(main)
