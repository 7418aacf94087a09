"""Tests for clinicalbert_tf.fileio: atomic outputs, glob expansion, comma lists, hashing."""

import hashlib
import json
import os
import re

from absl.testing import absltest
import numpy as np

from clinicalbert_tf import fileio
from tests import testutil


class SplitCommaListTest(testutil.TestCase):

  def test_strips_and_drops_empty_items(self):
    self.assertEqual(fileio.split_comma_list(" a.txt, b.txt ,,c.txt,"), ["a.txt", "b.txt", "c.txt"])

  def test_empty_values(self):
    self.assertEqual(fileio.split_comma_list(""), [])
    self.assertEqual(fileio.split_comma_list(None), [])
    self.assertEqual(fileio.split_comma_list(" , "), [])


class ExpandFilePatternsTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()
    for name in ["b1.txt", "a2.txt", "a1.txt", "c.txt"]:
      with open(os.path.join(self.dir, name), "w") as f:
        f.write(name)

  def path(self, name):
    return os.path.join(self.dir, name)

  def test_order_is_pattern_order_then_sorted_glob(self):
    # Google's scripts glob each pattern in turn: the b pattern's files come before the a pattern's.
    patterns = ",".join([self.path("c.txt"), self.path("b*.txt"), self.path("a*.txt")])
    self.assertEqual(
        fileio.expand_file_patterns(patterns),
        [self.path("c.txt"), self.path("b1.txt"), self.path("a1.txt"), self.path("a2.txt")])

  def test_accepts_a_list(self):
    self.assertEqual(
        fileio.expand_file_patterns([self.path("a2.txt"), self.path("a1.txt")]),
        [self.path("a2.txt"), self.path("a1.txt")])

  def test_no_match_names_flag_and_pattern(self):
    missing = self.path("nothing*.txt")
    with self.assertRaises(fileio.InputError) as cm:
      fileio.expand_file_patterns(self.path("a1.txt") + "," + missing, flag_name="train_file")
    self.assertIn("--train_file", str(cm.exception))
    self.assertIn(missing, str(cm.exception))

  def test_missing_plain_path_is_an_error(self):
    with self.assertRaises(fileio.InputError):
      fileio.expand_file_patterns(self.path("absent.txt"))

  def test_empty_value_is_an_error(self):
    with self.assertRaises(fileio.InputError) as cm:
      fileio.expand_file_patterns(" , ", flag_name="input_file")
    self.assertIn("--input_file is empty", str(cm.exception))

  def test_input_error_is_a_value_error(self):
    self.assertTrue(issubclass(fileio.InputError, ValueError))

  def test_skip_sidecars_drops_only_records_of_matched_outputs(self):
    for name in ["r.tfrecord", "r.tfrecord.json", "notes.json"]:
      with open(self.path(name), "w") as f:
        f.write(name)
    pattern = self.path("*")
    with_sidecars = fileio.expand_file_patterns(pattern)
    self.assertIn(self.path("r.tfrecord.json"), with_sidecars)
    skipped = fileio.expand_file_patterns(pattern, skip_sidecars=True)
    self.assertNotIn(self.path("r.tfrecord.json"), skipped)
    # A .json file whose companion did not match is an input like any other.
    self.assertIn(self.path("notes.json"), skipped)
    self.assertEqual(len(skipped), len(with_sidecars) - 1)
    # Named alone, a sidecar is read: the user asked for it.
    self.assertEqual(fileio.expand_file_patterns(self.path("r.tfrecord.json"), skip_sidecars=True),
                     [self.path("r.tfrecord.json")])


class ExitOnInputErrorTest(testutil.TestCase):

  def test_input_error_becomes_one_line_and_exit_1(self):
    with self.assertRaises(SystemExit) as cm:
      with fileio.exit_on_input_error("tool.py"):
        raise fileio.InputError("--x: bad")
    self.assertEqual(cm.exception.code, "tool.py: error: --x: bad")

  def test_other_exceptions_pass_unless_named(self):
    with self.assertRaises(KeyError):
      with fileio.exit_on_input_error("tool.py"):
        raise KeyError("k")
    with self.assertRaises(SystemExit):
      with fileio.exit_on_input_error("tool.py", also=(KeyError,)):
        raise KeyError("k")


class AtomicOutputTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()

  def test_success_renames_to_final_name(self):
    out = os.path.join(self.dir, "sub", "out.txt")  # the directory is created on demand
    with fileio.atomic_output(out) as tmp:
      self.assertNotEqual(tmp, out)
      with open(tmp, "w") as f:
        f.write("done")
      self.assertFalse(os.path.exists(out))  # nothing under the final name before success
    with open(out) as f:
      self.assertEqual(f.read(), "done")
    self.assertEqual(os.listdir(os.path.dirname(out)), ["out.txt"])

  def test_exception_leaves_no_file(self):
    out = os.path.join(self.dir, "out.txt")
    with self.assertRaisesRegex(RuntimeError, "boom"):
      with fileio.atomic_output(out) as tmp:
        with open(tmp, "w") as f:
          f.write("half")
        raise RuntimeError("boom")
    self.assertEqual(os.listdir(self.dir), [])

  def test_exception_keeps_previous_file(self):
    out = os.path.join(self.dir, "out.txt")
    fileio.write_text_atomic(out, "old")
    with self.assertRaises(KeyboardInterrupt):
      with fileio.atomic_open(out) as f:
        f.write("new")
        raise KeyboardInterrupt()
    with open(out) as f:
      self.assertEqual(f.read(), "old")
    self.assertEqual(os.listdir(self.dir), ["out.txt"])

  def test_atomic_open_binary(self):
    out = os.path.join(self.dir, "out.bin")
    with fileio.atomic_open(out, "wb") as f:
      f.write(b"\x00\xff")
    with open(out, "rb") as f:
      self.assertEqual(f.read(), b"\x00\xff")

  def test_json_and_sidecar(self):
    out = os.path.join(self.dir, "model.tfrecord")
    fileio.write_sidecar(out, {"b": 1, "a": "é"})
    self.assertEqual(fileio.sidecar_path(out), out + ".json")
    with open(out + ".json", encoding="utf-8") as f:
      text = f.read()
    self.assertEqual(json.loads(text), {"a": "é", "b": 1})
    self.assertLess(text.index('"a"'), text.index('"b"'))  # keys sorted
    self.assertTrue(text.endswith("\n"))


class KeyValuesTest(testutil.TestCase):

  def test_format_is_googles(self):
    values = {"loss": 0.5, "global_step": 7, "accuracy": np.float32(0.25)}
    # Google's run_pretraining / run_classifier write their results exactly so.
    google = "".join("%s = %s\n" % (key, str(values[key])) for key in sorted(values.keys()))
    self.assertEqual(fileio.format_key_values(values), google)
    self.assertEqual(fileio.format_key_values({}), "")

  def test_write_then_read(self):
    path = os.path.join(self.temp_dir(), "sub", "eval_results.txt")
    self.assertEqual(fileio.write_key_values(path, {"b": 2, "a": 1.5}), path)
    with open(path, encoding="utf-8") as f:
      self.assertEqual(f.read(), "a = 1.5\nb = 2\n")
    self.assertEqual(fileio.read_key_values(path), {"a": 1.5, "b": 2.0})
    self.assertEqual(fileio.read_key_values(path, convert=None), {"a": "1.5", "b": "2"})

  def test_read_skips_other_lines_and_names_bad_values(self):
    path = os.path.join(self.temp_dir(), "results.txt")
    with open(path, "w", encoding="utf-8") as f:
      f.write("***** Eval results *****\nloss = 0.25\nname = abc\n")
    with self.assertRaisesRegex(fileio.InputError, re.escape(path) + ":3: name = 'abc'"):
      fileio.read_key_values(path)
    self.assertEqual(fileio.read_key_values(path, convert=None), {"loss": "0.25", "name": "abc"})
    with self.assertRaisesRegex(fileio.InputError, "cannot be read"):
      fileio.read_key_values(os.path.join(self.temp_dir(), "absent.txt"))


class Sha256Test(testutil.TestCase):

  def test_matches_hashlib_across_chunks(self):
    path = os.path.join(self.temp_dir(), "data.bin")
    data = bytes(range(256)) * 1000
    with open(path, "wb") as f:
      f.write(data)
    expected = hashlib.sha256(data).hexdigest()
    self.assertEqual(fileio.sha256_of_file(path), expected)
    self.assertEqual(fileio.sha256_of_file(path, chunk_size=7), expected)

  def test_empty_file(self):
    path = os.path.join(self.temp_dir(), "empty")
    open(path, "wb").close()
    self.assertEqual(fileio.sha256_of_file(path),
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


if __name__ == "__main__":
  absltest.main()
