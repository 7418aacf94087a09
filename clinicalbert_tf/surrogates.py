"""Surrogate PHI: MIMIC-III de-identification placeholders -> realistic, consistent values (Faker).

MIMIC-III replaces every name, date and place with a placeholder such as
`[**Last Name (NamePattern1) 1234**]` or `[**2101-10-20**]`; de-identification data (i2b2 2006,
2014) holds realistic surrogates instead. `Surrogates.replace` turns a note's placeholders into
realistic values, so that a model can be pretrained on text shaped like the task's (the remedy the
ClinicalBERT paper proposes for its de-identification result). It is the one place that does so:
`format_notes.py --phi=surrogate` and the invented de-identification demo set use it.

Categories. A placeholder's label (the text before its number) decides its category, one of
`CATEGORIES`: names (first, last, full, initials, prefixes), hospitals and wards, companies and
universities, street addresses, cities, states, ZIP codes, countries, telephone/fax and pager
numbers, e-mail addresses and URLs, medical record, social security, unit, serial, job, provider
and other numeric identifiers, ages over 89, and dates in MIMIC's forms (`[**2101-10-20**]`,
`[**10-20**]`, `[**2101**]`, `[**10-/2101**]`, `Month (only)`, `Month/Year`, `Date range`,
`Holiday`, ...). A placeholder of no known category gets a generic surrogate of its shape (digits
for digits, a word otherwise) and is counted as `unrecognized`; its text is never logged.

Consistency within a note (the note's seed, from the run's seed and the note's key, e.g. its
ROW_ID, decides everything, so the output does not depend on the order notes are processed in):
  C1 The same placeholder (the same category and the same number) gives the same surrogate
     everywhere in the note. Numberless placeholders of one category and label share one.
  C2 Names belong to persons, one per number (numberless names: one person): the first name,
     last name, full name, initials and prefix of a number are those of one person, so
     `[**First Name 12**] [**Last Name 12**]` and `[**Name (NI) 12**]` agree; `Female`/`Male` in
     a label picks the person's sex.
  C3 Dates. All literal dates of a note shift by one random number of days, chosen so that they
     land between `DATE_RANGE_START` and `DATE_RANGE_END` (the latest always; the earliest when
     the note's span allows, else a date of birth lies before): order and day differences are
     kept. A month-day date (`[**10-20**]`) is read in the year of the latest full date before it
     (else the note's first); a year-only date stands for its July 1, a month-year date for the
     month's 15th, and prints the year (and month) that shifts to. Dates are printed in one
     realistic format per note (`3/4/2019`, `03/04/2019`, `3/4/19`, `2019-03-04`, `March 4,
     2019`, `Mar 4, 2019`, `4 March 2019`; numeric only outside English locales). Placeholders
     that name a date without giving one (`Month/Day`, `Year (4 digits)`, `Date range`, ...) get
     a date in the weeks before the note's latest shifted date.
  C4 No surrogate reuses text of the note: a drawn value none of whose words (2+ letters, outside
     the short list of structure words `GENERIC_WORDS` such as `Hospital`, `Suite`, `LLC`) and
     none of whose numbers (3+ digits) occurs in the note outside its placeholders; a value that
     would is drawn again. Dates, months and holidays are exempt (they carry no identity).
Across notes surrogates are independent (each note has its own seed), unless a secret is given
(`format_notes.py --secret_file`) and the note key is (ROW_ID, SUBJECT_ID): then every draw is
seeded by an HMAC of (secret, patient, the placeholder's category and number), and all dates of
the patient move by one keyed shift (`KEYED_SHIFT_DAYS`), so the same placeholder of one patient
gets the same surrogate in every note, run and worker count (unless C4 passes over it in a note
whose own text holds it) and intervals between the patient's dates survive across notes.

`Surrogates.replace_spans` applies the same rules to labelled PHI spans of real-looking text (i2b2
labels: de-identification output, `SPAN_LABELS`), each span's text standing for its placeholder.
"""

import bisect
import collections
import datetime
import functools
import hashlib
import hmac
import re

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import sentences

PHI_MODES = ("keep", "surrogate")
DEFAULT_LOCALE = "en_US"
DEFAULT_SEED = 12345

# C3: the present-day range the dates of a note are shifted into.
DATE_RANGE_START = datetime.date(2005, 1, 1)
DATE_RANGE_END = datetime.date(2024, 12, 31)
# Labelled dates without a value lie this many days around the note's shifted dates.
NEARBY_DAYS = 30
# With a secret: a patient's dates all move back by this many days, give or take the spread (keyed
# per patient), keeping MIMIC's per-patient intervals across notes (MIMIC's 2100-2200 land in
# about 1960-2070, not necessarily in DATE_RANGE).
KEYED_SHIFT_DAYS = int(135 * 365.25)
KEYED_SHIFT_SPREAD_DAYS = 5 * 365
# C4: redraws before a value is made of random letters or digits instead.
MAX_DRAWS = 50

