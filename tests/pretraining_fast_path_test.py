"""create_pretraining_data's two-pass fast path against its per-draw path and Python's `random`.

The fast path (clinicalbert_tf/pretraining_fast.py: per-piece masking, max_seq_length <= 258) reads
the Mersenne Twister words with numpy and skips each candidate shuffle with a regular expression;
the per-draw path (pretraining_data.py) calls `random.Random` for every draw, as Google's code
does, and is itself checked against Google's script in tests/pretraining_data_test.py. Here both
paths build the same corpus with windows of the random stream small enough that refills happen
mid-document, before truncations and inside shuffles, and must give the same instances and leave
the generator in the same state.
"""

import os
import random

from absl.testing import absltest
import numpy as np

from clinicalbert_tf import pretraining_data
from clinicalbert_tf import pretraining_fast
from clinicalbert_tf import pretraining_text
from tests import pretraining_corpus
from tests import testutil


class WordStreamTest(testutil.TestCase):
  """numpy's MT19937 continues `random.Random`'s stream word for word."""

  def test_words_and_state_follow_python(self):
    rng = random.Random(77)
    rng.shuffle(list(range(1000)))
    rng.random()
    expected = random.Random()
    expected.setstate(rng.getstate())
    stream = pretraining_fast._WordStream(rng, 700)
    words = list(stream.words)
    stream.advance(500)  # keeps words 500.. and appends 700 more
    words += list(stream.words[200:])
    self.assertEqual(words, [expected.getrandbits(32) for _ in range(1400)])
    # The state at window position 321 (absolute 821) is Python's after 821 words.
    again = random.Random()
    again.setstate(stream.python_state(321))
    reference = random.Random()
    reference.setstate(rng.getstate())
    for _ in range(821):
      reference.getrandbits(32)
    self.assertEqual(again.getstate(), reference.getstate())
    self.assertEqual(again.random(), reference.random())

  def test_word_bounds_decide_random(self):
    gen = np.random.default_rng(5)
    for x in (0.0, 0.1, 0.5, 0.8, 0.9, 1.0, 1 / 3):
      lo, hi = pretraining_fast._word_bounds(x)
      firsts = np.concatenate([gen.integers(0, 1 << 32, 2000),
                               np.arange(max(lo - 40, 0), min(hi + 40, 1 << 32))])
      for first in firsts.tolist():
        second = int(gen.integers(0, 1 << 32))
        value = ((first >> 5) * 67108864.0 + (second >> 6)) * (1.0 / 9007199254740992.0)
        if first < lo:
          self.assertLess(value, x)
        elif first >= hi:
          self.assertGreaterEqual(value, x)
        else:
          self.assertEqual(lo + 32, hi)  # undecided only within one value of first >> 5


class FastPathTest(testutil.TestCase):
  """The fast path builds the per-draw path's instances, whatever the window size."""

  def build(self, files, vocab, options, fast, chunk=None, margin=None):
    saved = (pretraining_fast.applies, pretraining_fast._STREAM_CHUNK,
             pretraining_fast._STREAM_MARGIN)
    try:
      if not fast:
        pretraining_fast.applies = lambda options: False
      if chunk:
        pretraining_fast._STREAM_CHUNK = chunk
        pretraining_fast._STREAM_MARGIN = margin
      corpus = pretraining_text.Corpus(vocab.id_typecode)
      corpus.read(files, pretraining_text.LineEncoder(vocab.vocab, options.do_lower_case))
      rng = random.Random(options.random_seed)
      store = pretraining_data.InstanceStore(vocab.id_typecode, options.max_predictions_per_seq)
      pretraining_data.create_instances(corpus, vocab, options, rng, store)
    finally:
      (pretraining_fast.applies, pretraining_fast._STREAM_CHUNK,
       pretraining_fast._STREAM_MARGIN) = saved
    arrays = (store.tokens, store.offsets, store.segment_starts, store.masked_positions,
              store.masked_ids, store.masked_counts, store.next_sentence)
    return [a.tolist() for a in arrays], rng.getstate(), len(store)

  def test_small_windows_and_random_options(self):
    work = self.temp_dir()
    vocab_path = os.path.join(work, "vocab.txt")
    pretraining_corpus.make_vocab(vocab_path, extra_words=80)
    vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(vocab_path))
    rng = random.Random(99)
    for case in range(12):
      path = os.path.join(work, "c%d.txt" % case)
      pretraining_corpus.write_corpus(path, rng.choice([1, 3, 20]), seed=case,
                                      long_prob=rng.choice([0.0, 0.1, 0.4]))
      options = pretraining_data.Options(
          max_seq_length=rng.choice([5, 12, 64, 128, 258]),
          max_predictions_per_seq=rng.choice([0, 2, 20, 40]),
          masked_lm_prob=rng.choice([0.0, 0.15, 1.0]),
          short_seq_prob=rng.choice([0.0, 0.1, 1.0]),
          dupe_factor=2, do_lower_case=rng.random() < 0.5, random_seed=rng.randint(0, 1 << 30))
      with self.subTest(case=case, options=options):
        self.assertTrue(pretraining_fast.applies(options))
        expected = self.build([path], vocab, options, fast=False)
        self.assertGreater(expected[2], 0)
        self.assertEqual(self.build([path], vocab, options, fast=True), expected)
        # Windows of a few thousand words: refills everywhere.
        self.assertEqual(self.build([path], vocab, options, fast=True, chunk=3000, margin=600),
                         expected)
        # Without masking draws a tiny margin is enough: shuffles then run past the window's end.
        no_masking = options._replace(max_predictions_per_seq=0)
        self.assertEqual(
            self.build([path], vocab, no_masking, fast=True, chunk=1000, margin=40),
            self.build([path], vocab, no_masking, fast=False))


if __name__ == "__main__":
  absltest.main()
