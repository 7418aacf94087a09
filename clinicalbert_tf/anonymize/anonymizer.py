"""The per-note de-identification step: (note, PHI spans, patient) -> (text, items).

    anonymizer = Anonymizer(parse_operators("DATE:shift,default:surrogate"), secret=secret)
    result = anonymizer.anonymize(text, spans, note_id, patient="1234")
    result.text, result.items   # items: offsets in the output (and the input), never the PHI

`deidentify.py`'s job, the HTTP service and the Spark engine call exactly this. It holds no state
between notes that changes a result (only counts for the run summary), so notes can be done in any
order, by any number of workers.

Keys. With a secret every keyed choice (surrogates, hashes, the date offset) is an HMAC of
(secret, patient, type, normalised value): one patient's values map the same way in every note,
run and machine (`keyed.py`). A note without a patient is its own patient. Without a secret the
key is the run's seed and every note is its own patient: `surrogate` is then exactly today's
seeded surrogates (`surrogates.Surrogates.replace_spans`), so one operator without a secret gives
the bytes deidentify.py gave before this package.

Keyed surrogates, by label family (`labels.family`):
  * names: word by word, each word by itself (`names.py`): one person stays one surrogate person;
  * dates: shifted by the patient's offset (`shift`);
  * ages up to 89 stay (not identifying under Safe Harbor); older ones become a keyed age in
    90-104 other than the original;
  * phone/fax/SSN/ZIP/IP: their digits, IDs and user names: digits and letters, e-mail addresses and
    URLs: all but scheme, `www.` and top-level domain -- through the patient's keyed cycle of the
    value's shape (`shapes.py`), so no two collide and none maps to itself;
  * places, hospitals, organisations, professions: a realistic value drawn from a keyed seed.
The date offset of a patient is keyed too: within +-`date_shift_days` (365), never 0 and never a
whole number of weeks (so every weekday changes); every date of the patient moves by it, so order
and day intervals hold across all the patient's notes.

The note's own PHI. A value's canonical surrogate is its first keyed candidate (what it gets in a
note of its own). A note first reserves every value's canonical surrogate (the first value in the
note wins a tie); then a candidate that equals a word of the note's PHI (2+ characters), contains
one of its PHI strings (3+ characters), or is given to or reserved by another value of the same
family in this note is passed
over for the value's next keyed candidate. So a value gets its canonical surrogate in every note
except one where it would repeat that note's own PHI or another value's surrogate (rare: about
(same-family values in the note) / (size of the list they are drawn from); for a name word the
list is the names with its surrogate initial, about 40 in en_US). Dates are exempt: a shifted date may
equal another original date of the note (the intervals must hold).
"""

import collections
import dataclasses
import re
from typing import List

from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.anonymize import dates as dates_lib
from clinicalbert_tf.anonymize import keyed as keyed_lib
from clinicalbert_tf.anonymize import labels as labels_lib
from clinicalbert_tf.anonymize import names as names_lib
from clinicalbert_tf.anonymize import operators as operators_lib
from clinicalbert_tf.anonymize import safe_harbor as safe_harbor_lib
from clinicalbert_tf.anonymize import shapes
from clinicalbert_tf.anonymize import spans as spans_lib

DEFAULT_DATE_SHIFT_DAYS = 365
# Candidates tried before a value falls back (letters for names, the placeholder otherwise).
MAX_ATTEMPTS = 50
_WORD_RE = re.compile(r"\w+")
_NUMBER_RE = re.compile(r"\d+")


@dataclasses.dataclass(frozen=True)
class Item:
  """One replacement: [start, end) of the output text, its label and operator, and the input's
  [input_start, input_end). Never the original text."""
  start: int
  end: int
  label: str
  operator: str
  input_start: int
  input_end: int

  def to_json(self):
    return collections.OrderedDict([
        ("start", self.start), ("end", self.end), ("label", self.label),
        ("operator", self.operator), ("input_start", self.input_start),
        ("input_end", self.input_end)])


@dataclasses.dataclass
class Result:
  """A de-identified note: its text and its replacement items (in order)."""
  text: str
  items: List[Item]

  def items_json(self):
    return [item.to_json() for item in self.items]


