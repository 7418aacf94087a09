"""Tests for clinicalbert_tf/anonymize/: operators, keys, dates, names, shapes, Safe Harbor, spans.

Expected values are written by hand (dates computed with datetime, Safe Harbor's list from the
HHS guidance) or come from an independent oracle: the replacement of the last release before the
anonymize package (`span_outputs.replace_spans` at 32e5266, copied below) for the byte-identity of
one operator without a secret. Everything is invented, never real data.
"""

import collections
import datetime
import json
import os
import random
import re

from absl.testing import absltest

from clinicalbert_tf import anonymize
from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates
from clinicalbert_tf.anonymize import dates
from clinicalbert_tf.anonymize import keyed
from clinicalbert_tf.anonymize import names
from clinicalbert_tf.anonymize import recognizers
from clinicalbert_tf.anonymize import safe_harbor
from clinicalbert_tf.anonymize import shapes
from clinicalbert_tf.anonymize import span_readers
from clinicalbert_tf.anonymize import spans as spans_lib
from clinicalbert_tf.inference import outputs
from clinicalbert_tf.inference import text as text_lib
from tests import testutil

SECRET = b"an invented test secret, 32 bytes"

# Invented PHI values by i2b2 label, and filler words, for generated notes.
_VALUES = {
    "PATIENT": ("Kyle Sloan", "Mr. Sloan", "SLOAN, KYLE", "K. Sloan", "Kyle"),
    "DOCTOR": ("Christine Ellis", "Dr. Ellis", "C. Ellis"),
    "DATE": ("12/20/2012", "2012-12-19", "March 4, 2019", "Mar 5", "3/4", "2019", "Monday",
             "Christmas Eve"),
    "HOSPITAL": ("Ballard Community Hospital",), "CITY": ("Port Maryville",),
    "PHONE": ("(617) 555-0134", "001-559-992-1734x667"), "EMAIL": ("kyle.sloan@example.net",),
    "MEDICALRECORD": ("71729817",), "IDNUM": ("A12-3344",), "AGE": ("45", "92"),
    "ZIP": ("02139",), "URL": ("https://www.sloan-family.example.org/photos",),
    "SSN": ("123-45-6789",), "PROFESSION": ("welder",), "STATE": ("Vermont",),
}
_FILLER = ("the patient was seen", "on", "and", "with", "BP 128/76", "no fever", "follow up", ".",
           "called", "at", "\n")


def generated_note(rng):
  """(text, [text_lib.Span]) of an invented note: filler with disjoint PHI spans."""
  parts, spans, length = [], [], 0
  for _ in range(rng.randint(0, 14)):
    filler = rng.choice(_FILLER) + " "
    parts.append(filler)
    length += len(filler)
    if rng.random() < 0.6:
      label = rng.choice(sorted(_VALUES))
      value = rng.choice(_VALUES[label])
      spans.append(text_lib.Span(length, length + len(value), label, 0.9))
      parts.append(value + " ")
      length += len(value) + 1
  return "".join(parts), spans


def previous_replace_spans(text, spans, mode="placeholder", mask_char="*", surrogates=None,
                           note_key=None):
  """The oracle: span_outputs.replace_spans as it was at 32e5266 (before the anonymize package)."""
  spans = sorted(spans, key=lambda s: s.start)
  if mode == "surrogate":
    new_text, _ = surrogates.replace_spans(text, [(s.start, s.end, s.label) for s in spans],
                                           note_key)
    return new_text
  parts = []
  last = 0
  for s in spans:
    parts.append(text[last:s.start])
    if mode == "placeholder":
      parts.append("[**%s**]" % s.label)
    elif mode == "tag":
      parts.append("<%s>" % s.label)
    else:
      parts.append(mask_char * (s.end - s.start))
    last = s.end
  parts.append(text[last:])
  return "".join(parts)


