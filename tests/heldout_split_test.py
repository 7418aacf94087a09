"""Tests for format_notes.py --heldout_fraction, the held-out split by patient, on invented notes.

Every invented note carries a unique marker word (`MRK00017` for ROW_ID 17), so each note block
read back from an output is mapped to its row, and so to its SUBJECT_ID, through the rows the test
wrote (never through the code under test). The expected split is computed here from its definition
(SHA-256 of "<seed>:<SUBJECT_ID>", first 8 bytes big-endian, over 2**64, below the fraction).
"""

import hashlib
import math
import os
import random
import re
import subprocess
import sys
from unittest import mock

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining_data
from clinicalbert_tf.notes import heldout as heldout_lib
from clinicalbert_tf.notes import pipeline
from tests import testutil

SCRIPT = os.path.join(testutil.REPO, "format_notes.py")
HEADER = testutil.NOTEEVENTS_HEADER
CATEGORIES = ("Nursing", "Radiology", "Discharge summary")
MARKER_RE = re.compile(rb"\bMRK(\d{5})\b")


def expected_heldout(subject_id, fraction, seed):
  """The definition of the split, written out independently of heldout_lib.is_heldout_subject."""
  digest = hashlib.sha256(("%d:%d" % (seed, subject_id)).encode("ascii")).digest()
  return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def note_text(row_id, patient):
  # Two or three sentences and a section header, so the sentence rules have work to do.
  return ("Patient seen today for follow up.\nMarker MRK%05d noted on exam of pt %d. Vitals "
          "stable.\n\nPlan: continue current care." % (row_id, patient))


def make_rows(num_patients, notes_per_patient, first_subject=101):
  """Rows of NOTEEVENTS (invented), patients' notes interleaved, categories rotating.

  Returns:
    (rows, subject_of): the CSV rows and {ROW_ID: SUBJECT_ID}.
  """
  rows, subject_of = [], {}
  row_id = 1
  for k in range(notes_per_patient):
    for p in range(num_patients):
      subject = first_subject + p
      category = CATEGORIES[(p + k) % len(CATEGORIES)]
      rows.append([str(row_id), str(subject), str(9000 + p), "2101-01-01", "", "", category,
                   "Report", "", "", note_text(row_id, subject)])
      subject_of[row_id] = subject
      row_id += 1
  return rows, subject_of


write_csv = testutil.write_noteevents_csv


