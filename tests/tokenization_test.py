"""Our tokenizer against Google's (bert-tensorflow 1.0.4), token for token, on a generated corpus."""

import os
import random
import unittest

from tests import oracle
from tests import testutil
from clinicalbert_tf import tokenization

_WORDS = [
    "patient", "pt", "s/p", "h/o", "w/", "w/o", "c/o", "r/o", "hx", "CABG", "MI", "NSTEMI", "BP",
    "120/80", "HR", "98.6F", "SpO2", "95%", "RA", "q4h", "PRN", "mg", "5mg", "b.i.d.", "t.i.d.",
    "Dr.", "Mr.", "Mrs.", "admitted", "discharged", "Lasix", "furosemide", "metoprolol", "x-ray",
    "CXR", "CT", "MRI", "echo", "EF", "55-60%", "denies", "chest", "pain", "SOB", "N/V/D", "afebrile",
    "[**2101-10-20**]", "[**Hospital1 18**]", "[**Known lastname 123**]", "[**First Name (Titles) **]",
    "HISTORY", "OF", "PRESENT", "ILLNESS:", "Discharge", "Medications:", "1.", "2)", "--", "___",
    "naïve", "café", "Ångström", "résumé", "coöperate", "Müller", "São", "Paulo", "ﬁbrosis",
    "发烧", "咳嗽", "患者", "頭痛", "한국어", "日本語テキスト", "😀", "🩺", "💊", "→", "±", "°C", "µg",
    "unaffable", "hypercholesterolemia", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "O'Brien", "don't", "e.g.", "i.e.", "etc.", "#5", "$100", "@home", "^", "`", "~", "{x}", "|",
]
_ODD_CHARS = ["\t", "\u00a0", "\u200b", "\u200d", "\ufeff", "\u0000", "\ufffd", "\x07", "\x1f",
              "\u2028", "\u3000", "\r", "\x7f", "\u00ad", "\u0301", "\u2003", "\x0b", "\x0c"]


def _generate_corpus(rng, num_lines):
  lines = []
  for i in range(num_lines):
    n = rng.randint(0, 25)
    parts = []
    for _ in range(n):
      r = rng.random()
      if r < 0.75:
        parts.append(rng.choice(_WORDS))
      elif r < 0.85:
        parts.append(rng.choice(_ODD_CHARS))
      elif r < 0.95:
        # Random code points from several blocks, glued to a word.
        cp = rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x370, 0x3ff),
                         rng.randint(0x4e00, 0x4fff), rng.randint(0x1f300, 0x1f6ff),
                         rng.randint(0x300, 0x36f), rng.randint(0x2000, 0x206f)])
        parts.append(rng.choice(_WORDS) + chr(cp))
      else:
        parts.append(str(rng.randint(0, 100000)))
    sep = rng.choice([" ", " ", " ", "  ", "\t", " \u00a0"])
    line = sep.join(parts)
    if i % 97 == 0:
      line += " " + "x" * 250  # A word over 200 characters becomes [UNK].
    if i % 89 == 0:
      line = "\u200b".join(line)  # Zero-width spaces between every character.
    lines.append(line)
  return lines


def _build_vocab(lines, path):
  """A vocab with special tokens, frequent whole words and their prefixes and ## suffixes."""
  basic_cased = oracle.tokenization.BasicTokenizer(do_lower_case=False)
  basic_lower = oracle.tokenization.BasicTokenizer(do_lower_case=True)
  words = set()
  for line in lines:
    words.update(basic_cased.tokenize(line))
    words.update(basic_lower.tokenize(line))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  pieces = set()
  for w in sorted(words):
    if len(w) > 12:
      pieces.add(w[:4])
      pieces.add("##" + w[4:8])
      pieces.add("##" + w[8:])
    elif len(w) % 3 == 0:
      pieces.add(w)
    else:
      pieces.add(w[:2])
      for c in w[2:]:
        pieces.add("##" + c)
  vocab.extend(sorted(pieces))
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")


class TokenizationOracleTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.lines = _generate_corpus(random.Random(1234), 2500)
    cls.vocab_file = os.path.join(cls.tmp, "vocab.txt")
    _build_vocab(cls.lines, cls.vocab_file)

  def test_corpus_covers_what_it_should(self):
    text = "\n".join(self.lines)
    for needle in ["s/p", "h/o", "120/80", "[**2101-10-20**]", "\u200b", "\t", "😀", "发烧",
                   "café", "x" * 250]:
      self.assertIn(needle, text)
    self.assertGreaterEqual(len(self.lines), 2000)

  def _compare(self, do_lower_case):
    ours = tokenization.FullTokenizer(self.vocab_file, do_lower_case=do_lower_case)
    google = oracle.tokenization.FullTokenizer(self.vocab_file, do_lower_case=do_lower_case)
    self.assertEqual(ours.vocab, google.vocab)
    unk = 0
    for i, line in enumerate(self.lines):
      expected = google.tokenize(line)
      got = ours.tokenize(line)
      self.assertEqual(got, expected, "line %d differs: %r" % (i, line))
      # Bytes input goes through convert_to_unicode in both.
      self.assertEqual(ours.tokenize(line.encode("utf-8")), expected)
      unk += expected.count("[UNK]")
      self.assertEqual(ours.convert_tokens_to_ids(got), google.convert_tokens_to_ids(expected))
    # The vocab covers most pieces, but not all: both paths (pieces and [UNK]) are exercised.
    self.assertGreater(unk, 0)

  def test_full_tokenizer_lower_case(self):
    self._compare(True)

  def test_full_tokenizer_cased(self):
    self._compare(False)

  def test_basic_tokenizer_on_every_line_both_casings(self):
    for lower in (True, False):
      ours = tokenization.BasicTokenizer(do_lower_case=lower)
      google = oracle.tokenization.BasicTokenizer(do_lower_case=lower)
      for line in self.lines:
        self.assertEqual(ours.tokenize(line), google.tokenize(line), repr(line))

  def test_every_single_character(self):
    # Each code point of the BMP and a sample beyond, alone and between two words, so that the
    # ASCII fast path and the general path are checked character by character.
    for lower in (True, False):
      ours = tokenization.BasicTokenizer(do_lower_case=lower)
      google = oracle.tokenization.BasicTokenizer(do_lower_case=lower)
      for cp in list(range(0, 0x3000)) + list(range(0xfe00, 0x10000)) + list(range(0x1f300, 0x1f700)):
        text = "ab" + chr(cp) + "Cd"
        self.assertEqual(ours.tokenize(text), google.tokenize(text), "U+%04X" % cp)

  def test_wordpiece_greedy_and_long_words(self):
    vocab = {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "runn": 4, "##ing": 5, "##": 6}
    ours = tokenization.WordpieceTokenizer(vocab=vocab)
    google = oracle.tokenization.WordpieceTokenizer(vocab=vocab)
    for text in ["unaffable", "unwanted running", "", "  ", "un##aff", "a" * 201, "un" * 100]:
      self.assertEqual(ours.tokenize(text), google.tokenize(text), text)

  def test_load_vocab_duplicates_and_blank_lines(self):
    path = os.path.join(self.tmp, "odd_vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.write("[PAD]\n[UNK]\nfoo\n\nbar\nfoo\n  baz  \n")
    self.assertEqual(tokenization.load_vocab(path), oracle.tokenization.load_vocab(path))

  def test_case_check_against_checkpoint_name(self):
    for lower, ckpt in [(False, "x/uncased_L-12_H-768_A-12/bert_model.ckpt"),
                        (True, "x/cased_L-12_H-768_A-12/bert_model.ckpt")]:
      with self.assertRaises(ValueError):
        tokenization.validate_case_matches_checkpoint(lower, ckpt)
    tokenization.validate_case_matches_checkpoint(False, "x/biobert_v1.1/model.ckpt")


if __name__ == "__main__":
  unittest.main()