class OperatorsTest(testutil.TestCase):

  def test_one_operator_is_the_default(self):
    operators = anonymize.parse_operators("mask")
    self.assertEqual(operators.of("DATE"), "mask")
    self.assertEqual(operators.single(), "mask")

  def test_per_label_list(self):
    operators = anonymize.parse_operators(
        "DATE:shift, IDNUM:mask,AGE:safe_harbor,default:surrogate")
    self.assertEqual(dict(operators.to_json()), {"DATE": "shift", "IDNUM": "mask",
                                                 "AGE": "safe_harbor", "default": "surrogate"})
    self.assertEqual(operators.of("date"), "shift")
    self.assertEqual(operators.of("PATIENT"), "surrogate")
    self.assertIsNone(operators.single())
    self.assertEqual(anonymize.parse_operators("DATE:shift").of("PATIENT"), "placeholder")

  def test_unknown_operator_or_label_is_one_line_naming_it(self):
    for spec, named in (("scramble", "'scramble'"), ("DATE:blur", "'blur'"),
                        ("DTAE:mask", "'DTAE'"), ("PATIENT:shift", "PATIENT"),
                        ("default:shift", "shift"), ("DATE:mask,DATE:tag", "DATE"),
                        ("DATE:mask,tag", "'tag'")):
      with self.assertRaises(fileio.InputError) as e:
        anonymize.parse_operators(spec)
      self.assertIn(named, str(e.exception))
      self.assertNotIn("\n", str(e.exception))

  def test_a_models_own_label(self):
    with self.assertRaises(fileio.InputError):
      anonymize.parse_operators("B_THING:mask")
    self.assertEqual(anonymize.parse_operators("B_THING:mask", labels=["B_THING"]).of("B_THING"),
                     "mask")

  def test_operators_file(self):
    path = os.path.join(self.temp_dir(), "ops.json")
    with open(path, "w") as f:
      json.dump({"DATE": "shift", "default": "hash"}, f)
    self.assertEqual(anonymize.load_operators_file(path),
                     anonymize.parse_operators("DATE:shift,default:hash"))
    for content in ("[1, 2]", "{\"DATE\": \"nope\"}", "not json"):
      with open(path, "w") as f:
        f.write(content)
      with self.assertRaises(fileio.InputError) as e:
        anonymize.load_operators_file(path)
      self.assertIn(path, str(e.exception))


class ByteIdentityTest(testutil.TestCase):
  """One operator without a secret: the bytes of the previous `span_outputs.replace_spans`."""

  def test_generated_notes(self):
    rng = random.Random(7)
    seeded = surrogates.Surrogates(random_seed=99)
    notes = [generated_note(rng) for _ in range(80)]
    self.assertGreater(sum(len(spans) for _, spans in notes), 200)
    for mode, mask_char in (("placeholder", "*"), ("tag", "*"), ("mask", "#"),
                            ("surrogate", "*")):
      anonymizer = anonymize.Anonymizer(mode, random_seed=99, mask_char=mask_char)
      for n, (text, spans) in enumerate(notes):
        expected = previous_replace_spans(text, spans, mode, mask_char, surrogates=seeded,
                                          note_key="note-%d" % n)
        self.assertEqual(anonymizer.anonymize(text, spans, "note-%d" % n).text, expected,
                         (mode, n))


