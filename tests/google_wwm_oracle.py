"""Google's create_pretraining_data.py (bert-tensorflow 1.0.4) plus whole-word masking, for tests only.

  python -m tests.google_wwm_oracle --input_file=... --output_file=... --vocab_file=... \\
      --do_whole_word_mask=True

bert-tensorflow 1.0.4 predates the `--do_whole_word_mask` flag that google-research/bert added to its
create_pretraining_data.py in May 2019. This runner imports Google's 1.0.4 module unmodified (its
reading, instance building, truncation, final shuffle and writing) and replaces only
`create_masked_lm_predictions` with the later rule, written here from Google's description:

  * candidates are the positions of every token but [CLS] and [SEP], and with whole-word masking a
    token starting with "##" joins the candidate before it (so a "##" piece right after a [SEP]
    joins the last word before it); without it each position is its own candidate;
  * the candidate list is shuffled with `rng.shuffle`;
  * candidates are taken in order until `num_to_predict` positions are masked, skipping a word whose
    pieces would overshoot `num_to_predict` (and any already covered);
  * each position of a taken word gets Google's 80/10/10 draws in position order within the word:
    `rng.random() < 0.8` -> [MASK]; else `rng.random() < 0.5` -> keep; else a random vocabulary word
    `vocab_words[rng.randint(0, len(vocab_words) - 1)]`;
  * predictions are sorted by position.

With `--do_whole_word_mask=False` this is the same rule as 1.0.4's own function (the shuffle of
one-element lists draws exactly what the shuffle of positions draws); a test checks that the runner
then writes the same bytes as the unmodified script, so the only untested difference is the grouping.
"""

from absl import flags
from bert import create_pretraining_data as google

FLAGS = flags.FLAGS

flags.DEFINE_bool("do_whole_word_mask", False,
                  "Whether to use whole word masking rather than per-WordPiece masking.")


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng):
  """Google's masking with the whole-word rule (see the module docstring)."""
  cand_indexes = []
  for (i, token) in enumerate(tokens):
    if token in ("[CLS]", "[SEP]"):
      continue
    if FLAGS.do_whole_word_mask and cand_indexes and token.startswith("##"):
      cand_indexes[-1].append(i)
    else:
      cand_indexes.append([i])

  rng.shuffle(cand_indexes)

  output_tokens = list(tokens)
  num_to_predict = min(max_predictions_per_seq,
                       max(1, int(round(len(tokens) * masked_lm_prob))))

  masked_lms = []
  covered_indexes = set()
  for index_set in cand_indexes:
    if len(masked_lms) >= num_to_predict:
      break
    if len(masked_lms) + len(index_set) > num_to_predict:
      continue
    if any(index in covered_indexes for index in index_set):
      continue
    for index in index_set:
      covered_indexes.add(index)
      if rng.random() < 0.8:
        masked_token = "[MASK]"
      elif rng.random() < 0.5:
        masked_token = tokens[index]
      else:
        masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
      output_tokens[index] = masked_token
      masked_lms.append(google.MaskedLmInstance(index=index, label=tokens[index]))

  masked_lms.sort(key=lambda x: x.index)
  return (output_tokens, [p.index for p in masked_lms], [p.label for p in masked_lms])


google.create_masked_lm_predictions = create_masked_lm_predictions

if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_file")
  flags.mark_flag_as_required("vocab_file")
  google.tf.app.run(google.main)
