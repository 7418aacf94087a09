"""De-identification throughput: per-patient keyed surrogates vs placeholders, the same notes.

deidentify.py's path (`inference/deid.py`: the model's spans and the pattern recognizers', merged,
then `step.note_outputs` with an `anonymize.Anonymizer`) over invented notes that hold dates, phone
numbers, e-mail addresses, MRNs and ZIP codes (the patterns find them) among vocabulary words (the
model, a token classifier with i2b2 2014 labels initialised as Google's released checkpoints are,
labels many of them PATIENT, DATE or PHONE). Ten notes a patient; modes:

  placeholder   `--replace=placeholder` (today's default)
  surrogate     `--replace=DATE:shift,default:surrogate --secret_file=...` (one identity per
                patient, dates shifted per patient)

The model is loaded once and not timed; each round runs both modes back to back, so a change in
the load of a shared machine hits both alike. Prints the median notes/s of each, the median of the
rounds' ratios surrogate / placeholder (target >= 0.9: surrogates must not dominate the cost), and
the anonymizer's own notes/s per mode (the spans computed once).

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/deidentify_bench.py [--threads=2]
"""

import os
import random
import shutil
import statistics
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_integer("hidden_size", 256, "Hidden size.")
flags.DEFINE_integer("num_layers", 4, "Transformer layers.")
flags.DEFINE_integer("num_notes", 100, "Notes per round (ten per patient).")
flags.DEFINE_integer("words_per_note", 60, "Vocabulary words per note, besides the PHI.")
flags.DEFINE_integer("max_seq_length", 128, "Window length.")
flags.DEFINE_integer("batch_size", 16, "Windows per batch.")
flags.DEFINE_integer("threads", 2, "TensorFlow threads.")
flags.DEFINE_integer("rounds", 3, "Rounds, alternating the modes.")
FLAGS = flags.FLAGS

LABELS = ["O", "B-PATIENT", "I-PATIENT", "B-DATE", "I-DATE", "B-PHONE", "I-PHONE"]
MODES = (("placeholder", "placeholder"), ("surrogate", "DATE:shift,default:surrogate"))


def write_model(directory):
  """A PHI model directory as run_finetune.py leaves it (weights as Google's released ones)."""
  from tests import testutil  # pylint: disable=g-import-not-at-top
  config = testutil.tiny_config(hidden_size=FLAGS.hidden_size, num_hidden_layers=FLAGS.num_layers,
                                num_attention_heads=4, intermediate_size=4 * FLAGS.hidden_size,
                                max_position_embeddings=max(512, FLAGS.max_seq_length))
  testutil.write_model_dir(directory, labels=LABELS, max_seq_length=FLAGS.max_seq_length,
                           config=config, released=True)


def invented_notes(vocab_words, rng):
  from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
  notes = []
  for n in range(FLAGS.num_notes):
    words = [rng.choice(vocab_words) for _ in range(FLAGS.words_per_note)]
    phi = ["on %d/%d/20%02d" % (rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 24)),
           "call (617) 555-%04d" % rng.randint(0, 9999), "MRN: %07d" % rng.randint(0, 10 ** 7),
           "mail pt%d@example.org" % rng.randint(0, 999), "Boston, MA 02%03d" % rng.randint(0, 999),
           "seen %s %d, 2019" % (rng.choice(("March", "April", "May")), rng.randint(1, 28))]
    for item in phi:
      words.insert(rng.randint(0, len(words)), item)
    notes.append(readers.Note("note%d" % n, " ".join(words) + "\n", "bench", "bench",
                              patient=str(n // 10)))
  return notes


def main(unused_argv):
  from clinicalbert_tf import inference  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import deid  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
  directory = tempfile.mkdtemp(prefix="deidentify_bench-")
  try:
    write_model(directory)
    secret_file = os.path.join(directory, "key")
    with open(secret_file, "w") as f:
      f.write("an invented benchmark key, 32 bytes long")
    with open(os.path.join(directory, "vocab.txt")) as f:
      vocab = [w.strip() for w in f if w.strip().isalpha()]
    notes = invented_notes(vocab, random.Random(1))
    model = inference.load_model(directory, num_threads=FLAGS.threads)
    types = deid.model_types(model.label_list)
    anonymizers, options = {}, {}
    for name, replace in MODES:
      options[name] = job.JobOptions(input_file="-", replace=replace, secret_file=secret_file)
      anonymizers[name] = deid.make_anonymizer(options[name], types)

    def run(name):
      predictor = inference.Predictor(model, FLAGS.batch_size)
      start = time.perf_counter()
      found = []
      for note, spans in deid.note_spans(iter(notes), options[name], predictor):
        step.note_outputs(note, spans, anonymizers[name])
        found.append((note, spans))
      return len(notes) / (time.perf_counter() - start), found

    run("placeholder")  # warm-up (graph, caches, Faker)
    rates = {name: [] for name, _ in MODES}
    for _ in range(FLAGS.rounds):
      for name, _ in MODES:
        rate, found = run(name)
        rates[name].append(rate)
    spans = sum(len(s) for _, s in found)
    alone = {}
    for name, _ in MODES:  # the anonymizer alone, on the spans found
      start = time.perf_counter()
      for note, note_spans in found:
        anonymizers[name].anonymize(note.text, note_spans, note.id, note.patient)
      alone[name] = len(found) / (time.perf_counter() - start)
    model.close()
    median = {name: statistics.median(r) for name, r in rates.items()}
    print("deidentify_bench: %d notes (%d PHI spans, %d patients), %d layers x %d hidden, "
          "%d threads, median of %d rounds" % (len(notes), spans, len(notes) // 10,
                                              FLAGS.num_layers, FLAGS.hidden_size, FLAGS.threads,
                                              FLAGS.rounds))
    for name, _ in MODES:
      print("  %-12s %7.1f notes/s (model + anonymizer); anonymizer alone %8.1f notes/s" % (
          name, median[name], alone[name]))
    ratios = sorted(s / p for s, p in zip(rates["surrogate"], rates["placeholder"]))
    print("  surrogate / placeholder = %.2f, median of the rounds' ratios (range %.2f-%.2f; "
          "target >= 0.9)" % (statistics.median(ratios), ratios[0], ratios[-1]))
  finally:
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
