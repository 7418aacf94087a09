"""An invented de-identification set in the i2b2 2014 XML format, made from surrogates.

Templated clinical sentences (one a line) hold MIMIC-style placeholders
(`[**Known lastname 1**]`, `[**2101-10-20**]`, ...); `surrogates.Surrogates` replaces them, as
`format_notes.py --phi=surrogate` does, and each surrogate becomes a gold PHI span with its i2b2
2014 TYPE (PATIENT, DOCTOR, HOSPITAL, DATE, PHONE, ...), at its character offsets in the note.
Notes are written as `<output_dir>/{train,dev,test}/<patient>-01.xml`, the layout
`tasks/i2b2_2014.py` reads. Everything is invented and made from a seed (the same seed, the same
bytes); nothing is real data.
"""

import os
import random as random_lib

from clinicalbert_tf import fileio
from clinicalbert_tf.inference import outputs
from clinicalbert_tf.inference import text as text_lib
from clinicalbert_tf import surrogates as surrogates_lib

DEFAULT_SEED = 2014
# Notes per split (65 notes of 9 sentences: the header's two lines, 5 with PHI, 2 without).
SPLITS = (("train", 40), ("dev", 10), ("test", 15))
_PHI_PER_NOTE = 5
_PLAIN_PER_NOTE = 2
SENTENCES_PER_NOTE = 2 + _PHI_PER_NOTE + _PLAIN_PER_NOTE

# The i2b2 2014 TYPE of a surrogate, by its category; names by who they name (the label's words).
_TYPES = {
    "profession": "PROFESSION", "hospital": "HOSPITAL", "ward": "DEPARTMENT",
    "company": "ORGANIZATION", "university": "ORGANIZATION", "street_address": "STREET",
    "city": "CITY", "location": "CITY", "state": "STATE", "zip_code": "ZIP", "country": "COUNTRY",
    "telephone": "PHONE", "pager": "PHONE", "email": "EMAIL", "url": "URL",
    "medical_record_number": "MEDICALRECORD", "social_security_number": "SSN",
    "unit_number": "IDNUM", "serial_number": "DEVICE", "job_number": "IDNUM",
    "provider_number": "IDNUM", "numeric_identifier": "IDNUM", "age_over_89": "AGE",
    "state_zip": "LOCATION-OTHER", "username": "USERNAME", "ip_address": "IPADDR",
}

# Every note opens with these lines.
_HEADER = ("Record date: [**2101-10-20**]\n"
           "Name: [**Known firstname 1**] [**Known lastname 1**]    MRN: "
           "[**Medical Record Number 7**]\n\n")
