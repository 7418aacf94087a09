"""Tests for clinicalbert_tf/features.py and extract_features.py, against Google's script."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import features
from clinicalbert_tf import fileio
from tests import testutil

tf.disable_v2_behavior()

_LINES = [
    "Patient denies chest pain .",
    "history of hypertension ||| no fever , cough",
    "",
    "kidney " * 40,  # longer than max_seq_length: truncated as Google truncates
    "heart failure ||| " + "lung " * 30,
    "Unknown wordz \u00e9 [**2101-10-20**]",
    "the patient was discharged home stable",
]

# Google's extract_features, unmodified, with the layer_norm stand-in (tests/oracle.py).
_GOOGLE = """
import sys
from absl import app
from tests import oracle  # installs the tf.contrib stand-in
from bert import extract_features
app.run(extract_features.main, argv=["extract_features"] + sys.argv[1:])
"""


class FeaturesTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(cls.dir)
    cls.config = testutil.tiny_config()
    cls.config_file = testutil.write_config(cls.dir, cls.config)
    cls.ckpt = testutil.write_checkpoint(os.path.join(cls.dir, "model.ckpt"), cls.config,
                                         heads="pretraining")
    cls.input = os.path.join(cls.dir, "input.txt")
    with open(cls.input, "w", encoding="utf-8") as f:
      f.write("\n".join(_LINES) + "\n")

  def _args(self, output, **extra):
    args = dict(input_file=self.input, output_file=output, bert_config_file=self.config_file,
                init_checkpoint=self.ckpt, vocab_file=self.vocab, layers="-1,-2,0",
                max_seq_length=24, do_lower_case=False, batch_size=3)
    args.update(extra)
    return args

  def _run_google(self, output):
    args = ["--%s=%s" % kv for kv in sorted(self._args(output).items())]
    r = subprocess.run([sys.executable, "-c", _GOOGLE] + args, capture_output=True, text=True,
                       env=testutil.script_env(), check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])

  def test_matches_google(self):
    ours = os.path.join(self.dir, "ours.jsonl")
    google = os.path.join(self.dir, "google.jsonl")
    n = features.extract_features(**self._args(ours))
    self.assertEqual(n, len(_LINES))
    self._run_google(google)
    with open(ours) as f:
      ours_lines = f.read().splitlines()
    with open(google) as f:
      google_lines = f.read().splitlines()
    self.assertEqual(len(ours_lines), len(google_lines))
    max_diff = 0.0
    for a_text, b_text in zip(ours_lines, google_lines):
      a, b = json.loads(a_text), json.loads(b_text)
      self.assertEqual(list(a), ["linex_index", "features"])
      self.assertEqual(a["linex_index"], b["linex_index"])
      self.assertEqual([t["token"] for t in a["features"]], [t["token"] for t in b["features"]])
      for ta, tb in zip(a["features"], b["features"]):
        self.assertEqual([l["index"] for l in ta["layers"]], [-1, -2, 0])
        self.assertEqual([l["index"] for l in ta["layers"]], [l["index"] for l in tb["layers"]])
        for la, lb in zip(ta["layers"], tb["layers"]):
          self.assertLen(la["values"], 32)
          max_diff = max(max_diff, float(np.max(np.abs(np.array(la["values"]) -
                                                       np.array(lb["values"])))))
    self.assertLess(max_diff, 1e-5)
    first = json.loads(ours_lines[0])
    self.assertEqual([t["token"] for t in first["features"]],
                     ["[CLS]", "Patient", "denies", "chest", "pain", ".", "[SEP]"])
    self.assertLen(json.loads(ours_lines[3])["features"], 24)  # truncated to max_seq_length
    self.assertEqual([t["token"] for t in json.loads(ours_lines[2])["features"]],
                     ["[CLS]", "[SEP]"])  # a blank line is an (empty) example, as in Google's

  def test_script_and_batch_size_do_not_change_output(self):
    a = os.path.join(self.dir, "a.jsonl")
    b = os.path.join(self.dir, "b.jsonl")
    features.extract_features(**self._args(a, batch_size=1))
    args = ["--%s=%s" % kv for kv in sorted(self._args(b, batch_size=5).items())]
    r = subprocess.run([sys.executable, os.path.join(testutil.REPO, "extract_features.py")] + args,
                       capture_output=True, text=True, env=testutil.script_env(), check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(a) as fa, open(b) as fb:
      la, lb = fa.read().splitlines(), fb.read().splitlines()
    for x, y in zip(la, lb):
      vx = np.array([l["values"] for t in json.loads(x)["features"] for l in t["layers"]])
      vy = np.array([l["values"] for t in json.loads(y)["features"] for l in t["layers"]])
      self.assertAllClose(vx, vy, atol=2e-6)

  def test_errors(self):
    out = os.path.join(self.dir, "err.jsonl")
    with self.assertRaisesRegex(fileio.InputError, "layer 5 does not exist"):
      features.extract_features(**self._args(out, layers="-1,5"))
    with self.assertRaisesRegex(fileio.InputError, "max_position_embeddings"):
      features.extract_features(**self._args(out, max_seq_length=100))
    with self.assertRaisesRegex(fileio.InputError, "no checkpoint"):
      features.extract_features(**self._args(out, init_checkpoint=self.dir + "/nope.ckpt"))
    # A checkpoint of another shape: the error names the variable and both shapes.
    other = testutil.tiny_config(hidden_size=16, num_attention_heads=2)
    ckpt = testutil.write_checkpoint(os.path.join(self.temp_dir(), "other.ckpt"), other)
    with self.assertRaisesRegex(fileio.InputError, r"word_embeddings has shape \[\d+, 16\]"):
      features.extract_features(**self._args(out, init_checkpoint=ckpt))
    self.assertFalse(os.path.exists(out))
    r = subprocess.run([sys.executable, os.path.join(testutil.REPO, "extract_features.py"),
                        "--input_file=" + self.input, "--output_file=" + out,
                        "--bert_config_file=" + self.config_file, "--vocab_file=" + self.vocab,
                        "--layers=-1", "--max_seq_length=16",
                        "--init_checkpoint=" + self.dir + "/missing"],
                       capture_output=True, text=True, env=testutil.script_env(), check=False)
    self.assertNotEqual(r.returncode, 0)
    self.assertIn("extract_features.py: error: --init_checkpoint", r.stderr)
    self.assertNotIn("Traceback", r.stderr)

  def test_read_examples(self):
    examples = list(features.read_examples(self.input))
    self.assertLen(examples, len(_LINES))
    self.assertEqual(examples[1], features.InputExample(1, "history of hypertension",
                                                        "no fever , cough"))


if __name__ == "__main__":
  absltest.main()
