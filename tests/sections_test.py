"""Tests for clinicalbert_tf/notes/sections.py: each section rule (R1-R7) on invented notes."""

from absl.testing import absltest

from clinicalbert_tf.notes import sections
from clinicalbert_tf.notes.sections import FIXED, HEADER, ITEM, TEXT
from tests import testutil


def split(text):
  return [(s.text, s.kind) for s in sections.split_sections(text)]


class SplitSectionsTest(testutil.TestCase):

  def test_r1_line_endings(self):
    self.assertEqual(split("Pt seen.\r\nStable.\rNo changes.\r\n\r\nPlan: home."),
                     [("Pt seen.\nStable.\nNo changes.", TEXT), ("Plan: home.", TEXT)])

  def test_r2_rules_separate_and_are_dropped(self):
    note = "First part.\n-----\nSecond part.\n_____________\nThird part.\n=====\nFourth."
    self.assertEqual(split(note), [("First part.", TEXT), ("Second part.", TEXT),
                                   ("Third part.", TEXT), ("Fourth.", TEXT)])

  def test_r2_rule_inside_a_line_and_short_dashes(self):
    self.assertEqual(split("CXR ---- clear\nBP 120/80 -- stable, 5-10 mg"),
                     [("CXR", TEXT), ("clear\nBP 120/80 -- stable, 5-10 mg", TEXT)])

  def test_r3_blank_line_ends_a_segment(self):
    self.assertEqual(split("Line one\nline two\n\n   \t\nLine three"),
                     [("Line one\nline two", TEXT), ("Line three", TEXT)])

  def test_r4_admission_discharge_line_is_one_unit(self):
    note = ("Admission Date:  qqphiqq              Discharge Date:   qqphiqq\n"
            "Date of Birth:  qqphiqq             Sex:   M\n"
            "Service: MEDICINE")
    self.assertEqual(split(note), [
        ("Admission Date: qqphiqq Discharge Date: qqphiqq", FIXED),
        ("Date of Birth: qqphiqq Sex: M", FIXED),
        ("Service: MEDICINE", TEXT)])

  def test_r4_line_with_only_admission_date_is_a_header_line(self):
    self.assertEqual(split("Admission Date: today\nmore"),
                     [("Admission Date: today\nmore", TEXT)])

  def test_r5_headers_start_sections(self):
    note = ("Pt doing well.\nHISTORY OF PRESENT ILLNESS:\n65 yo M with CP.\nRadiates to arm.\n"
            "Discharge Medications:\nAspirin daily")
    self.assertEqual(split(note), [
        ("Pt doing well.", TEXT),
        ("HISTORY OF PRESENT ILLNESS:", HEADER),
        ("65 yo M with CP.\nRadiates to arm.", TEXT),
        ("Discharge Medications:", HEADER),
        ("Aspirin daily", TEXT)])

  def test_r5_header_with_text_on_its_line_stays_together(self):
    note = "Sex: M\nChief Complaint: chest pain\nand SOB\nAllergies: NKDA"
    self.assertEqual(split(note), [("Sex: M", TEXT), ("Chief Complaint: chest pain\nand SOB", TEXT),
                                   ("Allergies: NKDA", TEXT)])

  def test_r5_what_is_a_title(self):
    for line, title in [
        ("HISTORY OF PRESENT ILLNESS:", "HISTORY OF PRESENT ILLNESS:"),
        ("Past Medical History: HTN", "Past Medical History:"),
        ("Major Surgical or Invasive Procedure:", "Major Surgical or Invasive Procedure:"),
        ("BP (mm Hg): 132/80", "BP (mm Hg):"),
        ("Date/Time: 10:30", "Date/Time:"),
        ("Assessment and Plan:", "Assessment and Plan:"),
        ("24 Hour Events:", "24 Hour Events:"),
        ("1. CHF: stable", None),              # a list item, not a title
        ("2) HTN: on meds", None),
        ("He was seen: today", None),          # lower-case word
        ("Code status: Full", None),           # lower-case word
        ("Time 10:30 stable", None),           # colon not followed by whitespace
        ("Disp: 30 tablets", None),            # part of a medication entry
        ("Sig: One tablet daily", None),
        ("one Two: three", None),              # starts lower case
        ("A B C D E F G H I: too many words", None),
        (": nothing before", None),
    ]:
      self.assertEqual(sections.match_header(line), title, line)

  def test_r6_numbered_list_items(self):
    note = "Discharge Medications:\n1. Aspirin 81 mg\ndaily\n2) Lasix 20 mg\n(3) Metoprolol\n4.\nZinc"
    self.assertEqual(split(note), [
        ("Discharge Medications:", HEADER),
        ("1. Aspirin 81 mg\ndaily", ITEM),
        ("2) Lasix 20 mg", ITEM),
        ("(3) Metoprolol", ITEM),
        ("4.\nZinc", ITEM)])

  def test_r6_numbers_must_follow_on(self):
    # `80.` is not item 3 of a list that is at 2; nor is `7.` the start of one.
    note = "1. CHF\n2. HTN: the heart rate was\n80. He was given\n7. mg of drug"
    self.assertEqual(split(note), [
        ("1. CHF", ITEM),
        ("2. HTN: the heart rate was\n80. He was given\n7. mg of drug", ITEM)])

  def test_r6_list_continues_across_blank_lines_and_restarts_after_header(self):
    note = "1. CHF\n\n2. HTN\nPlan:\n2. Not an item\n1. Item"
    self.assertEqual(split(note), [
        ("1. CHF", ITEM), ("2. HTN", ITEM), ("Plan:", HEADER), ("2. Not an item", TEXT),
        ("1. Item", ITEM)])

  def test_r6_bullets(self):
    note = ("24 Hour Events:\n- Started on levophed\n-- weaned off\n* UCx pending\n"
            "\u2022 BCx pending\n# Sepsis: likely urine\n#2 CHF\n-5 degrees is not a bullet\n"
            "- - - not either")
    self.assertEqual(split(note), [
        ("24 Hour Events:", HEADER),
        ("- Started on levophed", ITEM),
        ("-- weaned off", ITEM),
        ("* UCx pending", ITEM),
        ("\u2022 BCx pending", ITEM),
        ("# Sepsis: likely urine", ITEM),
        ("#2 CHF\n-5 degrees is not a bullet\n- - - not either", ITEM)])

  def test_r7_prose_lines_join(self):
    self.assertEqual(split("  Pt is a 65 yo M\n  who presented with CP.  \n"),
                     [("Pt is a 65 yo M\nwho presented with CP.", TEXT)])

  def test_empty_and_rule_only_notes(self):
    self.assertEqual(split(""), [])
    self.assertEqual(split("\n \n-----\n____\n"), [])

  def test_texts_are_never_empty_and_stripped(self):
    note = "A:\n\n\n  B  \n---\n\n1.  x\n"
    for text, _ in split(note):
      self.assertTrue(text)
      self.assertEqual(text, text.strip())


if __name__ == "__main__":
  absltest.main()