class ItemsTest(testutil.TestCase):

  def test_offsets_by_hand(self):
    text = "Seen by John Smith on 3/4/2019, MRN 1234567."
    spans = [(8, 18, "DOCTOR"), (22, 30, "DATE"), (36, 43, "MEDICALRECORD")]
    result = anonymize.Anonymizer("DATE:redact,default:placeholder").anonymize(text, spans, "n")
    self.assertEqual(result.text, "Seen by [**DOCTOR**] on , MRN [**MEDICALRECORD**].")
    self.assertEqual([i.to_json() for i in result.items], [
        {"start": 8, "end": 20, "label": "DOCTOR", "operator": "placeholder", "input_start": 8,
         "input_end": 18},
        {"start": 24, "end": 24, "label": "DATE", "operator": "redact", "input_start": 22,
         "input_end": 30},
        {"start": 30, "end": 49, "label": "MEDICALRECORD", "operator": "placeholder",
         "input_start": 36, "input_end": 43}])

  def test_keep_and_tuples_or_spans(self):
    text = "Dr. Ellis"
    by_tuple = anonymize.Anonymizer("keep").anonymize(text, [(4, 9, "DOCTOR")], "n")
    by_span = anonymize.Anonymizer("keep").anonymize(
        text, [text_lib.Span(4, 9, "DOCTOR", 0.5)], "n")
    self.assertEqual(by_tuple.text, text)
    self.assertEqual(by_tuple, by_span)

  def test_span_outside_the_note(self):
    for span in ((5, 50, "DATE"), (-1, 3, "DATE"), (4, 4, "DATE")):
      with self.assertRaises(fileio.InputError) as e:
        anonymize.Anonymizer().anonymize("short note", [span], "note-7")
      self.assertIn("note note-7", str(e.exception))
      self.assertIn("%d-%d" % span[:2], str(e.exception))

  def test_overlaps_merge_to_the_union_with_the_first_lists_label(self):
    merged = spans_lib.merge([(10, 20, "DATE"), (30, 35, "AGE")],
                             [(15, 25, "PHONE"), (0, 5, "ZIP"), (5, 8, "URL"), (28, 40, "IDNUM")])
    self.assertEqual([tuple(s) for s in merged], [(0, 5, "ZIP"), (5, 8, "URL"), (10, 25, "DATE"),
                                                  (28, 40, "AGE")])
    # One list: the longest span's label.
    self.assertEqual([tuple(s) for s in spans_lib.merge([(0, 3, "AGE"), (1, 9, "DATE")])],
                     [(0, 9, "DATE")])


class DatesTest(testutil.TestCase):

  def test_shift_keeps_the_form(self):
    cases = (  # (text, days, expected): dates moved by hand with datetime
        ("3/4/2019", 40, "4/13/2019"),
        ("03-04-19", 40, "04-13-19"),
        ("2019-03-04", -4, "2019-02-28"),
        ("March 4, 2019", 40, "April 13, 2019"),
        ("Mar. 4th 2019", 1, "Mar. 5th 2019"),
        ("4th of March, 2019", -3, "1st of March, 2019"),
        ("MARCH 2019", 20, "APRIL 2019"),  # month-year: its 15th moves
        ("MARCH 2019", -5, "FEBRUARY 2019"),  # ... and at least a month
        ("March", 3, "April"),
        ("2019", 200, "2020"),  # a year alone: its July 1 moves
        ("2019", 100, "2019"),
        ("10-/2101", 30, "11-/2101"),  # MIMIC's month-year
        ("Monday, March 4, 2019", 40, "Saturday, April 13, 2019"),
        ("TUES", 8, "WED"),
        ("12/31/2012 to 1/2/2013", 3, "1/3/2013 to 1/5/2013"),
    )
    for text, days, expected in cases:
      self.assertEqual(dates.shift(text, days), expected, text)
    self.assertEqual(datetime.date(2019, 3, 4) + datetime.timedelta(days=40),
                     datetime.date(2019, 4, 13))
    self.assertEqual(datetime.date(2019, 4, 13).strftime("%A"), "Saturday")

  def test_month_day_reads_in_the_context_year(self):
    self.assertEqual(dates.shift("2/28", 1, context_year=2020), "2/29")
    self.assertEqual(dates.shift("2/28", 1, context_year=2019), "3/1")

  def test_no_date(self):
    self.assertIsNone(dates.shift("Christmas Eve", 10))

  def test_a_span_with_more_than_dates_is_not_shifted(self):
    # A shift keeps what surrounds the dates, so a span holding anything else (a model's DATE span
    # over a whole line) gets its placeholder instead: the phone number must not be released.
    self.assertEqual(dates.shift("from 3/4/2019 through 3/8/2019.", 1),
                     "from 3/5/2019 through 3/9/2019.")
    for text in ("Call 617-555-0100 on 3/4/2019", "3/4/2019 Dr. Smith", "the summer of 2019",
                 "3/4/2019 MRN 4455123"):
      self.assertIsNone(dates.shift(text, 10), text)
    text = "Seen 3/4/2019. Call 617-555-0100 on 3/5/2019."
    span = (5, len(text), "DATE")  # one span over both dates and the number
    result = anonymize.Anonymizer("DATE:shift", secret=SECRET).anonymize(text, [span], "n1", "p1")
    self.assertEqual(result.text, "Seen [**DATE**]")
    self.assertNotIn("555", result.text)

  def test_offsets_never_zero_nor_whole_weeks(self):
    for days in (1, 6, 7, 30, 365):
      anonymizer = anonymize.Anonymizer("DATE:shift", secret=SECRET, date_shift_days=days)
      offsets = set(anonymizer.date_offset("patient:%d" % p) for p in range(300))
      self.assertTrue(all(0 < abs(o) <= days and o % 7 for o in offsets), (days, offsets))
      if days >= 30:
        self.assertGreater(len(offsets), 30)
        self.assertTrue(min(offsets) < 0 < max(offsets))
    with self.assertRaises(fileio.InputError):
      anonymize.Anonymizer(date_shift_days=0)


