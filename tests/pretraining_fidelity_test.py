"""run_pretraining against Google's run_pretraining.py (bert-tensorflow 1.0.4, run unmodified).

  * `--do_eval` from the same init checkpoint (with `cls/` heads) on records made by Google's
    `create_pretraining_data`: the same metrics within 1e-4 relative, and the same
    `eval_results.txt` layout.
  * training with dropout 0 for a few steps, then evaluating: loss and metrics within 1e-3 relative.
    The batch order is fixed in both: one record file (so Google's file shuffle and sloppy
    interleave are moot) and no record shuffling (ours: `shuffle_buffer_size=0`; Google's buffer of
    100 is unseeded and hard-coded, so its launcher turns `Dataset.shuffle` into an identity with
    `GOOGLE_PRETRAINING_NO_SHUFFLE=1`; Google's code is not changed).
  * checkpoints cross-load: Google's final checkpoint as our `init_checkpoint` reproduces Google's
    metrics, ours as Google's reproduces ours; both hold the same variable names (adam_m/adam_v,
    global_step) and pass the strict HuggingFace load (tests/hf_util.py).
"""

import os
import random
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining
from tests import hf_util
from tests import testutil

tf.disable_v2_behavior()

SEQ = 32
PRED = 5
# Metrics compared (global_step differs when a checkpoint is evaluated as an init_checkpoint).
METRICS = ["loss", "masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
           "next_sentence_loss"]

_WORDS = ("patient denies chest pain shortness breath nausea fever cough history hypertension "
          "diabetes admitted pneumonia treated antibiotics discharged home stable follow clinic "
          "blood pressure heart rate oxygen lungs clear abdomen soft edema alert labs creatinine "
          "potassium glucose the a and to for on in was is with no").split()


