"""Tests for clinicalbert_tf/notes/sentences.py on invented notes: rules S1-S7, placeholders.

Reading NOTEEVENTS is tested in `tests/noteevents_test.py`, formatting whole files (CSV dialects,
bad rows, workers, atomic output, the script) in `tests/format_notes_test.py`.
"""

import csv
import os
import re

from absl.testing import absltest

from clinicalbert_tf.notes import sentences as sentences_lib
from tests import testutil

SAMPLE = os.path.join(testutil.REPO, "testdata", "NOTEEVENTS_sample.csv")

_SPLITTER = None


def splitter():
  """One rules pipeline for all tests (building it takes about half a second)."""
  global _SPLITTER
  if _SPLITTER is None:
    _SPLITTER = sentences_lib.SentenceSplitter()
  return _SPLITTER


def sentences(text):
  return splitter().format_note(text)


def sample_texts():
  """The TEXT of every well-formed row of the sample NOTEEVENTS."""
  with open(SAMPLE, encoding="utf-8", newline="") as f:
    return [row[10] for row in list(csv.reader(f))[1:] if len(row) == 11]


class SentenceRulesTest(testutil.TestCase):
  """S1-S7 and the section rules seen through whole notes."""

  def test_s2_abbreviations_and_vitals_stay_whole(self):
    self.assertEqual(
        sentences("Pt is s/p CABG, h/o HTN, c/o CP w/ SOB. BP 120/80, HR 88, T 98.6. Seen by "
                  "Dr. Smith today."),
        ["Pt is s/p CABG, h/o HTN, c/o CP w/ SOB.", "BP 120/80, HR 88, T 98.6.",
         "Seen by Dr. Smith today."])

  def test_s3_period_then_title_case(self):
    self.assertEqual(sentences("He was stable. Then he left."), ["He was stable.", "Then he left."])
    self.assertEqual(sentences("seen in the ED.Then he left. Troponin 0.12.Cardiology saw him."),
                     ["seen in the ED.", "Then he left.", "Troponin 0.12.", "Cardiology saw him."])
    # Not after an abbreviation or a dotted word.
    self.assertEqual(sentences("Seen by Dr.Smith at the U.S.Army base."),
                     ["Seen by Dr.Smith at the U.S.Army base."])
    # A lone capital letter and `.` (one spaCy token) before a title-case word.
    self.assertEqual(sentences("65 yo M. He has CP. Vitamin D. Take daily. E. coli grew."),
                     ["65 yo M.", "He has CP.", "Vitamin D.", "Take daily.", "E. coli grew."])

  def test_s4_abbreviation_then_lower_case_continues(self):
    self.assertEqual(sentences("ASA 81 mg p.o. daily. Pt. denies SOB. Levothyroxine q.d., "
                               "calcium. approx. 5 cm vs. 6 cm."),
                     ["ASA 81 mg p.o. daily.", "Pt. denies SOB.", "Levothyroxine q.d., calcium.",
                      "approx. 5 cm vs. 6 cm."])
    # A lower-case start after an ordinary word is still a new sentence.
    self.assertEqual(sentences("Pt stable. no n/v/d. denies pain."),
                     ["Pt stable.", "no n/v/d.", "denies pain."])

  def test_s5_list_marker_stays_with_its_item(self):
    self.assertEqual(sentences("Plan:\n1. Aspirin daily.\n2. Lasix. Hold for SBP < 90.\n3) Zinc"),
                     ["Plan:", "1. Aspirin daily.", "2. Lasix.", "Hold for SBP < 90.", "3) Zinc"])

  def test_s6_newlines_become_spaces(self):
    self.assertEqual(sentences("Pt is a 65 yo M\nwho presented   with\tCP.\nHe was admitted."),
                     ["Pt is a 65 yo M who presented with CP.", "He was admitted."])

  def test_s7_empty_sentences_dropped(self):
    self.assertEqual(sentences("  \n\n-----\n  ...  \n"), ["..."])
    self.assertEqual(sentences("\n\n   \n"), [])
    self.assertEqual(sentences("______\n-----"), [])

  def test_sections_in_a_whole_note(self):
    note = ("Admission Date:  [**2101-1-1**]     Discharge Date:  [**2101-1-5**]\n\n"
            "HISTORY OF PRESENT ILLNESS:\n65 yo M. He has CP.\n-----\nDischarge Medications:\n"
            "1. Aspirin\n2. Lasix\n___\nFollowup: PCP in 2 wks.")
    self.assertEqual(sentences(note), [
        "Admission Date: [**2101-1-1**] Discharge Date: [**2101-1-5**]",
        "HISTORY OF PRESENT ILLNESS:", "65 yo M.", "He has CP.", "Discharge Medications:",
        "1. Aspirin", "2. Lasix", "Followup: PCP in 2 wks."])

  def test_fixed_line_is_never_split_by_sentences(self):
    self.assertEqual(sentences("Admission Date: Jan. 1. Discharge Date: Jan. 5."),
                     ["Admission Date: Jan. 1. Discharge Date: Jan. 5."])

  def test_sentences_never_cross_segments(self):
    # Without the blank line, `fine` and `More` would be one sentence.
    self.assertEqual(sentences("He is fine\n\nmore text"), ["He is fine", "more text"])