class SafeHarborTest(testutil.TestCase):

  def anonymize(self, text, label):
    return anonymize.Anonymizer("safe_harbor").anonymize(text, [(0, len(text), label)], "n").text

  def test_ages(self):
    self.assertEqual(self.anonymize("89", "AGE"), "89")
    self.assertEqual(self.anonymize("90", "AGE"), "90+")
    self.assertEqual(self.anonymize("101", "AGE"), "90+")
    self.assertEqual(self.anonymize("92-year-old", "AGE"), "90+-year-old")

  def test_zip_codes(self):
    # HHS guidance: the 17 three-digit areas of 20,000 people or fewer (2000 Census).
    restricted = ("036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830",
                  "831", "878", "879", "884", "890", "893")
    for prefix in restricted:
      self.assertEqual(self.anonymize(prefix + "42", "ZIP"), "000", prefix)
    self.assertEqual(self.anonymize("02139", "ZIP"), "021")
    self.assertEqual(self.anonymize("90210-1234", "ZIP"), "902")
    self.assertEqual(self.anonymize("10210-1234", "ZIP"), "000")
    self.assertEqual(self.anonymize("03701", "ZIP"), "037")
    self.assertEqual(len(safe_harbor.RESTRICTED_ZIP3), 17)

  def test_dates_keep_the_year(self):
    self.assertEqual(self.anonymize("March 4, 2019", "DATE"), "2019")
    self.assertEqual(self.anonymize("3/4/19", "DATE"), "2019")
    self.assertEqual(self.anonymize("2019-03-04", "DATE"), "2019")
    self.assertEqual(self.anonymize("3/4", "DATE"), "[**DATE**]")
    self.assertEqual(self.anonymize("Monday", "DATE"), "[**DATE**]")

  def test_other_labels(self):
    self.assertEqual(self.anonymize("Vermont", "STATE"), "Vermont")
    self.assertEqual(self.anonymize("Kyle Sloan", "PATIENT"), "[**PATIENT**]")
    self.assertEqual(self.anonymize("Port Maryville", "CITY"), "[**CITY**]")


class KeyedTest(testutil.TestCase):

  def test_cycle_is_one_cycle_through_every_element(self):
    k = keyed.Keyed(SECRET)
    for n in (1, 2, 3, 10, 97, 1000):
      cycle = k.cycle("p", "kind", n)
      seen, x = [], 0
      for _ in range(n):
        seen.append(x)
        x = cycle.successor(x)
      self.assertEqual(x, 0)
      self.assertEqual(sorted(seen), list(range(n)))

  def test_secret_file(self):
    directory = self.temp_dir()
    missing = os.path.join(directory, "nope")
    with self.assertRaises(fileio.InputError) as e:
      anonymize.read_secret_file(missing)
    self.assertIn(missing, str(e.exception))
    empty = os.path.join(directory, "empty")
    with open(empty, "w") as f:
      f.write(" \n")
    with self.assertRaises(fileio.InputError) as e:
      anonymize.read_secret_file(empty)
    self.assertIn("empty", str(e.exception))
    good = os.path.join(directory, "key")
    with open(good, "wb") as f:
      f.write(SECRET + b"\n")
    self.assertEqual(anonymize.read_secret_file(good), SECRET)

  def test_secret_never_shown(self):
    anonymizer = anonymize.Anonymizer("hash", secret=SECRET)
    anonymizer.anonymize("Kyle", [(0, 4, "PATIENT")], "n", patient="1")
    for shown in (repr(anonymizer), json.dumps(anonymizer.summary()), repr(anonymizer._keyed)):  # pylint: disable=protected-access
      self.assertNotIn(SECRET.decode(), shown)


class ShapesTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.keyed = keyed.Keyed(SECRET)

  def test_phone_keeps_separators_and_extension(self):
    value = "001-559-992-1734x667"
    new = shapes.shape_surrogate(self.keyed, "p", "PHONE", value, letters=False)
    self.assertEqual(re.sub(r"\d", "9", new), "999-999-999-9999x999")
    self.assertNotEqual(new, value)

  def test_email_and_url_keep_structure_words(self):
    new = shapes.shape_surrogate(self.keyed, "p", "EMAIL", "kyle.sloan@example.net",
                                 structure="email")
    self.assertRegex(new, r"^[a-z]{4}\.[a-z]{5}@[a-z]{7}\.net$")
    new = shapes.shape_surrogate(self.keyed, "p", "URL", "https://www.sloan.org/photos",
                                 structure="url")
    self.assertRegex(new, r"^https://www\.[a-z]{5}\.org/[a-z]{6}$")
    self.assertNotIn("sloan", new)

  def test_a_bijection_without_fixed_points(self):
    values = ["%03d" % i for i in range(1000)]
    mapped = [shapes.shape_surrogate(self.keyed, "p", "IDNUM", v) for v in values]
    self.assertEqual(sorted(mapped), values)
    self.assertFalse(any(a == b for a, b in zip(values, mapped)))

  def test_nothing_to_vary(self):
    self.assertIsNone(shapes.shape_surrogate(self.keyed, "p", "IDNUM", "--"))


class NamesTest(testutil.TestCase):

  def test_parts(self):
    anonymizer = anonymize.Anonymizer("surrogate", secret=SECRET)
    pools = anonymizer.name_mapper().pools
    parse = lambda text: [(text[s:e], part) for s, e, part in names.parse(text, pools)]
    self.assertEqual(parse("SMITH, JOHN A."), [("SMITH", "last"), ("JOHN", "first"),
                                                ("A.", "initial")])
    self.assertEqual(parse("Mr. Smith"), [("Mr.", "keep"), ("Smith", "last")])
    self.assertEqual(parse("Mary-Ann O'Brien-Smith Jr."), [
        ("Mary", "first"), ("Ann", "first"), ("O'Brien", "last"), ("Smith", "last"),
        ("Jr.", "keep")])
    self.assertEqual(parse("J. Smith"), [("J.", "initial"), ("Smith", "last")])

  def test_one_person_stays_one(self):
    forms = ("John Smith", "Mr. Smith", "SMITH, JOHN", "J. Smith", "John")
    text = "; ".join(forms)
    spans, start = [], 0
    for form in forms:
      spans.append((start, start + len(form), "PATIENT"))
      start += len(form) + 2
    result = anonymize.Anonymizer("surrogate", secret=SECRET).anonymize(text, spans, "n",
                                                                         patient="7")
    out = [result.text[i.start:i.end] for i in result.items]
    first, last = out[0].split()
    self.assertEqual(out[1:], ["Mr. " + last, "%s, %s" % (last.upper(), first.upper()),
                               "%s. %s" % (first[0], last), first])
    self.assertNotEqual(first.lower(), "john")
    self.assertNotEqual(last.lower(), "smith")
    # Another note of the patient, with the forms alone.
    again = anonymize.Anonymizer("surrogate", secret=SECRET).anonymize(
        "Mr. Smith", [(0, 9, "PATIENT")], "other", patient="7")
    self.assertEqual(again.text, "Mr. " + last)


class ClashTest(testutil.TestCase):

  def test_a_surrogate_never_repeats_the_notes_own_phi(self):
    anonymizer = anonymize.Anonymizer("surrogate", secret=SECRET)
    alone = anonymizer.anonymize("Mr. Smith", [(4, 9, "PATIENT")], "n1", patient="9").text
    taken = alone[4:]  # Smith's first candidate
    self.assertNotEqual(taken.lower(), "smith")
    text = "Mr. Smith and Mr. %s" % taken  # another person of the note has that very name
    result = anonymizer.anonymize(text, [(4, 9, "PATIENT"), (18, 18 + len(taken), "PATIENT")],
                                  "n2", patient="9")
    self.assertNotIn(taken.lower(), result.text.lower())
    self.assertNotIn("smith", result.text.lower())
    first, second = [result.text[i.start:i.end] for i in result.items]
    self.assertNotEqual(first, second)


