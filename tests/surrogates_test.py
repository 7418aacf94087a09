"""Tests for clinicalbert_tf/surrogates.py on invented notes (placeholders of every category)."""

import collections
import datetime
import re
from unittest import mock

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates
from clinicalbert_tf.notes import sentences
from tests import testutil

EXAMPLES = surrogates.EXAMPLE_PLACEHOLDERS

# The formats a surrogate date may be printed in (English locales), read back with strptime.
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y")


def every_category_note():
  """An invented note with one placeholder of each category, each used twice."""
  lines = ["Admission Date: %s Discharge Date: [**2101-10-25**]" % EXAMPLES["date"]]
  for category, placeholder in EXAMPLES.items():
    lines.append("The %s was %s; again, %s." % (category.replace("_", " "), placeholder,
                                                 placeholder))
  return "\n".join(lines) + "\n"


def parse_date(text):
  for form in DATE_FORMATS:
    try:
      return datetime.datetime.strptime(text, form).date()
    except ValueError:
      pass
  raise AssertionError("not a date in a known format: %r" % text)


class ClassifyTest(testutil.TestCase):

  def test_every_example_has_its_category(self):
    self.assertEqual(list(EXAMPLES), list(surrogates.CATEGORIES))
    for category, placeholder in EXAMPLES.items():
      self.assertEqual(surrogates.classify(placeholder[3:-3])[0], category, placeholder)

  def test_mimic_forms(self):
    cases = {
        "Known firstname 123": ("first_name", "Known firstname", "123"),
        "Female First Name (un) 4": ("first_name", "Female First Name (un)", "4"),
        "Doctor Last Name ": ("last_name", "Doctor Last Name", None),
        "Last Name (STitle) 55": ("last_name", "Last Name (STitle)", "55"),
        "Name6 (MD) 7": ("full_name", "Name6 (MD)", "7"),
        "Name Initial (MD) 8": ("initials", "Name Initial (MD)", "8"),
        "Hospital Unit Name 10": ("ward", "Hospital Unit Name", "10"),
        "Wardname 11": ("ward", "Wardname", "11"),
        "Hospital3 12": ("hospital", "Hospital3", "12"),
        "Apartment Address(1) 13": ("street_address", "Apartment Address(1)", "13"),
        "Telephone/Fax (3) 14": ("telephone", "Telephone/Fax (3)", "14"),
        "Clip Number (Radiology) 15": ("numeric_identifier", "Clip Number (Radiology)", "15"),
        "Provider Number 16": ("provider_number", "Provider Number", "16"),
        "Month/Day/Year 17": ("date", "Month/Day/Year", "17"),
        "Month/Day 18": ("month_day", "Month/Day", "18"),
        "Day Month 19": ("month_day", "Day Month", "19"),
        "Month/Year (2) 20": ("month_year", "Month/Year (2)", "20"),
        "Year (4 digits) 21": ("year", "Year (4 digits)", "21"),
        "Date Range ": ("date_range", "Date Range", None),
        "CC Contact Info 22": ("full_name", "CC Contact Info", "22"),
    }
    for inner, (category, label, number) in cases.items():
      self.assertEqual(surrogates.classify(inner)[:3], (category, label, number), inner)
    self.assertEqual(surrogates.classify("2101-10-20"), ("date", "", None, (2101, 10, 20)))
    self.assertEqual(surrogates.classify("10-20"), ("month_day", "", None, (None, 10, 20)))
    self.assertEqual(surrogates.classify("10-/2101"), ("month_year", "", None, (2101, 10, None)))
    self.assertEqual(surrogates.classify("2101-10"), ("month_year", "", None, (2101, 10, None)))
    self.assertEqual(surrogates.classify("2101"), ("year", "", None, (2101, None, None)))
    self.assertEqual(surrogates.classify("Spaceship 3")[0], "unrecognized")


class ReplaceTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.surrogates = surrogates.Surrogates(random_seed=7)

  def test_every_category_replaced_and_counted(self):
    text = every_category_note()
    placeholders = sentences.PLACEHOLDER_RE.findall(text)
    new_text, counts = self.surrogates.replace(text, 1)
    self.assertNotIn("[**", new_text)
    self.assertNotIn("**]", new_text)
    expected = collections.Counter(surrogates.classify(p[3:-3])[0] for p in placeholders)
    self.assertEqual(counts, expected)
    self.assertEqual(sum(counts.values()), len(placeholders))
    self.assertEqual(set(counts), set(surrogates.CATEGORIES))
    self.assertEqual(list(surrogates.counts_record(counts)), list(surrogates.CATEGORIES))
    # The text around the placeholders is untouched.
    pieces = sentences.PLACEHOLDER_RE.split(text)
    position = 0
    for piece in pieces:
      found = new_text.index(piece, position)
      position = found + len(piece)

  def test_spans_and_values(self):
    text = every_category_note()
    new_text, replacements = self.surrogates.replace_with_spans(text, 1)
    by_category = collections.defaultdict(list)
    for r in replacements:
      value = new_text[r.start:r.end]
      self.assertTrue(value.strip(), r)
      self.assertEqual(value, value.strip())
      by_category[r.category].append(value)
    # C1: each placeholder appears twice per line, with the same value both times.
    for category, values in by_category.items():
      if category not in ("date",):
        self.assertEqual(values[0], values[1], category)
    self.assertRegex(by_category["age_over_89"][0], r"^(9\d|10[0-4])$")
    self.assertRegex(by_category["medical_record_number"][0], r"^[1-9]\d{7}$")
    self.assertRegex(by_category["social_security_number"][0], r"^\d{3}-\d{2}-\d{4}$")
    self.assertRegex(by_category["email"][0], r"^[^@\s]+@[^@\s]+\.[a-z]+$")
    self.assertRegex(by_category["url"][0], r"^https?://")
    self.assertRegex(by_category["year"][0], r"^20[012]\d$")
    self.assertRegex(by_category["two_digit_year"][0], r"^[012]\d$")
    self.assertIn(by_category["month"][0], ("January", "February", "March", "April", "May",
                                            "June", "July", "August", "September", "October",
                                            "November", "December"))
    # Unrecognised: a word (its shape: letters), never the placeholder's text.
    self.assertRegex(by_category["unrecognized"][0], r"^[A-Z][a-z]+$")
    self.assertNotIn("Spaceship", new_text)

  def test_unrecognized_digits_keep_their_shape(self):
    text = "Code [**12-3456 7**] read. "
    new_text, replacements = self.surrogates.replace_with_spans(text, 3)
    (r,) = replacements
    self.assertEqual(r.category, "unrecognized")
    self.assertRegex(new_text[r.start:r.end], r"^\d\d-\d{4} \d$")

  def test_same_placeholder_same_value_within_note_different_across_notes(self):
    text = ("Seen by Dr. [**Last Name (STitle) 12**] at [**Hospital1 18**]. Dr. "
            "[**Last Name (STitle) 12**] called [**Hospital1 18**] and [**Hospital1 19**], "
            "MRN [**Medical Record Number 5**], again [**Medical Record Number 5**].")
    values_per_note = []
    for key in range(30):
      new_text, replacements = self.surrogates.replace_with_spans(text, key)
      values = [new_text[r.start:r.end] for r in replacements]
      self.assertEqual(values[0], values[2])  # the same last name
      self.assertEqual(values[1], values[3])  # the same hospital
      self.assertEqual(values[5], values[6])  # the same MRN
      values_per_note.append(tuple(values))
    # Across notes: independent draws (not all equal; most differ).
    for index in (0, 1, 5):
      distinct = set(v[index] for v in values_per_note)
      self.assertGreater(len(distinct), 20, index)

  def test_names_of_one_person_agree(self):
    text = ("[**First Name8 (NamePattern2) 44**] [**Last Name (NamePattern1) 44**] is here; "
            "[**Name (NI) 44**] ([**Initials (NamePattern4) 44**]) was seen. "
            "[**Female First Name (un) 9**] [**Known lastname 9**] too.")
    for key in range(10):
      new_text, replacements = self.surrogates.replace_with_spans(text, key)
      first, last, full, initial, female, _ = [new_text[r.start:r.end] for r in replacements]
      self.assertEqual(full, first + " " + last)
      self.assertEqual(initial, first[0] + ".")
      self.assertTrue(female and female[0].isupper())

  def test_dates_keep_order_and_intervals(self):
    text = ("Admitted [**2101-10-20**], transferred [**2101-10-22**] and [**10-24**], "
            "discharged [**2101-11-3**]; follow-up [**2102-1-15**] and [**2-1**]. "
            "Born [**2030-5-6**]. Last seen [**2101-10-20**].")
    seen_formats = set()
    for key in range(40):
      new_text, replacements = self.surrogates.replace_with_spans(text, key)
      originals = [r.original_date for r in replacements]
      printed = [new_text[r.start:r.end] for r in replacements]
      shifted = [r.date for r in replacements]
      full = [i for i, r in enumerate(replacements) if r.category == "date"]
      for i in full:
        parsed = parse_date(printed[i])
        if re.search(r"/\d\d$", printed[i]):  # a two-digit year: its century is the reader's guess
          parsed = parsed.replace(year=shifted[i].year)
          self.assertEqual(printed[i][-2:], "%02d" % (shifted[i].year % 100))
        self.assertEqual(parsed, shifted[i], printed[i])
        seen_formats.add(re.sub(r"\d", "9", printed[i]))
      # One shift for the whole note: every difference in days is kept.
      delta = shifted[0] - originals[0]
      for original, date in zip(originals, shifted):
        self.assertEqual(date - original, delta)
      self.assertEqual(printed[0], printed[-1])
      self.assertLessEqual(max(shifted), surrogates.DATE_RANGE_END)
      self.assertGreaterEqual(max(shifted), surrogates.DATE_RANGE_START)
      # Month-day dates are read in the year of the full date before them.
      self.assertEqual(originals[2], datetime.date(2101, 10, 24))
      self.assertEqual(originals[5], datetime.date(2102, 2, 1))
      self.assertEqual(sorted(shifted[:6]), shifted[:6])
    self.assertGreater(len(seen_formats), 3)  # not always ISO

  def test_seed_and_note_key_decide(self):
    text = every_category_note()
    first, _ = self.surrogates.replace(text, 11)
    again, _ = surrogates.Surrogates(random_seed=7).replace(text, 11)
    other_seed, _ = surrogates.Surrogates(random_seed=8).replace(text, 11)
    other_note, _ = self.surrogates.replace(text, 12)
    self.assertEqual(first, again)
    self.assertNotEqual(first, other_seed)
    self.assertNotEqual(first, other_note)
    self.assertNotEqual(surrogates.note_seed(7, 11), surrogates.note_seed(7, 12))
    # A note without placeholders is returned as it is.
    self.assertEqual(self.surrogates.replace("No PHI here.", 1),
                     ("No PHI here.", collections.Counter()))

  def test_no_surrogate_reuses_text_of_the_note(self):
    import faker  # pylint: disable=g-import-not-at-top
    generator = faker.Factory.create("en_US")
    generator.seed_instance(0)
    # Plain text holding every last name Faker has, most first names, and cities and numbers:
    # every realistic draw of a last name collides, so the fallback must hold too.
    pools = surrogates._name_pools(generator)  # pylint: disable=protected-access
    last_names = list(pools["last_names"]._items)  # pylint: disable=protected-access
    first_names = list(pools["first_names"]._items)[:600]  # pylint: disable=protected-access
    filler = " ".join(last_names + first_names + [generator.city() for _ in range(200)]
                      + [generator.numerify("%####") for _ in range(300)])
    text = filler + "\n" + every_category_note()
    outside = sentences.PLACEHOLDER_RE.sub(" ", text)
    words = set(w.lower() for w in re.findall(r"[^\W\d_]{2,}", outside))
    numbers = set(re.findall(r"\d{3,}", outside))
    for key in range(3):
      new_text, replacements = self.surrogates.replace_with_spans(text, key)
      for r in replacements:
        if r.category in surrogates.DATE_CATEGORIES:
          continue
        value = new_text[r.start:r.end]
        for word in re.findall(r"[^\W\d_]{2,}", value):
          if word.lower() not in surrogates.GENERIC_WORDS:
            self.assertNotIn(word.lower(), words, (r.category, value))
        for number in re.findall(r"\d{3,}", value):
          self.assertNotIn(number, numbers, (r.category, value))

  def test_a_failing_note_does_not_stop_the_others(self):
    original = surrogates._Note.render  # pylint: disable=protected-access

    def render(note):
      if "BOOM" in note._text:  # pylint: disable=protected-access
        raise ValueError("BOOM [**Known lastname 1**]")
      return original(note)

    with mock.patch.object(surrogates._Note, "render", render):  # pylint: disable=protected-access
      texts, counts, failures = self.surrogates.replace_notes(
          ["A [**Hospital1 18**].", "BOOM [**Hospital1 18**].", "No PHI."], [1, 2, 3])
    self.assertNotIn("[**", texts[0])
    self.assertEqual(texts[1:], ["", "No PHI."])
    self.assertEqual(counts, [collections.Counter(hospital=1), None, collections.Counter()])
    self.assertEqual(failures, {1: "could not be given surrogates (ValueError)"})

  def test_replace_spans_of_a_deidentification_note(self):
    text = ("Record date: 2073-08-08\nName: Edda Morrow    MRN: 4455667\n"
            "Seen at Pinecrest Clinic by Dr. Ines Aldana on 8/7/73; Morrow is 71, her aunt 93.\n"
            "Call 617-555-0199 or Aldana at 617-555-0199. Room 4B. Next visit 8/21/73.\n")
    phi = [("2073-08-08", "DATE"), ("Edda Morrow", "PATIENT"), ("4455667", "MEDICALRECORD"),
           ("Pinecrest Clinic", "HOSPITAL"), ("Ines Aldana", "DOCTOR"), ("8/7/73", "DATE"),
           ("Morrow", "PATIENT"), ("71", "AGE"), ("93", "AGE"), ("617-555-0199", "PHONE"),
           ("Aldana", "DOCTOR"), ("617-555-0199", "PHONE"), ("4B", "ROOM"),
           ("8/21/73", "DATE")]
    spans, position = [], 0
    for phrase, label in phi:
      start = text.index(phrase, position)
      spans.append((start, start + len(phrase), label))
      position = start + len(phrase)
    for key in range(5):
      new_text, replacements = self.surrogates.replace_spans(text, spans, key)
      values = [new_text[r.start:r.end] for r in replacements]
      self.assertEqual([r.label for r in replacements], [label for _, label in phi])
      for (phrase, label), value in zip(phi, values):
        if label == "AGE" and phrase == "71":
          self.assertEqual(value, "71")  # not PHI under Safe Harbor
        else:
          self.assertNotEqual(value, phrase)
      for phrase in ("Edda", "Morrow", "Pinecrest", "Ines", "Aldana", "4455667", "555"):
        self.assertNotIn(phrase, new_text)
      # Names: one word shares its person with the full name ending in it.
      self.assertEqual(values[6], values[1].split()[-1])
      self.assertEqual(values[10], values[4].split()[-1])
      self.assertEqual(values[9], values[11])  # the same number, the same surrogate
      self.assertRegex(values[2], r"^\d{7}$")  # IDs keep their shape
      self.assertRegex(values[12], r"^\d[A-Z]$")
      self.assertRegex(values[8], r"^(9\d|10[0-4])$")
      # Dates: read in their own form, shifted together (the two-digit years in the century of
      # the note's full date), printed in that form.
      first = datetime.datetime.strptime(values[0], "%Y-%m-%d").date()
      seen = datetime.datetime.strptime(values[5], "%m/%d/%y").date()
      follow = datetime.datetime.strptime(values[13], "%m/%d/%y").date()
      self.assertEqual(((first - seen).days, (follow - seen).days), (1, 14))
      self.assertEqual(replacements[5].original_date, datetime.date(2073, 8, 7))
      self.assertLessEqual(first, surrogates.DATE_RANGE_END)
    # Unknown labels keep their shape.
    new_text, (r,) = self.surrogates.replace_spans("Code AB-12.", [(5, 10, "WHATEVER")], 1)
    self.assertEqual(r.category, "unrecognized")
    self.assertRegex(new_text[r.start:r.end], r"^[A-Z]{2}-\d\d$")

  def test_other_locales(self):
    text = every_category_note()
    for locale in ("de_DE", "en_GB", "ja_JP"):
      new_text, counts = surrogates.Surrogates(locale=locale).replace(text, 1)
      self.assertNotIn("[**", new_text)
      self.assertEqual(sum(counts.values()), len(sentences.PLACEHOLDER_RE.findall(text)))
    with self.assertRaisesRegex(fileio.InputError, r"^--surrogate_locale=xx_YY: not a Faker"):
      surrogates.Surrogates(locale="xx_YY")