def read_files(directory):
  """{name: bytes} of every .txt file under `directory` (sub-folders included, by relative path)."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      if name.endswith(".txt"):
        path = os.path.join(root, name)
        with open(path, "rb") as f:
          out[os.path.relpath(path, directory)] = f.read()
  return out


def note_blocks(data):
  """(ROW_ID, block bytes) of each note in a sentence file: blocks end with a blank line."""
  blocks = []
  for block in data.split(b"\n\n")[:-1]:
    markers = MARKER_RE.findall(block)
    assert len(markers) == 1, block
    blocks.append((int(markers[0]), block + b"\n\n"))
  assert b"".join(b for _, b in blocks) == data
  return blocks


def is_heldout_name(name):
  return name.endswith(".heldout.txt")


class HeldoutSplitTest(testutil.TestCase):
  """40 patients with 4 notes each over three categories, split at 0.3."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = cls.class_temp_dir()
    cls.rows, cls.subject_of = make_rows(num_patients=40, notes_per_patient=4)
    cls.csv = write_csv(os.path.join(cls.tmp, "notes.csv"), cls.rows)
    cls.patients = sorted(set(cls.subject_of.values()))

  def run_format(self, name, input_file=None, **kwargs):
    """Runs format_notes_file into `<tmp>/<name>` (with an all-notes file in a sub-folder)."""
    out = os.path.join(self.tmp, name)
    kwargs.setdefault("progress_every_s", 3600)
    summary = pipeline.format_notes_file(input_file or self.csv, output_dir=out,
                                           all_notes_file=os.path.join(out, "all", "all.txt"),
                                           **kwargs)
    return read_files(out), summary

  def subjects_in(self, files, heldout):
    """SUBJECT_IDs of the notes in the training (or held-out) files of `files`."""
    return set(self.subject_of[row_id] for name, data in files.items()
               if is_heldout_name(name) == heldout for row_id, _ in note_blocks(data))

  def test_no_patient_on_both_sides(self):
    baseline, _ = self.run_format("baseline")
    files, summary = self.run_format("split", heldout_fraction=0.3, random_seed=7)
    self.assertEqual(sorted(files), sorted(
        ["all/all.txt", "all/all.heldout.txt", "nursing.txt", "nursing.heldout.txt",
         "radiology.txt", "radiology.heldout.txt", "discharge_summary.txt",
         "discharge_summary.heldout.txt"]))
    train, held = self.subjects_in(files, False), self.subjects_in(files, True)
    self.assertEqual(train & held, set())
    self.assertEqual(train | held, set(self.patients))
    self.assertTrue(held and train)
    self.assertEqual(held, set(p for p in self.patients if expected_heldout(p, 0.3, 7)))
    # Each file and its held-out sibling partition the no-split file: the same note blocks (same
    # sentence rules, same format), each on its patient's side, in input order on both sides.
    for name, data in baseline.items():
      blocks = note_blocks(data)
      sibling = name[:-len(".txt")] + ".heldout.txt"
      self.assertEqual(files[name], b"".join(
          b for row_id, b in blocks if not expected_heldout(self.subject_of[row_id], 0.3, 7)))
      self.assertEqual(files[sibling], b"".join(
          b for row_id, b in blocks if expected_heldout(self.subject_of[row_id], 0.3, 7)))
    # The summary: notes and patients per side, and per category the held-out notes.
    held_notes = sum(1 for r in self.subject_of.values() if r in held)
    self.assertEqual(summary["heldout"], {
        "fraction": 0.3, "seed": 7, "skipped_no_subject_id": 0,
        "train": {"notes": len(self.rows) - held_notes, "patients": len(train)},
        "heldout": {"notes": held_notes, "patients": len(held)}})
    self.assertEqual(summary["totals"]["written"], len(self.rows))
    self.assertEqual(summary["totals"]["heldout"], held_notes)
    out = os.path.join(self.tmp, "split")
    self.assertEqual(summary["outputs"][os.path.join(out, "nursing.heldout.txt")]["notes"],
                     len(note_blocks(files["nursing.heldout.txt"])))
    for name in files:
      self.assertTrue(os.path.exists(fileio.sidecar_path(os.path.join(out, name))), name)

  def test_log_counts_both_sides_without_text(self):
    with self.assertLogs(logger="absl", level="INFO") as logs:
      _, summary = self.run_format("logged", heldout_fraction=0.3, random_seed=7)
    record = summary["heldout"]
    log_text = "\n".join(logs.output)
    self.assertIn("training %d notes of %d patients, held out %d notes of %d patients" % (
        record["train"]["notes"], record["train"]["patients"], record["heldout"]["notes"],
        record["heldout"]["patients"]), log_text)
    self.assertNotIn("MRK", log_text)

  def test_split_is_a_function_of_the_seed(self):
    first, _ = self.run_format("seed7", heldout_fraction=0.3, random_seed=7)
    again, _ = self.run_format("seed7_again", heldout_fraction=0.3, random_seed=7)
    other, _ = self.run_format("seed8", heldout_fraction=0.3, random_seed=8)
    self.assertEqual(again, first)
    self.assertNotEqual(self.subjects_in(other, True), self.subjects_in(first, True))
    self.assertEqual(self.subjects_in(other, True),
                     set(p for p in self.patients if expected_heldout(p, 0.3, 8)))
    # Not a function of the rows' order: shuffled rows hold out the same patients.
    shuffled = list(self.rows)
    random.Random(3).shuffle(shuffled)
    path = write_csv(os.path.join(self.tmp, "shuffled.csv"), shuffled)
    reordered, _ = self.run_format("shuffled", input_file=path, heldout_fraction=0.3,
                                   random_seed=7)
    self.assertEqual(self.subjects_in(reordered, True), self.subjects_in(first, True))
    # The library function is the same definition.
    for p in range(1, 2000):
      self.assertEqual(heldout_lib.is_heldout_subject(p, 0.3, 7), expected_heldout(p, 0.3, 7), p)

  def test_zero_is_todays_bytes(self):
    default, summary = self.run_format("default")
    zero, zero_summary = self.run_format("zero", heldout_fraction=0.0, random_seed=99)
    self.assertEqual(zero, default)
    self.assertFalse([name for name in zero if "heldout" in name])
    self.assertEqual(zero_summary["heldout"], {"fraction": 0.0})
    self.assertEqual(list(zero_summary["totals"]), list(summary["totals"]))
    self.assertNotIn("heldout", zero_summary["totals"])
    # Without a split SUBJECT_ID is not read: a file without the column works as before.
    no_subject = write_csv(os.path.join(self.tmp, "no_subject.csv"),
                           [r[:1] + r[2:] for r in self.rows[:6]],
                           header=HEADER[:1] + HEADER[2:])
    files, _ = self.run_format("no_subject", input_file=no_subject)
    self.assertLen(note_blocks(files["all/all.txt"]), 6)
    with self.assertRaisesRegex(fileio.InputError, "no_subject.csv line 1: header lacks column "
                                "SUBJECT_ID, which --heldout_fraction=0.5 needs"):
      self.run_format("no_subject_split", input_file=no_subject, heldout_fraction=0.5)
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "no_subject_split", "all")))

  def test_workers_give_the_same_split(self):
    results = {}
    with mock.patch.object(pipeline, "CHUNK_NOTES", 7):
      for workers in (1, 2):
        results[workers] = self.run_format("w%d" % workers, heldout_fraction=0.3,
                                           random_seed=7, num_workers=workers)
    self.assertEqual(results[2][0], results[1][0])
    self.assertEqual(results[2][1]["heldout"], results[1][1]["heldout"])
    self.assertTrue(self.subjects_in(results[2][0], True))

  def test_surrogates_are_split_like_the_notes(self):
    # Surrogates are seeded per ROW_ID, so each side holds exactly its notes of the unsplit run.
    rows = [r[:10] + [r[10].replace("noted", "noted by Dr. [**Last Name (NamePattern1) 12**]")]
            for r in self.rows[:60]]
    path = write_csv(os.path.join(self.tmp, "phi.csv"), rows)
    whole, _ = self.run_format("phi_whole", input_file=path, phi="surrogate", random_seed=7)
    split, _ = self.run_format("phi_split", input_file=path, phi="surrogate", random_seed=7,
                               heldout_fraction=0.3)
    self.assertNotIn(b"[**", split["all/all.txt"] + split["all/all.heldout.txt"])
    blocks = note_blocks(whole["all/all.txt"])
    self.assertEqual(split["all/all.heldout.txt"], b"".join(
        b for row_id, b in blocks if expected_heldout(self.subject_of[row_id], 0.3, 7)))
    self.assertEqual(split["all/all.txt"], b"".join(
        b for row_id, b in blocks if not expected_heldout(self.subject_of[row_id], 0.3, 7)))

  def test_note_without_subject_id_is_a_bad_row(self):
    rows = [list(r) for r in self.rows[:10]]
    rows[2][1] = ""
    rows[5][1] = "n/a"
    path = write_csv(os.path.join(self.tmp, "missing_subject.csv"), rows)
    with self.assertLogs(logger="absl", level="WARNING") as logs:
      files, summary = self.run_format("missing_subject", input_file=path, heldout_fraction=0.3,
                                       random_seed=7)
    # The line a row starts on: after the header and every line of the rows before it.
    def line_of(i):
      return 2 + sum(r[10].count("\n") + 1 for r in rows[:i])

    self.assertEqual([(b["ref"], b["line"]) for b in summary["bad_rows"]],
                     [("ROW_ID 3", line_of(2)), ("ROW_ID 6", line_of(5))])
    self.assertIn("SUBJECT_ID is empty", summary["bad_rows"][0]["reason"])
    self.assertIn("SUBJECT_ID is not an integer", summary["bad_rows"][1]["reason"])
    self.assertIn("Bad row at ROW_ID 3 (line %d): SUBJECT_ID is empty" % line_of(2),
                  "\n".join(logs.output))
    self.assertEqual(summary["heldout"]["skipped_no_subject_id"], 2)
    written = [row_id for data in (files["all/all.txt"], files["all/all.heldout.txt"])
               for row_id, _ in note_blocks(data)]
    self.assertEqual(sorted(written), [1, 2, 4, 5, 7, 8, 9, 10])
    # With --max_bad_rows=0 the first one stops the run, naming its line, and writes nothing.
    with self.assertRaisesRegex(fileio.InputError,
                                r"ROW_ID 3, line %d: SUBJECT_ID is empty" % line_of(2)):
      self.run_format("missing_subject_stop", input_file=path, heldout_fraction=0.3,
                      max_bad_rows=0)
    self.assertEqual(read_files(os.path.join(self.tmp, "missing_subject_stop")), {})

  def test_bad_fractions_rejected(self):
    for value in (-0.1, 1.0, 1.5, float("nan")):
      with self.assertRaisesRegex(fileio.InputError,
                                  r"^--heldout_fraction=%s: expected a share of patients" % value):
        self.run_format("bad", heldout_fraction=value)
    self.assertFalse(os.path.exists(os.path.join(self.tmp, "bad")))

  def test_outputs_atomic_and_replaced(self):
    out = os.path.join(self.tmp, "atomic")
    os.makedirs(out)
    stale = os.path.join(out, "nursing.heldout.txt")
    with open(stale, "wb") as f:
      f.write(b"stale\n\n")
    # A failure midway leaves every file (the held-out ones too) as it was.
    real_write = pipeline._Output.write
    calls = []

    def failing(output, data, num_sentences):
      calls.append(1)
      if len(calls) > 50:
        raise RuntimeError("disk full")
      real_write(output, data, num_sentences)

    with mock.patch.object(pipeline._Output, "write", failing):
      with self.assertRaises(RuntimeError):
        self.run_format("atomic", heldout_fraction=0.3, random_seed=7)
    self.assertEqual(read_files(out), {"nursing.heldout.txt": b"stale\n\n"})
    self.assertFalse([n for n in os.listdir(out) if n.startswith(".")])
    # A run whose split puts no nursing note in the held-out file still replaces it (empty), so no
    # earlier split is left beside the new training file.
    nursing_rows = [r for r in self.rows[:20] if r[6] == "Nursing"]
    train_only = [r for r in nursing_rows if not expected_heldout(int(r[1]), 0.05, 7)]
    self.assertTrue(train_only)
    path = write_csv(os.path.join(self.tmp, "train_only.csv"), train_only)
    files, _ = self.run_format("atomic", input_file=path, heldout_fraction=0.05, random_seed=7)
    self.assertEqual(files["nursing.heldout.txt"], b"")
    self.assertLen(note_blocks(files["nursing.txt"]), len(train_only))

  def test_all_notes_file_on_a_held_out_path_is_an_error(self):
    out = os.path.join(self.tmp, "clash")
    clash = os.path.join(out, "nursing.heldout.txt")
    with self.assertRaisesRegex(fileio.InputError, "--all_notes_file=%s is also the held-out "
                                "file of category 'Nursing'" % re.escape(clash)):
      pipeline.format_notes_file(self.csv, output_dir=out, all_notes_file=clash,
                                   heldout_fraction=0.3, progress_every_s=3600)
    self.assertEqual(read_files(out), {})

  def test_heldout_file_feeds_create_pretraining_data(self):
    files, _ = self.run_format("records", heldout_fraction=0.3, random_seed=7)
    out = os.path.join(self.tmp, "records")
    vocab = testutil.write_vocab(self.temp_dir())
    record = os.path.join(out, "eval.tfrecord")
    result = pretraining_data.create_pretraining_data(
        [os.path.join(out, "all", "all.heldout.txt")], [record], vocab,
        pretraining_data.Options(max_seq_length=32, max_predictions_per_seq=5, dupe_factor=1))
    self.assertGreater(result["instances"], 0)
    self.assertGreater(os.path.getsize(record), 0)
    self.assertTrue(note_blocks(files["all/all.heldout.txt"]))


