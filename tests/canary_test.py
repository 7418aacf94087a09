"""No note text in logs: the pipeline on invented notes carrying marker strings, end to end.

format_notes -> build_vocab -> create_pretraining_data -> run_pretraining (a few steps) ->
run_finetune (i2b2 2010) -> predict.py / deidentify.py, at INFO, with every flag that logs
examples left at its default. Each note and each i2b2 document carries a unique marker
(`Zqxcanary...`); the marker may appear only in the outputs meant to hold text (sentence files,
the learnt vocabulary, predictions and de-identified notes, IOB/CoNLL/.con prediction files).
Everything else -- stdout, stderr, sidecars, TensorBoard events, eval/test results,
finetune_head.json, checkpoints, records -- and the error lines of runs made to fail on a note
that holds a marker, must not hold it, neither as written nor as WordPiece tokens.
"""

import glob
import os
import re
import shutil

from absl.testing import absltest

from tests import testutil

TESTDATA = os.path.join(testutil.REPO, "testdata")
NOTE_MARKER = "Zqxcanarynote"
DOC_MARKER = "Zqxcanarydoc"


def _needles():
  """Byte strings any of which shows a marker: as written, lower-cased, as WordPiece tokens."""
  from clinicalbert_tf import tokenization  # pylint: disable=g-import-not-at-top
  needles = {b"zqxcanary"}  # compared with lower-cased contents
  tokens = testutil.vocab_tokens()
  vocab_map = {t: i for i, t in enumerate(tokens)}
  for marker in (NOTE_MARKER, DOC_MARKER):
    for lower in (True, False):
      word = marker.lower() if lower else marker
      pieces = tokenization.WordpieceTokenizer(vocab=vocab_map).tokenize(word)
      # "z ##q ##x ##c ##a ..." as a token list is logged, or the same without the ##.
      needles.add(" ".join(pieces[:6]).lower().encode())
      needles.add("".join(p.replace("##", "") for p in pieces[:9]).lower().encode())
  return sorted(needles)


class CanaryTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = cls.class_temp_dir()
    cls.inputs = os.path.join(cls.root, "inputs")
    cls.out = os.path.join(cls.root, "out")
    os.makedirs(cls.inputs)
    cls.needles = _needles()
    cls.streams = []  # (what, text) of every run's stdout and stderr

    # NOTEEVENTS with a marker in every note's TEXT (each note names its own section headers).
    with open(os.path.join(TESTDATA, "NOTEEVENTS_sample.csv"), encoding="utf-8") as f:
      csv_text = f.read()
    csv_text = re.sub(r"(chest pain|Chief Complaint:|Pt |patient|Patient)",
                      lambda m: m.group(1) + " " + NOTE_MARKER + " ", csv_text)
    assert csv_text.count(NOTE_MARKER) > 10
    cls.noteevents = os.path.join(cls.inputs, "NOTEEVENTS.csv")
    with open(cls.noteevents, "w", encoding="utf-8") as f:
      f.write(csv_text)

    # i2b2 2010 with marker lines after every document's text (line:token offsets stay valid).
    cls.i2b2 = os.path.join(cls.inputs, "i2b2_2010")
    shutil.copytree(os.path.join(TESTDATA, "i2b2_2010"), cls.i2b2)
    for path in glob.glob(os.path.join(cls.i2b2, "**", "*.txt"), recursive=True):
      with open(path, encoding="utf-8") as f:
        text = f.read()
      with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\nThe %s pain was noted .\nNo %s .\n"
                % (DOC_MARKER, DOC_MARKER))

    cls.vocab = testutil.write_vocab(cls.inputs)
    cls.config = testutil.write_config(cls.inputs, testutil.tiny_config())
    o = cls.out
    cls.run_step("format_notes", "--input_file=" + cls.noteevents,
                 "--output_dir=%s/sentences" % o, "--all_notes_file=%s/all_notes.txt" % o)
    cls.run_step("build_vocab", "--input_file=%s/all_notes.txt" % o,
                 "--output_file=%s/learnt/vocab.txt" % o, "--vocab_size=200", "--lower_thresh=1")
    cls.run_step("create_pretraining_data", "--input_file=%s/all_notes.txt" % o,
                 "--output_file=%s/records/all.tfrecord" % o, "--vocab_file=" + cls.vocab,
                 "--do_lower_case=True", "--max_seq_length=32", "--max_predictions_per_seq=5",
                 "--random_seed=1", "--dupe_factor=1")
    cls.run_step("run_pretraining", "--bert_config_file=" + cls.config,
                 "--input_file=%s/records/all.tfrecord" % o, "--output_dir=%s/pretrained" % o,
                 "--do_train=True", "--do_eval=True", "--train_batch_size=4",
                 "--eval_batch_size=4", "--max_seq_length=32", "--max_predictions_per_seq=5",
                 "--num_train_steps=3", "--num_warmup_steps=1", "--max_eval_steps=2",
                 "--save_checkpoints_steps=3")
    cls.run_step("run_finetune", "--task_name=i2b2_2010", "--data_dir=" + cls.i2b2,
                 "--bert_config_file=" + cls.config, "--vocab_file=" + cls.vocab,
                 "--init_checkpoint=%s/pretrained/model.ckpt-3" % o,
                 "--output_dir=%s/finetune" % o, "--do_lower_case=True", "--do_train=True",
                 "--do_eval=True", "--do_predict=True", "--max_seq_length=32",
                 "--train_batch_size=4", "--num_train_epochs=0.3", "--seed=3")
    notes = os.path.join(cls.i2b2, "test", "test_data", "*.txt")
    cls.run_step("predict", "--model_dir=%s/finetune" % o,
                 "--input_file=%s,%s" % (notes, cls.noteevents), "--max_bad_notes=5",
                 "--output_file=%s/predicted/spans.jsonl" % o)
    cls.run_step("predict", "--model_dir=%s/finetune" % o, "--input_file=" + notes,
                 "--output_format=con", "--output_dir=%s/predicted_con" % o)
    cls.run_step("deidentify", "--model_dir=%s/finetune" % o, "--input_file=" + notes,
                 "--output_dir=%s/deidentified" % o, "--min_phi_probability=0.01",
                 "--output_file=%s/deidentified/phi.jsonl" % o)

  @classmethod
  def run_step(cls, module, *args, check=True):
    proc = testutil.run_module(module, ["--verbosity=0", "--alsologtostderr"] + list(args),
                               check=check)
    cls.streams.append(("%s stdout" % module, proc.stdout))
    cls.streams.append(("%s stderr" % module, proc.stderr))
    return proc

  def find_marker(self, data):
    data = data.lower()
    return [n for n in self.needles if n in data]

  def is_text_output(self, rel):
    """The outputs meant to hold note text (relative to the output folder)."""
    parts = rel.split(os.sep)
    name = parts[-1]
    if name.endswith(".json") and not name.endswith(".jsonl"):
      return False  # sidecars and finetune_head.json: never text
    if parts[0] == "sentences" or rel == "all_notes.txt":
      return True  # format_notes' sentence files
    if rel == os.path.join("learnt", "vocab.txt"):
      return True  # a vocabulary learnt from the notes holds their words, by design
    if parts[0] in ("predicted", "predicted_con", "deidentified"):
      return True  # predictions and de-identified notes
    if parts[0] == "finetune" and re.search(r"(predictions|\.con$|\.iob|conll|\.bio)", name):
      return True  # run_finetune's prediction files (CoNLL, .con, IOB)
    return False

  def test_the_pipeline_ran_and_wrote_its_text_outputs(self):
    # The marker does reach the outputs meant to hold text, so the scan below can see it.
    with open(os.path.join(self.out, "all_notes.txt"), "rb") as f:
      self.assertTrue(self.find_marker(f.read()))
    self.assertTrue(os.path.exists(os.path.join(self.out, "pretrained", "model.ckpt-3.index")))
    self.assertTrue(os.path.exists(os.path.join(self.out, "predicted", "spans.jsonl")))
    self.assertTrue(glob.glob(os.path.join(self.out, "pretrained", "**", "events.out.*"),
                              recursive=True))
    self.assertTrue(glob.glob(os.path.join(self.out, "deidentified", "*.txt")))

  def test_no_marker_in_logs(self):
    for what, text in self.streams:
      self.assertFalse(self.find_marker(text.encode("utf-8")),
                       "%s quotes a note: %s" % (what, self.context(text)))

  def test_no_marker_in_files_other_than_text_outputs(self):
    scanned = 0
    for directory, _, names in os.walk(self.out):
      for name in names:
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, self.out)
        if self.is_text_output(rel):
          continue
        with open(path, "rb") as f:
          data = f.read()
        scanned += 1
        self.assertFalse(self.find_marker(data), "%s holds note text: %s"
                         % (rel, self.context(data.decode("utf-8", "replace"))))
    self.assertGreater(scanned, 20)

  def context(self, text):
    i = text.lower().find("zqxcanary")
    return repr(text[max(0, i - 80):i + 80]) if i >= 0 else "(as WordPiece tokens)"

  def assert_fails_without_marker(self, module, *args):
    proc = self.run_step(module, *args, check=False)
    self.assertNotEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn("%s.py: error: " % module, proc.stderr)
    for stream in (proc.stdout, proc.stderr):
      self.assertFalse(self.find_marker(stream.encode("utf-8")),
                       "%s's failure quotes a note: %s" % (module, self.context(stream)))

  def test_failing_runs_do_not_quote_the_note(self):
    d = self.temp_dir()
    # A bad label on a concept whose text holds the marker.
    bad = os.path.join(d, "i2b2_2010")
    shutil.copytree(self.i2b2, bad)
    con = os.path.join(bad, "train", "concept", "note-101.con")
    with open(con, "a", encoding="utf-8") as f:
      f.write('c="chest pain %s" 3:3 3:5||t="nonsense"\n' % DOC_MARKER.lower())
    self.assert_fails_without_marker(
        "run_finetune", "--task_name=i2b2_2010", "--data_dir=" + bad,
        "--bert_config_file=" + self.config, "--vocab_file=" + self.vocab,
        "--init_checkpoint=%s/pretrained/model.ckpt-3" % self.out, "--output_dir=%s/ft" % d,
        "--do_train=True", "--max_seq_length=32", "--num_train_epochs=0.1")
    # A row with a column missing, its TEXT holding the marker, and no bad rows allowed.
    bad_csv = os.path.join(d, "bad.csv")
    with open(self.noteevents, encoding="utf-8") as f:
      text = f.read()
    with open(bad_csv, "w", encoding="utf-8") as f:
      f.write(text + '999,1,2,2101-01-01,,,"Nursing",,,"Pt %s seen, %s."\n'
              % (NOTE_MARKER, NOTE_MARKER))
    self.assert_fails_without_marker("format_notes", "--input_file=" + bad_csv,
                                     "--output_dir=%s/sentences" % d, "--max_bad_rows=0")
    # A note that is not UTF-8, its marker next to the bad byte.
    notes = os.path.join(d, "notes")
    os.makedirs(notes)
    with open(os.path.join(notes, "n1.txt"), "wb") as f:
      f.write(b"The patient " + NOTE_MARKER.encode() + b" \xff\xfe was seen.\n")
    self.assert_fails_without_marker("predict", "--model_dir=%s/finetune" % self.out,
                                     "--input_file=%s/*.txt" % notes,
                                     "--output_file=%s/spans.jsonl" % d)
    # Pretraining text that is not UTF-8, next to a marker.
    with open(os.path.join(d, "bad.txt"), "wb") as f:
      f.write(b"The patient " + NOTE_MARKER.encode() + b" \xff was seen.\n")
    self.assert_fails_without_marker("create_pretraining_data", "--input_file=%s/bad.txt" % d,
                                     "--output_file=%s/bad.tfrecord" % d,
                                     "--vocab_file=" + self.vocab)


if __name__ == "__main__":
  absltest.main()