# The labels the recognizers cover (the structured PHI).
STRUCTURED = ("DATE", "PHONE", "FAX", "EMAIL", "URL", "IPADDR", "SSN", "ZIP", "MEDICALRECORD",
              "IDNUM", "DEVICE", "AGE")


def score(notes, predict):
  """{label: (gold, exact matches, predicted, covered)} of `predict(text)` against the gold:
  exact = same offsets and label; covered = every character of the gold span predicted (any
  label); for predictions, `predicted` counts those of the label and the last field those that
  overlap no gold PHI (false alarms)."""
  table = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
  for _, text, gold in notes:
    predicted = predict(text)
    for g in gold:
      row = table[g[2]]
      row[0] += 1
      row[1] += g in predicted
      row[3] += all(any(p[0] <= c < p[1] for p in predicted) for c in range(g[0], g[1]))
    for p in predicted:
      table[p[2]][2] += 1
      table[p[2]][4] += not any(p[0] < g[1] and g[0] < p[1] for g in gold)
  return table


class RecognizersTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.notes = testutil.deid_demo_notes(cls.class_temp_dir())

  def test_examples(self):
    cases = (
        ("Seen Monday, 3/4/2019 and on 3/9.", [(5, 21, "DATE"), (29, 32, "DATE")]),
        ("Fax 617.555.1234 or call (617) 555-9876.", [(4, 16, "FAX"), (25, 39, "PHONE")]),
        ("MRN: 1234567, acct # 998877, SSN 123-45-6789", [(5, 12, "MEDICALRECORD"),
                                                         (21, 27, "IDNUM"), (33, 44, "SSN")]),
        ("Mail a.b@example.com, see https://x.org/a.", [(5, 20, "EMAIL"), (26, 41, "URL")]),
        ("Boston, MA 02139; from 10.0.0.12", [(11, 16, "ZIP"), (23, 32, "IPADDR")]),
        ("A 92 year old and a 45 year old; aged 101.", [(2, 4, "AGE"), (38, 41, "AGE")]),
        ("BP 128/76, HR 72, 2 of 3 in 2019", [(28, 32, "DATE")]),
    )
    for text, expected in cases:
      self.assertEqual(recognizers.recognize(text), expected, text)

  def test_merged_with_the_models_spans(self):
    model = [(5, 12, "IDNUM")]  # the model saw `3/4/201` as an ID: the union, the model's label
    self.assertEqual([tuple(s) for s in recognizers.merge_with_model(
        model, recognizers.recognize("Seen 3/4/2019 at (617) 555-1234"))],
                     [(5, 13, "IDNUM"), (17, 31, "PHONE")])

  def test_demo_set_precision_and_recall(self):
    table = score(self.notes, lambda text: set(recognizers.recognize(text)))
    for label in STRUCTURED:
      gold, exact, predicted, covered, false_alarms = table[label]
      self.assertGreater(gold, 5, label)
      self.assertEqual(covered, gold, label)  # every structured PHI span is replaced
      self.assertEqual(false_alarms, 0, label)  # every span found is PHI
      self.assertGreaterEqual(exact / gold, 0.85 if label == "DATE" else 1.0, label)

  def test_patterns_alone_replace_the_structured_phi(self):
    anonymizer = anonymize.Anonymizer("placeholder")
    for note_id, text, gold in self.notes:
      result = anonymizer.anonymize(text, recognizers.recognize(text), note_id)
      for start, end, label in gold:
        if label in ("DATE", "PHONE", "FAX", "EMAIL", "URL", "SSN", "ZIP"):
          self.assertTrue(any(i.input_start <= start and end <= i.input_end
                              for i in result.items), (note_id, label))
          if end - start >= 4:
            self.assertNotIn(text[start:end], result.text, (note_id, label))

  def test_gold_spans_remove_every_gold_string(self):
    directory = self.temp_dir()
    for note_id, text, gold in self.notes:
      with open(os.path.join(directory, note_id + ".xml"), "w", encoding="utf-8") as f:
        f.write(outputs.format_i2b2_2014(text, [text_lib.Span(*g, 1.0) for g in gold]))
    paths = sorted(os.path.join(directory, n) for n in os.listdir(directory))
    spans = span_readers.read_spans(paths, "i2b2_2014")
    anonymizer = anonymize.Anonymizer("surrogate", secret=SECRET)
    for note_id, text, gold in self.notes:
      span_readers.check_spans(note_id, text, spans[note_id])
      result = anonymizer.anonymize(text, spans[note_id], note_id, patient=note_id)
      out = result.text.lower()
      dates = [(i.start, i.end) for i in result.items if i.label == "DATE"]
      for start, end, label in gold:
        if label == "AGE" and int(re.sub(r"\D", "", text[start:end]) or 0) <= 89:
          continue  # ages up to 89 stay (not identifying under Safe Harbor)
        original = text[start:end].lower()
        if label == "DATE" and re.fullmatch(r"\d{2}|\d{4}", original):
          continue  # a year alone moves only when the offset carries its July 1 into another
        # Whole words (`09`, a two-digit year, may be part of `2009`), outside the shifted dates
        # (a shifted date may equal another date of the note: the intervals must hold).
        for m in re.finditer(r"(?<!\w)%s(?!\w)" % re.escape(original), out):
          self.assertTrue(label == "DATE" and all(
              any(a <= c < b for a, b in dates) for c in range(m.start(), m.end()) if
              not out[c].isspace()), (note_id, label))


