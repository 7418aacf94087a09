"""Property tests (Hypothesis) of keyed de-identification over generated patients and notes.

Each example is a small invented corpus: patients with a name, doctors, dates, an MRN, a phone
number and an e-mail address, each written into one to three notes in varying forms (`Kyle
Sloan`, `Mr. Sloan`, `SLOAN, KYLE`, `K. Sloan`, `Kyle`, in notes with or without the full name;
dates in four formats, some with their weekday), every PHI mention a gold span. The names are invented words that are in no surrogate
list, so a surrogate can never equal one by chance. The oracle is the generator: it knows each
span's original value, date and date format, and reads the output back with `strptime`.

Profiles (as in fuzz_readers_test): `ci` (default: few examples, derandomized, a few seconds per
property) and `thorough` (HYPOTHESIS_PROFILE=thorough, many random examples, for a manual run).
"""

import collections
import concurrent.futures
import datetime
import json
import logging
import os
import random
import re

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st

from clinicalbert_tf import anonymize
from clinicalbert_tf import surrogates
from clinicalbert_tf.anonymize import names as names_lib
from tests import testutil

hypothesis.settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "thorough", max_examples=500, deadline=None, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SECRET = b"an invented secret for property tests"
OPERATORS = "default:surrogate"
_SYLLABLES = ("zor", "vak", "quil", "brex", "tham", "yurn", "plo", "drix", "kev", "mun", "osk",
              "ber", "wyth", "gral", "fenn", "ixo")
DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y", "%A, %B %d, %Y")
# value: a date's datetime.date, a name's (first, last); form: a date's strptime format, a name's
# form (full, first, last, upper `LAST, FIRST`, initial `F. Last`).
Gold = collections.namedtuple("Gold", ["start", "end", "label", "text", "value", "form"])


def _pool_words():
  generator = surrogates.ValueMaker().generator
  pools = names_lib.NamePools(generator)
  return set(n.lower() for n in pools.last) | pools.first_lower


POOL_WORDS = _pool_words()
WORD = st.lists(st.sampled_from(_SYLLABLES), min_size=2, max_size=3).map(
    lambda parts: "".join(parts).capitalize()).filter(lambda w: w.lower() not in POOL_WORDS)
PERSON = st.tuples(WORD, WORD).filter(lambda p: p[0] != p[1])


@st.composite
def patients(draw):
  """{"name", "doctors", "dates", "mrn", "phone", "email"} of one invented patient."""
  person = draw(PERSON)
  doctors = draw(st.lists(PERSON, min_size=1, max_size=2))
  people = [person] + doctors
  words = [w.lower() for p in people for w in p]
  hypothesis.assume(len(set(words)) == len(words))  # one word, one person
  base = datetime.date(2001, 1, 1) + datetime.timedelta(days=draw(st.integers(0, 7000)))
  days = draw(st.lists(st.integers(0, 800), min_size=2, max_size=5, unique=True))
  return {
      "name": person, "doctors": doctors,
      "dates": [base + datetime.timedelta(days=d) for d in days],
      "mrn": "%08d" % draw(st.integers(0, 10 ** 8 - 1)),
      "phone": "(%03d) %03d-%04d" % (draw(st.integers(200, 999)), draw(st.integers(0, 999)),
                                     draw(st.integers(0, 9999))),
      "email": "%s.%s@example.org" % (person[0].lower(), person[1].lower()),
  }