CATEGORIES = (
    "first_name", "last_name", "full_name", "initials", "name_prefix", "username", "profession",
    "hospital", "ward", "company", "university",
    "street_address", "city", "state", "zip_code", "state_zip", "country", "location",
    "telephone", "pager", "email", "url", "ip_address",
    "medical_record_number", "social_security_number", "unit_number", "serial_number",
    "job_number", "provider_number", "numeric_identifier",
    "age_over_89",
    "date", "month_day", "month_year", "year", "two_digit_year", "month", "date_range", "holiday",
    "unrecognized",
)
# One MIMIC-III-style placeholder per category (the documentation's examples; tests and the invented
# de-identification set use them too). The numbers are invented.
EXAMPLE_PLACEHOLDERS = collections.OrderedDict([
    ("first_name", "[**First Name8 (NamePattern2) 1234**]"),
    ("last_name", "[**Last Name (NamePattern1) 1234**]"),
    ("full_name", "[**Name (NI) 1234**]"),
    ("initials", "[**Initials (NamePattern4) 1234**]"),
    ("name_prefix", "[**Name Prefix (Prefixes) 1234**]"),
    ("username", "[**Username 4567**]"),
    ("profession", "[**Profession 12**]"),
    ("hospital", "[**Hospital1 18**]"),
    ("ward", "[**Hospital Ward Name 23**]"),
    ("company", "[**Company 45**]"),
    ("university", "[**University/College 67**]"),
    ("street_address", "[**Street Address(1) 89**]"),
    ("city", "[**City 98**]"),
    ("state", "[**State 76**]"),
    ("zip_code", "[**Zip code 54**]"),
    ("state_zip", "[**State/Zipcode 32**]"),
    ("country", "[**Country 10**]"),
    ("location", "[**Location (un) 2199**]"),
    ("telephone", "[**Telephone/Fax (1) 3456**]"),
    ("pager", "[**Pager number 7788**]"),
    ("email", "[**E-mail address 4321**]"),
    ("url", "[**URL 8765**]"),
    ("ip_address", "[**IP Address 9876**]"),
    ("medical_record_number", "[**Medical Record Number 1122**]"),
    ("social_security_number", "[**Social Security Number 3344**]"),
    ("unit_number", "[**Unit Number 5566**]"),
    ("serial_number", "[**Serial Number 7789**]"),
    ("job_number", "[**Job Number 9900**]"),
    ("provider_number", "[**MD Number(1) 2468**]"),
    ("numeric_identifier", "[**Numeric Identifier 1357**]"),
    ("age_over_89", "[**Age over 90 1111**]"),
    ("date", "[**2101-10-20**]"),
    ("month_day", "[**10-22**]"),
    ("month_year", "[**11-/2101**]"),
    ("year", "[**2102**]"),
    ("two_digit_year", "[**Year (2 digits) 2222**]"),
    ("month", "[**Month (only) 3333**]"),
    ("date_range", "[**Date range (1) 4444**]"),
    ("holiday", "[**Holiday 5555**]"),
    ("unrecognized", "[**Spaceship Name 6666**]"),
])
NAME_CATEGORIES = ("first_name", "last_name", "full_name", "initials", "name_prefix")
DATE_CATEGORIES = ("date", "month_day", "month_year", "year", "two_digit_year", "month",
                   "date_range", "holiday")

# Labels (lower case, the number removed) to categories; the first pattern that matches decides.
_LABEL_RULES = tuple((re.compile(pattern), category) for pattern, category in (
    (r"name prefix|prefixes", "name_prefix"),
    (r"user ?name|login", "username"),
    (r"ip address", "ip_address"),
    (r"initial", "initials"),
    (r"first ?name", "first_name"),
    (r"last ?name", "last_name"),
    (r"(contact|dictator|attending) info", "full_name"),
    (r"^name", "full_name"),
    (r"profession|occupation", "profession"),
    (r"ward|hospital unit|unit name", "ward"),
    (r"hospital", "hospital"),
    (r"company", "company"),
    (r"universit|college", "university"),
    (r"e-?mail", "email"),
    (r"address", "street_address"),
    (r"state/zip", "state_zip"),
    (r"zip", "zip_code"),
    (r"^state", "state"),
    (r"country", "country"),
    (r"city|town", "city"),
    (r"location", "location"),
    (r"pager", "pager"),
    (r"telephone|phone|fax", "telephone"),
    (r"url|web ?site", "url"),
    (r"medical record", "medical_record_number"),
    (r"social security", "social_security_number"),
    (r"unit number", "unit_number"),
    (r"serial", "serial_number"),
    (r"job number", "job_number"),
    (r"md number|provider number", "provider_number"),
    (r"number|identifier|\bid\b", "numeric_identifier"),
    (r"age over", "age_over_89"),
    (r"holiday", "holiday"),
    (r"date ?range", "date_range"),
    (r"month/day/year|day month year|month day year", "date"),
    (r"month ?\(only\)|^month$", "month"),
    (r"month/year|month year", "month_year"),
    (r"year \(2 digits\)", "two_digit_year"),
    (r"year", "year"),
    (r"month|day", "month_day"),
))
_LABEL_RE = re.compile(r"^(?P<label>.*?)(?:\s+(?P<number>\d+))?\s*$", re.S)
# MIMIC's literal dates: [**2101-10-20**], [**10-20**], [**10-/2101**] or [**2101-10**], [**2101**].
_FULL_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_MONTH_DAY_RE = re.compile(r"(\d{1,2})-(\d{1,2})")
_MONTH_YEAR_RE = re.compile(r"(\d{1,2})-/(\d{4})|(\d{4})-(\d{1,2})")
_YEAR_RE = re.compile(r"\d{4}")