class SpanReadersTest(testutil.TestCase):

  def test_formats(self):
    directory = self.temp_dir()
    jsonl = os.path.join(directory, "spans.jsonl")
    with open(jsonl, "w") as f:
      f.write(json.dumps({"id": "a", "entities": [
          {"start": 0, "end": 4, "label": "PATIENT", "score": 0.9}]}) + "\n")
    self.assertEqual(span_readers.read_spans([jsonl]), {"a": [(0, 4, "PATIENT", 0.9)]})
    ann = os.path.join(directory, "b.ann")
    with open(ann, "w") as f:
      f.write("T1\tDATE 5 13\t3/4/2019\nR1\tRel Arg1:T1 Arg2:T1\nT2\tPATIENT 0 2;3 4\tKy e\n")
    spans = span_readers.read_spans([ann], "brat")["b"]
    self.assertEqual([tuple(s) for s in spans], [(5, 13, "DATE", "3/4/2019"),
                                                 (0, 2, "PATIENT", "Ky"), (3, 4, "PATIENT", "e")])
    xml = os.path.join(directory, "c.xml")
    with open(xml, "w") as f:
      f.write(outputs.format_i2b2_2014("Kyle on 3/4/2019", [
          text_lib.Span(0, 4, "PATIENT", 1.0), text_lib.Span(8, 16, "DATE", 1.0)]))
    spans = span_readers.read_spans([xml], "i2b2_2014")["c"]
    self.assertEqual([tuple(s)[:3] for s in spans], [(0, 4, "PATIENT"), (8, 16, "DATE")])
    span_readers.check_spans("c", "Kyle on 3/4/2019", spans)
    with self.assertRaises(fileio.InputError) as e:
      span_readers.check_spans("c", "Kate on 3/4/2019", spans)
    self.assertIn("note c: span 0-4", str(e.exception))
    with self.assertRaises(fileio.InputError) as e:
      span_readers.check_spans("c", "Kyle", spans)
    self.assertIn("note c: span 8-16", str(e.exception))

  def test_bad_lines(self):
    path = os.path.join(self.temp_dir(), "bad.jsonl")
    for line in ("{", "[]", json.dumps({"id": "a", "entities": [{"start": "0", "end": 1,
                                                                    "label": "X"}]})):
      with open(path, "w") as f:
        f.write(line + "\n")
      with self.assertRaises(fileio.InputError) as e:
        span_readers.read_spans([path])
      self.assertIn(path + ":1", str(e.exception))


if __name__ == "__main__":
  absltest.main()