# Sentences with PHI; a note takes several in random order, plus some without PHI.
_PHI_SENTENCES = (
    "[**Known firstname 1**] [**Known lastname 1**] is a [**Age over 90 5**] year old retired "
    "[**Profession 9**] admitted to [**Hospital1 18**] on [**2101-10-20**].",
    "The patient was seen by Dr. [**Doctor First Name 2**] [**Doctor Last Name 2**] on the "
    "[**Hospital Ward Name 4**] service.",
    "Dr. [**Doctor Last Name 3**] of [**Company 6**] reviewed the films on [**2101-10-21**].",
    "The patient lives at [**Street Address(1) 8**], [**City 10**], [**State 11**] "
    "[**Zip code 12**].",
    "The daughter can be reached at [**Telephone/Fax (1) 13**].",
    "Records were faxed to [**Telephone/Fax (2) 14**] and sent to [**E-mail address 15**].",
    "Follow up with Dr. [**Doctor Last Name 2**] in clinic on [**2101-11-3**].",
    "The patient moved here from [**Country 16**] in [**2085**].",
    "The son teaches at [**University/College 17**].",
    "SSN [**Social Security Number 19**], account [**Numeric Identifier 20**].",
    "Pacemaker serial number [**Serial Number 21**] was interrogated on [**10-22**].",
    "Family visited over [**Holiday 22**] and brought the home medications.",
    "For questions page [**Pager number 23**] or see [**URL 24**].",
    "Unit number [**Unit Number 25**], dictated as job [**Job Number 26**].",
    "[**Known firstname 1**] was transferred from [**Hospital3 27**] on [**2101-10-19**].",
    "Dr. [**Doctor First Name 3**] [**Doctor Last Name 3**] was called at "
    "[**Telephone/Fax (1) 28**].",
    "Discharged to [**Hospital1 29**] rehab on [**2101-10-25**] with Dr. "
    "[**Doctor Last Name 2**] following.",
    "Signed by [**Name (NI) 30**] ([**Initials (NamePattern4) 30**]), MD number "
    "[**MD Number(1) 31**].",
    "[**Name Prefix (Prefixes) 1**] [**Known lastname 1**] gives a mailing address in "
    "[**Location (un) 33**], [**State/Zipcode 32**].",
    "The last admission was in [**Month (only) 34**] [**2099**], before that [**11-/2098**].",
    "Symptoms began in [**Month/Year 35**] and recurred [**Date range (1) 36**].",
    "Diabetes was diagnosed in '[**Year (2 digits) 37**].",
    "Portal messages come from user [**Username 38**] at [**IP Address 39**].",
)
_PLAIN_SENTENCES = (
    "Blood pressure was 128/76 and heart rate 72.",
    "Chest x-ray showed no infiltrate.",
    "The patient denies chest pain or shortness of breath.",
    "Continue aspirin 81 mg daily and metoprolol 25 mg twice daily.",
    "Plan to discharge home with services.",
    "Labs were notable for a creatinine of 1.4.",
    "Physical therapy evaluated the gait.",
    "No fever overnight; cultures pending.",
)


def i2b2_type(replacement):
  """The i2b2 2014 TYPE of one `surrogates.Replacement` (None: not PHI, such as `Dr.`)."""
  category = replacement.category
  if category in surrogates_lib.NAME_CATEGORIES:
    if category == "name_prefix":
      return None
    return "PATIENT" if "known" in replacement.label.lower() else "DOCTOR"
  if category in surrogates_lib.DATE_CATEGORIES:
    return "DATE"
  if category == "telephone" and "(2)" in replacement.label:
    return "FAX"
  return _TYPES.get(category)


def make_note(surrogates, note_key, rng):
  """(text, [text_lib.Span]) of one invented note."""
  sentences = (rng.sample(_PHI_SENTENCES, _PHI_PER_NOTE)
               + rng.sample(_PLAIN_SENTENCES, _PLAIN_PER_NOTE))
  rng.shuffle(sentences)
  template = _HEADER + "".join(s + "\n" for s in sentences)  # one sentence a line, as the reader
  text, replacements = surrogates.replace_with_spans(template, note_key)
  spans = []
  for r in replacements:
    label = i2b2_type(r)
    if label is not None:
      spans.append(text_lib.Span(r.start, r.end, label, 1.0))
  return text, spans


def write_dataset(output_dir, seed=DEFAULT_SEED, locale=surrogates_lib.DEFAULT_LOCALE,
                  splits=SPLITS):
  """Writes the invented set under `output_dir`; returns {split: (notes, sentences, spans)}.

  Args:
    output_dir: gets `train/`, `dev/` and `test/`, one `<patient>-01.xml` per note.
    seed: decides the sentences and the surrogates (the same seed, the same files).
    locale: the Faker locale of the surrogates.
    splits: (split, number of notes) pairs.
  """
  surrogates = surrogates_lib.Surrogates(locale=locale, random_seed=seed)
  rng = random_lib.Random(seed)
  counts = {}
  patient = 100
  for split, num_notes in splits:
    directory = os.path.join(output_dir, split)
    os.makedirs(directory, exist_ok=True)
    num_spans = 0
    for _ in range(num_notes):
      text, spans = make_note(surrogates, patient, rng)
      path = os.path.join(directory, "%d-01.xml" % patient)
      with fileio.atomic_open(path, "w", encoding="utf-8") as f:
        f.write(outputs.format_i2b2_2014(text, spans))
      num_spans += len(spans)
      patient += 1
    counts[split] = (num_notes, num_notes * SENTENCES_PER_NOTE, num_spans)
  return counts
