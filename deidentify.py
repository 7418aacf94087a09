#!/usr/bin/env python3
"""De-identifies notes: PHI spans from a fine-tuned model (i2b2 2006 / 2014), pattern recognizers
and/or a spans file, each replaced by its label's operator.

  deidentify.py --model_dir=finetune/i2b2_2014 --input_file="notes/*.txt" --output_dir=deid/ \
    --replace=placeholder --output_file=deid/phi_spans.jsonl --min_phi_probability=0.3

  # A corpus for release: one patient one identity, dates shifted per patient.
  deidentify.py --model_dir=finetune/i2b2_2014 --input_file=NOTEEVENTS.csv.gz --output_dir=deid/ \
    --replace=DATE:shift,AGE:safe_harbor,default:surrogate --secret_file=$HOME/deid.key

Writes `<output_dir>/<id>.txt` per note with each PHI span replaced (`--replace`: placeholder
`[**TYPE**]`, tag, mask, redact, keep, surrogate, shift, hash, safe_harbor, per label), the
replacement items of every note (`deidentify_items.jsonl`: offsets in the output and the input,
never the text), the run summary (`deidentify_summary.json`: counts per label and operator,
notes, patients), and with --output_file the spans (offsets into the original note) as JSON lines.
Spans come from `--recognizers` (model,patterns by default; `patterns` alone needs no model) or
from `--spans_file`. See clinicalbert_tf/inference/deid.py and clinicalbert_tf/anonymize/.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf.inference import job

FLAGS = flags.FLAGS

job.define_flags(deidentify=True)


def main(argv):
  counts = job.run_from_flags(FLAGS, deidentify=True)
  summary = counts.get("summary") or {}
  print("de-identified %d notes (%d words, %d PHI spans, %d patients, %d replacements) in %.1fs; "
        "%d unreadable, %d already done" % (
            counts["notes"], counts["words"], counts["entities"], summary.get("patients", 0),
            summary.get("items", 0), counts["seconds"], counts["bad"], counts["skipped"]))


if __name__ == "__main__":
  cli.run(main)
