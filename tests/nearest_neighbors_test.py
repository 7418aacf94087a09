"""Tests for nearest_neighbors.py and the word-type embeddings of clinicalbert_tf/features.py."""

import collections
import os
import random
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import features
from clinicalbert_tf import fileio
from clinicalbert_tf import tokenization
from tests import testutil

tf.disable_v2_behavior()


def write_corpus(path, num_lines=60, seed=0):
  rng = random.Random(seed)
  words = testutil.WORDS + ["Kidney", "Heart", "renal", "kidneys", "hearts", ",", "."]
  with open(path, "w", encoding="utf-8") as f:
    for i in range(num_lines):
      n = 40 if i % 17 == 0 else rng.randint(3, 12)  # some longer than a window
      f.write(" ".join(rng.choice(words) for _ in range(n)) + "\n")
      if i % 10 == 9:
        f.write("\n")
  return path


class UnitTest(testutil.TestCase):

  def test_split_into_windows(self):
    pieces = {"a": ["a"], "bb": ["b", "##b"], "long": ["l", "##o", "##n", "##g", "##x"]}
    windows = features.split_into_windows(["a", "bb", "a", "bb", "long", "a"], pieces.get, 4)
    self.assertEqual([[w for w, _ in win] for win in windows],
                     [["a", "bb", "a"], ["bb"], ["long"], ["a"]])
    self.assertEqual(windows[2][0][1], ["l", "##o", "##n", "##g"])  # cut to the window
    self.assertEqual(features.split_into_windows([], pieces.get, 4), [])

  def test_accumulator_matches_naive_average(self):
    rng = np.random.RandomState(0)
    acc = features.WordTypeEmbeddings(["x", "yy", "z"], 4)
    windows = [[("x", ["x"]), ("yy", ["y", "##y"]), ("q", ["q"])],
               [("yy", ["y", "##y"]), ("x", ["x"])]]
    layers = [rng.randn(2, 6, 4), rng.randn(2, 6, 4)]
    acc.add_batch(windows, layers)
    v = (layers[0] + layers[1]) / 2
    x = (v[0, 1] + v[1, 3]) / 2
    yy = ((v[0, 2] + v[0, 3]) / 2 + (v[1, 1] + v[1, 2]) / 2) / 2
    means = acc.means()
    self.assertAllClose(means[0], x)
    self.assertAllClose(means[1], yy)
    self.assertAllEqual(acc.counts, [2, 2, 0])
    self.assertAllEqual(means[2], np.zeros(4))

  def test_cosine_neighbors(self):
    means = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    counts = np.array([3, 3, 3, 3, 0])
    words = ["a", "b", "c", "d", "e"]
    got = features.cosine_neighbors(means, counts, words, "a", 3)
    self.assertEqual([w for w, _ in got], ["b", "c", "d"])
    self.assertAlmostEqual(got[0][1], 0.9 / np.sqrt(0.82))
    self.assertIsNone(features.cosine_neighbors(means, counts, words, "e", 3))
    self.assertIsNone(features.cosine_neighbors(means, counts, words, "nope", 3))

  def test_select_word_types(self):
    counts = collections.Counter({"b": 5, "a": 5, "c": 9, ",": 50, "12": 20, "d": 1})
    self.assertEqual(features.select_word_types(counts, 2, 10), ["c", "a", "b"])
    self.assertEqual(features.select_word_types(counts, 2, 2), ["c", "a"])
    self.assertEqual(features.select_word_types(counts, 2, 10, letters_only=False),
                     [",", "12", "c", "a", "b"])


class EndToEndTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(cls.dir)
    cls.config = testutil.tiny_config()
    cls.config_file = testutil.write_config(cls.dir, cls.config)
    cls.ckpt_a = testutil.write_checkpoint(os.path.join(cls.dir, "a", "model.ckpt"), cls.config,
                                           seed=1)
    cls.ckpt_b = testutil.write_checkpoint(os.path.join(cls.dir, "b", "model.ckpt"), cls.config,
                                           seed=2)
    cls.corpus = write_corpus(os.path.join(cls.dir, "corpus.txt"))

  def test_embeddings_equal_per_sentence_oracle(self):
    """Running sums over batched windows equal a naive sentence-by-sentence average."""
    max_seq_length = 16
    tokenizer = tokenization.FullTokenizer(self.vocab, do_lower_case=False)
    with open(self.corpus, encoding="utf-8") as f:
      lines = [l.strip() for l in f if l.strip()]
    counts = collections.Counter(w for l in lines for w in tokenizer.basic_tokenizer.tokenize(l))
    words = features.select_word_types(counts, min_count=2, max_word_types=1000)
    with features.BertEncoder(self.config, self.ckpt_a, max_seq_length, [-1, -2]) as encoder:
      acc = features.embed_word_types(encoder, tokenizer, iter(lines), words, max_seq_length,
                                      batch_size=5)
      # The oracle: one window at a time, through the same model, averaged in plain Python.
      sums, n = collections.defaultdict(lambda: 0.0), collections.Counter()
      for line in lines:
        for window in features.split_into_windows(tokenizer.basic_tokenizer.tokenize(line),
                                                  tokenizer.wordpiece_tokenizer.tokenize_word,
                                                  max_seq_length - 2):
          tokens = ["[CLS]"] + [p for _, ps in window for p in ps] + ["[SEP]"]
          ids = np.zeros([1, max_seq_length], np.int32)
          ids[0, :len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
          mask = (np.arange(max_seq_length) < len(tokens)).astype(np.int32)[None]
          last, second = encoder.run(ids, mask, np.zeros_like(ids))
          vec = (last[0] + second[0]) / 2
          pos = 1
          for word, ps in window:
            sums[word] = sums[word] + vec[pos:pos + len(ps)].mean(axis=0)
            n[word] += 1
            pos += len(ps)
    self.assertEqual(acc.sums.shape, (len(words), 32))  # bounded by the tracked types
    means = acc.means()
    for i, word in enumerate(words):
      self.assertEqual(acc.counts[i], n[word], word)
      self.assertAllClose(means[i], sums[word] / n[word], atol=1e-5)
    # Every occurrence is embedded, long sentences included.
    for i, word in enumerate(words):
      self.assertEqual(acc.counts[i], counts[word])

  def test_side_by_side_markdown(self):
    out = os.path.join(self.dir, "nn.md")
    args = dict(checkpoints=[("BioBERT-like", self.config_file, self.ckpt_a, self.vocab),
                             ("Clinical | BERT", self.config_file, self.ckpt_b, self.vocab)],
                query_words=["kidney", "Heart", "absent", "liver"], output_file=out,
                num_neighbors=3, min_count=3, max_seq_length=16, batch_size=4)
    markdown, results = features.nearest_neighbors([self.corpus], **args)
    with open(out, encoding="utf-8") as f:
      self.assertEqual(f.read(), markdown + "\n")
    self.assertIn("| rank | BioBERT-like | Clinical \\| BERT |", markdown)
    self.assertIn("## kidney (", markdown)
    self.assertIn("## absent (0 occurrences)\n\nNot embedded: not in the corpus.", markdown)
    self.assertLen(results["BioBERT-like"]["kidney"], 3)
    self.assertNotEqual(results["BioBERT-like"]["kidney"], results["Clinical | BERT"]["kidney"])
    for word, cos in results["BioBERT-like"]["kidney"]:
      self.assertNotEqual(word, "kidney")
      self.assertBetween(cos, -1.0, 1.0 + 1e-6)
    again, _ = features.nearest_neighbors([self.corpus], **args)
    self.assertEqual(markdown, again)
    # A cap on sentences reads fewer.
    capped, _ = features.nearest_neighbors([self.corpus], max_sentences=10,
                                           **dict(args, output_file=None))
    self.assertIn("10 sentences", capped)

  def test_script(self):
    out = os.path.join(self.dir, "script.md")
    r = subprocess.run(
        [sys.executable, os.path.join(testutil.REPO, "nearest_neighbors.py"),
         "--input_file=" + self.corpus, "--init_checkpoint=%s,%s" % (self.ckpt_a, self.ckpt_b),
         "--bert_config_file=" + self.config_file, "--vocab_file=" + self.vocab,
         "--query_words=kidney,heart", "--min_count=2", "--max_seq_length=16",
         "--output_file=" + out],
        capture_output=True, text=True, env=testutil.script_env(), check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("| rank | a | b |", r.stdout)
    self.assertTrue(os.path.exists(out))
    r = subprocess.run(
        [sys.executable, os.path.join(testutil.REPO, "nearest_neighbors.py"),
         "--input_file=" + self.corpus, "--init_checkpoint=%s,%s" % (self.ckpt_a, self.ckpt_b),
         "--checkpoint_names=one", "--bert_config_file=" + self.config_file,
         "--vocab_file=" + self.vocab, "--query_words=kidney"],
        capture_output=True, text=True, env=testutil.script_env(), check=False)
    self.assertNotEqual(r.returncode, 0)
    self.assertIn("nearest_neighbors.py: error: --checkpoint_names has 1 names for 2", r.stderr)

  def test_errors(self):
    ckpts = [("a", self.config_file, self.ckpt_a, self.vocab)]
    with self.assertRaisesRegex(fileio.InputError, "query_words"):
      features.nearest_neighbors([self.corpus], ckpts, [])
    with self.assertRaisesRegex(fileio.InputError, "layer 7 does not exist"):
      features.nearest_neighbors([self.corpus], ckpts, ["kidney"], layers="7")
    with self.assertRaisesRegex(fileio.InputError, "no checkpoint"):
      features.nearest_neighbors([self.corpus], [("a", self.config_file, "/nope", self.vocab)],
                                 ["kidney"])


if __name__ == "__main__":
  absltest.main()