class ShareTest(testutil.TestCase):
  """The held-out share of patients is near the fraction (binomial bounds)."""

  def test_share_of_patients_in_a_file(self):
    num_patients, fraction = 400, 0.2
    rows, subject_of = make_rows(num_patients, notes_per_patient=1)
    tmp = self.temp_dir()
    path = write_csv(os.path.join(tmp, "many.csv"), rows)
    out = os.path.join(tmp, "out")
    summary = pipeline.format_notes_file(path, output_dir=out, category_files=False,
                                           all_notes_file=os.path.join(out, "all.txt"),
                                           heldout_fraction=fraction, random_seed=12345,
                                           progress_every_s=3600)
    with open(os.path.join(out, "all.heldout.txt"), "rb") as f:
      held = set(subject_of[row_id] for row_id, _ in note_blocks(f.read()))
    self.assertEqual(summary["heldout"]["heldout"]["patients"], len(held))
    # 5 standard deviations of Binomial(400, 0.2) either side of its mean (80 +- 40).
    sd = math.sqrt(num_patients * fraction * (1 - fraction))
    self.assertBetween(len(held), num_patients * fraction - 5 * sd,
                       num_patients * fraction + 5 * sd)

  def test_share_over_many_ids_and_nested(self):
    ids = range(1, 20001)
    for fraction in (0.01, 0.1, 0.5, 0.9):
      held = sum(heldout_lib.is_heldout_subject(s, fraction, 12345) for s in ids)
      sd = math.sqrt(len(ids) * fraction * (1 - fraction))
      self.assertBetween(held, len(ids) * fraction - 5 * sd, len(ids) * fraction + 5 * sd)
    # A patient held out at 0.1 is held out at 0.5 too; none at 0.
    self.assertTrue(all(heldout_lib.is_heldout_subject(s, 0.5, 1) for s in ids
                        if heldout_lib.is_heldout_subject(s, 0.1, 1)))
    self.assertFalse(any(heldout_lib.is_heldout_subject(s, 0.0, 1) for s in ids))


