"""Formats MIMIC-III NOTEEVENTS into one-sentence-per-line pretraining text.

Example:
  python format_notes.py --input_file=NOTEEVENTS.csv.gz --output_dir=sentences \\
      --all_notes_file=sentences/all_notes.txt --num_workers=2

Writes `<output_dir>/<category>.txt` per category (`discharge_summary.txt`, `nursing_other.txt`, ...)
with a `.json` sidecar each. `--phi=surrogate` replaces MIMIC's placeholders by realistic,
consistent surrogates first (`clinicalbert_tf/surrogates.py`), for a "Surrogate ClinicalBERT":

  python format_notes.py --input_file=NOTEEVENTS.csv.gz --output_dir=surrogate_sentences \\
      --phi=surrogate --random_seed=12345 --num_workers=8

With `--secret_file` the surrogates are keyed by each note's patient (SUBJECT_ID): one patient, one
set of surrogates and one date shift across all their notes.

`--heldout_fraction=0.05` holds out 5% of the patients (by SUBJECT_ID, seeded by `--random_seed`):
all their notes go to `<category>.heldout.txt` next to `<category>.txt` instead, for a held-out
pretraining evaluation (`create_pretraining_data.py`, then `run_pretraining.py --eval_input_file`).

The section and sentence rules are listed in `clinicalbert_tf/notes/sections.py` and
`clinicalbert_tf/notes/sentences.py`, the handling of rows in `clinicalbert_tf/notes/noteevents.py`
and `clinicalbert_tf/notes/pipeline.py`.
"""

import sys

from absl import flags

from clinicalbert_tf import anonymize
from clinicalbert_tf import cli
from clinicalbert_tf import engines
from clinicalbert_tf import surrogates
from clinicalbert_tf.notes import noteevents
from clinicalbert_tf.notes import pipeline
from clinicalbert_tf.notes import sentences

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None,
                    "MIMIC-III NOTEEVENTS.csv, or .csv.gz (detected from its bytes); upper- or "
                    "lower-case header.")
flags.DEFINE_string("output_dir", None,
                    "Directory for one <category>.txt per category (ClinicalBERT names).")
flags.DEFINE_list("categories", [],
                  "CATEGORY values to keep, comma-separated (case-insensitive; file-name form such "
                  "as discharge_summary also works). Empty: all categories.")
flags.DEFINE_string("all_notes_file", None, "If set, also write all kept notes to this one file.")
flags.DEFINE_bool("category_files", True, "Write the per-category files into --output_dir.")
flags.DEFINE_string("spacy_model", sentences.RULES_MODEL,
                    "'rules': spaCy blank English + scispaCy's combined_rule_tokenizer + "
                    "sentencizer (no download). Otherwise a spaCy model name or path, e.g. "
                    "en_core_sci_md, loaded with the tagger and NER disabled.")
flags.DEFINE_integer("num_workers", 1,
                     "Processes formatting notes. The output bytes do not depend on it.")
flags.DEFINE_integer("max_bad_rows", pipeline.DEFAULT_MAX_BAD_ROWS,
                     "Stop with an error when more rows than this cannot be parsed; -1: no limit.")
flags.DEFINE_float("progress_seconds", 30.0, "Seconds between progress log lines.")
# The name this script had before every script used --progress_seconds; it still works.
flags.DEFINE_alias("progress_every_s", "progress_seconds")
flags.DEFINE_enum("phi", "keep", surrogates.PHI_MODES,
                  "keep: de-identification placeholders ([**...**]) stay as they are. surrogate: "
                  "each is replaced by a realistic value of its category (Faker), consistent "
                  "within a note, dates shifted into the present keeping their intervals.")
surrogates.define_flags("--phi=surrogate")
flags.DEFINE_string("secret_file", None,
                    "With --phi=surrogate: a file holding a secret key (keep it private; never "
                    "logged or written). Each note's surrogates are then keyed by its patient "
                    "(SUBJECT_ID) with HMAC: the same placeholder of one patient becomes the same "
                    "surrogate in all the patient's notes, and all the patient's dates move by one "
                    "keyed shift. A note without an integer SUBJECT_ID is then a bad row.")
flags.DEFINE_float("heldout_fraction", 0.0,
                   "Share of patients to hold out, at least 0 and below 1; 0: no split (today's "
                   "outputs). Patient SUBJECT_ID is held out when the first 8 bytes of "
                   "SHA-256('<random_seed>:<SUBJECT_ID>') over 2**64 are below this, so the split "
                   "depends only on --random_seed and the id (not on --num_workers or row order). "
                   "Every note of a held-out patient goes to <category>.heldout.txt (and "
                   "<all_notes_file stem>.heldout<ext>) instead, written beside every training "
                   "file (possibly empty); no patient is on both sides. A note without an integer "
                   "SUBJECT_ID cannot be placed, so it is a bad row (logged by ROW_ID and line, "
                   "in neither file, counted against --max_bad_rows); a file without a SUBJECT_ID "
                   "column is an error. The log and sidecars give notes and patients per side.")

# --engine=spark: rows are read here (the same reader and bad-row rules), chunks of notes are
# formatted on the executors, and the files are written here: the bytes of --engine=local.
engines.define_flags()


def main(argv):
  cli.require_flags(FLAGS, ("input_file",))
  if FLAGS.spacy_model == sentences.RULES_MODEL and "torch" not in sys.modules:
    # spaCy's thinc imports torch whenever it is installed (the test oracles put it in .venv): about
    # 200 MB per process, and seconds of start-up, for a pipeline that never uses it. Pool workers
    # inherit this. A model named by --spacy_model may need torch, so it is left alone then.
    sys.modules["torch"] = None
  runner_factory = None
  if FLAGS.engine == "spark":
    from clinicalbert_tf.engines import spark  # pylint: disable=g-import-not-at-top
    runner_factory = spark.format_notes_runner(spark.get_session(FLAGS.spark_master))
  # Every parameter is the flag of its name, but the source, the progress interval, the secret
  # (read from --secret_file) and the Spark runner.
  cli.config_from_flags(pipeline.format_notes, FLAGS,
                        source=noteevents.NoteEventsSource(FLAGS.input_file),
                        progress_every_s=FLAGS.progress_seconds,
                        secret=(anonymize.read_secret_file(FLAGS.secret_file)
                                if FLAGS.secret_file else None),
                        runner_factory=runner_factory)


if __name__ == "__main__":
  cli.run(main, uses_tensorflow=False)
