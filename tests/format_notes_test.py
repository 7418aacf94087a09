"""Tests for clinicalbert_tf/notes/pipeline.py and format_notes.py on invented notes.

CSV dialects (upper-case MIMIC, lower-case Postgres export, gzip, CRLF), ISERROR and bad rows,
--max_bad_rows, --categories, worker-count identity, atomic output, the missing-model error, --phi
(keep: today's bytes; surrogate: surrogates.py over whole files), output file names, and a source
of notes other than NOTEEVENTS. The reader's records are tested in `tests/noteevents_test.py`.
"""

import collections
import csv
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from unittest import mock

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates
from clinicalbert_tf.notes import noteevents
from clinicalbert_tf.notes import pipeline
from clinicalbert_tf.notes import rows as rows_lib
from clinicalbert_tf.notes import sections
from clinicalbert_tf.notes import sentences
from tests import testutil

SAMPLE = testutil.NOTEEVENTS_SAMPLE
SCRIPT = os.path.join(testutil.REPO, "format_notes.py")
HEADER = testutil.NOTEEVENTS_HEADER
note_row = testutil.noteevents_row
write_csv = testutil.write_noteevents_csv


def read_rows(path=SAMPLE):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.reader(f))


def read_outputs(directory):
  """{file name: bytes} of the .txt outputs in `directory`."""
  out = {}
  for name in sorted(os.listdir(directory)):
    if name.endswith(".txt"):
      with open(os.path.join(directory, name), "rb") as f:
        out[name] = f.read()
  return out


def listing(directory):
  """The names in `directory` ([] if it does not exist)."""
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


class FormatFileTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()

  def run_format(self, input_file, out_name="out", **kwargs):
    out = os.path.join(self.tmp, out_name)
    kwargs.setdefault("progress_every_s", 3600)
    summary = pipeline.format_notes_file(input_file, output_dir=out, **kwargs)
    return out, summary

  def test_sample_outputs_and_summary(self):
    out, summary = self.run_format(SAMPLE, all_notes_file=os.path.join(self.tmp, "all.txt"))
    files = read_outputs(out)
    self.assertEqual(sorted(files), sorted([
        "discharge_summary.txt", "physician.txt", "nursing.txt", "nursing_other.txt",
        "radiology.txt", "ecg.txt", "echo.txt", "respiratory.txt", "nutrition.txt",
        "case_management.txt", "pharmacy.txt", "rehab_services.txt", "social_work.txt",
        "general.txt", "consult.txt"]))
    totals = summary["totals"]
    self.assertEqual(totals["read"], 46)
    self.assertEqual(totals["written"], 43)
    self.assertEqual(totals["skipped_iserror"], 1)
    self.assertEqual(totals["skipped_empty"], 1)
    self.assertEqual(totals["skipped_bad_row"], 1)
    self.assertEqual(summary["bad_rows"], [{"ref": "ROW_ID 124", "line": 318,
                                            "reason": "has 10 columns, expected 11"}])
    self.assertEqual(summary["header_case"], "upper")
    # `Physician` and `Physician ` are one category.
    self.assertEqual(summary["categories"]["Physician"]["written"], 4)
    self.assertEqual(summary["categories"]["Nursing/other"]["skipped_iserror"], 1)
    for counts in summary["categories"].values():
      self.assertEqual(counts["read"], counts["written"] + counts["skipped_iserror"] +
                       counts["skipped_empty"] + counts["skipped_bad_row"] +
                       counts["not_selected"])
    # The all-notes file holds every note, in input order; each file ends notes with a blank line.
    with open(os.path.join(self.tmp, "all.txt"), "rb") as f:
      all_notes = f.read()
    self.assertEqual(len(all_notes), sum(len(v) for v in files.values()))
    self.assertTrue(all_notes.endswith(b"\n\n"))
    self.assertNotIn(b"\n\n\n", all_notes)
    documents = all_notes.decode("utf-8").split("\n\n")[:-1]
    self.assertLen(documents, 43)
    first_lines = [d.split("\n")[0] for d in documents]
    self.assertEqual(first_lines[:2], [
        "Admission Date: [**2101-10-20**] Discharge Date: [**2101-10-25**]",
        "Admission Date: [**2150-2-1**] Discharge Date: [**2150-2-9**]"])
    self.assertEqual(first_lines[6], "Chief Complaint: hypotension")
    self.assertEqual(first_lines[-1], "Sinus tachycardia.")
    for line in all_notes.decode("utf-8").split("\n"):
      self.assertEqual(line, line.strip())
    # Sidecars.
    with open(os.path.join(out, "ecg.txt.json")) as f:
      sidecar = json.load(f)
    self.assertEqual(sidecar["totals"], summary["totals"])
    record = sidecar["outputs"][os.path.join(out, "ecg.txt")]
    self.assertEqual(record["notes"], 3)
    self.assertEqual(record["sha256"], fileio.sha256_of_file(os.path.join(out, "ecg.txt")))
    self.assertTrue(os.path.exists(os.path.join(self.tmp, "all.txt.json")))

  def test_dialects_give_the_same_bytes(self):
    rows = read_rows()
    reference, _ = self.run_format(SAMPLE, out_name="upper")
    expected = read_outputs(reference)

    # The Postgres export: lower-case names, quotes only where needed.
    lower = write_csv(os.path.join(self.tmp, "lower.csv"), rows[1:],
                      header=[h.lower() for h in rows[0]])
    out, summary = self.run_format(lower, out_name="lower")
    self.assertEqual(summary["header_case"], "lower")
    self.assertEqual(read_outputs(out), expected)

    # gzip (detected from the bytes, whatever the name).
    for name in ("sample.csv.gz", "sample_gz.csv"):
      path = os.path.join(self.tmp, name)
      with open(SAMPLE, "rb") as src, gzip.open(path, "wb") as dst:
        dst.write(src.read())
      out, summary = self.run_format(path, out_name=name + "_out")
      self.assertTrue(summary["input_gzip"])
      self.assertEqual(read_outputs(out), expected)

    # CRLF records and fields (a Windows export), columns in another order, every field quoted.
    order = [10, 6, 0, 9] + [1, 2, 3, 4, 5, 7, 8]
    crlf_rows = [[r[i].replace("\n", "\r\n") for i in order] if len(r) == 11 else r
                 for r in rows[1:]]
    crlf = write_csv(os.path.join(self.tmp, "crlf.csv"), crlf_rows,
                     header=[rows[0][i] for i in order], lineterminator="\r\n",
                     quoting=csv.QUOTE_ALL)
    out, _ = self.run_format(crlf, out_name="crlf")
    self.assertEqual(read_outputs(out), expected)

    # A byte-order mark.
    bom = os.path.join(self.tmp, "bom.csv")
    with open(SAMPLE, "rb") as src, open(bom, "wb") as dst:
      dst.write(b"\xef\xbb\xbf" + src.read())
    out, _ = self.run_format(bom, out_name="bom")
    self.assertEqual(read_outputs(out), expected)

  def test_bad_rows_reported_by_row_id_without_text(self):
    secret = "SECRETWORD"
    rows = [
        note_row(1, "Nursing", "Fine note %s one." % secret),
        note_row(2, "Nursing", "Flagged %s." % secret, iserror="1"),
        note_row("x3", "Nursing", "Bad id %s." % secret),
        note_row(4, "Nursing", "Bad iserror %s." % secret, iserror="maybe"),
        note_row(5, "", "No category %s." % secret),
        note_row(6, "Nursing", "  \n "),
        ["7", "1", "2", "Nursing", "Too few %s" % secret],
        note_row(8, "Radiology", "Fine note %s two." % secret),
    ]
    path = write_csv(os.path.join(self.tmp, "bad.csv"), rows)
    with self.assertLogs(logger="absl", level="INFO") as logs:
      out, summary = self.run_format(path, progress_every_s=0)
    log_text = "\n".join(logs.output)
    self.assertNotIn(secret, log_text)
    self.assertIn("Bad row at line 4 (line 4): ROW_ID is not an integer", log_text)
    self.assertIn("Bad row at ROW_ID 4 (line 5): ISERROR is neither empty, 0 nor 1", log_text)
    self.assertIn("Bad row at ROW_ID 5 (line 6): CATEGORY is empty", log_text)
    self.assertIn("Bad row at ROW_ID 7 (line 9): has 5 columns, expected 11", log_text)
    # The progress line (progress.Progress): rows read and their rate, notes written, input read,
    # ETA in progress.format_duration's form.
    self.assertRegex(log_text, r"format_notes: \d+ rows, [\d.e+]+ rows/s; \d+ notes written, "
                     r"[\d.]+% of input, ETA \d+m\d\ds")
    self.assertEqual([b["ref"] for b in summary["bad_rows"]],
                     ["line 4", "ROW_ID 4", "ROW_ID 5", "ROW_ID 7"])
    nursing = summary["categories"]["Nursing"]
    self.assertEqual((nursing["read"], nursing["written"], nursing["skipped_iserror"],
                      nursing["skipped_empty"], nursing["skipped_bad_row"]), (5, 1, 1, 1, 2))
    self.assertEqual(summary["categories"][pipeline.UNPARSEABLE]["skipped_bad_row"], 2)
    self.assertEqual(read_outputs(out), {
        "nursing.txt": ("Fine note %s one.\n\n" % secret).encode(),
        "radiology.txt": ("Fine note %s two.\n\n" % secret).encode()})

  def test_csv_error_row_is_a_bad_row(self):
    path = write_csv(os.path.join(self.tmp, "long.csv"), [
        note_row(1, "Nursing", "One."), note_row(2, "Nursing", "Too long. " * 20),
        note_row(3, "Nursing", "Three.")])
    with mock.patch.object(noteevents, "MAX_FIELD_CHARS", 100):
      out, summary = self.run_format(path)
    self.assertEqual(summary["bad_rows_total"], 1)
    self.assertEqual(summary["bad_rows"][0]["ref"], "line 3")
    self.assertIn("CSV error", summary["bad_rows"][0]["reason"])
    self.assertEqual(read_outputs(out), {"nursing.txt": b"One.\n\nThree.\n\n"})

  def test_max_bad_rows(self):
    rows = [note_row(i, "Nursing", "Note %d." % i) for i in range(1, 40)]
    rows[30] = ["31", "too", "few"]
    rows[35] = ["36", "too", "few"]
    path = write_csv(os.path.join(self.tmp, "two_bad.csv"), rows)
    with mock.patch.object(pipeline, "CHUNK_NOTES", 4):
      with self.assertRaisesRegex(fileio.InputError,
                                  r"2 rows could not be parsed, more than --max_bad_rows=1 "
                                  r"\(latest: ROW_ID 36, line 37"):
        self.run_format(path, out_name="stopped", max_bad_rows=1)
    # Notes had been written to temporary files before the stop; none survives.
    self.assertEqual(listing(os.path.join(self.tmp, "stopped")), [])
    _, summary = self.run_format(path, out_name="two", max_bad_rows=2)
    self.assertEqual(summary["totals"]["written"], 37)
    _, summary = self.run_format(path, out_name="unlimited", max_bad_rows=-1)
    self.assertEqual(summary["bad_rows_total"], 2)
    with self.assertRaisesRegex(fileio.InputError, "more than --max_bad_rows=0"):
      self.run_format(path, out_name="zero", max_bad_rows=0)

  def test_categories_filter(self):
    out, summary = self.run_format(
        SAMPLE, categories=["discharge summary", "nursing_other", "Nonexistent Category"])
    self.assertEqual(sorted(read_outputs(out)), ["discharge_summary.txt",
                                                 "nonexistent_category.txt", "nursing_other.txt"])
    self.assertEqual(read_outputs(out)["nonexistent_category.txt"], b"")
    self.assertEqual(summary["categories"]["Radiology"]["not_selected"], 5)
    self.assertEqual(summary["categories"]["Nursing/other"]["written"], 5)
    self.assertEqual(summary["totals"]["written"], 11)

  def test_too_many_categories(self):
    rows = [note_row(i, "Category %d" % i, "Note.") for i in range(1, 8)]
    path = write_csv(os.path.join(self.tmp, "cats.csv"), rows)
    with mock.patch.object(pipeline, "MAX_CATEGORIES", 5):
      with self.assertRaisesRegex(fileio.InputError,
                                  "more than 5 different CATEGORY values .the latest at ROW_ID 6"):
        self.run_format(path, out_name="cats")
    self.assertEqual(listing(os.path.join(self.tmp, "cats")), [])

  def test_all_notes_only(self):
    all_notes = os.path.join(self.tmp, "sub", "all.txt")
    summary = pipeline.format_notes_file(SAMPLE, all_notes_file=all_notes, category_files=False)
    self.assertEqual(list(summary["outputs"]), [all_notes])
    self.assertEqual(summary["outputs"][all_notes]["notes"], 43)

  def test_flag_errors(self):
    with self.assertRaisesRegex(fileio.InputError, "--num_workers=0"):
      self.run_format(SAMPLE, num_workers=0)
    with self.assertRaisesRegex(fileio.InputError, "--output_dir is required"):
      pipeline.format_notes_file(SAMPLE)
    with self.assertRaisesRegex(fileio.InputError, "nothing to write"):
      pipeline.format_notes_file(SAMPLE, output_dir=self.tmp, category_files=False)
    with self.assertRaisesRegex(fileio.InputError, "cannot open"):
      self.run_format(os.path.join(self.tmp, "missing.csv"))
    empty = os.path.join(self.tmp, "empty.csv")
    open(empty, "w").close()
    with self.assertRaisesRegex(fileio.InputError, "the file is empty"):
      self.run_format(empty)
    no_text = write_csv(os.path.join(self.tmp, "no_text.csv"), [], header=HEADER[:-1])
    with self.assertRaisesRegex(fileio.InputError, r"line 1: header lacks column\(s\) TEXT"):
      self.run_format(no_text)
    clash = os.path.join(self.tmp, "out", "ecg.txt")
    with self.assertRaisesRegex(fileio.InputError, "also the output file of category 'ECG'"):
      self.run_format(SAMPLE, all_notes_file=clash)
    self.assertFalse(os.path.exists(clash))

  def test_truncated_gzip_is_an_input_error(self):
    path = os.path.join(self.tmp, "cut.csv.gz")
    with open(SAMPLE, "rb") as f:
      data = gzip.compress(f.read())
    with open(path, "wb") as f:
      f.write(data[:len(data) // 2])
    with self.assertRaisesRegex(fileio.InputError, "cannot read past line"):
      self.run_format(path, out_name="cut")
    self.assertEqual(listing(os.path.join(self.tmp, "cut")), [])

  def test_quote_that_never_closes_is_an_input_error(self):
    good = write_csv(os.path.join(self.tmp, "good.csv"), [
        note_row(1, "Nursing", "One."), note_row(2, "Nursing", 'Said "fine" today.')])
    with open(good, encoding="utf-8") as f:
      text = f.read()
    # A copy cut inside the last note's quoted TEXT, and one whose last TEXT never closes (both
    # would silently end the file as that note's text).
    cut = os.path.join(self.tmp, "cut.csv")
    with open(cut, "w", encoding="utf-8") as f:
      f.write(text[:text.index("fine")])
    unclosed = os.path.join(self.tmp, "unclosed.csv")
    with open(unclosed, "w", encoding="utf-8") as f:
      f.write(text.replace('today."\n', 'today.\n'))
    for path in (cut, unclosed):
      with self.assertRaisesRegex(fileio.InputError,
                                  r"%s: the file ends inside a quoted field opened in the record at "
                                  r"line \d+" % re.escape(path)):
        self.run_format(path, out_name="out_" + os.path.basename(path))
      self.assertEqual(listing(os.path.join(self.tmp, "out_" + os.path.basename(path))), [])
    # The intact file (with its doubled quotes) still reads.
    out, summary = self.run_format(good)
    self.assertEqual(summary["bad_rows_total"], 0)

  def test_a_model_directory_is_loaded_with_spacy_load(self):
    import spacy  # pylint: disable=g-import-not-at-top
    model_dir = os.path.join(self.tmp, "tiny_model")
    spacy.blank("en").to_disk(model_dir)
    model_splitter = sentences.SentenceSplitter(spacy_model=model_dir)
    self.assertEqual(model_splitter._nlp.pipe_names,  # pylint: disable=protected-access
                     ["sentencizer", "clinicalbert_period_titlecase"])
    # spaCy's own English tokenizer, and no abbreviation rule (S4) outside the rules model.
    self.assertEqual(
        model_splitter.format_note("Seen at [**Hospital1 18**]. Pt. denies pain.\nHPI:\n"
                                   "1. CHF. Stable"),
        ["Seen at [**Hospital1 18**].", "Pt.", "denies pain.", "HPI:", "1. CHF.", "Stable"])
    out, summary = self.run_format(SAMPLE, spacy_model=model_dir, categories=["ECG"])
    self.assertEqual(summary["spacy_model"], model_dir)
    self.assertEqual(summary["totals"]["written"], 3)

  def test_missing_model_is_a_clear_error(self):
    with self.assertRaises(fileio.InputError) as raised:
      self.run_format(SAMPLE, spacy_model="no_such_model_xyz")
    message = str(raised.exception)
    self.assertIn("--spacy_model=no_such_model_xyz", message)
    self.assertIn("not installed", message)
    self.assertIn("python -m spacy download no_such_model_xyz", message)
    self.assertNotIn("\n", message)
    self.assertIn("pip install https://s3-us-west-2.amazonaws.com/ai2-s2-scispacy/releases/",
                  sentences.missing_model_message("en_core_sci_md"))
    with self.assertRaises(fileio.InputError):
      sentences.build_pipeline("no_such_model_xyz")


class WorkersAndAtomicityTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()

  def many_notes_file(self, name="many.csv", copies=6):
    rows = read_rows()
    body = [r for r in rows[1:]]
    out_rows = []
    row_id = 1
    for _ in range(copies):
      for r in body:
        r = list(r)
        r[0] = str(row_id)
        row_id += 1
        out_rows.append(r)
    return write_csv(os.path.join(self.tmp, name), out_rows, header=rows[0])

  def test_one_and_two_workers_write_the_same_bytes(self):
    path = self.many_notes_file()
    results = {}
    with mock.patch.object(pipeline, "CHUNK_NOTES", 7), \
         mock.patch.object(pipeline, "CHUNK_CHARS", 4000):
      for workers in (1, 2):
        out = os.path.join(self.tmp, "w%d" % workers)
        summary = pipeline.format_notes_file(path, output_dir=out, num_workers=workers,
                                               all_notes_file=os.path.join(out, "all", "all.txt"),
                                               progress_every_s=3600)
        with open(os.path.join(out, "all", "all.txt"), "rb") as f:
          results[workers] = (read_outputs(out), f.read(), summary["totals"])
    self.assertEqual(results[1][0], results[2][0])
    self.assertEqual(results[1][1], results[2][1])
    self.assertEqual(results[1][2], results[2][2])
    self.assertEqual(results[1][2]["written"], 6 * 43)

  def test_rebuilding_the_pipeline_changes_nothing(self):
    path = self.many_notes_file(copies=2)
    out_a = os.path.join(self.tmp, "a")
    out_b = os.path.join(self.tmp, "b")
    with mock.patch.object(pipeline, "CHUNK_NOTES", 5):
      pipeline.format_notes_file(path, output_dir=out_a, progress_every_s=3600)
      with mock.patch.object(sentences, "MAX_VOCAB_LEXEMES", 10), \
           mock.patch.object(sentences, "build_pipeline", wraps=sentences.build_pipeline) as build:
        pipeline.format_notes_file(path, output_dir=out_b, progress_every_s=3600)
    self.assertGreater(build.call_count, 5)
    self.assertEqual(read_outputs(out_a), read_outputs(out_b))

  def test_note_that_cannot_be_formatted_is_a_bad_row(self):
    rows = [note_row(i, "Nursing", "Note %d is fine." % i) for i in range(1, 12)]
    rows[6][10] = "Note 7 has a BOOM in it."
    path = write_csv(os.path.join(self.tmp, "boom.csv"), rows)
    original = sections.split_sections

    def split_sections(text):
      if "BOOM" in text:
        raise ValueError("BOOM")
      return original(text)

    out = os.path.join(self.tmp, "out")
    with mock.patch.object(pipeline, "CHUNK_NOTES", 4), \
         mock.patch.object(sections, "split_sections", split_sections):
      with self.assertLogs(logger="absl", level="WARNING") as logs:
        summary = pipeline.format_notes_file(path, output_dir=out, progress_every_s=3600)
    self.assertEqual(summary["bad_rows"], [
        {"ref": "ROW_ID 7", "line": 8, "reason": "could not be formatted (ValueError)"}])
    self.assertNotIn("BOOM", "\n".join(logs.output))
    self.assertEqual(summary["categories"]["Nursing"]["written"], 10)
    self.assertEqual(summary["categories"]["Nursing"]["skipped_bad_row"], 1)
    with open(os.path.join(out, "nursing.txt")) as f:
      self.assertEqual(f.read(), "".join("Note %d is fine.\n\n" % i for i in range(1, 12)
                                         if i != 7))

  def test_exception_midway_leaves_no_output(self):
    path = self.many_notes_file(copies=2)
    out = os.path.join(self.tmp, "out")
    os.makedirs(out)
    with open(os.path.join(out, "ecg.txt"), "w") as f:
      f.write("from an earlier run\n")
    original = pipeline._Output.write
    calls = []

    def failing(self, data, num_sentences):
      calls.append(1)
      if len(calls) == 40:
        raise OSError("disk on fire")
      return original(self, data, num_sentences)

    with mock.patch.object(pipeline, "CHUNK_NOTES", 5), \
         mock.patch.object(pipeline._Output, "write", failing):
      with self.assertRaisesRegex(OSError, "disk on fire"):
        pipeline.format_notes_file(path, output_dir=out,
                                     all_notes_file=os.path.join(out, "all.txt"),
                                     progress_every_s=3600)
    # The earlier file is untouched, nothing new appeared, no temporary file is left.
    self.assertEqual(os.listdir(out), ["ecg.txt"])
    with open(os.path.join(out, "ecg.txt")) as f:
      self.assertEqual(f.read(), "from an earlier run\n")

  def test_killed_script_leaves_no_final_file(self):
    # The input is a pipe that we fill only partly, so the script is surely midway when killed.
    fifo = os.path.join(self.tmp, "notes.fifo")
    os.mkfifo(fifo)
    out = os.path.join(self.tmp, "out")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--input_file=" + fifo, "--output_dir=" + out],
        env=testutil.script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
      with open(fifo, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(2 * pipeline.CHUNK_NOTES):
          writer.writerow(note_row(i + 1, "Nursing", "Pt stable. Plan to continue. Note %d." % i))
        f.flush()
        deadline = time.time() + 60
        while time.time() < deadline:
          if os.path.isdir(out) and any(n.startswith(".nursing.txt.tmp") for n in os.listdir(out)):
            break
          self.assertIsNone(proc.poll(), "the script ended early")
          time.sleep(0.05)
        else:
          self.fail("no temporary output appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    self.assertFalse(os.path.exists(os.path.join(out, "nursing.txt")))


# The sha256 of the sample's all-notes file with placeholders kept: today's bytes, which the
# default --phi=keep must keep.
SAMPLE_ALL_NOTES_SHA256 = "894add6133eeab87d03a4b893e5c71c79e965ccd7fe1a25aca8244b0261d7538"


def phi_notes_file(path, copies=3, secret="ZORBLAX"):
  """Invented notes with placeholders of every category (and a word that must never be logged)."""
  rows = []
  row_id = 1
  examples = list(surrogates.EXAMPLE_PLACEHOLDERS.values())
  for copy in range(copies):
    for start in range(0, len(examples), 6):
      group = examples[start:start + 6]
      text = ("Admission Date: [**2101-10-%d**] Discharge Date: [**2101-11-2**]\n"
              "History: %s pt seen by Dr. [**Last Name (STitle) 12**] at [**Hospital1 18**].\n"
              % (10 + copy, secret) +
              " ".join("Item %d is %s. Again %s." % (i, p, p) for i, p in enumerate(group)) +
              "\nFollow-up on [**10-30**] with Dr. [**Last Name (STitle) 12**].\n")
      rows.append(note_row(row_id, "Nursing" if row_id % 2 else "Discharge summary", text))
      row_id += 1
  rows.append(note_row(row_id, "Nursing", "Written in error [**Hospital1 18**].", iserror="1"))
  return write_csv(path, rows)


def placeholder_counts(path):
  """category -> placeholders in the notes of `path` that are not flagged ISERROR."""
  counts = collections.Counter()
  for row in read_rows(path)[1:]:
    if row[9] != "1":
      counts.update(surrogates.classify(p[3:-3])[0]
                    for p in sentences.PLACEHOLDER_RE.findall(row[10]))
  return counts


class PhiTest(testutil.TestCase):
  """--phi=keep (today's bytes) and --phi=surrogate (surrogates.py) over whole files."""

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()

  def run_phi(self, input_file, name, **kwargs):
    out = os.path.join(self.tmp, name)
    all_notes = os.path.join(out, "all", "all.txt")
    summary = pipeline.format_notes_file(input_file, output_dir=out, all_notes_file=all_notes,
                                           progress_every_s=3600, **kwargs)
    with open(all_notes, "rb") as f:
      return read_outputs(out), f.read(), summary

  def test_keep_is_todays_bytes(self):
    default, all_default, summary = self.run_phi(SAMPLE, "default")
    keep, all_keep, _ = self.run_phi(SAMPLE, "keep", phi="keep", random_seed=99,
                                     surrogate_locale="de_DE")
    self.assertEqual(keep, default)
    self.assertEqual(all_keep, all_default)
    self.assertEqual(hashlib.sha256(all_default).hexdigest(), SAMPLE_ALL_NOTES_SHA256)
    self.assertIn(b"[**Last Name (NamePattern1) ", all_default)
    self.assertEqual(summary["phi"], {"mode": "keep"})

  def test_surrogates_over_a_file(self):
    path = phi_notes_file(os.path.join(self.tmp, "phi.csv"))
    expected_counts = placeholder_counts(path)
    self.assertEqual(set(expected_counts), set(surrogates.CATEGORIES))
    results = {}
    with mock.patch.object(pipeline, "CHUNK_NOTES", 3):
      with self.assertLogs(logger="absl", level="INFO") as logs:
        results[1, 5] = self.run_phi(path, "w1", phi="surrogate", random_seed=5, num_workers=1)
      results[2, 5] = self.run_phi(path, "w2", phi="surrogate", random_seed=5, num_workers=2)
      results["again", 5] = self.run_phi(path, "again", phi="surrogate", random_seed=5)
      results[1, 6] = self.run_phi(path, "seed6", phi="surrogate", random_seed=6)
    files, all_notes, summary = results[1, 5]
    # No placeholder is left; the notes' other text is.
    self.assertNotIn(b"[**", all_notes)
    self.assertNotIn(b"**]", all_notes)
    self.assertIn(b"ZORBLAX pt seen by Dr. ", all_notes)
    # 1 vs 2 workers, and a second run: the same bytes; another seed: others.
    self.assertEqual(results[2, 5][:2], (files, all_notes))
    self.assertEqual(results["again", 5][:2], (files, all_notes))
    self.assertNotEqual(results[1, 6][1], all_notes)
    self.assertEqual(results[2, 5][2]["phi"], summary["phi"])
    # The sidecar: mode, seed, locale and the count per category, equal to the input's.
    record = summary["phi"]
    self.assertEqual((record["mode"], record["random_seed"], record["locale"]),
                     ("surrogate", 5, "en_US"))
    self.assertEqual(record["faker_version"], surrogates.faker_version())
    self.assertEqual(record["counts"], dict(expected_counts))
    self.assertEqual(record["placeholders"], sum(expected_counts.values()))
    with open(os.path.join(self.tmp, "w1", "nursing.txt.json")) as f:
      self.assertEqual(json.load(f)["phi"], json.loads(json.dumps(record)))
    # Logs: counts only, never note text (nor the placeholders' labels).
    log_text = "\n".join(logs.output)
    self.assertIn("placeholders replaced", log_text)
    self.assertNotIn("ZORBLAX", log_text)
    self.assertNotIn("Spaceship", log_text)
    # Within a note the same placeholder gives the same surrogate: the doctor named twice.
    for note in all_notes.decode("utf-8").split("\n\n")[:-1]:
      doctors = re.findall(r"(?:by|with) Dr\. ([^\s.]+)", note)
      self.assertLen(doctors, 2, note)
      self.assertEqual(doctors[0], doctors[1])

  def test_sentences_around_surrogates(self):
    # The surrogate is split like ordinary text: the same sentences as a note written with it.
    path = write_csv(os.path.join(self.tmp, "one.csv"), [note_row(
        3, "Nursing", "Pt seen by Dr. [**Last Name (STitle) 12**] today. Plan: home.")])
    _, all_notes, _ = self.run_phi(path, "one", phi="surrogate", random_seed=1)
    lines = all_notes.decode("utf-8").split("\n")
    self.assertEqual(len(lines), 4, lines)  # two sentences, the blank line, the end
    name = re.fullmatch(r"Pt seen by Dr\. (\S+) today\.", lines[0]).group(1)
    self.assertEqual(lines[1], "Plan: home.")
    text, _ = surrogates.Surrogates(random_seed=1).replace(
        "Pt seen by Dr. [**Last Name (STitle) 12**] today. Plan: home.", 3)
    self.assertIn(name, text)

  def test_phi_flag_errors(self):
    with self.assertRaisesRegex(fileio.InputError, "--phi=scramble: expected one of keep, "
                                "surrogate"):
      self.run_phi(SAMPLE, "bad", phi="scramble")
    with self.assertRaisesRegex(fileio.InputError, "--surrogate_locale=xx_YY: not a Faker"):
      self.run_phi(SAMPLE, "bad", phi="surrogate", surrogate_locale="xx_YY")
    self.assertEqual(listing(os.path.join(self.tmp, "bad")), [])


class ScriptTest(testutil.TestCase):

  def test_script_runs_and_fails_cleanly(self):
    tmp = self.temp_dir()
    out = os.path.join(tmp, "out")
    done = subprocess.run(
        [sys.executable, SCRIPT, "--input_file=" + SAMPLE, "--output_dir=" + out,
         "--categories=ECG,Echo", "--num_workers=2"],
        env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertEqual(sorted(os.listdir(out)), ["ecg.txt", "ecg.txt.json", "echo.txt",
                                               "echo.txt.json"])
    self.assertIn("Bad row at ROW_ID 124", done.stderr)

    done = subprocess.run(
        [sys.executable, SCRIPT, "--input_file=" + SAMPLE, "--output_dir=" + out,
         "--spacy_model=bogus_model_name"],
        env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertNotEqual(done.returncode, 0)
    errors = [l for l in done.stderr.splitlines() if "error" in l.lower()]
    self.assertEqual(errors, [
        "format_notes.py: error: " + sentences.missing_model_message("bogus_model_name")])

    done = subprocess.run(
        [sys.executable, SCRIPT, "--input_file=" + SAMPLE, "--output_dir=" + out,
         "--max_bad_rows=0"],
        env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 1)
    self.assertIn("format_notes.py: error: --input_file", done.stderr)
    self.assertIn("more than --max_bad_rows=0", done.stderr)

  def test_script_phi_flags(self):
    tmp = self.temp_dir()
    out = os.path.join(tmp, "out")
    done = subprocess.run(
        [sys.executable, SCRIPT, "--input_file=" + SAMPLE, "--output_dir=" + out,
         "--categories=Discharge summary", "--phi=surrogate", "--random_seed=3",
         "--surrogate_locale=en_GB"],
        env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 0, done.stderr)
    with open(os.path.join(out, "discharge_summary.txt"), encoding="utf-8") as f:
      self.assertNotIn("[**", f.read())
    with open(os.path.join(out, "discharge_summary.txt.json")) as f:
      record = json.load(f)["phi"]
    self.assertEqual((record["mode"], record["random_seed"], record["locale"]),
                     ("surrogate", 3, "en_GB"))
    done = subprocess.run(
        [sys.executable, SCRIPT, "--input_file=" + SAMPLE, "--output_dir=" + out,
         "--phi=surrogate", "--surrogate_locale=xx_YY"],
        env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 1)
    self.assertIn("format_notes.py: error: --surrogate_locale=xx_YY: not a Faker locale",
                  done.stderr)


class NamingTest(testutil.TestCase):

  def test_category_file_names(self):
    for category, name in [("Discharge summary", "discharge_summary"),
                           ("Nursing/other", "nursing_other"),
                           ("Case Management ", "case_management"),
                           ("Rehab Services", "rehab_services"), ("Social Work", "social_work"),
                           ("Physician ", "physician"), ("ECG", "ecg"), ("Echo", "echo"),
                           ("???", "uncategorized")]:
      self.assertEqual(pipeline.category_file_name(category), name)


class ListSource(object):
  """A source of notes other than NOTEEVENTS: the interface of `rows.py` over a list."""

  def __init__(self, items, patients=True):
    self.name = "--notes listed"
    self._items = items
    self._patients = patients
    self.entered = self.exited = False
    self.patients_asked_by = None

  def __enter__(self):
    self.entered = True
    return self

  def __exit__(self, *unused_exc_info):
    self.exited = True

  def require_patients(self, why):
    if not self._patients:
      raise fileio.InputError("%s: no patients, which %s needs" % (self.name, why))
    self.patients_asked_by = why

  def __iter__(self):
    for item in self._items:
      if isinstance(item, rows_lib.Note) and self.patients_asked_by is None:
        item = item._replace(patient=None)
      yield item

  def progress(self):
    return None

  def description(self):
    return "a list of %d notes" % len(self._items)

  def sidecar_fields(self):
    return [("input", "listed"), ("input_notes", len(self._items))]


def listed_note(key, line, category, text, patient=None, iserror=False):
  return rows_lib.Note(key, "note %s" % key, line, category, iserror, text, patient)


class OtherSourceTest(testutil.TestCase):
  """`pipeline.format_notes` reads any source with the interface of `rows.py`."""

  ITEMS = [
      listed_note("a-1", 1, "Clinic letter", "Seen today. Doing well.", patient=7),
      listed_note("a-2", 2, "Phone call", "Called back.", patient=8),
      rows_lib.BadRow("line 3", "no text field", "Phone call", 3),
      listed_note("a-4", 4, "Clinic letter", "Written in error.", patient=7, iserror=True),
      listed_note("a-5", 5, "Clinic letter", "  ", patient=9),
      listed_note("a-6", 6, "Phone call", "No answer.", patient="no patient id on this note"),
      listed_note("a-7", 7, "Clinic letter", "Returns in May.", patient=8),
  ]

  def test_any_source_feeds_the_pipeline(self):
    out = self.temp_dir()
    source = ListSource(self.ITEMS)
    with self.assertLogs(logger="absl", level="INFO") as logs:
      summary = pipeline.format_notes(source, output_dir=out, progress_every_s=3600,
                                      all_notes_file=os.path.join(out, "all.txt"))
    self.assertTrue(source.entered and source.exited)
    self.assertIsNone(source.patients_asked_by)  # no split: patients are not asked for
    self.assertEqual(read_outputs(out), {
        "all.txt": b"Seen today.\nDoing well.\n\nCalled back.\n\nNo answer.\n\n"
                   b"Returns in May.\n\n",
        "clinic_letter.txt": b"Seen today.\nDoing well.\n\nReturns in May.\n\n",
        "phone_call.txt": b"Called back.\n\nNo answer.\n\n"})
    self.assertEqual(list(summary)[:4], ["tool", "input", "input_notes", "spacy_model"])
    self.assertEqual((summary["input"], summary["input_notes"]), ("listed", 7))
    self.assertEqual(summary["bad_rows"], [{"ref": "line 3", "line": 3,
                                            "reason": "no text field"}])
    letters = summary["categories"]["Clinic letter"]
    self.assertEqual((letters["read"], letters["written"], letters["skipped_iserror"],
                      letters["skipped_empty"], letters["sentences"]), (4, 2, 1, 1, 3))
    self.assertIn("Reading a list of 7 notes with spacy_model=rules, 1 worker(s)",
                  "\n".join(logs.output))

  def test_surrogates_are_keyed_by_the_source_key(self):
    note = "Called [**Last Name (NamePattern1) 1234**] today."
    items = [listed_note("k1", 1, "Letter", note), listed_note("k2", 2, "Letter", note)]
    out = self.temp_dir()
    pipeline.format_notes(ListSource(items), output_dir=out, progress_every_s=3600,
                          phi="surrogate", random_seed=5)
    surrogate = surrogates.Surrogates(random_seed=5)
    expected = b"".join(
        ("%s\n\n" % surrogate.replace(note, key)[0]).encode("utf-8") for key in ("k1", "k2"))
    self.assertEqual(read_outputs(out), {"letter.txt": expected})

  def test_heldout_split_by_the_source_patients(self):
    fraction, seed = 0.5, 3
    def held_out(patient):  # the split's definition, written out independently
      digest = hashlib.sha256(("%d:%d" % (seed, patient)).encode("ascii")).digest()
      return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction
    out = self.temp_dir()
    source = ListSource(self.ITEMS)
    summary = pipeline.format_notes(source, output_dir=out, progress_every_s=3600,
                                    category_files=False, heldout_fraction=fraction,
                                    random_seed=seed, all_notes_file=os.path.join(out, "all.txt"))
    self.assertEqual(source.patients_asked_by, "--heldout_fraction=0.5")
    notes_of = {7: b"Seen today.\nDoing well.\n\n", 8: b"Called back.\n\nReturns in May.\n\n"}
    self.assertEqual(read_outputs(out), {
        "all.txt": b"".join(notes_of[p] for p in (7, 8) if not held_out(p)),
        "all.heldout.txt": b"".join(notes_of[p] for p in (7, 8) if held_out(p))})
    self.assertEqual(summary["bad_rows"][-1], {"ref": "note a-6", "line": 6,
                                               "reason": "no patient id on this note"})
    self.assertEqual(summary["heldout"]["skipped_no_subject_id"], 1)
    with self.assertRaisesRegex(fileio.InputError,
                                "^--notes listed: no patients, which --heldout_fraction=0.5"):
      pipeline.format_notes(ListSource(self.ITEMS, patients=False), output_dir=self.temp_dir(),
                            heldout_fraction=fraction)


if __name__ == "__main__":
  absltest.main()