def write_note(patient, rng):
  """(text, [Gold]) of one note of `patient`: the header, then some sentences."""
  parts, gold = [], []

  def add(text, label=None, value=None, form=None):
    if label:
      start = sum(len(p) for p in parts)
      gold.append(Gold(start, start + len(text), label, text, value, form))
    parts.append(text)

  first, last = patient["name"]
  if rng.random() < 0.6:  # a header; notes without one name the patient in parts only
    add("Name: ")
    add("%s %s" % (first, last), "PATIENT", patient["name"], "full")
    add("  MRN: ")
    add(patient["mrn"], "MEDICALRECORD")
    add("\n")
  sentences = list(range(7))
  rng.shuffle(sentences)
  for kind in sentences[:rng.randint(2, 7)]:
    date = rng.choice(patient["dates"])
    form = rng.choice(DATE_FORMATS)
    doctor = rng.choice(patient["doctors"])
    if kind == 0:
      add(first, "PATIENT", patient["name"], "first")
      add(" was seen on ")
      add(date.strftime(form), "DATE", date, form)
      add(".\n")
    elif kind == 1:
      add("Mr. ")
      add(last, "PATIENT", patient["name"], "last")
      add(" called from ")
      add(patient["phone"], "PHONE")
      add(".\n")
    elif kind == 2:
      add("Attending: ")
      add("%s %s" % doctor, "DOCTOR", doctor, "full")
      add(", ")
      add("%s, %s" % (doctor[1].upper(), doctor[0].upper()), "DOCTOR", doctor, "upper")
      add(".\n")
    elif kind == 3:
      add("Seen by ")
      add("%s. %s" % (doctor[0][0], doctor[1]), "DOCTOR", doctor, "initial")
      add(" and ")
      add("%s %s" % doctor, "DOCTOR", doctor, "full")
      add(" on ")
      add(date.strftime(form), "DATE", date, form)
      add(".\n")
    elif kind == 4:
      add("Reply to ")
      add(patient["email"], "EMAIL")
      add(".\n")
    elif kind == 5:
      add("Follow up ")
      add(date.strftime(form), "DATE", date, form)
      add(" with Dr. ")
      add("%s %s" % doctor, "DOCTOR", doctor, "full")
      add(" (Dr. ")
      add(doctor[1], "DOCTOR", doctor, "last")
      add(")")
      add(".\n")
    else:
      add("No fever overnight.\n")
  return "".join(parts), gold


@st.composite
def corpora(draw):
  """[(patient id, note id, text, [Gold])] of 1-3 patients with 1-3 notes each."""
  people = draw(st.lists(patients(), min_size=1, max_size=3))
  rng = random.Random(draw(st.integers(0, 1 << 30)))
  notes = []
  for p, patient in enumerate(people):
    for n in range(rng.randint(1, 3)):
      text, gold = write_note(patient, rng)
      notes.append(("P%d" % p, "P%d-note%d" % (p, n), text, gold))
  return notes


def spans_of(gold):
  return [(g.start, g.end, g.label) for g in gold]


def run(anonymizer, notes):
  """{note id: Result} of `notes` in the order given."""
  return {note_id: anonymizer.anonymize(text, spans_of(gold), note_id, patient=patient)
          for patient, note_id, text, gold in notes}


def replaced(results, notes):
  """[(patient, note id, Gold, output string)] of every gold span."""
  out = []
  for patient, note_id, _, gold in notes:
    result = results[note_id]
    for g, item in zip(gold, result.items):
      out.append((patient, note_id, g, result.text[item.start:item.end]))
  return out


_ANONYMIZER = None


def anonymizer():
  """One Anonymizer for every example (it keeps no state that changes a result)."""
  global _ANONYMIZER
  if _ANONYMIZER is None:
    _ANONYMIZER = anonymize.Anonymizer(OPERATORS, secret=SECRET)
  return _ANONYMIZER


def _worker(notes):
  """A second process's results (as JSON-able tuples)."""
  results = run(anonymize.Anonymizer(OPERATORS, secret=SECRET), notes)
  return {k: (r.text, r.items_json()) for k, r in results.items()}