# C4: words and numbers of a note, and the structure words surrogates may share with it.
_WORD_RE = re.compile(r"[^\W\d_]{2,}")
_NUMBER_RE = re.compile(r"\d{3,}")
GENERIC_WORDS = frozenset("""
    hospital medical center general memorial regional community clinic university college state
    of the and at in ward unit pavilion building suite apt inc llc ltd plc group sons http https
    www com org net biz info example
    """.split())

_HOSPITAL_SUFFIXES = ("Hospital", "Medical Center", "General Hospital", "Memorial Hospital",
                      "Regional Medical Center", "Community Hospital", "Clinic")
_WARD_FORMS = ("{name} {number}", "{name} Pavilion", "{name} Building", "{name} Unit")
_UNIVERSITY_FORMS = ("University of {city}", "{name} University", "{name} College",
                     "{state} State University")
# US public holidays by name: vocabulary, not identity.
_HOLIDAYS = ("New Year's Day", "Martin Luther King Day", "Presidents' Day", "Memorial Day",
             "Independence Day", "the Fourth of July", "Labor Day", "Columbus Day",
             "Veterans Day", "Thanksgiving", "Christmas Eve", "Christmas", "New Year's Eve",
             "Easter")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
# C3: per-note formats of a full date, a month and day, and a month and year.
_ENGLISH_FORMATS = (
    ("{m}/{d}/{Y}", "{m}/{d}", "{m}/{Y}"),
    ("{mm}/{dd}/{Y}", "{mm}/{dd}", "{mm}/{Y}"),
    ("{m}/{d}/{yy}", "{m}/{d}", "{m}/{yy}"),
    ("{Y}-{mm}-{dd}", "{mm}-{dd}", "{Y}-{mm}"),
    ("{Month} {d}, {Y}", "{Month} {d}", "{Month} {Y}"),
    ("{Mon} {d}, {Y}", "{Mon} {d}", "{Mon} {Y}"),
    ("{d} {Month} {Y}", "{d} {Month}", "{Month} {Y}"),
)
_NUMERIC_FORMATS = (
    ("{Y}-{mm}-{dd}", "{mm}-{dd}", "{Y}-{mm}"),
    ("{dd}.{mm}.{Y}", "{dd}.{mm}.", "{mm}.{Y}"),
    ("{dd}/{mm}/{Y}", "{dd}/{mm}", "{mm}/{Y}"),
)

PhiOptions = collections.namedtuple("PhiOptions", ["mode", "random_seed", "locale", "secret"],
                                    defaults=(None,))
PhiOptions.__doc__ = """What becomes of PHI placeholders (`format_notes.py --phi`): `mode` `keep` or
`surrogate`, with the seed and the Faker locale of the surrogates, and `secret` (bytes, or None):
with it each note is keyed by its patient (SUBJECT_ID) instead of seeded by itself."""

Replacement = collections.namedtuple(
    "Replacement", ["start", "end", "category", "label", "original_date", "date"])
Replacement.__doc__ = """One surrogate in the new text: characters [start, end), its category, the
placeholder's label (without its number), and for a literal date the date the placeholder gave and
the date printed (datetime.date, else None)."""


def classify(inner):
  """(category, label, number, when) of a placeholder's inner text (between `[**` and `**]`).

  `when` is the date a literal date gives: (year, month, day) with None for what it lacks.
  """
  inner = inner.strip()
  match = _FULL_DATE_RE.fullmatch(inner)
  if match:
    return "date", "", None, tuple(int(g) for g in match.groups())
  match = _MONTH_DAY_RE.fullmatch(inner)
  if match:
    return "month_day", "", None, (None, int(match.group(1)), int(match.group(2)))
  match = _MONTH_YEAR_RE.fullmatch(inner)
  if match:
    month, year = (match.group(1), match.group(2)) if match.group(1) else match.group(4, 3)
    return "month_year", "", None, (int(year), int(month), None)
  if _YEAR_RE.fullmatch(inner):
    return "year", "", None, (int(inner), None, None)
  parts = _LABEL_RE.match(inner)
  label, number = parts.group("label").strip(), parts.group("number")
  lower = label.lower()
  for pattern, category in _LABEL_RULES:
    if pattern.search(lower):
      return category, label, number, None
  return "unrecognized", label, number, None


def _patient_seed(secret, patient, *key):
  """A seed keyed by HMAC-SHA256(secret, patient and `key`): the same in every note of the patient."""
  message = "\x1f".join([patient] + [repr(k) for k in key]).encode("utf-8")
  return int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:8], "big")


