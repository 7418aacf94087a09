"""Tests for clinicalbert_tf/notes/noteevents.py on invented rows: the reader and the source.

The reader's records (what `predict.py`'s note reader relies on) and `NoteEventsSource`, the file
as a source of the format_notes pipeline. Whole files through the pipeline (CSV dialects, bad rows,
workers) are tested in `tests/format_notes_test.py`.
"""

import csv
import os
import re

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import noteevents
from clinicalbert_tf.notes import rows as rows_lib
from tests import testutil

HEADER = testutil.NOTEEVENTS_HEADER
note_row = testutil.noteevents_row
write_csv = testutil.write_noteevents_csv


class ReaderTest(testutil.TestCase):
  """NoteEventsReader's records: what another script reading notes relies on."""

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()

  def test_rows_as_records(self):
    rows = [note_row(7, " Nursing ", "Pt stable.\nPlan: home."),
            note_row(8, "ECG", "Sinus rhythm.", iserror="1"),
            ["9", "too", "few"]]
    path = write_csv(os.path.join(self.tmp, "notes.csv"), rows)
    limit = csv.field_size_limit()
    with noteevents.NoteEventsReader(path) as reader:
      self.assertEqual(reader.columns, HEADER)
      self.assertEqual((reader.gzip, reader.header_case), (False, "upper"))
      self.assertEqual(reader.total_bytes, os.path.getsize(path))
      self.assertEqual(csv.field_size_limit(), noteevents.MAX_FIELD_CHARS)
      records = list(reader)
      self.assertEqual(reader.bytes_read(), reader.total_bytes)
    self.assertEqual(csv.field_size_limit(), limit)
    first, flagged, bad = records
    self.assertIsInstance(first, noteevents.NoteRow)
    self.assertEqual((first.row_id, first.category, first.iserror, first.text, first.line),
                     (7, "Nursing", False, "Pt stable.\nPlan: home.", 2))
    self.assertEqual(first.get("SUBJECT_ID"), "1")
    self.assertEqual(first.get("HADM_ID"), "2")
    self.assertEqual(first.get("CATEGORY"), " Nursing ")  # as read
    self.assertIsNone(first.get("NO_SUCH_COLUMN"))
    self.assertEqual(sorted(first.fields), sorted(HEADER))
    self.assertEqual((flagged.row_id, flagged.iserror, flagged.line), (8, True, 4))
    self.assertEqual(bad, noteevents.BadRow("ROW_ID 9", "has 3 columns, expected 11", None, 5))

  def test_errors_name_the_flag_given(self):
    with self.assertRaisesRegex(fileio.InputError, "^--notes_file: cannot open"):
      noteevents.NoteEventsReader(os.path.join(self.tmp, "missing.csv"), flag="--notes_file")
    no_text = write_csv(os.path.join(self.tmp, "no_text.csv"), [], header=HEADER[:-1])
    with self.assertRaisesRegex(fileio.InputError,
                                r"^--notes_file .* header lacks column\(s\) TEXT"):
      noteevents.NoteEventsReader(no_text, flag="--notes_file")


class SourceTest(testutil.TestCase):
  """NoteEventsSource: rows as the pipeline's `rows.Note`s, keyed and named by ROW_ID."""

  def setUp(self):
    super().setUp()
    self.tmp = self.temp_dir()
    self.path = write_csv(os.path.join(self.tmp, "notes.csv"), [
        note_row(7, " Nursing ", "Pt stable.", subject_id="101"),
        note_row(8, "ECG", "Sinus rhythm.", iserror="1", subject_id=" 102 "),
        ["9", "too", "few"],
        note_row(10, "ECG", "Paced.", subject_id=""),
        note_row(11, "ECG", "Paced.", subject_id="p12")])

  def test_notes_without_patients(self):
    source = noteevents.NoteEventsSource(self.path)
    self.assertEqual(source.name, "--input_file " + self.path)
    with source:
      items = list(source)
      self.assertEqual(source.progress(), (os.path.getsize(self.path),) * 2)
      self.assertEqual(source.description(), self.path + " (plain CSV, upper header)")
      self.assertEqual(source.sidecar_fields(), [
          ("input_file", os.path.abspath(self.path)), ("input_bytes", os.path.getsize(self.path)),
          ("input_gzip", False), ("header_case", "upper")])
    self.assertEqual(items, [
        rows_lib.Note(7, "ROW_ID 7", 2, "Nursing", False, "Pt stable.", None),
        rows_lib.Note(8, "ROW_ID 8", 3, "ECG", True, "Sinus rhythm.", None),
        rows_lib.BadRow("ROW_ID 9", "has 3 columns, expected 11", None, 4),
        rows_lib.Note(10, "ROW_ID 10", 5, "ECG", False, "Paced.", None),
        rows_lib.Note(11, "ROW_ID 11", 6, "ECG", False, "Paced.", None)])

  def test_patients_are_subject_ids(self):
    with noteevents.NoteEventsSource(self.path) as source:
      source.require_patients("--heldout_fraction=0.1")
      patients = [item.patient for item in source if isinstance(item, rows_lib.Note)]
    self.assertEqual(patients, [
        101, 102, "SUBJECT_ID is empty; --heldout_fraction needs each note's patient",
        "SUBJECT_ID is not an integer; --heldout_fraction needs each note's patient"])

  def test_no_subject_id_column(self):
    path = write_csv(os.path.join(self.tmp, "no_subject.csv"),
                     [[r for i, r in enumerate(note_row(1, "ECG", "Paced.")) if i != 1]],
                     header=[h for h in HEADER if h != "SUBJECT_ID"])
    with noteevents.NoteEventsSource(path, flag="--notes") as source:
      with self.assertRaisesRegex(
          fileio.InputError, r"^--notes %s line 1: header lacks column SUBJECT_ID, which "
          r"--heldout_fraction=0.1 needs to hold out patients$" % re.escape(path)):
        source.require_patients("--heldout_fraction=0.1")
      self.assertEqual([item.key for item in source], [1])


if __name__ == "__main__":
  absltest.main()
