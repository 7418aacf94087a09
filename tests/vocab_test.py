"""Tests for clinicalbert_tf/vocab.py and build_vocab.py."""

import os
import random
import subprocess
import sys

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import tokenization
from clinicalbert_tf import vocab
from tests import testutil

_WORDS = ("Patient denies chest pain shortness of breath nausea vomiting fever chills cough "
          "history hypertension diabetes mellitus coronary artery disease status post CABG "
          "admitted with pneumonia treated antibiotics discharged home stable condition the a "
          "and to was is echocardiogram thrombocytopenia hyperkalemia café naïve µg").split()


def write_corpus(path, seed=0, num_docs=150):
  """An invented corpus in Google's format, with placeholders and punctuation."""
  rng = random.Random(seed)
  with open(path, "w", encoding="utf-8") as f:
    for _ in range(num_docs):
      for _ in range(rng.randint(1, 5)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 15))]
        if rng.random() < 0.3:
          words.insert(rng.randint(0, len(words)), "[**2101-10-%d**]" % rng.randint(1, 28))
        f.write(" ".join(words) + rng.choice([" .", ",", "", " ;"]) + "\n")
      f.write("\n")
  return path


class ReservedTokensTest(testutil.TestCase):

  def test_google_order(self):
    self.assertEqual(vocab.reserved_tokens(0), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    self.assertEqual(vocab.reserved_tokens(2),
                     ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    many = vocab.reserved_tokens(120)
    self.assertEqual(many[99], "[unused98]")
    self.assertEqual(many[100:104], ["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    self.assertEqual(many[104], "[unused99]")
    self.assertEqual(len(many), 125)

  def test_negative(self):
    with self.assertRaises(fileio.InputError):
      vocab.reserved_tokens(-1)


class BuildVocabTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()
    self.corpus = write_corpus(os.path.join(self.dir, "corpus.txt"))

  def _build(self, name, **kwargs):
    out = os.path.join(self.dir, name)
    args = dict(vocab_size=300, lower_thresh=2)
    args.update(kwargs)
    vocab.build_vocab([self.corpus], out, **args)
    with open(out, encoding="utf-8") as f:
      return f.read()

  def test_special_tokens_first_and_cased(self):
    text = self._build("vocab.txt", num_unused=3)
    tokens = text.split("\n")[:-1]
    self.assertEqual(tokens[:8], vocab.reserved_tokens(3))
    self.assertLessEqual(len(tokens), 300)
    self.assertIn("Patient", tokens)  # cased by default: frequent capitalised words stay whole
    self.assertIn("CABG", tokens)
    self.assertIn("##s", tokens)
    self.assertEqual(len(set(tokens)), len(tokens))
    self.assertTrue(os.path.exists(os.path.join(self.dir, "vocab.txt.json")))

  def test_tokenizer_covers_corpus(self):
    self._build("vocab.txt")
    tok = tokenization.FullTokenizer(os.path.join(self.dir, "vocab.txt"), do_lower_case=False)
    with open(self.corpus, encoding="utf-8") as f:
      pieces = [p for line in f for p in tok.tokenize(line)]
    self.assertGreater(len(pieces), 1000)
    self.assertNotIn("[UNK]", pieces)
    # Frequent words are single pieces.
    self.assertEqual(tok.tokenize("Patient denies chest pain"), ["Patient", "denies", "chest", "pain"])

  def test_lower_case(self):
    tokens = self._build("lower.txt", do_lower_case=True).split()
    self.assertIn("patient", tokens)
    self.assertIn("cabg", tokens)
    self.assertFalse([t for t in tokens[5:] if t != t.lower()])
    self.assertIn("cafe", tokens)  # accents stripped, as FullTokenizer(do_lower_case=True) does

  def test_deterministic_and_worker_independent(self):
    a = self._build("a.txt")
    b = self._build("b.txt")
    c = self._build("c.txt", num_workers=2)
    self.assertEqual(a, b)
    self.assertEqual(a, c)

  def test_counting_reports_progress_through_absl(self):
    with self.assertLogs(logger="absl", level="INFO") as logs:
      counts, num_lines = vocab.count_words([self.corpus], log_every_s=0)
    self.assertGreater(num_lines, 150)
    self.assertIn("counting words: %d lines, " % num_lines, "\n".join(logs.output))
    self.assertIn("; %d distinct words" % len(counts), "\n".join(logs.output))

  def test_vocab_size_bounds_result(self):
    small = self._build("small.txt", vocab_size=120).split()
    self.assertLessEqual(len(small), 120)
    with self.assertRaisesRegex(fileio.InputError, "too small for this text"):
      self._build("tiny.txt", vocab_size=60)

  def test_errors(self):
    with self.assertRaisesRegex(fileio.InputError, "vocab_size"):
      self._build("x.txt", vocab_size=5)
    empty = os.path.join(self.dir, "empty.txt")
    with open(empty, "w") as f:
      f.write("\n\n  \n")
    with self.assertRaisesRegex(fileio.InputError, "no text"):
      vocab.build_vocab([empty], os.path.join(self.dir, "e.txt"), vocab_size=100)
    self.assertFalse(os.path.exists(os.path.join(self.dir, "e.txt")))


class ScriptTest(testutil.TestCase):

  def _run(self, *args):
    return subprocess.run(
        [sys.executable, os.path.join(testutil.REPO, "build_vocab.py")] + list(args),
        capture_output=True, text=True, env=testutil.script_env(), check=False)

  def test_script_writes_vocab(self):
    d = self.temp_dir()
    corpus = write_corpus(os.path.join(d, "c.txt"), num_docs=30)
    out = os.path.join(d, "vocab.txt")
    r = self._run("--input_file=" + corpus, "--output_file=" + out, "--vocab_size=100",
                  "--lower_thresh=2")
    self.assertEqual(r.returncode, 0, r.stderr[-2000:])
    with open(out, encoding="utf-8") as f:
      self.assertEqual(f.readline(), "[PAD]\n")

  def test_script_missing_input_is_one_line_error(self):
    d = self.temp_dir()
    r = self._run("--input_file=" + os.path.join(d, "nope*.txt"),
                  "--output_file=" + os.path.join(d, "v.txt"))
    self.assertNotEqual(r.returncode, 0)
    self.assertIn("build_vocab.py: error: --input_file: no file matches", r.stderr)
    self.assertNotIn("Traceback", r.stderr)
    self.assertFalse(os.path.exists(os.path.join(d, "v.txt")))


if __name__ == "__main__":
  absltest.main()
