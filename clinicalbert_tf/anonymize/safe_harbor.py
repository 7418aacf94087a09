"""HIPAA Safe Harbor generalisation (45 CFR 164.514(b)(2)) of ages, dates and ZIP codes.

  * Ages over 89 become `90+` (the rule's single category "90 or older"); ages up to 89 stay.
  * Dates keep their year only: a span becomes the year of its first date that has one (4 digits),
    or `[**DATE**]` when none has (a weekday or a month-day date alone).
  * ZIP codes keep their first three digits, or become `000` when the three-digit area has 20,000
    people or fewer: the 17 areas of `RESTRICTED_ZIP3` (HHS guidance, 2000 Census).
  * States and countries stay (the rule removes only subdivisions smaller than a state).
  * Every other PHI label is removed to its placeholder `[**TYPE**]`.
Safe Harbor also requires that the releasing party has no actual knowledge that the rest could
identify someone; no program can check that (README, "Releasing a de-identified corpus").
"""

import re

from clinicalbert_tf.anonymize import dates as dates_lib

# Three-digit ZIP areas of 20,000 people or fewer (HHS de-identification guidance, 2000 Census).
RESTRICTED_ZIP3 = frozenset(("036", "059", "063", "102", "203", "556", "692", "790", "821", "823",
                             "830", "831", "878", "879", "884", "890", "893"))
OVER_89 = "90+"
_NUMBER_RE = re.compile(r"\d+")
_ZIP_RE = re.compile(r"(?<!\d)(\d{5})(?:-\d{4})?(?!\d)")


def age(text):
  """`text` with an age over 89 replaced by `90+` (None: no number in it)."""
  match = _NUMBER_RE.search(text)
  if match is None:
    return None
  if int(match.group(0)) <= 89:
    return text
  return text[:match.start()] + OVER_89 + text[match.end():]


def date(text, context_year=None):
  """The year of the first date in `text` that has one (None: none has)."""
  return dates_lib.first_year(text, context_year)


def zip_code(text):
  """The first three digits of the ZIP code in `text`, `000` for a restricted area (None: none)."""
  match = _ZIP_RE.search(text)
  if match is None:
    return None
  prefix = match.group(1)[:3]
  return "000" if prefix in RESTRICTED_ZIP3 else prefix