class PlaceholderTest(testutil.TestCase):
  """S1: placeholders are never split inside and never across sentences."""

  def test_placeholder_kept_whole(self):
    self.assertEqual(
        sentences("Seen at [**Hospital1 18**]. [**Known lastname 123**] was admitted on "
                  "[**2101-10-20**].He left [**Location (un) 86**]-[**Hospital 1**]."),
        ["Seen at [**Hospital1 18**].", "[**Known lastname 123**] was admitted on [**2101-10-20**].",
         "He left [**Location (un) 86**]-[**Hospital 1**]."])

  def test_placeholder_with_sentence_punctuation_inside(self):
    # Inside a placeholder `. ` followed by a title-case word would end a sentence.
    self.assertEqual(sentences("Call Dr. [**First Name8 (NamePattern2) 1. Smith. Jr**] today. Done."),
                     ["Call Dr. [**First Name8 (NamePattern2) 1. Smith. Jr**] today.", "Done."])

  def test_placeholder_spaces_are_kept_verbatim(self):
    self.assertEqual(sentences("Seen by\n[**Last  Name   (STitle) 5**] today."),
                     ["Seen by [**Last  Name   (STitle) 5**] today."])

  def test_placeholder_cannot_make_a_header_or_item(self):
    # Rules, headers and list markers inside a placeholder do nothing.
    self.assertEqual(sentences("Seen at [**Hospital ---- 1**] by [**Doctor\tName ___ 2**].\n"
                               "[**Name: X**] was [**1. Two. Three**] days ago."),
                     ["Seen at [**Hospital ---- 1**] by [**Doctor\tName ___ 2**].",
                      "[**Name: X**] was [**1. Two. Three**] days ago."])

  def test_stand_in_already_in_text(self):
    text = "The word qqphiqq and qqphiqqq appear; qqphi[**x**] too [**y**]."
    protected, placeholders, stand_in = sentences_lib.protect_placeholders(text)
    self.assertEqual(placeholders, ["[**x**]", "[**y**]"])
    self.assertLen(re.findall("(?=%s)" % stand_in, protected), 2)
    self.assertEqual(sentences(text), [text])

  def test_every_sample_placeholder_appears_whole_once(self):
    for text in sample_texts():
      expected = sentences_lib.PLACEHOLDER_RE.findall(text)
      got = []
      for sentence in sentences(text):
        # No partial placeholder: every `[**` opens one that closes in the same sentence.
        self.assertEqual(sentence.count("[**"), sentence.count("**]"), sentence)
        got.extend(sentences_lib.PLACEHOLDER_RE.findall(sentence))
      self.assertEqual(got, expected)


if __name__ == "__main__":
  absltest.main()
