"""create_pretraining_data.py as a user meets it: errors, sharded mode, atomic outputs, sidecars.

Runs our script only (the comparisons with Google's script are in pretraining_data_test.py).
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining_data
from clinicalbert_tf import tfrecord
from tests import pretraining_corpus
from tests import testutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "create_pretraining_data.py")


def _script(*args):
  return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True,
                        env=testutil.script_env(), cwd=REPO_ROOT)


def _records_from_bytes(data):
  """The records of TFRecord bytes (framing only; CRCs are checked in tfrecord_test)."""
  out = []
  pos = 0
  while pos < len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    out.append(data[pos + 12:pos + 12 + length])
    pos += 16 + length
  return out


def _records(path):
  with open(path, "rb") as f:
    return _records_from_bytes(f.read())


def _read(path):
  with open(path, "rb") as f:
    return f.read()


class ScriptTestCase(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()
    self.vocab = self.path("vocab.txt")
    pretraining_corpus.make_vocab(self.vocab)
    self.corpus = self.path("corpus.txt")
    pretraining_corpus.write_corpus(self.corpus, 30, seed=3)

  def path(self, name):
    return os.path.join(self.dir, name)

  def write(self, name, text):
    with open(self.path(name), "w", encoding="utf-8") as f:
      f.write(text)
    return self.path(name)

  def vocab_tokens(self):
    with open(self.vocab, encoding="utf-8") as f:
      return f.read().split("\n")

  def files_in(self, directory=None):
    return sorted(os.listdir(directory or self.dir))


class ErrorTest(ScriptTestCase):
  """Each bad input: a one-line message naming the flag or file, non-zero exit, no output."""

  def assert_fails(self, expected, *args, output="out.tfrecord"):
    before = self.files_in()
    outputs = ",".join(o if "://" in o else self.path(o) for o in output.split(","))
    proc = _script("--output_file=" + outputs, *args)
    self.assertNotEqual(proc.returncode, 0, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    self.assertStartsWith(last, "create_pretraining_data.py: error: ")
    self.assertRegex(last, expected)
    self.assertEqual(self.files_in(), before, "the failed run left files behind")

  def test_missing_vocab(self):
    self.assert_fails(r"--vocab_file: no such file: .*nope\.txt",
                      "--input_file=" + self.corpus, "--vocab_file=" + self.path("nope.txt"))

  def test_empty_vocab(self):
    self.assert_fails(r"--vocab_file .*empty\.txt is empty",
                      "--input_file=" + self.corpus, "--vocab_file=" + self.write("empty.txt", ""))

  def test_vocab_without_special_tokens(self):
    for missing in ("[CLS]", "[SEP]", "[MASK]"):
      tokens = [t for t in self.vocab_tokens() if t != missing]
      vocab = self.write("v.txt", "\n".join(tokens))
      self.assert_fails(r"--vocab_file .*v\.txt has no %s token" % missing.replace("[", r"\["),
                        "--input_file=" + self.corpus, "--vocab_file=" + vocab)

  def test_vocab_without_unk_when_needed(self):
    tokens = [t for t in self.vocab_tokens() if t != "[UNK]"]
    vocab = self.write("v.txt", "\n".join(tokens))
    self.assert_fails(r"--vocab_file .*v\.txt has no \[UNK\] token, which the input needs",
                      "--input_file=" + self.corpus, "--vocab_file=" + vocab)

  def test_pattern_matching_no_file(self):
    self.assert_fails(r"--input_file: no file matches .*nothing\*\.txt",
                      "--input_file=%s,%s" % (self.corpus, self.path("nothing*.txt")),
                      "--vocab_file=" + self.vocab)

  def test_input_without_a_document(self):
    empty = self.write("blank.txt", "\n\n   \n\x01\n\n")
    self.assert_fails(r"--input_file: no non-empty document in .*blank\.txt",
                      "--input_file=" + empty, "--vocab_file=" + self.vocab)

  def test_invalid_utf8(self):
    with open(self.path("bad.txt"), "wb") as f:
      f.write(b"one line\nsecond \xc3( line\n")
    self.assert_fails(r"bad\.txt:2: not valid UTF-8",
                      "--input_file=" + self.path("bad.txt"), "--vocab_file=" + self.vocab)

  def test_max_seq_length_below_five(self):
    self.assert_fails(r"--max_seq_length=4: must be at least 5", "--input_file=" + self.corpus,
                      "--vocab_file=" + self.vocab, "--max_seq_length=4")

  def test_other_bad_flags(self):
    base = ["--input_file=" + self.corpus, "--vocab_file=" + self.vocab]
    self.assert_fails(r"--dupe_factor=0", *base, "--dupe_factor=0")
    self.assert_fails(r"--masked_lm_prob=1.5", *base, "--masked_lm_prob=1.5")
    self.assert_fails(r"--num_workers=0", *base, "--num_workers=0")
    self.assert_fails(r"--input_file is required", "--vocab_file=" + self.vocab)
    self.assert_fails(r"--output_file lists .*twice\.tfrecord more than once", *base,
                      output="twice.tfrecord,twice.tfrecord")
    self.assert_fails(r"--output_file gs://b/x: only local paths", *base, output="gs://b/x")

  def test_failure_in_sharded_mode_leaves_no_shard(self):
    empty = self.write("blank.txt", "\n\n")
    self.assert_fails(r"no non-empty document in .*blank\.txt",
                      "--input_file=%s,%s" % (self.corpus, empty), "--vocab_file=" + self.vocab,
                      "--shard_per_file")

  def test_too_few_predictions_is_a_warning_with_both_numbers(self):
    out = self.path("warn.tfrecord")
    proc = _script("--input_file=" + self.corpus, "--vocab_file=" + self.vocab,
                   "--output_file=" + out, "--max_seq_length=256", "--max_predictions_per_seq=20",
                   "--dupe_factor=1")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    # round(256 * 0.15) = 38 predictions wanted, 20 allowed.
    self.assertRegex(proc.stderr, r"--max_predictions_per_seq=20 is smaller than the 38 predictions")
    self.assertTrue(os.path.exists(out))


class OutputTest(ScriptTestCase):

  def test_sidecar_records_flags_vocab_and_counts(self):
    outs = [self.path("a.tfrecord"), self.path("b.tfrecord")]
    proc = _script("--input_file=" + self.corpus, "--vocab_file=" + self.vocab,
                   "--output_file=" + ",".join(outs), "--max_seq_length=64",
                   "--max_predictions_per_seq=10", "--do_lower_case=False")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    total = sum(len(_records(p)) for p in outs)
    for out in outs:
      with open(fileio.sidecar_path(out), encoding="utf-8") as f:
        record = json.load(f)
      self.assertEqual(record["instances"], len(_records(out)))
      self.assertEqual(record["total_instances"], total)
      self.assertEqual(record["vocab_sha256"], fileio.sha256_of_file(self.vocab))
      self.assertEqual(record["flags"]["max_seq_length"], 64)
      self.assertEqual(record["flags"]["dupe_factor"], 5)
      self.assertFalse(record["flags"]["do_lower_case"])
    # Round-robin: the first file gets the extra record when the total is odd.
    self.assertIn(len(_records(outs[0])) - len(_records(outs[1])), (0, 1))
    self.assertEqual(sorted(self.files_in()), sorted(
        ["a.tfrecord", "a.tfrecord.json", "b.tfrecord", "b.tfrecord.json", "corpus.txt",
         "vocab.txt"]))

  def test_log_examples_is_off_by_default(self):
    base = ["--input_file=" + self.corpus, "--vocab_file=" + self.vocab, "--dupe_factor=1"]
    quiet = _script("--output_file=" + self.path("q.tfrecord"), *base)
    self.assertNotIn("*** Example ***", quiet.stderr)
    self.assertNotIn("tokens:", quiet.stderr)
    loud = _script("--output_file=" + self.path("l.tfrecord"), "--log_examples=2", *base)
    self.assertEqual(loud.stderr.count("*** Example ***"), 2)

  def test_failure_while_writing_leaves_no_file(self):
    # An injected failure after the first batch of records has been written.
    calls = []
    original = tfrecord.frame_tfrecords

    def failing(data, lengths):
      calls.append(1)
      if len(calls) > 1:
        raise RuntimeError("injected")
      return original(data, lengths)

    out = self.path("fail.tfrecord")
    big = self.path("big.txt")
    pretraining_corpus.write_corpus(big, 300, seed=4)
    tfrecord.frame_tfrecords = failing
    try:
      with self.assertRaisesRegex(RuntimeError, "injected"):
        pretraining_data.create_pretraining_data(
            [big], [out], self.vocab, pretraining_data.Options(dupe_factor=5))
    finally:
      tfrecord.frame_tfrecords = original
    self.assertGreater(len(calls), 1)
    self.assertEqual(self.files_in(), ["big.txt", "corpus.txt", "vocab.txt"])

  def test_killed_run_leaves_no_file_under_the_final_name(self):
    big = self.path("big.txt")
    pretraining_corpus.write_corpus(big, 1500, seed=6)
    out_dir = self.path("out")
    os.makedirs(out_dir)
    out = os.path.join(out_dir, "killed.tfrecord")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--input_file=" + big, "--vocab_file=" + self.vocab,
         "--output_file=" + out, "--dupe_factor=3"],
        env=testutil.script_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    # Wait until it has started writing (its temporary file exists and has records), then kill it.
    deadline = time.time() + 120
    seen = None
    while time.time() < deadline and proc.poll() is None:
      temps = [n for n in os.listdir(out_dir) if n.startswith(".killed.tfrecord.tmp")]
      if temps and os.path.getsize(os.path.join(out_dir, temps[0])) > 0:
        seen = temps[0]
        break
      time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if seen is None:
      self.skipTest("the run finished before it could be killed mid-write")
    self.assertFalse(os.path.exists(out))
    self.assertFalse(os.path.exists(fileio.sidecar_path(out)))


class ShardedTest(ScriptTestCase):

  def test_one_and_two_workers_write_the_same_shards(self):
    inputs = []
    for i in range(3):
      inputs.append(self.path("part%d.txt" % i))
      pretraining_corpus.write_corpus(inputs[-1], 15 + 5 * i, seed=10 + i)
    base = ["--input_file=" + self.path("part*.txt"), "--vocab_file=" + self.vocab,
            "--dupe_factor=2", "--max_seq_length=48", "--max_predictions_per_seq=7"]
    results = {}
    for workers in (1, 2):
      out_dir = self.path("w%d" % workers)
      extra = ["--shard_per_file"] if workers == 1 else ["--num_workers=2"]
      proc = _script("--output_file=%s,%s" % (os.path.join(out_dir, "x.tfrecord"),
                                              os.path.join(out_dir, "y.tfrecord")), *base, *extra)
      self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
      results[workers] = {name: _read(os.path.join(out_dir, name))
                          for name in os.listdir(out_dir) if not name.endswith(".json")}
    expected = sorted("%s.tfrecord-%05d-of-00003" % (xy, s) for xy in "xy" for s in range(3))
    self.assertEqual(sorted(results[1]), expected)
    self.assertEqual(results[1], results[2])
    for data in results[1].values():
      self.assertNotEmpty(_records_from_bytes(data))
    # Each shard has its own seed: shards are not copies of each other's draws.
    self.assertNotEqual(pretraining_data.shard_seed(12345, 0), pretraining_data.shard_seed(12345, 1))
    with open(os.path.join(self.path("w2"), "x.tfrecord-00001-of-00003.json")) as f:
      record = json.load(f)
    self.assertEqual(record["shard"]["index"], 1)
    self.assertEqual(record["input_files"], [inputs[1]])
    self.assertEqual(record["shard"]["seed"], pretraining_data.shard_seed(12345, 1))

  def test_a_one_file_shard_is_the_exact_run_with_the_shard_seed(self):
    # Sharded mode is the exact algorithm on each file with the derived seed.
    out = self.path("s.tfrecord")
    proc = _script("--input_file=" + self.corpus, "--vocab_file=" + self.vocab,
                   "--output_file=" + out, "--shard_per_file", "--dupe_factor=1")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    exact = self.path("e.tfrecord")
    proc = _script("--input_file=" + self.corpus, "--vocab_file=" + self.vocab,
                   "--output_file=" + exact, "--dupe_factor=1",
                   "--random_seed=%d" % pretraining_data.shard_seed(12345, 0))
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertEqual(_read(out + "-00000-of-00001"), _read(exact))


if __name__ == "__main__":
  absltest.main()