class ScriptTest(testutil.TestCase):
  """The flag through format_notes.py: 0 is today's bytes, a bad value one error line."""

  def run_script(self, *args):
    return subprocess.run([sys.executable, SCRIPT] + list(args), env=testutil.script_env(),
                          capture_output=True, text=True, timeout=300)

  def test_script(self):
    tmp = self.temp_dir()
    rows, _ = make_rows(num_patients=12, notes_per_patient=2)
    path = write_csv(os.path.join(tmp, "notes.csv"), rows)
    outputs = {}
    for name, extra in (("plain", []), ("zero", ["--heldout_fraction=0"]),
                        ("split", ["--heldout_fraction=0.5", "--num_workers=2"])):
      done = self.run_script("--input_file=" + path, "--output_dir=" + os.path.join(tmp, name),
                             *extra)
      self.assertEqual(done.returncode, 0, done.stderr)
      outputs[name] = read_files(os.path.join(tmp, name))
    self.assertEqual(outputs["zero"], outputs["plain"])
    self.assertIn("nursing.heldout.txt", outputs["split"])
    self.assertNotIn("nursing.heldout.txt", outputs["plain"])
    done = self.run_script("--input_file=" + path, "--output_dir=" + os.path.join(tmp, "bad"),
                           "--heldout_fraction=1")
    self.assertEqual(done.returncode, 1)
    errors = [l for l in done.stderr.splitlines() if "error" in l.lower()]
    self.assertEqual(len(errors), 1, done.stderr)
    self.assertIn("format_notes.py: error: --heldout_fraction=1.0: expected a share of patients",
                  errors[0])
    self.assertFalse(os.path.exists(os.path.join(tmp, "bad")))


if __name__ == "__main__":
  absltest.main()
