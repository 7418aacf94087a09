#!/usr/bin/env python3
"""De-identifies notes with a fine-tuned PHI model (i2b2 2006 / 2014): every PHI span replaced.

  deidentify.py --model_dir=finetune/i2b2_2014 --input_file="notes/*.txt" --output_dir=deid/ \
    --replace=placeholder --output_file=deid/phi_spans.jsonl --min_phi_probability=0.3

Writes `<output_dir>/<id>.txt` per note: `[**TYPE**]` (MIMIC-III style, --replace=placeholder),
`<TYPE>` (tag), the span's length of --mask_char (mask) or a realistic surrogate (surrogate:
clinicalbert_tf/surrogates.py, consistent within the note, seeded by --random_seed and the note's
id, in --surrogate_locale) in place of each predicted PHI span, and with --output_file the spans
(offsets into the original note) as JSON lines. See clinicalbert_tf/inference/.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf.inference import job

FLAGS = flags.FLAGS

job.define_flags(deidentify=True)


def main(argv):
  counts = job.run_from_flags(FLAGS, deidentify=True)
  print("de-identified %d notes (%d words, %d PHI spans) in %.1fs; %d unreadable, %d already "
        "done" % (counts["notes"], counts["words"], counts["entities"], counts["seconds"],
                  counts["bad"], counts["skipped"]))


if __name__ == "__main__":
  cli.run(main)
