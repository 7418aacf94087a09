"""Shape-keeping surrogates: each digit stays a digit, each letter a letter, separators stay.

Phone and fax numbers, SSNs, ZIP codes and IP addresses change their digits only (an extension's
`x` stays); IDs (medical record, account, device, ...) and user names change digits and letters;
e-mail addresses and URLs change digits and letters too but keep their structure words: the
scheme (`https://`), `www.`, `mailto:` and the top-level domain (`.com`, `.org`), which identify
no one. A value maps through the keyed cycle (`keyed.KeyedCycle`) of its patient and shape, so
two values of one shape never get the same surrogate and no value gets itself.
"""

import re

_DIGIT, _LOWER, _UPPER = "9", "a", "A"
_KEEP_URL_RE = re.compile(r"(?i)^(?:[a-z][a-z0-9+.-]*://|mailto:)|(?<![^/.:@])www\.")
_TLD_RE = re.compile(r"\.[A-Za-z]{2,6}(?=$|[/:?#])")


def _kept_positions(value, structure):
  """Indices of letters that carry no identity: scheme, `www.` and top-level domains."""
  kept = set()
  if structure in ("email", "url"):
    for match in _KEEP_URL_RE.finditer(value):
      kept.update(range(match.start(), match.end()))
    host_end = len(value)
    if structure == "url":
      after_scheme = value.find("://")
      slash = value.find("/", after_scheme + 3 if after_scheme >= 0 else 0)
      host_end = slash if slash >= 0 else len(value)
    tlds = [m for m in _TLD_RE.finditer(value[:host_end] if structure == "url" else value)]
    if tlds:
      kept.update(range(tlds[-1].start(), tlds[-1].end()))
  return kept


def signature(value, letters=True, structure=None):
  """The shape of `value`: `9` per variable digit, `a`/`A` per variable letter, the rest as is."""
  kept = _kept_positions(value, structure)
  out = []
  for i, c in enumerate(value):
    if i in kept:
      out.append(c)
    elif "0" <= c <= "9":
      out.append(_DIGIT)
    elif letters and "a" <= c <= "z":
      out.append(_LOWER)
    elif letters and "A" <= c <= "Z":
      out.append(_UPPER)
    else:
      out.append(c)
  return "".join(out)


def shape_surrogate(keyed, patient, kind, value, steps=1, letters=True, structure=None):
  """`value` moved `steps` along its patient's keyed cycle of its shape (None: nothing to vary).

  Args:
    keyed: a `keyed.Keyed`.
    patient, kind: the cycle's keys (the kind is a label family such as `ID` or `PHONE`).
    value: the original text.
    steps: 1 for the surrogate; more for the next candidates when one clashes with the note.
    letters: vary ASCII letters too (not for phone numbers, whose `x` marks an extension).
    structure: None, `email` or `url` (keeps scheme, `www.` and top-level domain).
  """
  shape = signature(value, letters, structure)
  radices = [10 if s == _DIGIT else 26 for s in shape if s in (_DIGIT, _LOWER, _UPPER)]
  n = 1
  for r in radices:
    n *= r
  if n <= 1:
    return None
  number = 0
  for c, s in zip(value, shape):
    if s == _DIGIT:
      number = number * 10 + ord(c) - ord("0")
    elif s in (_LOWER, _UPPER):
      number = number * 26 + ord(c.lower()) - ord("a")
  moved = keyed.cycle(patient, "%s|%s" % (kind, shape), n).successor(number, steps)
  digits = []
  for r in reversed(radices):
    moved, d = divmod(moved, r)
    digits.append(d)
  digits.reverse()
  out = []
  it = iter(digits)
  for c, s in zip(value, shape):
    if s == _DIGIT:
      out.append(chr(ord("0") + next(it)))
    elif s == _LOWER:
      out.append(chr(ord("a") + next(it)))
    elif s == _UPPER:
      out.append(chr(ord("A") + next(it)))
    else:
      out.append(c)
  return "".join(out)
