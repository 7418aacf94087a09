#!/usr/bin/env python3
"""Exports a fine-tuned model directory as a versioned SavedModel for TF Serving.

  export_savedmodel.py --model_dir=finetune/i2b2_2010 --export_dir=serving/i2b2_2010

Writes `<export_dir>/<version>/` (next free number unless --export_version) with a
`serving_default` signature (input_ids, input_mask, segment_ids -> probabilities, label_ids) and the
vocabulary and head record as assets; `predict.py --model_dir=<export_dir>` reads it. See
clinicalbert_tf/savedmodel.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import savedmodel

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None,
                    "The fine-tuned model directory (checkpoint, bert_config.json, vocab.txt, "
                    "finetune_head.json).")
flags.DEFINE_string("export_dir", None, "The SavedModel base directory (versions inside).")
flags.DEFINE_integer("export_version", None, "The version number (default: the next free one).")
flags.DEFINE_string("bert_config_file", None, "Default: the one in --model_dir.")
flags.DEFINE_string("vocab_file", None, "Default: the one in --model_dir.")
flags.DEFINE_string("init_checkpoint", None, "Default: the latest checkpoint in --model_dir.")


def main(argv):
  cli.require_flags(FLAGS, ("model_dir", "export_dir"))
  path = cli.config_from_flags(savedmodel.export, FLAGS, version=FLAGS.export_version)
  print("wrote %s" % path)


if __name__ == "__main__":
  cli.run(main)