def _write_vocab_and_corpus(directory, seed=0):
  """An invented vocabulary (with ## pieces) and a corpus of short documents."""
  rng = random.Random(seed)
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + _WORDS + [
      "##s", "##ed", "##ing", "echo", "##cardio", "##gram"]
  vocab_file = os.path.join(directory, "vocab.txt")
  with open(vocab_file, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  corpus_file = os.path.join(directory, "corpus.txt")
  with open(corpus_file, "w", encoding="utf-8") as f:
    for _ in range(24):
      for _ in range(rng.randint(3, 8)):
        words = [rng.choice(_WORDS + ["echocardiogram", "treating"])
                 for _ in range(rng.randint(4, 14))]
        f.write(" ".join(words) + " .\n")
      f.write("\n")
  return vocab_file, corpus_file, len(vocab)


class PretrainingFidelityTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    vocab_file, corpus_file, vocab_size = _write_vocab_and_corpus(cls.tmp)
    cls.config = testutil.tiny_config(vocab_size=vocab_size, num_attention_heads=2, dropout=0.0)
    cls.config_file = testutil.write_config(cls.tmp, cls.config)
    # Records from Google's own create_pretraining_data (what ours must also read).
    cls.google_records = os.path.join(cls.tmp, "google.tfrecord")
    subprocess.run(
        [sys.executable, "-m", "bert.create_pretraining_data", "--input_file=" + corpus_file,
         "--output_file=" + cls.google_records, "--vocab_file=" + vocab_file,
         "--do_lower_case=True", "--max_seq_length=%d" % SEQ,
         "--max_predictions_per_seq=%d" % PRED, "--masked_lm_prob=0.15", "--random_seed=7",
         "--dupe_factor=2"],
        env=testutil.script_env(), check=True, capture_output=True, timeout=300)
    cls.train_records = testutil.write_pretraining_records(
        os.path.join(cls.tmp, "train.tfrecord"), 64, SEQ, PRED, vocab_size)
    cls.init = testutil.write_checkpoint(os.path.join(cls.tmp, "init", "model.ckpt"), cls.config,
                                         heads="pretraining", released=True)

  def _common(self, **overrides):
    flags = dict(bert_config_file=self.config_file, max_seq_length=SEQ,
                 max_predictions_per_seq=PRED, eval_batch_size=8, max_eval_steps=6)
    flags.update(overrides)
    return flags

  def test_eval_matches_google(self):
    flags = self._common(input_file=self.google_records, init_checkpoint=self.init)
    g_dir, o_dir = self.temp_dir(), self.temp_dir()
    testutil.run_google_pretraining(dict(flags, output_dir=g_dir, do_eval=True))
    ours = pretraining.run_pretraining(output_dir=o_dir, do_eval=True, **flags)
    google = fileio.read_key_values(os.path.join(g_dir, "eval_results.txt"))
    self.assertResultsClose(ours, google, rtol=1e-4, keys=METRICS)
    self.assertEqual(ours["global_step"], 0)
    self.assertEqual(google["global_step"], 0)
    # Same keys, same order, same "key = value" layout.
    with open(os.path.join(g_dir, "eval_results.txt"), encoding="utf-8") as f:
      g_keys = [line.split(" = ")[0] for line in f]
    with open(os.path.join(o_dir, "eval_results.txt"), encoding="utf-8") as f:
      o_keys = [line.split(" = ")[0] for line in f]
    self.assertEqual(o_keys, g_keys)

  def test_training_matches_google_and_checkpoints_cross_load(self):
    flags = self._common(input_file=self.train_records, init_checkpoint=self.init, do_train=True,
                         do_eval=True, train_batch_size=8, num_train_steps=5, num_warmup_steps=2,
                         learning_rate=1e-3, save_checkpoints_steps=5)
    g_dir, o_dir = self.temp_dir(), self.temp_dir()
    testutil.run_google_pretraining(dict(flags, output_dir=g_dir), no_shuffle=True)
    ours = pretraining.run_pretraining(output_dir=o_dir, shuffle_buffer_size=0, **flags)
    google = fileio.read_key_values(os.path.join(g_dir, "eval_results.txt"))
    self.assertEqual(google["global_step"], 5)
    self.assertEqual(ours["global_step"], 5)
    self.assertResultsClose(ours, google, rtol=1e-3, keys=METRICS)

    g_ckpt = tf.train.latest_checkpoint(g_dir)
    o_ckpt = tf.train.latest_checkpoint(o_dir)
    self.assertEqual(os.path.basename(o_ckpt), "model.ckpt-5")
    g_vars, o_vars = testutil.read_checkpoint(g_ckpt), testutil.read_checkpoint(o_ckpt)
    self.assertEqual(sorted(o_vars), sorted(g_vars))
    self.assertIn("bert/embeddings/word_embeddings/adam_m", o_vars)
    self.assertEqual(int(o_vars["global_step"]), 5)
    for name in g_vars:
      if not name.endswith(("adam_m", "adam_v")):
        np.testing.assert_allclose(o_vars[name], g_vars[name], rtol=1e-3, atol=1e-5,
                                   err_msg=name)

    # Google's checkpoint as our init_checkpoint reproduces Google's metrics ...
    eval_flags = self._common(input_file=self.train_records)
    ours_of_google = pretraining.run_pretraining(
        output_dir=self.temp_dir(), init_checkpoint=g_ckpt, do_eval=True, **eval_flags)
    self.assertResultsClose(ours_of_google, google, rtol=1e-4, keys=METRICS)
    # ... and ours as Google's reproduces ours.
    g2_dir = self.temp_dir()
    testutil.run_google_pretraining(dict(eval_flags, output_dir=g2_dir, init_checkpoint=o_ckpt, do_eval=True))
    google_of_ours = fileio.read_key_values(os.path.join(g2_dir, "eval_results.txt"))
    self.assertResultsClose(google_of_ours, ours, rtol=1e-4, keys=METRICS)

    # Both load strictly into HuggingFace's BertForPreTraining.
    hf_util.assert_strict_hf_load(o_ckpt, self.config)
    hf_util.assert_strict_hf_load(g_ckpt, self.config)


if __name__ == "__main__":
  absltest.main()