class PropertyTest(testutil.TestCase):

  @hypothesis.given(corpora())
  def test_same_value_same_surrogate_across_notes(self, notes):
    """Every value gets its canonical surrogate (the one it gets in a note of its own) in every
    note, except where that would repeat the note's own PHI or another value's surrogate there
    (then the note passes over it: the documented exception, counted)."""
    a = anonymizer()
    results = run(a, notes)
    canon = {}

    def canonical(patient, label, value):
      key = (patient, label, value)
      if key not in canon:
        canon[key] = a.anonymize(value, [(0, len(value), label)], "alone", patient).text.lower()
      return canon[key]

    checked = passed_over = 0
    for patient, note_id, _, gold in notes:
      result = results[note_id]
      pairs = []  # (family, original value, output) per name word and per other span
      for g, item in zip(gold, result.items):
        out = result.text[item.start:item.end].lower()
        if g.label == "DATE":
          continue  # dates: one offset per patient (test_dates_keep_order_and_intervals)
        if g.label in ("PATIENT", "DOCTOR"):
          for word, new in zip(re.findall(r"[^\W\d_]+", g.text), re.findall(r"[^\W\d_]+", out)):
            pairs.append(("NAME", word.lower(), new))  # case follows the original: compare lower
        else:
          pairs.append((g.label, g.text, out))
      originals = set(g.text.lower() for g in gold)
      words = set(w.lower() for g in gold for w in re.findall(r"\w+", g.text))
      wanted = collections.Counter((family, canonical(patient, "PATIENT" if family == "NAME"
                                                      else family, value))
                                   for family, value in set((f, v) for f, v, _ in pairs))
      for family, value, out in pairs:
        want = canonical(patient, "PATIENT" if family == "NAME" else family, value)
        if (want in words or any(o in want for o in originals) or
            wanted[(family, want)] > 1):
          passed_over += 1
          continue
        checked += 1
        self.assertEqual(out, want, repr((patient, family, value)))
    self.assertGreater(checked, 0)
    self.assertLessEqual(passed_over, 2 * checked)

  @hypothesis.given(corpora())
  def test_name_parts_stay_one_person(self, notes):
    """In a note, every form of a person's name uses the parts of its full name (across notes the
    parts are the same by test_same_value_same_surrogate_across_notes)."""
    full = {}
    mentions = []
    for patient, note_id, g, out in replaced(run(anonymizer(), notes), notes):
      if g.label in ("PATIENT", "DOCTOR"):
        if g.form == "full":
          self.assertEqual(len(out.split()), 2, out)
          full[(note_id, g.value)] = out.split()
        mentions.append((note_id, g, out))
    checked = 0
    for note_id, g, out in mentions:
      if (note_id, g.value) not in full:
        continue  # the note does not give this person's full name
      first, last = full[(note_id, g.value)]
      self.assertNotEqual([first.lower(), last.lower()], [w.lower() for w in g.value])
      expected = {"full": "%s %s" % (first, last), "first": first, "last": last,
                  "upper": "%s, %s" % (last.upper(), first.upper()),
                  "initial": "%s. %s" % (first[0], last)}[g.form]
      self.assertEqual(out, expected, g.form)
      checked += g.form != "full"
    hypothesis.note("forms checked: %d" % checked)

  @hypothesis.given(corpora())
  def test_same_in_any_order_any_instance(self, notes):
    forward = run(anonymizer(), notes)
    backward = run(anonymize.Anonymizer(OPERATORS, secret=SECRET), list(reversed(notes)))
    self.assertEqual(forward, backward)

  @hypothesis.given(corpora())
  def test_dates_keep_order_and_intervals(self, notes):
    offsets = collections.defaultdict(set)
    for patient, _, g, out in replaced(run(anonymizer(), notes), notes):
      if g.label != "DATE":
        continue
      new = datetime.datetime.strptime(out, g.form).date()  # same format, or it raises
      offsets[patient].add((new - g.value).days)
      expected = new.strftime(g.form)  # a weekday written is the new date's
      padding_shown = g.value.day < 10 or (g.value.month < 10 and "%m" in g.form)
      if not padding_shown and not g.form.startswith("%Y"):
        # `11/20/2019` does not say whether `9/8/2019` would be padded: unpadded is printed.
        expected = re.sub(r"\b0(\d)", r"\1", expected)
      self.assertEqual(out, expected)
    for patient, days in offsets.items():
      self.assertEqual(len(days), 1, (patient, days))  # one offset: order and intervals kept
      (offset,) = days
      self.assertTrue(0 < abs(offset) <= anonymize.DEFAULT_DATE_SHIFT_DAYS, offset)

  @hypothesis.given(corpora())
  def test_no_original_value_survives(self, notes):
    results = run(anonymizer(), notes)
    for _, note_id, _, gold in notes:
      text = results[note_id].text.lower()
      new_dates = set(results[note_id].text[i.start:i.end].lower()
                      for i in results[note_id].items if i.label == "DATE")
      for g in gold:
        if g.label == "DATE" and g.text.lower() in new_dates:
          continue  # a shifted date may equal another original date (intervals must hold)
        self.assertNotIn(g.text.lower(), text, g.label)

  @hypothesis.given(corpora(), st.sampled_from((
      "DATE:shift,MEDICALRECORD:mask,default:surrogate", "PHONE:redact,default:hash",
      "DOCTOR:keep,default:tag")))
  def test_items_cut_exactly_the_replacements(self, notes, operators):
    mixed = anonymize.Anonymizer(operators, secret=SECRET)
    for patient, note_id, text, gold in notes:
      result = mixed.anonymize(text, spans_of(gold), note_id, patient)
      self.assertEqual([(i.input_start, i.input_end, i.label) for i in result.items],
                       spans_of(gold))
      out_last = in_last = 0
      for item in result.items:
        self.assertEqual(result.text[out_last:item.start], text[in_last:item.input_start])
        out_last, in_last = item.end, item.input_end
        if item.operator == "mask":
          self.assertEqual(result.text[item.start:item.end], "*" * (item.input_end -
                                                                   item.input_start))
        if item.operator in ("keep",):
          self.assertEqual(result.text[item.start:item.end], text[item.input_start:item.input_end])
        if item.operator == "redact":
          self.assertEqual(item.start, item.end)
        if item.operator == "tag":
          self.assertEqual(result.text[item.start:item.end], "<%s>" % item.label)
      self.assertEqual(result.text[out_last:], text[in_last:])
      self.assertNotIn(SECRET.decode(), json.dumps([i.to_json() for i in result.items]))

  @hypothesis.given(corpora())
  def test_no_collisions_within_a_patient(self, notes):
    by_patient = collections.defaultdict(dict)
    for patient, note_id, g, out in replaced(run(anonymizer(), notes), notes):
      if g.label in ("MEDICALRECORD", "PHONE", "EMAIL", "DATE"):
        value = g.value if g.label == "DATE" else g.text
        new = datetime.datetime.strptime(out, g.form).date() if g.label == "DATE" else out
        key = (patient, g.label, new)
        self.assertEqual(by_patient[key].setdefault("from", value), value, key)
    # Names: every distinct word of one note's names gets its own surrogate word.
    results = run(anonymizer(), notes)
    for patient, note_id, text, gold in notes:
      words = {}
      result = results[note_id]
      for g, item in zip(gold, result.items):
        if g.label in ("PATIENT", "DOCTOR"):
          originals = g.text.replace(",", " ").replace(".", " ").split()
          news = result.text[item.start:item.end].replace(",", " ").replace(".", " ").split()
          for o, n in zip(originals, news):
            if len(o) > 1:
              self.assertEqual(words.setdefault(n.lower(), o.lower()), o.lower(), (o, n))

  @hypothesis.given(corpora())
  def test_another_secret_other_surrogates(self, notes):
    ours = run(anonymizer(), notes)
    theirs = run(anonymize.Anonymizer(OPERATORS, secret=SECRET + b"!"), notes)
    for _, note_id, _, _ in notes:
      self.assertNotEqual(ours[note_id].text, theirs[note_id].text)

  @hypothesis.given(corpora(), st.binary(min_size=8, max_size=8))
  def test_canary_secret_never_in_outputs_or_logs(self, notes, salt):
    canary = "CANARY-%s" % salt.hex()
    path = os.path.join(self.temp_dir(), "secret")
    with open(path, "w") as f:
      f.write(canary + "\n")
    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
      secret = anonymize.read_secret_file(path)
      self.assertEqual(secret, canary.encode())
      canaried = anonymize.Anonymizer("DATE:shift,PHONE:hash,default:surrogate", secret=secret)
      results = run(canaried, notes)
      shown = [json.dumps(canaried.summary()), repr(canaried)] + records
      for r in results.values():
        shown += [r.text, json.dumps(r.items_json())]
    finally:
      root.removeHandler(handler)
      root.setLevel(old_level)
    for text in shown:
      self.assertNotIn(canary, text)
      self.assertNotIn(salt.hex(), text)