def _kth_offset(k, days):
  """The k-th of the offsets in [-days, days] that are not multiples of 7 (k from 0)."""
  per_side = days - days // 7
  sign = 1 if k < per_side else -1
  q, r = divmod(k % per_side, 6)
  return sign * (7 * q + r + 1)


class Anonymizer(object):
  """Applies operators to PHI spans, note by note (see the module docstring).

  Args:
    operators: an `operators.Operators`, or a spec string for `operators.parse_operators`.
    secret: bytes (`keyed.read_secret_file`), or None for per-note seeded behaviour.
    random_seed: keys runs without a secret (with each note's id).
    locale: the Faker locale of surrogates.
    mask_char: the `mask` operator's character.
    date_shift_days: the largest date offset in days (offsets lie in +-this, never 0).
    labels: a model's labels beyond the known PHI labels, which `operators` may name.
  """

  def __init__(self, operators=operators_lib.DEFAULT_OPERATOR, secret=None,
               random_seed=surrogates_lib.DEFAULT_SEED, locale=surrogates_lib.DEFAULT_LOCALE,
               mask_char="*", date_shift_days=DEFAULT_DATE_SHIFT_DAYS, labels=None):
    self.operators = operators_lib.parse_operators(operators, labels)
    if not isinstance(mask_char, str) or len(mask_char) != 1:
      raise fileio.InputError("--mask_char=%r: expected exactly one character" % (mask_char,))
    if int(date_shift_days) < 1:
      raise fileio.InputError("--date_shift_days=%s: expected a whole number of days >= 1" %
                              date_shift_days)
    if isinstance(secret, str):
      secret = secret.encode("utf-8")
    if secret is not None and not secret:
      raise fileio.InputError("the secret is empty")
    if "surrogate" in self.operators.names():
      surrogates_lib.check_locale(locale)
    self.mask_char = mask_char
    self.date_shift_days = int(date_shift_days)
    self.locale = locale
    self.random_seed = random_seed
    self.keyed_by_patient = secret is not None
    self._keyed = keyed_lib.Keyed(secret) if secret is not None else keyed_lib.Keyed.from_seed(
        random_seed)
    del secret  # kept only inside the Keyed
    self._seeded = self._values = self._names = None
    self.counts = collections.Counter()  # (label, operator) -> items
    self.notes = 0
    self._patients = set()

  def __repr__(self):
    return "Anonymizer(%r, keyed_by_patient=%s)" % (self.operators, self.keyed_by_patient)

  # Lazily made, since Faker takes a moment to load.
  def seeded_surrogates(self):
    if self._seeded is None:
      self._seeded = surrogates_lib.Surrogates(locale=self.locale, random_seed=self.random_seed)
    return self._seeded

  def value_maker(self):
    if self._values is None:
      self._values = surrogates_lib.ValueMaker(self.locale)
    return self._values

  def name_mapper(self):
    if self._names is None:
      self._names = names_lib.NameMapper(names_lib.NamePools(self.value_maker().generator),
                                         self._keyed)
    return self._names

  def date_offset(self, patient):
    """The patient's date offset in days: keyed, in +-date_shift_days, never 0 nor whole weeks."""
    days = self.date_shift_days
    per_side = days - days // 7
    if per_side < 1:
      return 1
    return _kth_offset(self._keyed.integer(patient, "DATE_OFFSET", "", 2 * per_side), days)

  def anonymize(self, text, spans, note_id, patient=None):
    """The de-identified note (a `Result`).

    Args:
      text: the note.
      spans: its PHI spans: objects with .start, .end, .label or (start, end, label) tuples;
        overlapping ones are merged (`spans.merge`).
      note_id: the note's id (keys it without a secret or a patient; names it in errors).
      patient: the patient's key (with a secret: one patient, one identity), or None.

    Raises:
      fileio.InputError: a span that does not fit the note (naming the note and offsets).
    """
    note_id = str(note_id)
    spans = [spans_lib.as_span(s) for s in spans]
    spans_lib.check_fit(note_id, text, spans)
    spans = spans_lib.merge(spans)
    patient_key = self._patient_key(note_id, patient)
    ops = [self.operators.of(s.label) for s in spans]
    values = [None] * len(spans)
    if not self.keyed_by_patient and "surrogate" in ops:
      # Today's seeded surrogates, note by note (the bytes deidentify.py gave before this package).
      chosen = [i for i, op in enumerate(ops) if op == "surrogate"]
      new_text, replacements = self.seeded_surrogates().replace_spans(
          text, [(spans[i].start, spans[i].end, spans[i].label) for i in chosen], note_id)
      for i, r in zip(chosen, replacements):
        values[i] = new_text[r.start:r.end]
    note = _Note(self, text, spans, ops, patient_key)
    if self.keyed_by_patient and "surrogate" in ops:
      note.reserve()
    parts, items = [], []
    last = length = 0
    for i, span in enumerate(spans):
      before = text[last:span.start]
      parts.append(before)
      length += len(before)
      operator = ops[i]
      value = values[i]
      if value is None:
        value = operators_lib.OPERATORS[operator](note, span)
        if isinstance(value, tuple):  # the operator fell back (to the placeholder)
          value, operator = value
      parts.append(value)
      items.append(Item(length, length + len(value), span.label, operator, span.start, span.end))
      length += len(value)
      last = span.end
    parts.append(text[last:])
    self.count(items, note_id, patient)
    return Result("".join(parts), items)

  def _patient_key(self, note_id, patient):
    if self.keyed_by_patient and patient not in (None, ""):
      return "patient:%s" % patient
    return "note:%s" % note_id

  def count(self, items, note_id, patient=None):
    """Adds one note's items to the run's counts (`summary`): done by `anonymize`, and by an
    engine's driver for notes that were anonymized on its workers."""
    for item in items:
      self.counts[(item.label, item.operator)] += 1
    self.notes += 1
    self._patients.add(self._patient_key(note_id, patient))

  def summary(self):
    """The run's counts: notes, patients, items per label and operator; never PHI or the key."""
    per_label = collections.OrderedDict()
    for (label, operator), n in sorted(self.counts.items()):
      per_label.setdefault(label, collections.OrderedDict())[operator] = n
    return collections.OrderedDict([
        ("notes", self.notes),
        ("patients", len(self._patients)),
        ("items", sum(self.counts.values())),
        ("operators", self.operators.to_json()),
        ("keyed_by_patient", self.keyed_by_patient),
        ("random_seed", None if self.keyed_by_patient else self.random_seed),
        ("date_shift_days", self.date_shift_days),
        ("counts", per_label),
    ])


