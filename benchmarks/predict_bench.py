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
"""

import os
import shutil
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_integer("hidden_size", 256, "Hidden size.")
flags.DEFINE_integer("num_layers", 4, "Transformer layers.")
flags.DEFINE_integer("num_heads", 4, "Attention heads.")
flags.DEFINE_integer("intermediate_size", 1024, "Feed-forward size.")
flags.DEFINE_integer("num_notes", 200, "Notes per round.")
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


def main(argv):
  del argv
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
    notes = make_notes(FLAGS.num_notes, FLAGS.words_per_note)
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


if __name__ == "__main__":
  app.run(main)