def note_seed(random_seed, note_key):
  """The seed of one note: from the run's seed and the note's key (its ROW_ID), order-free."""
  digest = hashlib.sha256(("%d/%s" % (random_seed, note_key)).encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big")


def define_flags(when):
  """Defines `--random_seed` and `--surrogate_locale`, the same for every script that makes surrogates.

  Args:
    when: the flag setting that turns surrogates on, for the help text (`"--phi=surrogate"`).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_integer("random_seed", DEFAULT_SEED,
                       "With %s: the seed of the surrogates, combined with each note's id (the "
                       "ROW_ID of a NOTEEVENTS row), so the output is the same across runs, worker "
                       "counts and batch sizes." % when)
  flags.DEFINE_string("surrogate_locale", DEFAULT_LOCALE,
                      "With %s: the Faker locale of names, places and numbers (en_US, en_GB, "
                      "de_DE, ...)." % when)


def check_locale(locale, flag="--surrogate_locale"):
  """Raises InputError unless Faker has `locale` (such as en_US, en_GB, de_DE)."""
  from faker import config  # pylint: disable=g-import-not-at-top
  if locale not in config.AVAILABLE_LOCALES:
    english = sorted(l for l in config.AVAILABLE_LOCALES if l.startswith("en_"))
    raise fileio.InputError("%s=%s: not a Faker locale; expected one of %d, such as %s"
                            % (flag, locale, len(config.AVAILABLE_LOCALES), ", ".join(english)))


def check_phi_options(phi):
  """Raises InputError for a `PhiOptions` with an unknown mode or (for surrogates) locale."""
  if phi.mode not in PHI_MODES:
    raise fileio.InputError("--phi=%s: expected one of %s" % (phi.mode, ", ".join(PHI_MODES)))
  if phi.mode == "surrogate":
    check_locale(phi.locale)


def make_surrogates(phi):
  """The `Surrogates` of `phi` (a PhiOptions), or None when placeholders are kept."""
  if phi is None or phi.mode == "keep":
    return None
  return Surrogates(locale=phi.locale, random_seed=phi.random_seed, secret=phi.secret)


def faker_version():
  import faker  # pylint: disable=g-import-not-at-top
  return faker.VERSION


def sidecar_record(phi, counts):
  """The sidecar's record of what became of the placeholders (counts only, never text).

  Args:
    phi: the run's PhiOptions.
    counts: collections.Counter of category -> placeholders replaced.
  """
  if phi.mode == "keep":
    return collections.OrderedDict([("mode", "keep")])
  record = collections.OrderedDict([
      ("mode", phi.mode),
      ("random_seed", phi.random_seed),
      ("locale", phi.locale),
      ("faker_version", faker_version()),
      ("placeholders", sum(counts.values())),
      ("counts", counts_record(counts)),
  ])
  if phi.secret is not None:  # that one was used, never what it is
    record["keyed_by_patient"] = True
  return record


class _Pool(object):
  """Fast draws from one of Faker's name lists (Faker's own weighted draw is ~0.3 ms a call)."""

  def __init__(self, values):
    if isinstance(values, dict):
      self._items = list(values)
      total = 0.0
      self._cumulative = []
      for weight in values.values():
        total += float(weight)
        self._cumulative.append(total)
    else:
      self._items = list(values)
      self._cumulative = None

  def draw(self, random):
    if self._cumulative is None:
      return self._items[random.randrange(len(self._items))]
    index = bisect.bisect_right(self._cumulative, random.random() * self._cumulative[-1])
    return self._items[min(index, len(self._items) - 1)]


def name_lists(generator):
  """{attribute: list or weighted dict} of the person provider's name lists the locale has
  (`first_names_female`, `first_names_male`, `first_names`, `last_names`)."""
  lists = {}
  for provider in generator.get_providers():
    for attribute in ("first_names_female", "first_names_male", "first_names", "last_names"):
      values = getattr(provider, attribute, None)
      if attribute not in lists and values and not callable(values):
        lists[attribute] = values
  return lists


def _name_pools(generator):
  """{attribute: _Pool} for the person provider's name lists the locale has."""
  return {attribute: _Pool(values) for attribute, values in name_lists(generator).items()}