class KeyedByPatientTest(testutil.TestCase):
  """With a secret and (ROW_ID, patient) keys: one patient's notes agree (format_notes)."""

  SECRET = b"an invented secret of the tests, 32"
  NOTE_A = ("Admitted [**2101-10-20**]. [**Known firstname 1**] [**Known lastname 1**] seen by Dr. "
            "[**Doctor Last Name 2**] at [**Hospital1 18**], MRN [**Medical Record Number 7**].\n")
  NOTE_B = ("Dr. [**Doctor Last Name 2**] called [**Known lastname 1**] ([**Known firstname 1**]) "
            "on [**2101-11-20**] about [**Hospital1 18**]; MRN [**Medical Record Number 7**].\n")

  def values(self, text, key, secret=SECRET):
    new_text, replacements = surrogates.Surrogates(secret=secret).replace_with_spans(text, key)
    return [new_text[r.start:r.end] for r in replacements]

  def test_one_patient_agrees_across_notes(self):
    a = self.values(self.NOTE_A, (1, 77))
    b = self.values(self.NOTE_B, (2, 77))
    # A: date, first, last, doctor, hospital, MRN; B: doctor, last, first, date, hospital, MRN.
    self.assertEqual([b[2], b[1], b[0], b[4], b[5]], [a[1], a[2], a[3], a[4], a[5]])
    forms = ("%m/%d/%Y", "%m/%d/%y", "%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y")
    shifted = [next(datetime.datetime.strptime(v, f).date() for f in forms if _reads(v, f))
               for v in (a[0], b[3])]
    self.assertEqual((shifted[1] - shifted[0]).days, 31)  # 2101-10-20 -> 2101-11-20 kept
    # Another patient, another secret, no secret: other surrogates.
    self.assertNotEqual(self.values(self.NOTE_B, (2, 78))[1], b[1])
    self.assertNotEqual(self.values(self.NOTE_B, (2, 77), secret=b"another secret")[1], b[1])
    self.assertNotEqual(self.values(self.NOTE_B, 2, secret=None), b)

  def test_without_a_secret_the_bytes_stay(self):
    plain = surrogates.Surrogates(random_seed=5)
    keyed = surrogates.Surrogates(random_seed=5, secret=self.SECRET)
    for key in (1, 2, 3):
      self.assertEqual(keyed.replace(self.NOTE_A, key), plain.replace(self.NOTE_A, key))
      self.assertEqual(plain.replace(self.NOTE_A, (key, 77)), plain.replace(self.NOTE_A, key))
    self.assertNotIn(self.SECRET.decode(), repr(keyed))


def _reads(value, form):
  try:
    datetime.datetime.strptime(value, form)
    return True
  except ValueError:
    return False


if __name__ == "__main__":
  absltest.main()
