#!/usr/bin/env python3
"""Builds a WordPiece vocabulary (vocab.txt) from pretraining text.

  build_vocab.py --input_file=sentences/*.txt --output_file=vocab.txt --vocab_size=28996

Words are split with Google's basic tokenization (cased unless --do_lower_case), then word pieces are
learnt with tensorflow-text's WordPiece learner. Google's special tokens come first ([PAD], optional
[unusedN], [UNK], [CLS], [SEP], [MASK]). The same input gives the same file. A sidecar
`<output_file>.json` records the flags and counts. See clinicalbert_tf/vocab.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf import vocab

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None,
                    "Input text (one sentence per line, blank line between documents): a file, a glob "
                    "or a comma list of them.")
flags.DEFINE_string("output_file", None, "The vocabulary to write (one token per line).")
flags.DEFINE_integer("vocab_size", 28996,
                     "Largest vocabulary size, special tokens included (28996 = BERT-Base cased). A "
                     "small corpus can give fewer tokens.")
flags.DEFINE_bool("do_lower_case", False,
                  "Lower-case and strip accents before learning (False: a cased vocabulary, as the "
                  "clinical models use).")
flags.DEFINE_integer("num_unused_tokens", 0,
                     "How many [unusedN] placeholder tokens to reserve (the first 99 go before [UNK], "
                     "as in Google's vocabularies).")
flags.DEFINE_integer("lower_thresh", 10,
                     "Lowest count a word piece needs to be kept (single characters always are); "
                     "lower it for tiny corpora.")
flags.DEFINE_integer("upper_thresh", 10000000, "Highest count threshold the learner's search tries.")
flags.DEFINE_integer("num_iterations", 4, "Refinement passes of the learner per threshold.")
flags.DEFINE_integer("max_input_words", 5000000,
                     "Learn from at most this many of the most frequent words (-1: all).")
flags.DEFINE_integer("max_token_length", 50, "Words longer than this are not learnt from.")
flags.DEFINE_integer("max_unique_chars", 1000,
                     "Alphabet size: words with characters outside the most frequent ones are not "
                     "learnt from (they become [UNK]).")
flags.DEFINE_float("slack_ratio", 0.05, "Acceptable relative shortfall from --vocab_size.")
flags.DEFINE_integer("num_workers", 1, "Processes counting words in parallel (same output for any N).")


def main(argv):
  cli.require_flags(FLAGS, ("input_file", "output_file"))
  if FLAGS.num_workers < 1:
    raise fileio.InputError("--num_workers must be >= 1, got %d" % FLAGS.num_workers)
  input_files = fileio.expand_file_patterns(FLAGS.input_file, "input_file")
  vocab.build_vocab(
      input_files, FLAGS.output_file, FLAGS.vocab_size, do_lower_case=FLAGS.do_lower_case,
      num_unused=FLAGS.num_unused_tokens, num_workers=FLAGS.num_workers,
      lower_thresh=FLAGS.lower_thresh, upper_thresh=FLAGS.upper_thresh,
      num_iterations=FLAGS.num_iterations, max_input_words=FLAGS.max_input_words,
      max_token_length=FLAGS.max_token_length, max_unique_chars=FLAGS.max_unique_chars,
      slack_ratio=FLAGS.slack_ratio)


if __name__ == "__main__":
  cli.run(main, uses_tensorflow=False)