class _Note(object):
  """One note's context for the operators: its text, spans, patient and chosen surrogates."""

  def __init__(self, anonymizer, text, spans, ops, patient):
    self._anonymizer = anonymizer
    self._keyed = anonymizer._keyed  # pylint: disable=protected-access
    self.text = text
    self.mask_char = anonymizer.mask_char
    self.patient = patient
    self._spans = spans
    self._ops = ops
    self._originals = None
    self._chosen = {}
    self._taken = {}
    self._reserved = {}
    self._firsts = {}
    self._dry = False
    self._context_year = None
    self._last_date = -1

  # -- Choosing keyed values that do not repeat the note's PHI.

  def _clashes(self, lower):
    if self._originals is None:
      texts = set(self.text[s.start:s.end].strip().lower()
                  for s, op in zip(self._spans, self._ops) if op != "keep")
      words = set()
      for t in texts:
        words.update(w for w in _WORD_RE.findall(t) if len(w) > 1)
      # Substrings of 3+ characters only: a one- or two-character PHI string (`3`, `J.`) is part
      # of too many values to exclude them all.
      self._originals = (tuple(t for t in texts if len(t) > 2), words)
    texts, words = self._originals
    return lower in words or any(t in lower for t in texts)

  def reserve(self):
    """The dry pass: every keyed value's first candidate, so that no other value's later
    candidate can take it in this note (values keep their canonical surrogate where they can)."""
    self._reserved = {}
    self._dry = True
    for span, op in zip(self._spans, self._ops):
      if op == "surrogate" and labels_lib.family(span.label) != "date":
        self.surrogate(span)
    self._dry = False
    self._firsts = self._chosen  # each value's first candidate, reused by the real pass
    self._chosen = {}

  def choose(self, kind, key, candidate, check=True):
    """The first keyed candidate(attempt) for (kind, key) that passes (None if none does): not
    repeating the note's PHI, nor another value's surrogate or first candidate in this note."""
    if (kind, key) in self._chosen:
      return self._chosen[(kind, key)]
    if self._dry:
      value = candidate(0)
      if value is not None:
        self._reserved.setdefault((kind, value.strip().lower()), key)  # the first value wins
      self._chosen[(kind, key)] = value or ""
      return value or ""
    for attempt in range(MAX_ATTEMPTS):
      value = self._firsts.get((kind, key)) if attempt == 0 else None
      if not value:
        value = candidate(attempt)
      if value is None:  # no candidates at all (nothing to vary, an empty list)
        return None
      lower = value.strip().lower()
      if check and self._clashes(lower):
        continue
      owner = self._taken.get((kind, lower), self._reserved.get((kind, lower)))
      if owner is not None and owner != key:
        continue
      self._chosen[(kind, key)] = value
      self._taken[(kind, lower)] = key
      return value
    return None

  # -- The operators that need the note.

  def placeholder(self, span):
    return operators_lib.placeholder(self, span), "placeholder"

  def _date_context(self, span):
    """The year a month-day date is read in: the latest full date's before the span."""
    for s in self._spans:
      if s.start <= self._last_date:
        continue
      if s.start >= span.start:
        break
      if labels_lib.family(s.label) == "date":
        self._context_year = dates_lib.latest_full_year(self.text[s.start:s.end],
                                                        self._context_year)
      self._last_date = s.start
    return self._context_year

  def shift(self, span):
    context_year = self._date_context(span)
    value = dates_lib.shift(self.text[span.start:span.end],
                            self._anonymizer.date_offset(self.patient), context_year)
    return value if value is not None else self.placeholder(span)

  def surrogate(self, span):
    family = labels_lib.family(span.label)
    original = self.text[span.start:span.end]
    patient = self.patient
    if family == "name":
      return self._anonymizer.name_mapper().surrogate(original, patient, self.choose)
    if family == "date":
      return self.shift(span)
    key = " ".join(original.lower().split())
    if family == "age":
      match = _NUMBER_RE.search(original)
      if match is None:
        return self.placeholder(span)
      age = int(match.group(0))
      if age <= 89:
        return original
      value = self.choose("AGE", str(age), lambda attempt: str(
          90 + (age - 90 + 1 + self._keyed.integer(patient, "AGE", age, 14, attempt)) % 15))
    elif family in ("zip", "digits", "email", "url", "shape"):
      letters = family not in ("zip", "digits")
      structure = family if family in ("email", "url") else None
      kind = span.label.upper() if family != "name" else "NAME"
      value = self.choose(kind, original.strip(), lambda attempt: shapes.shape_surrogate(
          self._keyed, patient, kind, original.strip(), attempt + 1, letters, structure))
      if value is not None:
        value = original[:len(original) - len(original.lstrip())] + value + original[
            len(original.rstrip()):]
    else:
      label = span.label.upper()
      maker = self._anonymizer.value_maker()
      value = self.choose(label, key, lambda attempt: maker.value(
          self._keyed.integer(patient, "VALUE/" + label, key, 1 << 63, attempt), label))
    return value if value is not None else self.placeholder(span)

  def hash(self, span):
    family = labels_lib.family(span.label)
    original = self.text[span.start:span.end]
    if family == "name":
      key = names_lib.normalised(original, self._anonymizer.name_mapper().pools)
    elif family == "date":
      pieces = dates_lib.find(original, self._date_context(span))
      key = "|".join(p.date.isoformat() if p.date else "wd%d" % p.weekday for p in pieces) or (
          " ".join(original.lower().split()))
    else:
      key = " ".join(original.lower().split())
    return "%s_%s" % (span.label, self._keyed.hex(self.patient, "HASH/" + family, key))

  def safe_harbor(self, span):
    family = labels_lib.family(span.label)
    original = self.text[span.start:span.end]
    if family == "age":
      value = safe_harbor_lib.age(original)
    elif family == "date":
      value = safe_harbor_lib.date(original, self._date_context(span))
    elif family == "zip":
      value = safe_harbor_lib.zip_code(original)
    elif span.label.upper() in labels_lib.SAFE_HARBOR_KEPT:
      value = original
    else:
      value = None
    return value if value is not None else operators_lib.placeholder(self, span)
