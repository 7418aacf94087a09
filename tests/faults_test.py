"""Faults a new user meets, through the real scripts: one line naming the file, exit 1, no output.

Each case runs a top-level script as a child process (all of them started in `setUpClass`, two at
a time) on a tiny invented model, with one thing wrong: records cut short or corrupt, a checkpoint
cut short or of another kind, a safetensors file cut short, a HuggingFace directory of another
architecture, a vocabulary of another model, a config of another shape, an output path under a
file, an empty input. Each test checks exit status 1, a last stderr line `<script>.py: error: ...`
naming the file and what was expected, no traceback, and no output under its final name. The
cheap checks that need no child process (casing vs vocabulary, the size rules, output paths of
predict.py) run in this process.
"""

import concurrent.futures
import json
import os
import shutil
import time

from absl.testing import absltest

from tests import testutil

SEQ, PRED = 32, 5
TESTDATA = os.path.join(testutil.REPO, "testdata")


def _record_offsets(path):
  """Byte offsets of each TFRecord's start (uint64 length, uint32 crc, data, uint32 crc)."""
  import struct  # pylint: disable=g-import-not-at-top
  offsets, offset, size = [], 0, os.path.getsize(path)
  with open(path, "rb") as f:
    while offset < size:
      f.seek(offset)
      (length,) = struct.unpack("<Q", f.read(8))
      offsets.append(offset)
      offset += 12 + length + 4
  return offsets


def _copy_cut(src, dst, keep_bytes):
  with open(src, "rb") as f:
    data = f.read()
  with open(dst, "wb") as f:
    f.write(data[:keep_bytes])


class FaultsTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from clinicalbert_tf import hf  # pylint: disable=g-import-not-at-top  (imports TF)
    d = cls.dir = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(d)
    cls.config = testutil.tiny_config()
    cls.config_file = testutil.write_config(d, cls.config)
    cls.ckpt = testutil.write_checkpoint(os.path.join(d, "model.ckpt"), cls.config,
                                         heads="pretraining")
    records = testutil.write_pretraining_records(os.path.join(d, "train.tfrecord"), 24, SEQ, PRED,
                                                 cls.config.vocab_size)
    offsets = _record_offsets(records)
    p = cls.paths = {}
    # Cut inside record 10 (an interrupted copy).
    p["cut_records"] = os.path.join(d, "cut.tfrecord")
    _copy_cut(records, p["cut_records"], offsets[9] + 40)
    # Framing intact, one data byte of record 2 flipped: only reading the data finds it.
    p["corrupt_records"] = os.path.join(d, "corrupt.tfrecord")
    with open(records, "rb") as f:
      data = bytearray(f.read())
    data[offsets[1] + 12 + 20] ^= 0xFF
    with open(p["corrupt_records"], "wb") as f:
      f.write(bytes(data))
    # A checkpoint whose data file is cut short; one whose index is garbage.
    data_file = cls.ckpt + ".data-00000-of-00001"
    os.makedirs(os.path.join(d, "cut_ckpt"))
    p["cut_ckpt"] = os.path.join(d, "cut_ckpt", "model.ckpt")
    shutil.copy(cls.ckpt + ".index", p["cut_ckpt"] + ".index")
    _copy_cut(data_file, p["cut_ckpt"] + ".data-00000-of-00001", os.path.getsize(data_file) // 2)
    os.makedirs(os.path.join(d, "bad_index"))
    p["bad_index"] = os.path.join(d, "bad_index", "model.ckpt")
    shutil.copy(data_file, p["bad_index"] + ".data-00000-of-00001")
    with open(p["bad_index"] + ".index", "wb") as f:
      f.write(b"\x00garbage, not an sstable\x01" * 40)
    # A plain file where folders are expected; a vocabulary of 50 tokens (config: 159).
    p["a_file"] = os.path.join(d, "a_file")
    with open(p["a_file"], "w") as f:
      f.write("not a folder\n")
    p["small_vocab"] = os.path.join(d, "small_vocab.txt")
    with open(cls.vocab, encoding="utf-8") as f, open(p["small_vocab"], "w",
                                                      encoding="utf-8") as g:
      g.writelines(f.readlines()[:50])
    # A config of another shape than the checkpoint; empty and one-line text inputs.
    other = cls.config.to_dict()
    other.update(hidden_size=64, intermediate_size=128)
    p["other_config"] = testutil.write_config(os.path.join(d, "other_config.json"), other)
    p["empty"] = os.path.join(d, "empty.txt")
    open(p["empty"], "w").close()
    p["text"] = os.path.join(d, "text.txt")
    with open(p["text"], "w") as f:
      f.write("patient denies chest pain\n")
    # HuggingFace directories: one with model.safetensors cut short, one of GPT-2.
    hf_dir = os.path.join(d, "hf")
    hf.export_checkpoint(cls.config_file, cls.ckpt, cls.vocab, False, hf_dir)
    p["hf_cut"] = os.path.join(d, "hf_cut")
    shutil.copytree(hf_dir, p["hf_cut"])
    weights = os.path.join(hf_dir, "model.safetensors")
    _copy_cut(weights, os.path.join(p["hf_cut"], "model.safetensors"),
              os.path.getsize(weights) - 1000)
    p["hf_gpt2"] = os.path.join(d, "hf_gpt2")
    shutil.copytree(hf_dir, p["hf_gpt2"])
    config_json = os.path.join(p["hf_gpt2"], "config.json")
    with open(config_json, encoding="utf-8") as f:
      gpt2 = json.load(f)
    gpt2.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    with open(config_json, "w", encoding="utf-8") as f:
      json.dump(gpt2, f)

    out = cls.out = os.path.join(d, "out")
    pretrain = ["--bert_config_file=" + cls.config_file, "--max_seq_length=%d" % SEQ,
                "--max_predictions_per_seq=%d" % PRED, "--do_train=True", "--num_train_steps=2",
                "--train_batch_size=4", "--num_warmup_steps=1", "--save_checkpoints_steps=1000"]
    finetune = ["--task_name=i2b2_2006", "--data_dir=" + os.path.join(TESTDATA, "i2b2_2006"),
                "--bert_config_file=" + cls.config_file, "--init_checkpoint=" + cls.ckpt,
                "--do_train=True", "--num_train_epochs=1", "--max_seq_length=32",
                "--do_lower_case=False"]
    features = ["--bert_config_file=" + cls.config_file, "--init_checkpoint=" + cls.ckpt,
                "--vocab_file=" + cls.vocab, "--max_seq_length=16", "--do_lower_case=False",
                "--layers=-1"]
    cls.cases = {
        "cut_records": ("run_pretraining", pretrain + [
            "--input_file=" + p["cut_records"], "--output_dir=%s/cut_records" % out]),
        "corrupt_records": ("run_pretraining", pretrain + [
            "--input_file=" + p["corrupt_records"], "--output_dir=%s/corrupt_records" % out]),
        "output_dir_is_file": ("run_pretraining", pretrain + [
            "--input_file=" + records, "--output_dir=" + p["a_file"]]),
        "cut_checkpoint": ("run_pretraining", pretrain + [
            "--input_file=" + records, "--init_checkpoint=" + p["cut_ckpt"],
            "--output_dir=%s/cut_checkpoint" % out]),
        "garbage_index": ("run_pretraining", pretrain + [
            "--input_file=" + records, "--init_checkpoint=" + p["bad_index"],
            "--output_dir=%s/garbage_index" % out]),
        "checkpoint_as_records": ("run_pretraining", pretrain + [
            "--input_file=" + data_file, "--output_dir=%s/checkpoint_as_records" % out]),
        "records_as_checkpoint": ("run_pretraining", pretrain + [
            "--input_file=" + records, "--init_checkpoint=" + records,
            "--output_dir=%s/records_as_checkpoint" % out]),
        "config_vs_checkpoint": ("run_pretraining", [
            a for a in pretrain if not a.startswith("--bert_config_file")] + [
                "--bert_config_file=" + p["other_config"], "--input_file=" + records,
                "--init_checkpoint=" + cls.ckpt, "--output_dir=%s/config_vs_checkpoint" % out]),
        "finetune_small_vocab": ("run_finetune", finetune + [
            "--vocab_file=" + p["small_vocab"], "--output_dir=%s/finetune_small_vocab" % out]),
        "finetune_output_under_file": ("run_finetune", finetune + [
            "--vocab_file=" + cls.vocab, "--output_dir=%s/sub" % p["a_file"]]),
        "features_output_under_file": ("extract_features", features + [
            "--input_file=" + p["text"], "--output_file=%s/x.jsonl" % p["a_file"]]),
        "features_empty_input": ("extract_features", features + [
            "--input_file=" + p["empty"], "--output_file=%s/empty/x.jsonl" % out]),
        "notes_output_under_file": ("format_notes", [
            "--input_file=" + os.path.join(TESTDATA, "NOTEEVENTS_sample.csv"),
            "--output_dir=%s/sentences" % p["a_file"]]),
        "vocab_output_under_file": ("build_vocab", [
            "--input_file=" + p["text"], "--output_file=%s/vocab.txt" % p["a_file"]]),
        "records_output_under_file": ("create_pretraining_data", [
            "--input_file=" + p["text"], "--vocab_file=" + cls.vocab,
            "--output_file=%s/x.tfrecord" % p["a_file"]]),
        "neighbors_output_under_file": ("nearest_neighbors", [
            "--input_file=" + p["text"], "--init_checkpoint=" + cls.ckpt,
            "--bert_config_file=" + cls.config_file, "--vocab_file=" + cls.vocab,
            "--query_words=pain", "--output_file=%s/x.md" % p["a_file"]]),
        "predict_output_under_file": ("predict", [
            "--model_dir=" + d, "--input_file=" + p["text"],
            "--output_file=%s/x.jsonl" % p["a_file"]]),
        "hf_cut_safetensors": ("import_hf", [
            "--hf_dir=" + p["hf_cut"], "--output_dir=%s/hf_cut" % out]),
        "hf_gpt2": ("import_hf", [
            "--hf_dir=" + p["hf_gpt2"], "--output_dir=%s/hf_gpt2" % out]),
        "export_dir_is_file": ("export_savedmodel", [
            "--model_dir=" + d, "--export_dir=" + p["a_file"]]),
    }
    def run(name):
      module, args = cls.cases[name]
      start = time.time()
      result = testutil.run_module(module, args, check=False)
      cls.seconds[name] = time.time() - start
      return result

    cls.seconds = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
      futures = {name: pool.submit(run, name) for name in cls.cases}
      cls.results = {name: f.result() for name, f in futures.items()}
    if os.environ.get("FAULTS_TEST_TIMES"):
      print(sorted(cls.seconds.items(), key=lambda kv: -kv[1]))

  def assertFault(self, case, *expected, no_output=()):  # pylint: disable=invalid-name
    """Exit 1, last stderr line `<script>.py: error:` containing `expected`, no traceback."""
    module = self.cases[case][0]
    r = self.results[case]
    self.assertEqual(r.returncode, 1, "%s: exit %d\n%s" % (case, r.returncode, r.stderr[-3000:]))
    self.assertNotIn("Traceback", r.stderr, case)
    last = r.stderr.strip().splitlines()[-1]
    self.assertTrue(last.startswith("%s.py: error: " % module), "%s: %s" % (case, last))
    for text in expected:
      self.assertIn(text, last, case)
    for path in no_output:
      self.assertFalse(os.path.exists(path), "%s: %s was written" % (case, path))
    return last

  def _no_pretraining_output(self, case):
    out = os.path.join(self.out, case)
    return [os.path.join(out, "model.ckpt-2.index"), os.path.join(out, "eval_results.txt")]

  # -- records --------------------------------------------------------------------------------

  def test_records_cut_short(self):
    self.assertFault("cut_records", self.paths["cut_records"], "cut short", "record 10",
                     "byte", no_output=[os.path.join(self.out, "cut_records")])

  def test_records_corrupt_inside(self):
    # The framing and the first record are fine: the DataLossError comes from training itself.
    self.assertFault("corrupt_records", "corrupt data", self.paths["corrupt_records"],
                     no_output=self._no_pretraining_output("corrupt_records"))

  def test_checkpoint_where_records_are_expected(self):
    self.assertFault("checkpoint_as_records", self.ckpt + ".data-00000-of-00001",
                     "not a TFRecord file",
                     no_output=[os.path.join(self.out, "checkpoint_as_records")])

  # -- checkpoints ----------------------------------------------------------------------------

  def test_checkpoint_data_cut_short(self):
    self.assertFault("cut_checkpoint", "--init_checkpoint=" + self.paths["cut_ckpt"],
                     "cut short", "bytes",
                     no_output=[os.path.join(self.out, "cut_checkpoint")])

  def test_checkpoint_index_garbage(self):
    self.assertFault("garbage_index", "--init_checkpoint=" + self.paths["bad_index"],
                     "cannot be read: not a TensorFlow checkpoint",
                     no_output=[os.path.join(self.out, "garbage_index")])

  def test_records_where_a_checkpoint_is_expected(self):
    self.assertFault("records_as_checkpoint", "cannot be read: not a TensorFlow checkpoint",
                     os.path.join(self.dir, "train.tfrecord"),
                     no_output=[os.path.join(self.out, "records_as_checkpoint")])

  def test_config_of_another_shape(self):
    self.assertFault("config_vs_checkpoint", self.ckpt, "[159, 32] in the checkpoint",
                     "[159, 64] in the model",
                     no_output=self._no_pretraining_output("config_vs_checkpoint"))

  # -- paths ----------------------------------------------------------------------------------

  def test_output_dir_is_a_file(self):
    last = self.assertFault("output_dir_is_file", "--output_dir=" + self.paths["a_file"],
                            "is a file", "expected a folder")
    self.assertNotIn("FailedPrecondition", last)
    with open(self.paths["a_file"]) as f:
      self.assertEqual(f.read(), "not a folder\n")  # left as it was

  def test_output_under_a_file(self):
    self.assertFault("finetune_output_under_file", self.paths["a_file"], "is a file")
    self.assertFault("features_output_under_file", "--output_file=", self.paths["a_file"],
                     "is a file")
    # The other scripts with outputs: one line naming the path (checked before their work starts).
    self.assertFault("notes_output_under_file", "--output_dir=", self.paths["a_file"], "is a file")
    for case in ("vocab_output_under_file", "records_output_under_file",
                 "neighbors_output_under_file", "predict_output_under_file"):
      self.assertFault(case, "--output_file=", self.paths["a_file"], "is a file")

  def test_export_dir_is_a_file(self):
    # The model folder here has no fine-tuned head; either fault is one line naming its path.
    r = self.results["export_dir_is_file"]
    self.assertEqual(r.returncode, 1, r.stderr[-3000:])
    self.assertNotIn("Traceback", r.stderr)
    self.assertTrue(r.stderr.strip().splitlines()[-1].startswith("export_savedmodel.py: error:"))

  def test_predict_output_paths(self):
    from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
    for options, expected in (
        (job.JobOptions(input_file="x", output_dir=self.paths["a_file"]), "is a file"),
        (job.JobOptions(input_file="x", output_file=self.dir), "is a folder"),
        (job.JobOptions(input_file="x", output_file=self.paths["a_file"] + "/s.jsonl"),
         "is a file")):
      with self.assertRaises(fileio.InputError) as cm:
        job.check_options(options, pairs=False)
      self.assertIn(expected, str(cm.exception))

  def test_atomic_output_refuses_a_folder(self):
    from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
    d = self.temp_dir()
    with self.assertRaises(fileio.InputError) as cm:
      fileio.write_text_atomic(d, "x")
    self.assertIn(d, str(cm.exception))
    with self.assertRaises(fileio.InputError) as cm:
      fileio.write_text_atomic(os.path.join(self.paths["a_file"], "x.txt"), "x")
    self.assertIn(self.paths["a_file"], str(cm.exception))

  # -- vocabulary, casing, empty input --------------------------------------------------------

  def test_vocab_of_another_model(self):
    self.assertFault("finetune_small_vocab", self.paths["small_vocab"], "50 tokens",
                     "vocab_size is 159",
                     no_output=[os.path.join(self.out, "finetune_small_vocab")])

  def test_vocab_size_rules(self):
    from clinicalbert_tf import checkpoints  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf import fileio  # pylint: disable=g-import-not-at-top
    config = testutil.tiny_config(vocab_size=1000)
    checkpoints.check_vocab_matches_config(1000, config, "v.txt")
    checkpoints.check_vocab_matches_config(992, config, "v.txt")  # padded table: silent
    with self.assertLogs(level="WARNING") as logs:
      checkpoints.check_vocab_matches_config(600, config, "v.txt")  # warned, allowed
    self.assertIn("v.txt has 600 tokens", "\n".join(logs.output))
    for bad in (499, 1001):
      with self.assertRaises(fileio.InputError):
        checkpoints.check_vocab_matches_config(bad, config, "v.txt")

  def test_casing_vs_vocabulary(self):
    from clinicalbert_tf import checkpoints  # pylint: disable=g-import-not-at-top
    cased = testutil.vocab_tokens()  # capital letters and capitalised words: a cased vocabulary
    uncased = list(testutil.SPECIAL) + ["w%03d" % i for i in range(200)]
    check = checkpoints.check_case_matches_vocab
    with self.assertLogs(level="WARNING"):
      self.assertIn("looks cased", check(cased, True, "cased.txt"))
    self.assertIsNone(check(cased, False, "cased.txt"))
    self.assertIsNone(check(uncased, True, "uncased.txt"))
    with self.assertLogs(level="WARNING"):
      self.assertIn("no entry with a capital", check(uncased, False, "uncased.txt"))

  def test_empty_input_is_said_not_written(self):
    self.assertFault("features_empty_input", self.paths["empty"], "holds no examples",
                     no_output=[os.path.join(self.out, "empty", "x.jsonl")])

  # -- HuggingFace ----------------------------------------------------------------------------

  def test_safetensors_cut_short(self):
    self.assertFault("hf_cut_safetensors", os.path.join(self.paths["hf_cut"], "model.safetensors"),
                     "not a complete safetensors file",
                     no_output=[os.path.join(self.out, "hf_cut", "bert_model.ckpt.index")])

  def test_hf_directory_of_another_architecture(self):
    self.assertFault("hf_gpt2", os.path.join(self.paths["hf_gpt2"], "config.json"), "'gpt2'",
                     "GPT2LMHeadModel", 'expected "bert"',
                     no_output=[os.path.join(self.out, "hf_gpt2")])


if __name__ == "__main__":
  absltest.main()