class Surrogates(object):
  """Replaces the placeholders of notes by surrogates (see the module docstring).

    surrogates = Surrogates(locale="en_US", random_seed=12345)
    text, counts = surrogates.replace(note_text, row_id)   # counts: category -> placeholders
  """

  def __init__(self, locale=DEFAULT_LOCALE, random_seed=DEFAULT_SEED, secret=None):
    import faker  # pylint: disable=g-import-not-at-top
    check_locale(locale)
    self.locale = locale
    self.random_seed = random_seed
    self._secret = secret  # bytes or None; never shown
    self._generator = faker.Factory.create(locale)
    self._pools = _name_pools(self._generator)
    self._formats = _ENGLISH_FORMATS if locale.startswith("en") else _NUMERIC_FORMATS

  def __repr__(self):
    return "Surrogates(%r, keyed_by_patient=%s)" % (self.locale, self._secret is not None)

  def replace(self, text, note_key):
    """(new text, collections.Counter of category -> placeholders replaced) of one note.

    `note_key`: the note's ROW_ID, or (ROW_ID, patient) to key it by its patient (with a secret).
    """
    new_text, replacements = self.replace_with_spans(text, note_key)
    return new_text, collections.Counter(r.category for r in replacements)

  def replace_notes(self, texts, note_keys):
    """`replace` for a list of notes, one note's failure not stopping the others.

    Returns:
      (texts, counts, failures): the new texts and Counters, one per note (for a note that
      failed: "" and None), and {index: reason} naming the exception's type only (its message
      could quote the note).
    """
    new_texts, counts, failures = [], [], {}
    for i, (text, key) in enumerate(zip(texts, note_keys)):
      try:
        text, note_counts = self.replace(text, key)
      except Exception as e:  # pylint: disable=broad-except
        failures[i] = "could not be given surrogates (%s)" % type(e).__name__
        text, note_counts = "", None
      new_texts.append(text)
      counts.append(note_counts)
    return new_texts, counts, failures

  def replace_with_spans(self, text, note_key):
    """(new text, [Replacement]) of one note; `note_key` (its ROW_ID, or (ROW_ID, patient) with a
    secret) seeds it."""
    items = []
    for match in sentences.PLACEHOLDER_RE.finditer(text):
      inner = match.group(0)[3:-3]
      items.append(_Item(match.start(), match.end(), *classify(inner), inner=inner, form=None))
    return self._render(text, items, note_key)

  def replace_spans(self, text, spans, note_key):
    """Replaces annotated or predicted PHI spans of real-looking text (de-identification).

    Args:
      text: a note.
      spans: sorted, disjoint (start, end, label) with i2b2 2006/2014 labels (`PATIENT`,
        `DOCTOR`, `HOSPITAL`, `DATE`, `PHONE`, `IDNUM`, ...; see `SPAN_LABELS`). A span of an
        unknown label gets a generic surrogate of its shape.
      note_key: seeds the note's surrogates (with the run's seed).

    Returns:
      (new text, [Replacement]): as `replace_with_spans`, each Replacement's `label` the span's.
      The rules are the placeholders' (C1-C4) with the span's text as its key: the same text gives
      the same surrogate; a name of one word is a last name and shares its person with a longer
      name ending in it; dates the formats of `SPAN_DATE_FORMATS` read are shifted (printed in
      the form they were read in), others become nearby dates; ages up to 89 are kept (not PHI
      under HIPAA's Safe Harbor rule); IDs and rooms keep their shape (digits for digits, letters
      for letters). For C4 the spans' own text counts as the note's: a surrogate never repeats
      the PHI it replaces, nor a word or number of it.
    """
    return self._render(text, [_span_item(text, start, end, label)
                               for start, end, label in spans], note_key, spans=True)

  def _render(self, text, items, note_key, spans=False):
    if not items:
      return text, []
    keyer = None
    if isinstance(note_key, tuple):
      note_key, patient = note_key
      if self._secret is not None and patient not in (None, ""):
        keyer = functools.partial(_patient_seed, self._secret, str(patient))
    self._generator.seed_instance(keyer("note") if keyer else note_seed(self.random_seed, note_key))
    return _Note(self._generator, self._pools, self._formats, text, items, spans,
                 keyer).render()


class ValueMaker(object):
  """One realistic value of a category from a given seed (the keyed anonymizer's draws).

  The same rules and lists as a note's surrogates (hospital and ward forms, Faker's providers),
  without a note: the caller's seed (an HMAC of the patient and the value) decides the value, and
  the caller checks it against the note.
  """

  def __init__(self, locale=DEFAULT_LOCALE):
    import faker  # pylint: disable=g-import-not-at-top
    check_locale(locale)
    self.generator = faker.Factory.create(locale)
    formats = _ENGLISH_FORMATS if locale.startswith("en") else _NUMERIC_FORMATS
    self._note = _Note(self.generator, _name_pools(self.generator), formats, "", [], spans=True)

  def value(self, seed, label):
    """A surrogate for a span of `label` (an i2b2 label of `SPAN_LABELS`) drawn from `seed`."""
    kind = SPAN_LABELS.get(label.upper(), ("shape", "unrecognized"))
    category = kind[1] if isinstance(kind, tuple) else kind
    self.generator.seed_instance(seed)
    return self._note._value(category, label, "")  # pylint: disable=protected-access


# One PHI item of a note: characters [start, end) become a surrogate of `category`. `number` keys
# it (C1); `when` is the (year, month, day) it gives; `inner` its text (for shapes); `form` the
# strptime format a span's date was read in (None: the note's format).
_Item = collections.namedtuple(
    "_Item", ["start", "end", "category", "label", "number", "when", "inner", "form"])

