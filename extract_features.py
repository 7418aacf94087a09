#!/usr/bin/env python3
"""Extracts per-token contextual embeddings from a BERT checkpoint (Google's extract_features).

  extract_features.py --input_file=input.txt --output_file=features.jsonl \
    --bert_config_file=bert_config.json --init_checkpoint=model.ckpt-1000 --vocab_file=vocab.txt \
    --layers=-1,-2,-3,-4 --max_seq_length=128 --do_lower_case=False

One example per input line (`text_a ||| text_b` for a pair); one JSON line per example with, for
each word piece, the values of the chosen encoder layers, in Google's format. See
clinicalbert_tf/features.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import features

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None, "Text, one example per line (`a ||| b` for a pair).")
flags.DEFINE_string("output_file", None, "JSON lines to write, one per input line.")
flags.DEFINE_string("layers", "-1,-2,-3,-4", "Comma list of encoder layer indexes (-1 = last).")
flags.DEFINE_string("bert_config_file", None, "The bert_config.json of the model.")
flags.DEFINE_integer("max_seq_length", 128,
                     "Word pieces per example including [CLS]/[SEP]; longer inputs are truncated.")
flags.DEFINE_string("init_checkpoint", None, "Checkpoint prefix (or a directory: its latest).")
flags.DEFINE_string("vocab_file", None, "The vocab.txt of the model.")
flags.DEFINE_bool("do_lower_case", True,
                  "Lower-case the input (Google's default; pass False for cased models such as "
                  "the clinical ones).")
flags.DEFINE_integer("batch_size", 32, "Batch size for predictions.")
flags.DEFINE_bool("use_one_hot_embeddings", False, "One-hot embedding lookup (TPU only benefits).")


def main(argv):
  cli.require_flags(FLAGS, ("input_file", "output_file", "bert_config_file", "init_checkpoint",
                            "vocab_file"))
  # Every argument is the flag of its name.
  cli.config_from_flags(features.extract_features, FLAGS)


if __name__ == "__main__":
  cli.run(main)
