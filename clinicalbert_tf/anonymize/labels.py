"""PHI labels and the family each belongs to (what a keyed surrogate, hash or Safe Harbor does).

The labels are the i2b2 2006/2014 ones the surrogates know (`surrogates.SPAN_LABELS`), the 2014
XML tags (NAME, LOCATION, CONTACT, ID, ...) that coarse models predict, and the pattern
recognizers' labels. A model with other labels names them to the Anonymizer (`labels=`).
"""

from clinicalbert_tf import surrogates as surrogates_lib

# Families: name, date, age, zip, digits (phone-like: digits change, letters stay), email, url,
# shape (IDs: digits and letters change), value (a realistic value of the label's category).
_FAMILIES = {
    "PATIENT": "name", "DOCTOR": "name", "NAME": "name",
    "DATE": "date", "AGE": "age", "ZIP": "zip",
    "PHONE": "digits", "FAX": "digits", "SSN": "digits", "IPADDR": "digits",
    "EMAIL": "email", "URL": "url",
    "CONTACT": "shape", "ID": "shape", "PHI": "shape", "USERNAME": "shape",
}
# The coarse i2b2 2014 tags models trained on them predict.
COARSE_TAGS = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID", "PHI")
KNOWN_LABELS = frozenset(surrogates_lib.SPAN_LABELS) | frozenset(COARSE_TAGS) | frozenset(
    _FAMILIES)
# Safe Harbor allows states and countries (only subdivisions smaller than a state are identifiers).
SAFE_HARBOR_KEPT = frozenset(("STATE", "COUNTRY"))


def family(label):
  """The family of `label` (upper-cased): see `_FAMILIES`; other i2b2 labels with a category of
  realistic values (HOSPITAL, CITY, ...) are `value`; IDs and unknown labels `shape`."""
  label = label.upper()
  if label in _FAMILIES:
    return _FAMILIES[label]
  kind = surrogates_lib.SPAN_LABELS.get(label)
  if kind is None or isinstance(kind, tuple):
    return "shape"
  return "value"