# i2b2 2006 and 2014 PHI labels -> categories (`name`: first, last or full by the words; `shape`:
# a generic value of the span's shape, under the category given second).
SPAN_LABELS = {
    "PATIENT": "name", "DOCTOR": "name", "USERNAME": "username", "PROFESSION": "profession",
    "HOSPITAL": "hospital", "DEPARTMENT": "ward", "ORGANIZATION": "company",
    "STREET": "street_address", "CITY": "city", "STATE": "state", "COUNTRY": "country",
    "ZIP": "zip_code", "LOCATION-OTHER": "location", "LOCATION": "location", "AGE": "age",
    "DATE": "date", "PHONE": "telephone", "FAX": "telephone", "EMAIL": "email", "URL": "url",
    "IPADDR": "ip_address", "SSN": "social_security_number",
    "MEDICALRECORD": ("shape", "medical_record_number"), "DEVICE": ("shape", "serial_number"),
    "ROOM": ("shape", "unit_number"), "HEALTHPLAN": ("shape", "numeric_identifier"),
    "ACCOUNT": ("shape", "numeric_identifier"), "LICENSE": ("shape", "numeric_identifier"),
    "VEHICLE": ("shape", "numeric_identifier"), "BIOID": ("shape", "numeric_identifier"),
    "IDNUM": ("shape", "numeric_identifier"), "ID": ("shape", "numeric_identifier"),
}
# The date forms a DATE span is read in (and printed in, shifted), tried in order.
SPAN_DATE_FORMATS = (
    ("%Y-%m-%d", "date"), ("%m/%d/%Y", "date"), ("%m/%d/%y", "date"), ("%m-%d-%Y", "date"),
    ("%B %d, %Y", "date"), ("%b %d, %Y", "date"), ("%d %B %Y", "date"), ("%m/%d", "month_day"),
    ("%m/%Y", "month_year"), ("%B %Y", "month_year"), ("%Y", "year"),
)


def _span_item(text, start, end, label):
  """The `_Item` of one labelled span (see `Surrogates.replace_spans`)."""
  inner = text[start:end]
  kind = SPAN_LABELS.get(label.upper(), ("shape", "unrecognized"))
  if isinstance(kind, tuple):
    return _Item(start, end, kind[1], label, inner, None, inner, "shape")
  if kind == "name":
    words = inner.split()
    person = words[-1].lower() if words else ""
    return _Item(start, end, "full_name" if len(words) > 1 else "last_name", label, person, None,
                 inner, None)
  if kind == "age":
    if inner.strip().isdigit() and int(inner) <= 89:
      return _Item(start, end, "age_over_89", label, inner, None, inner, "keep")
    return _Item(start, end, "age_over_89", label, inner, None, inner, None)
  if kind == "date":
    for form, category in SPAN_DATE_FORMATS:
      try:
        when = datetime.datetime.strptime(inner.strip(), form).date()
      except ValueError:
        continue
      if category == "month_day":
        return _Item(start, end, category, label, None, (None, when.month, when.day), inner, form)
      if category == "month_year":
        return _Item(start, end, category, label, None, (when.year, when.month, None), inner, form)
      if category == "year":
        return _Item(start, end, category, label, None, (when.year, None, None), inner, form)
      return _Item(start, end, category, label, None, (when.year, when.month, when.day), inner,
                   form)
    return _Item(start, end, "date", label, inner, None, inner, None)
  return _Item(start, end, kind, label, inner, None, inner, None)


