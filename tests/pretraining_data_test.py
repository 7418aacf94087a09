"""create_pretraining_data: byte-identity with Google's script, and the pieces that make it fast.

The identity tests run Google's script (`python -m bert.create_pretraining_data`, bert-tensorflow
1.0.4) and ours as subprocesses on an invented corpus (tests/pretraining_corpus.py: one-sentence and
empty documents, sentences longer than max_seq_length, Unicode, MIMIC-style placeholders, CRLF) and
compare the output files byte for byte. No expected bytes are stored. Whole-word masking is compared
with tests/google_wwm_oracle.py (Google's 1.0.4 module with only its masking function replaced by the
later whole-word rule; 1.0.4 has no --do_whole_word_mask), which itself is checked to equal the
unmodified script with whole-word masking off.
"""

import collections
import os
import random
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import pretraining_data
from clinicalbert_tf import pretraining_text
from clinicalbert_tf import tfrecord
from clinicalbert_tf import tokenization
from tests import oracle
from tests import google_wwm_oracle  # pylint: disable=g-bad-import-order
from tests import pretraining_corpus
from tests import testutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "create_pretraining_data.py")


def _run(args):
  proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT,
                        env=testutil.script_env({"TF_CPP_MIN_LOG_LEVEL": "3"}))
  if proc.returncode != 0:
    raise AssertionError("%s failed (%d):\n%s" % (" ".join(args[:3]), proc.returncode,
                                                  proc.stderr[-3000:]))
  return proc


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _example(features):
  """Google's Example for one instance (features: name -> list of values, Google's order)."""
  fmap = collections.OrderedDict()
  for name in pretraining_data.FEATURE_NAMES:
    values = [float(v) for v in features[name]] if name == "masked_lm_weights" else [
        int(v) for v in features[name]]
    if name == "masked_lm_weights":
      fmap[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    else:
      fmap[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(features=tf.train.Features(feature=fmap)).SerializeToString()


def _random_features(rng, n, seq_length, predictions, max_id):
  ids = rng.integers(0, max_id, (n, seq_length)).astype(np.uint32)
  lengths = rng.integers(5, seq_length + 1, n)
  mask = (np.arange(seq_length)[None, :] < lengths[:, None])
  ids[~mask] = 0
  segment = mask & (np.arange(seq_length)[None, :] >= (lengths // 2)[:, None])
  counts = rng.integers(0, predictions + 1, n)
  pmask = np.arange(predictions)[None, :] < counts[:, None]
  positions = np.where(pmask, rng.integers(1, seq_length, (n, predictions)), 0)
  mids = np.where(pmask, rng.integers(0, max_id, (n, predictions)), 0)
  return {
      "input_ids": ids,
      "input_mask": mask.astype(np.uint32),
      "segment_ids": segment.astype(np.uint32),
      "masked_lm_positions": positions.astype(np.uint32),
      "masked_lm_ids": mids.astype(np.uint32),
      "masked_lm_weights": pmask.astype("<f4"),
      "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype(np.uint32),
  }


class SerializationTest(testutil.TestCase):
  """The numpy Example encoder on pretraining features against protobuf (framing: tfrecord_test)."""

  def check_examples(self, features):
    data, lengths = pretraining_data.encode_features(features)
    n = features["input_ids"].shape[0]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for row in range(n):
      expected = _example({k: v[row] for k, v in features.items()})
      self.assertEqual(data[offsets[row]:offsets[row + 1]].tobytes(), expected, "row %d" % row)

  def test_examples_match_protobuf(self):
    rng = np.random.default_rng(0)
    # Word-piece ids below and above 2**14 and 2**16, sequence lengths with 1- and 2-byte positions,
    # records longer than 127 and 16383 bytes, and no predictions at all.
    for n, seq_length, predictions, max_id in [(40, 128, 20, 30522), (20, 32, 5, 100),
                                               (20, 300, 45, 70000), (5, 3000, 3, 1 << 31),
                                               (10, 16, 0, 50)]:
      self.check_examples(_random_features(rng, n, seq_length, predictions, max_id))

  def test_serialized_feature_order_is_protobufs(self):
    features = {name: [i] for i, name in enumerate(pretraining_data.FEATURE_NAMES)}
    example = tf.train.Example.FromString(_example(features))
    data = _example(features)
    # Each map entry starts with its key: the order of the keys in the bytes is the map order.
    positions = [data.index(name.encode()) for name in pretraining_data.SERIALIZED_FEATURE_ORDER]
    self.assertEqual(positions, sorted(positions))
    self.assertLen(example.features.feature, 7)
    self.assertEqual(tfrecord.serialized_feature_order(pretraining_data.FEATURE_NAMES),
                     pretraining_data.SERIALIZED_FEATURE_ORDER)


class RandomDrawsTest(testutil.TestCase):
  """The inlined draws consume Python's Mersenne Twister exactly as random.Random's methods."""

  def test_shuffle_and_prefix_shuffle(self):
    for n in [0, 1, 2, 3, 7, 64, 125, 300]:
      for keep in sorted({0, 1, min(n, 5), n, n + 3}):
        ours, theirs = random.Random(n * 31 + keep), random.Random(n * 31 + keep)
        shuffler = pretraining_data._Shuffler(ours.getrandbits)
        a = list(range(n))
        b = list(range(n))
        c = list(range(n))
        theirs.shuffle(a)
        shuffler.shuffle(b)
        self.assertEqual(a, b)
        d = list(range(n))
        shuffler.shuffle_prefix(c, keep)
        theirs.shuffle(d)
        self.assertEqual(c[:keep], d[:keep])
        self.assertEqual(ours.random(), theirs.random())  # same stream position (two shuffles each)

  def test_randbelow_is_randint(self):
    ours, theirs = random.Random(3), random.Random(3)
    for n in [1, 1, 2, 3, 5, 8, 100, 30522, 1 << 20]:
      self.assertEqual(pretraining_data._randbelow(ours.getrandbits, n), theirs.randint(0, n - 1))
    self.assertEqual(ours.random(), theirs.random())


class ReadingTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()
    self.vocab_path = os.path.join(self.dir, "vocab.txt")
    pretraining_corpus.make_vocab(self.vocab_path)

  def test_load_vocab_matches_tokenization(self):
    path = os.path.join(self.dir, "odd_vocab.txt")
    with open(path, "wb") as f:
      f.write(b"[PAD]\r\n[UNK]\n\n  a  \nb\na\n\n[CLS]\n[SEP]\n[MASK]\n\xc3\xa9")
    self.assertEqual(pretraining_text.load_vocab_without_tensorflow(path),
                     tokenization.load_vocab(path))
    self.assertEqual(pretraining_text.load_vocab_without_tensorflow(self.vocab_path),
                     tokenization.load_vocab(self.vocab_path))

  def test_line_encoder_matches_full_tokenizer(self):
    lines = [line.replace("\r", "").strip()
             for line in pretraining_corpus.make_corpus_lines(60, seed=5)]
    lines += ["a\x1cb c", "x\u2028y", "naïve  café", "[unused1] [unused9]x", "  "]
    vocab = tokenization.load_vocab(self.vocab_path)
    for lower in (True, False):
      for preserve in (False, True):
        tokenizer = tokenization.FullTokenizer(self.vocab_path, do_lower_case=lower,
                                               preserve_unused_tokens=preserve)
        encoder = pretraining_text.LineEncoder(vocab, lower, preserve)
        for line in lines:
          self.assertEqual(encoder.encode(line),
                           tokenizer.convert_tokens_to_ids(tokenizer.tokenize(line)), repr(line))

  def test_documents_follow_googles_reading_rules(self):
    path = os.path.join(self.dir, "docs.txt")
    with open(path, "wb") as f:
      # CR inside a line is dropped (TF's reader), \x1f-only lines end a document (str.strip), a
      # control-character line is no sentence and no break, blank runs make no empty documents.
      f.write(b"a b\r\nc\rd\n\n\n\x01\n\x1f\ne\n\x01\nf")
    with open(path + "2", "wb") as f:
      f.write(b"g\n\nh\n")
    vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(self.vocab_path))
    encoder = pretraining_text.LineEncoder(vocab.vocab, True)
    corpus = pretraining_text.Corpus(vocab.id_typecode)
    corpus.read([path, path + "2"], encoder)
    words = vocab.words
    docs = []
    for d in range(corpus.num_documents):
      doc = []
      for s in range(corpus.doc_starts[d], corpus.doc_starts[d + 1]):
        ids = corpus.tokens[corpus.sentence_starts[s]:corpus.sentence_starts[s + 1]]
        doc.append(" ".join(words[i] for i in ids))
      docs.append(doc)
    # The last document of the first file runs on into the second file, as in Google's loop.
    self.assertEqual(docs, [["a b", "c ##d"], ["e", "f", "g"], ["h"]])

  def test_invalid_utf8_names_file_and_line(self):
    path = os.path.join(self.dir, "bad.txt")
    with open(path, "wb") as f:
      f.write(b"fine\nbad \xff here\n")
    vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(self.vocab_path))
    corpus = pretraining_text.Corpus(vocab.id_typecode)
    with self.assertRaisesRegex(pretraining_data.fileio.InputError, r"bad\.txt:2: not valid UTF-8"):
      corpus.read([path], pretraining_text.LineEncoder(vocab.vocab, True))


class InProcessFuzzTest(testutil.TestCase):
  """Many small random configurations against Google's functions called in this process.

  Cheaper than a subprocess per case, so it can cover the corners: max_seq_length 5 (two tokens for
  A and B), a single document (the random-document loop gives up after 10 tries), masked_lm_prob 0
  and 1, no predictions allowed, whole-word masking on and off, several seeds and input files.
  """

  def test_random_configurations(self):
    google = google_wwm_oracle.google
    flag_values = google_wwm_oracle.FLAGS
    work = self.temp_dir()
    vocab_path = os.path.join(work, "vocab.txt")
    pretraining_corpus.make_vocab(vocab_path, extra_words=50)
    rng = random.Random(2024)
    for case in range(60):
      files = []
      for f in range(rng.choice([1, 1, 2])):
        files.append(os.path.join(work, "c%d_%d.txt" % (case, f)))
        pretraining_corpus.write_corpus(files[-1], rng.choice([1, 2, 5, 12]),
                                        seed=rng.randint(0, 1 << 20),
                                        long_prob=rng.choice([0.0, 0.05, 0.3]),
                                        final_newline=rng.random() < 0.5)
      options = pretraining_data.Options(
          max_seq_length=rng.choice([5, 6, 9, 16, 33, 64, 130]),
          max_predictions_per_seq=rng.choice([0, 1, 3, 20]),
          masked_lm_prob=rng.choice([0.0, 0.15, 0.5, 1.0]),
          short_seq_prob=rng.choice([0.0, 0.1, 0.9, 1.0]),
          dupe_factor=rng.choice([1, 2]),
          do_whole_word_mask=rng.random() < 0.5,
          do_lower_case=rng.random() < 0.5,
          random_seed=rng.randint(0, 1 << 40))
      with self.subTest(case=case, options=options, files=len(files)):
        flag_values.do_whole_word_mask = options.do_whole_word_mask
        tokenizer = oracle.tokenization.FullTokenizer(vocab_path, options.do_lower_case)
        instances = google.create_training_instances(
            files, tokenizer, options.max_seq_length, options.dupe_factor,
            options.short_seq_prob, options.masked_lm_prob, options.max_predictions_per_seq,
            random.Random(options.random_seed))
        expected = []
        for inst in instances:
          expected.append((tokenizer.convert_tokens_to_ids(inst.tokens), list(inst.segment_ids),
                           list(inst.masked_lm_positions),
                           tokenizer.convert_tokens_to_ids(inst.masked_lm_labels),
                           int(inst.is_random_next)))

        vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(vocab_path))
        corpus = pretraining_text.Corpus(vocab.id_typecode)
        corpus.read(files, pretraining_text.LineEncoder(vocab.vocab, options.do_lower_case))
        ours_rng = random.Random(options.random_seed)
        store = pretraining_data.InstanceStore(vocab.id_typecode, options.max_predictions_per_seq)
        pretraining_data.create_instances(corpus, vocab, options, ours_rng, store)
        order = list(range(len(store)))
        pretraining_data._Shuffler(ours_rng.getrandbits).shuffle(order)
        got = []
        if order:
          f = store.gather(np.array(order, np.int64), options.max_seq_length)
          for row in range(len(order)):
            n = int(f["input_mask"][row].sum())
            k = int(f["masked_lm_weights"][row].sum())
            got.append((f["input_ids"][row][:n].tolist(), f["segment_ids"][row][:n].tolist(),
                        f["masked_lm_positions"][row][:k].tolist(),
                        f["masked_lm_ids"][row][:k].tolist(),
                        int(f["next_sentence_labels"][row][0])))
        self.assertEqual(len(got), len(expected))
        self.assertEqual(got, expected)
    flag_values.do_whole_word_mask = False


class GoogleIdentityTest(testutil.TestCase):
  """Output files byte-identical to Google's script for several flag sets."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab = os.path.join(cls.dir, "vocab.txt")
    pretraining_corpus.make_vocab(cls.vocab, extra_words=300)
    cls.corpus_a = os.path.join(cls.dir, "corpus_a.txt")
    cls.corpus_b = os.path.join(cls.dir, "corpus_b.txt")
    pretraining_corpus.write_corpus(cls.corpus_a, 90, seed=1)
    # No final line break, so its last document runs on into the next file.
    pretraining_corpus.write_corpus(cls.corpus_b, 40, seed=2, final_newline=False)

  def run_both(self, name, google_flags, our_flags, outputs=1,
               google_module="bert.create_pretraining_data"):
    """Runs Google's module and our script; returns ([google bytes], [our bytes]) per output."""
    def paths(who):
      return [os.path.join(self.dir, "%s_%s_%d.tfrecord" % (name, who, i)) for i in range(outputs)]
    g_paths, o_paths = paths("google"), paths("ours")
    common = ["--vocab_file=" + self.vocab]
    _run([sys.executable, "-m", google_module, "--output_file=" + ",".join(g_paths)] + common +
         google_flags)
    _run([sys.executable, SCRIPT, "--output_file=" + ",".join(o_paths)] + common + our_flags)
    return [_read(p) for p in g_paths], [_read(p) for p in o_paths]

  def assert_identical(self, name, google_flags, our_flags, outputs=1,
                       google_module="bert.create_pretraining_data"):
    google, ours = self.run_both(name, google_flags, our_flags, outputs, google_module)
    for i, (g, o) in enumerate(zip(google, ours)):
      self.assertGreater(len(g), 1000, "%s output %d is (nearly) empty" % (name, i))
      self.assertEqual(len(o), len(g), "%s output %d: sizes differ" % (name, i))
      self.assertTrue(o == g, "%s output %d: bytes differ" % (name, i))
    return google

  def test_lower_case_without_whole_word_masking(self):
    # Our --dupe_factor defaults to ClinicalBERT's 5, Google's to 10: pass 5 to Google only.
    self.assert_identical("lower", ["--input_file=" + self.corpus_a, "--dupe_factor=5"],
                          ["--input_file=" + self.corpus_a])

  def test_cased_with_whole_word_masking(self):
    flags = ["--input_file=" + self.corpus_a, "--do_lower_case=False", "--do_whole_word_mask=True",
             "--dupe_factor=5"]
    wwm = self.assert_identical("cased_wwm", flags, flags, google_module="tests.google_wwm_oracle")
    # Whole-word grouping changed the draws (the corpus has multi-piece words).
    plain, _ = self.run_both("cased_plain", flags[:2] + ["--dupe_factor=5"], flags)
    self.assertNotEqual(plain[0], wwm[0])

  def test_short_sequences_two_outputs_two_inputs(self):
    flags = ["--input_file=%s,%s" % (self.corpus_b, os.path.join(self.dir, "corpus_a*")),
             "--max_seq_length=32", "--max_predictions_per_seq=5", "--dupe_factor=5"]
    self.assert_identical("len32", flags, flags, outputs=2)

  def test_one_dupe_and_many_short_sequences(self):
    flags = ["--input_file=" + self.corpus_a, "--dupe_factor=1", "--short_seq_prob=0.5",
             "--do_lower_case=False"]
    self.assert_identical("dupe1", flags, flags)

  def test_preserved_unused_tokens_whole_word_masking_other_seed(self):
    flags = ["--input_file=" + self.corpus_b, "--do_whole_word_mask=True",
             "--preserve_unused_tokens=True", "--max_seq_length=64",
             "--max_predictions_per_seq=10", "--random_seed=7", "--dupe_factor=3",
             "--masked_lm_prob=0.2"]
    self.assert_identical("preserve", flags, flags, google_module="tests.google_wwm_oracle")

  def test_wwm_oracle_is_google_without_whole_word_masking(self):
    flags = ["--input_file=" + self.corpus_b, "--dupe_factor=2", "--do_lower_case=False"]
    google = [os.path.join(self.dir, "plain_%s.tfrecord" % who) for who in ("google", "runner")]
    _run([sys.executable, "-m", "bert.create_pretraining_data", "--output_file=" + google[0],
          "--vocab_file=" + self.vocab] + flags)
    _run([sys.executable, "-m", "tests.google_wwm_oracle", "--output_file=" + google[1],
          "--vocab_file=" + self.vocab, "--do_whole_word_mask=False"] + flags)
    self.assertEqual(_read(google[0]), _read(google[1]))


if __name__ == "__main__":
  absltest.main()