class WorkersTest(testutil.TestCase):

  def test_one_worker_or_two_processes(self):
    rng = random.Random(3)
    notes = []
    for p in range(6):
      patient = _fixed_patient(rng)
      for n in range(3):
        text, gold = write_note(patient, rng)
        notes.append(("P%d" % p, "P%d-note%d" % (p, n), text, gold))
    one = {k: (r.text, r.items_json()) for k, r in run(anonymizer(), notes).items()}
    two = {}
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
      for part in pool.map(_worker, [notes[0::2], notes[1::2][::-1]]):
        two.update(part)
    self.assertEqual(one, two)
    self.assertEqual(len(one), 18)


def _fixed_patient(rng):
  def word():
    while True:
      w = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
      if w.lower() not in POOL_WORDS:
        return w
  base = datetime.date(2005, 1, 1) + datetime.timedelta(days=rng.randint(0, 5000))
  first, last = word(), word()
  return {"name": (first, last), "doctors": [(word(), word())],
          "dates": [base + datetime.timedelta(days=rng.randint(0, 900)) for _ in range(4)],
          "mrn": "%08d" % rng.randint(0, 10 ** 8 - 1),
          "phone": "(%03d) %03d-%04d" % (rng.randint(200, 999), rng.randint(0, 999),
                                         rng.randint(0, 9999)),
          "email": "%s.%s@example.org" % (first.lower(), last.lower())}


if __name__ == "__main__":
  absltest.main()
