#!/usr/bin/env python3
"""Nearest neighbours of query words by contextual embedding, per checkpoint (the paper's Table 3).

  nearest_neighbors.py --input_file=sentences/discharge_summary.txt \
    --init_checkpoint=biobert/model.ckpt,clinical/model.ckpt-100000 \
    --checkpoint_names="BioBERT,Clinical BERT" \
    --bert_config_file=bert_config.json --vocab_file=vocab.txt --do_lower_case=False \
    --query_words=kidney,heart,discharge --output_file=neighbors.md

Every word type with at least --min_count occurrences gets one embedding: its word pieces
averaged, then its occurrences averaged (running sums, so memory does not grow with the corpus).
Neighbours are by cosine similarity, printed and written as markdown with one column per
checkpoint. See clinicalbert_tf/features.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import features
from clinicalbert_tf import fileio

FLAGS = flags.FLAGS

flags.DEFINE_string("input_file", None,
                    "Corpus, one sentence per line: a file, a glob or a comma list of them.")
flags.DEFINE_string("init_checkpoint", None,
                    "Comma list of checkpoints (prefixes or directories) to compare.")
flags.DEFINE_string("checkpoint_names", None,
                    "Comma list of column names, one per checkpoint (default: the checkpoints' "
                    "directory names).")
flags.DEFINE_string("bert_config_file", None,
                    "The bert_config.json (one for all checkpoints, or a comma list, one each).")
flags.DEFINE_string("vocab_file", None, "The vocab.txt (one for all, or a comma list, one each).")
flags.DEFINE_bool("do_lower_case", False, "Lower-case words and input (False for cased models).")
flags.DEFINE_string("query_words", None, "Comma list of words to find neighbours for.")
flags.DEFINE_string("output_file", None, "Markdown file to write (the table is printed anyway).")
flags.DEFINE_integer("num_neighbors", 5, "Neighbours per query word.")
flags.DEFINE_integer("min_count", 5, "Occurrences a word needs to get an embedding.")
flags.DEFINE_integer("max_word_types", 30000,
                     "Track at most this many of the most frequent word types (bounds memory to "
                     "max_word_types x hidden float64 sums).")
flags.DEFINE_bool("letters_only", True,
                  "Only words containing a letter are tracked (no punctuation or numbers as "
                  "neighbours).")
flags.DEFINE_string("layers", "-1", "Encoder layers averaged into a token's vector (-1 = last).")
flags.DEFINE_integer("max_seq_length", 128,
                     "Window length in word pieces; longer sentences are cut at word boundaries.")
flags.DEFINE_integer("batch_size", 32, "Windows per model run.")
flags.DEFINE_integer("max_sentences", 0, "Read at most this many sentences (0: all).")
flags.DEFINE_integer("num_workers", 1, "Processes for the word-counting pass.")


def _per_checkpoint(value, n, flag_name):
  items = fileio.split_comma_list(value)
  if len(items) == 1:
    return items * n
  if len(items) != n:
    raise fileio.InputError("--%s has %d entries for %d checkpoints: give one, or one each" %
                            (flag_name, len(items), n))
  return items


def main(argv):
  cli.require_flags(FLAGS, ("input_file", "init_checkpoint", "bert_config_file", "vocab_file",
                            "query_words"))
  ckpts = fileio.split_comma_list(FLAGS.init_checkpoint)
  if FLAGS.checkpoint_names:
    names = fileio.split_comma_list(FLAGS.checkpoint_names)
    if len(names) != len(ckpts):
      raise fileio.InputError("--checkpoint_names has %d names for %d checkpoints" %
                              (len(names), len(ckpts)))
  else:
    names = [features.default_checkpoint_name(c) for c in ckpts]
  configs = _per_checkpoint(FLAGS.bert_config_file, len(ckpts), "bert_config_file")
  vocabs = _per_checkpoint(FLAGS.vocab_file, len(ckpts), "vocab_file")
  input_files = fileio.expand_file_patterns(FLAGS.input_file, "input_file")
  markdown, _ = cli.config_from_flags(
      features.nearest_neighbors, FLAGS, input_files=input_files,
      checkpoints=list(zip(names, configs, ckpts, vocabs)),
      query_words=fileio.split_comma_list(FLAGS.query_words),
      max_sentences=FLAGS.max_sentences or None)
  print(markdown)


if __name__ == "__main__":
  cli.run(main)
