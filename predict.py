#!/usr/bin/env python3
"""Runs a fine-tuned model over raw notes: entity spans with character offsets, or NLI labels.

  predict.py --model_dir=finetune/i2b2_2010 --input_file="notes/*.txt" --output_file=spans.jsonl
  predict.py --model_dir=finetune/i2b2_2014 --input_file=NOTEEVENTS.csv.gz \
    --output_format=i2b2_2014 --output_dir=xml/
  predict.py --model_dir=finetune/mednli --input_file=pairs.jsonl --output_file=labels.jsonl

One JSON line per note, `{"id": ..., "entities": [{"start", "end", "label", "score"}]}`, offsets
into the note as given (end exclusive), no note text unless --include_text. Notes are split into
words by the rules the model's task used in training. See clinicalbert_tf/inference/.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf.inference import job

FLAGS = flags.FLAGS

job.define_flags(deidentify=False)


def main(argv):
  counts = job.run_from_flags(FLAGS, deidentify=False)
  print("predicted %d notes (%d words, %d entities) in %.1fs; %d unreadable, %d already done" % (
      counts["notes"], counts["words"], counts["entities"], counts["seconds"], counts["bad"],
      counts["skipped"]))


if __name__ == "__main__":
  cli.run(main)
