#!/usr/bin/env python3
"""Imports a local HuggingFace BERT directory as a Google-format checkpoint (no torch needed).

  import_hf.py --hf_dir=Bio_ClinicalBERT --output_dir=clinicalbert_google

Reads config.json, model.safetensors (or a sharded index) and vocab.txt; writes bert_model.ckpt,
bert_config.json and vocab.txt (plus finetune_head.json for a classifier head), ready for
--init_checkpoint=<output_dir>/bert_model.ckpt. Prints the do_lower_case the model expects (from
tokenizer_config.json). See clinicalbert_tf/hf.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import hf

FLAGS = flags.FLAGS

flags.DEFINE_string("hf_dir", None,
                    "A local HuggingFace BERT model directory (config.json, model.safetensors, "
                    "vocab.txt). Nothing is downloaded.")
flags.DEFINE_string("output_dir", None,
                    "Where to write bert_model.ckpt, bert_config.json and vocab.txt.")


def main(argv):
  cli.require_flags(FLAGS, ("hf_dir", "output_dir"))
  summary = cli.config_from_flags(hf.import_hf_dir, FLAGS)
  print("wrote %s (%s, %d variables); use --do_lower_case=%s with it" % (
      summary["checkpoint"], summary["architecture"], summary["num_variables"],
      summary["do_lower_case"]))


if __name__ == "__main__":
  cli.run(main)
