#!/usr/bin/env python3
"""Creates masked-LM / next-sentence pretraining TFRecords (Google's create_pretraining_data.py).

  create_pretraining_data.py --input_file=sentences/*.txt --output_file=tf_examples.tfrecord \\
      --vocab_file=vocab.txt --do_lower_case=False --max_seq_length=128 \\
      --max_predictions_per_seq=20 --masked_lm_prob=0.15 --random_seed=12345 --dupe_factor=5

Input: one sentence per line, a blank line between documents. With the default single worker the
output files are byte-identical to those of Google's script (bert-tensorflow 1.0.4, same Python 3) for
the same inputs and flags, several times faster and in a fraction of the memory. With --num_workers > 1
or --shard_per_file every input file is an independent shard with its own random seed and its own
outputs `<output_file>-<shard>-of-<n>` (the same bytes for any number of workers). A sidecar
`<output>.json` next to each output records the flags, the vocabulary's SHA-256 and the instance
count. See clinicalbert_tf/pretraining_data.py.
"""

from absl import flags
from absl import logging

from clinicalbert_tf import cli
from clinicalbert_tf import engines
from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining_data

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None,
                    "Input raw text file (or comma-separated list of files; globs allowed).")
flags.DEFINE_string("output_file", None,
                    "Output TF example file (or comma-separated list of files; instances go "
                    "round-robin over them).")
flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")
flags.DEFINE_bool("do_lower_case", True,
                  "Whether to lower case the input text. Should be True for uncased models and False "
                  "for cased models.")
flags.DEFINE_bool("do_whole_word_mask", False,
                  "Whether to use whole word masking rather than per-WordPiece masking.")
flags.DEFINE_bool("preserve_unused_tokens", False,
                  "Keep [unusedN] vocabulary tokens in the text whole (Google's tokenizer flag).")
flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")
flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence.")
flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
flags.DEFINE_integer("dupe_factor", 5,
                     "Number of times to duplicate the input data (with different masks). "
                     "ClinicalBERT used 5; Google's default is 10.")
flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
flags.DEFINE_float("short_seq_prob", 0.1,
                   "Probability of creating sequences which are shorter than the maximum length.")
flags.DEFINE_integer("num_workers", 1,
                     "1: Google's exact output. More: process input files as independent shards in "
                     "this many processes (outputs <output_file>-<shard>-of-<n>).")
flags.DEFINE_bool("shard_per_file", False,
                  "Treat each input file as an independent shard even with one worker (the same "
                  "bytes as any --num_workers > 1); memory is bounded by the largest file.")
flags.DEFINE_integer("log_examples", 0,
                     "Log this many instances as tokens and features (Google logs 20). Default 0: "
                     "clinical text stays out of the logs.")
flags.DEFINE_float("progress_seconds", 30.0, "Seconds between progress log lines.")
# --engine=spark: the sharded mode (one shard per input file, each with its own seed), one Spark
# task per shard; the shard files are those of --shard_per_file on this machine.
engines.define_flags()


def main(argv):
  cli.require_flags(FLAGS, ("input_file", "output_file", "vocab_file"))
  if FLAGS.log_examples < 0:
    raise fileio.InputError("--log_examples must be >= 0, got %d" % FLAGS.log_examples)
  # Every field of Options is the flag of the same name.
  options = cli.config_from_flags(pretraining_data.Options, FLAGS)
  # Check flags and the vocabulary before globbing so the message names the first problem.
  pretraining_data.validate_options(options)
  input_files = fileio.expand_file_patterns(FLAGS.input_file, "input_file")
  output_files = fileio.split_comma_list(FLAGS.output_file)
  map_shards = None
  if FLAGS.engine == "spark":
    from clinicalbert_tf.engines import spark  # pylint: disable=g-import-not-at-top
    map_shards = spark.map_shards(spark.get_session(FLAGS.spark_master))
  logging.info("*** Reading from input files ***")
  for path in input_files:
    logging.info("  %s", path)
  pretraining_data.create_pretraining_data(
      input_files, output_files, FLAGS.vocab_file, options, num_workers=FLAGS.num_workers,
      shard_per_file=FLAGS.shard_per_file, log_examples=FLAGS.log_examples,
      progress_seconds=FLAGS.progress_seconds, map_shards=map_shards)


if __name__ == "__main__":
  cli.run(main, uses_tensorflow=False)