class _Note(object):
  """The surrogates of one note: its persons, its date shift, its cache of values."""

  def __init__(self, generator, pools, formats, text, items, spans=False, keyer=None):
    self._fake = generator
    # Keyed per patient (a secret): each value's draws are seeded by keyer(its key) instead of
    # following the note's sequence, so a patient's notes agree (see `Surrogates`).
    self._keyer = keyer
    # C4 for spans: their own text is the note's too (a surrogate must not repeat the real PHI).
    self._spans = spans
    self._random = generator.random
    self._pools = pools
    self._text = text
    self._items = items
    self._words = self._numbers = None  # C4's view of the note, made at the first draw
    self._cache = {}
    self._persons = {}
    self._reseed("formats")
    self._full, self._month_day, self._month_year = self._random.choice(formats)
    self._english = formats is _ENGLISH_FORMATS
    self._plan_dates()

  # -- C3: one shift for all dates of the note.

  def _literal_dates(self):
    """[(index, datetime.date)] of the literal dates, month-day ones in their year (C3)."""
    dates = []
    context_year = None
    first_year = next((item.when[0] for item in self._items if item.when and item.category == "date"
                       and not (item.form and "%y" in item.form)), None)
    for index, item in enumerate(self._items):
      category, when = item.category, item.when
      if not when:
        continue
      year, month, day = when
      if category == "month_day":
        year = context_year or first_year or DATE_RANGE_START.year
      elif item.form and "%y" in item.form and first_year:
        # A span's two-digit year (`8/7/73`): the century nearest the note's first full date.
        centuries = range(first_year // 100 - 1, first_year // 100 + 2)
        year = min((year % 100 + 100 * c for c in centuries), key=lambda y: abs(y - first_year))
      date = _valid_date(year, month or 7, day or (15 if month else 1))
      if date is None:
        continue
      if category == "date":
        context_year = year
      dates.append((index, date))
    return dates

  def _reseed(self, *key):
    if self._keyer is not None:
      self._fake.seed_instance(self._keyer(*key))

  def _plan_dates(self):
    self._dates = dict(self._literal_dates())
    latest = max(self._dates.values(), default=None)
    if self._keyer is not None:  # one keyed shift for all the patient's dates
      self._shift = datetime.timedelta(days=-(KEYED_SHIFT_DAYS + self._keyer("date_shift") % (
          2 * KEYED_SHIFT_SPREAD_DAYS + 1) - KEYED_SHIFT_SPREAD_DAYS))
      self._base = latest + self._shift if latest else DATE_RANGE_END
      return
    span = (latest - min(self._dates.values())).days if latest else 0
    # The latest date lands in the range, never after it; so does the earliest unless the note
    # spans more than the range (a date of birth), which then lies before it.
    days = (DATE_RANGE_END - DATE_RANGE_START).days
    low = span if span <= days else 0
    end = DATE_RANGE_START + datetime.timedelta(days=self._random.randint(low, days))
    self._shift = end - latest if latest else datetime.timedelta(0)
    self._base = end  # the shifted latest date: labelled dates lie near it

  def _shifted(self, index):
    date = self._dates.get(index)
    return date + self._shift if date is not None else None

  def _nearby_date(self):
    return self._base - datetime.timedelta(days=self._random.randint(0, 2 * NEARBY_DAYS))

  def _format_date(self, date, form):
    return form.format(Y=date.year, yy="%02d" % (date.year % 100), m=date.month, d=date.day,
                       mm="%02d" % date.month, dd="%02d" % date.day,
                       Month=_MONTHS[date.month - 1], Mon=_MONTHS[date.month - 1][:3])

  def _date_value(self, index, category, form=None):
    # A year-only or month-year date stands for its middle (C3): the year printed is the year of
    # its shifted July 1 (month: 15th).
    date = self._shifted(index)
    if date is not None and form is not None:  # a span's date, printed in the form it was read in
      return date.strftime(form), date
    if date is None:
      date = self._nearby_date()
    if category == "date":
      return self._format_date(date, self._full), date
    if category == "month_day":
      return self._format_date(date, self._month_day), date
    if category == "month_year":
      return self._format_date(date, self._month_year), date
    if category == "year":
      return str(date.year), date
    if category == "two_digit_year":
      return "%02d" % (date.year % 100), date
    if category == "month":
      return (_MONTHS[date.month - 1] if self._english else "%02d" % date.month), date
    if category == "date_range":
      end = date + datetime.timedelta(days=self._random.randint(1, 14))
      return "%s - %s" % (self._format_date(date, self._full),
                          self._format_date(end, self._full)), date
    return self._random.choice(_HOLIDAYS), None  # holiday

  # -- C4: values that share nothing with the note.

  def _reuses_note(self, value):
    if self._words is None:
      pieces, last = [], 0
      for item in self._items:
        pieces.append(self._text[last:item.start])
        last = item.end
      outside = self._text if self._spans else " ".join(pieces + [self._text[last:]])
      self._originals = (set(item.inner.strip().lower() for item in self._items) if self._spans
                         else set())
      self._words = set(w.lower() for w in _WORD_RE.findall(outside)) - GENERIC_WORDS
      self._numbers = set(_NUMBER_RE.findall(outside))
    return (value.strip().lower() in self._originals
            or any(w.lower() in self._words for w in _WORD_RE.findall(value))
            or any(n in self._numbers for n in _NUMBER_RE.findall(value)))

  def _draw(self, produce, fallback="letters"):
    for _ in range(MAX_DRAWS):
      value = produce()
      if not self._reuses_note(value):
        return value
    while True:  # every realistic value collides with the note: random letters or digits
      value = (self._fake.lexify("?" * 7).capitalize() if fallback == "letters"
               else self._fake.numerify("%" + "#" * 7))
      if not self._reuses_note(value):
        return value

  def _call(self, *names):
    """The first of Faker's methods `names` this locale has, called."""
    for name in names:
      method = getattr(self._fake, name, None)
      if method is not None:
        return method()
    raise AttributeError("Faker locale lacks all of %s" % (names,))

  def _name_from(self, *attributes):
    for attribute in attributes:
      pool = self._pools.get(attribute)
      if pool is not None:
        return pool.draw(self._random)
    # No list in the provider: Faker's method (first_names_female -> first_name_female).
    return self._call(*(a.replace("names", "name") for a in attributes))

  # -- C2: persons.

  def _person(self, number, label):
    lower = label.lower()
    sex = "F" if "female" in lower else "M" if "male" in lower else None
    key = number or ""
    person = self._persons.get(key)
    if person is not None and sex is not None and person["sex"] != sex:
      key = (key, sex)
      person = self._persons.get(key)
    if person is None:
      self._reseed("person", key)
      person = self._persons[key] = {"sex": sex or self._random.choice("FM"), "key": key}
    return person

  def _person_part(self, person, part):
    if part not in person:
      self._reseed("person", person["key"], part)
      if part == "first":
        names = (("first_names_female",) if person["sex"] == "F" else ("first_names_male",))
        person[part] = self._draw(lambda: self._name_from(*(names + ("first_names",))))
      elif part == "last":
        person[part] = self._draw(lambda: self._name_from("last_names"))
      else:  # prefix
        person[part] = self._call("prefix_female" if person["sex"] == "F" else "prefix_male",
                                  "prefix")
    return person[part]

  def _name_value(self, category, label, number):
    person = self._person(number, label)
    if category == "first_name":
      return self._person_part(person, "first")
    if category == "last_name":
      return self._person_part(person, "last")
    if category == "full_name":
      return self._person_part(person, "first") + " " + self._person_part(person, "last")
    if category == "initials":
      return self._person_part(person, "first")[0] + "."
    return self._person_part(person, "prefix")

  # -- Everything else.

  def _last_name(self):
    return self._name_from("last_names")

  def _shape(self, inner):
    """A value of `inner`'s shape: each digit, lower- and upper-case ASCII letter redrawn."""
    random = self._random

    def redraw(match):
      c = match.group(0)
      if c.isdigit():
        return str(random.randint(0, 9))
      letter = chr(ord("a") + random.randrange(26))
      return letter.upper() if c.isupper() else letter

    return self._draw(lambda: re.sub(r"[0-9A-Za-z]", redraw, inner.strip()), fallback="digits")

  def _value(self, category, label, inner):
    fake = self._fake
    random = self._random
    if category == "hospital":
      stem = self._draw(lambda: random.choice((self._last_name, fake.city))())
      return "%s %s" % (stem, random.choice(_HOSPITAL_SUFFIXES))
    if category == "ward":
      return random.choice(_WARD_FORMS).format(name=self._draw(self._last_name),
                                               number=random.randint(1, 12))
    if category == "university":
      return random.choice(_UNIVERSITY_FORMS).format(
          city=self._draw(fake.city), name=self._draw(self._last_name),
          state=self._draw(lambda: self._call("state", "administrative_unit", "region", "city")))
    produce = {
        "profession": fake.job,
        "company": fake.company,
        "street_address": fake.street_address,
        "city": fake.city,
        "location": fake.city,
        "state": lambda: self._call("state", "administrative_unit", "region", "city"),
        "zip_code": lambda: self._call("zipcode", "postcode"),
        "state_zip": lambda: "%s %s" % (self._call("state_abbr", "state", "region", "city"),
                                        self._call("zipcode", "postcode")),
        "country": fake.country,
        "telephone": fake.phone_number,
        "pager": lambda: fake.numerify("%####"),
        "email": fake.email,
        "url": fake.url,
        "ip_address": fake.ipv4_public,
        "username": fake.user_name,
        "medical_record_number": lambda: fake.numerify("%#######"),
        "social_security_number": fake.ssn,
        "unit_number": lambda: fake.numerify("%######"),
        "serial_number": lambda: fake.numerify("%#######"),
        "job_number": lambda: fake.numerify("%####"),
        "provider_number": lambda: fake.numerify("%####"),
        "numeric_identifier": lambda: fake.numerify("%####"),
        "age_over_89": lambda: str(random.randint(90, 104)),
    }.get(category)
    if produce is not None:
      digits = category.endswith(("_number", "identifier")) or category == "pager"
      return self._draw(produce, fallback="digits" if digits else "letters")
    # Unrecognized: a generic value of the placeholder's shape.
    if inner.strip() and not re.search(r"[^\W\d_]", inner):
      return self._draw(lambda: re.sub(r"\d", lambda _: str(random.randint(0, 9)), inner.strip()),
                        fallback="digits")
    return self._draw(lambda: fake.word().capitalize())

  def render(self):
    parts = []
    replacements = []
    last = 0
    length = 0
    for index, item in enumerate(self._items):
      category, label, number, when = item.category, item.label, item.number, item.when
      before = self._text[last:item.start]
      parts.append(before)
      length += len(before)
      # C1: same category and number (numberless: same label) -> same value. Literal dates are
      # their own keys: their values come from the shift.
      key = (category, number if number is not None else label)
      date = original = None
      if item.form == "keep":  # an age up to 89 (a span's)
        value = item.inner
      elif category in DATE_CATEGORIES:
        if when is None:  # a labelled date: cached like any other placeholder
          if key not in self._cache:
            self._reseed(*key)
            self._cache[key] = self._date_value(index, category)
          value, date = self._cache[key]
        else:
          value, date = self._date_value(index, category, item.form)
          original = self._dates.get(index)
      elif category in NAME_CATEGORIES:
        value = self._name_value(category, label, number)
      else:
        if key not in self._cache:
          self._reseed(*key)
          self._cache[key] = (self._shape(item.inner) if item.form == "shape"
                              else self._value(category, label, item.inner))
        value = self._cache[key]
      parts.append(value)
      replacements.append(Replacement(length, length + len(value), category, label, original,
                                      date if when is not None else None))
      length += len(value)
      last = item.end
    parts.append(self._text[last:])
    return "".join(parts), replacements


def _valid_date(year, month, day):
  """datetime.date(year, month, day), Feb 29 of a common year as Feb 28, or None if invalid."""
  if year is None or not 1 <= year <= 9000:
    return None
  if month == 2 and day == 29:
    try:
      return datetime.date(year, 2, 29)
    except ValueError:
      return datetime.date(year, 2, 28)
  try:
    return datetime.date(year, month, day)
  except ValueError:
    return None


def counts_record(counter):
  """{category: count} in `CATEGORIES` order, categories with no placeholder left out."""
  return collections.OrderedDict((c, counter[c]) for c in CATEGORIES if counter.get(c))
