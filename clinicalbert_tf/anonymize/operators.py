"""Replacement operators: what a PHI span becomes, one function and one registry line each.

  placeholder  `[**TYPE**]`, MIMIC-III's brackets (the default)
  tag          `<TYPE>`
  mask         the span's length of the mask character
  redact       nothing (the span is removed)
  keep         the span as it is (still listed in the items)
  surrogate    a realistic value: without a secret the note's seeded surrogates
               (`surrogates.Surrogates.replace_spans`); with one, keyed per patient (names, shifted
               dates, shape-keeping numbers, ...: `anonymizer.py`)
  shift        dates moved by the patient's offset, in their own format (dates only)
  hash         `TYPE_3f2a9c`: a stable keyed pseudonym of the normalised value
  safe_harbor  HIPAA Safe Harbor generalisation (`safe_harbor.py`)

`parse_operators("DATE:shift,IDNUM:mask,default:surrogate")` (or one operator name) and
`load_operators_file(path)` (a JSON object label -> operator) give an `Operators`; a label left out
gets `default`, itself `placeholder` unless given.
"""

import collections
import json

from clinicalbert_tf import fileio
from clinicalbert_tf.anonymize import labels as labels_lib


def placeholder(note, span):
  return "[**%s**]" % span.label  # MIMIC-III's de-identification brackets


def tag(note, span):
  return "<%s>" % span.label


def mask(note, span):
  return note.mask_char * (span.end - span.start)


def redact(note, span):
  return ""


def keep(note, span):
  return note.text[span.start:span.end]


def surrogate(note, span):
  return note.surrogate(span)


def shift(note, span):
  return note.shift(span)


def hash_(note, span):
  return note.hash(span)


def safe_harbor(note, span):
  return note.safe_harbor(span)


OPERATORS = collections.OrderedDict([
    ("placeholder", placeholder),
    ("tag", tag),
    ("mask", mask),
    ("redact", redact),
    ("keep", keep),
    ("surrogate", surrogate),
    ("shift", shift),
    ("hash", hash_),
    ("safe_harbor", safe_harbor),
])
OPERATOR_NAMES = tuple(OPERATORS)
# Operators that apply to some label families only.
ONLY_FOR = {"shift": ("date",)}
DEFAULT = "default"
ANY_LABEL = "*"
DEFAULT_OPERATOR = "placeholder"


class Operators(object):
  """The operator of each label (upper case), and the default for the others."""

  def __init__(self, by_label, default=DEFAULT_OPERATOR):
    self.by_label = collections.OrderedDict((k.upper(), v) for k, v in by_label.items())
    self.default = default

  def of(self, label):
    return self.by_label.get(label.upper(), self.default)

  def names(self):
    return set(self.by_label.values()) | {self.default}

  def single(self):
    """The one operator every label gets, or None."""
    return self.default if not self.by_label or set(self.by_label.values()) == {
        self.default} else None

  def to_json(self):
    record = collections.OrderedDict(self.by_label)
    record[DEFAULT] = self.default
    return record

  def __eq__(self, other):
    return isinstance(other, Operators) and self.to_json() == other.to_json()

  def __repr__(self):
    return "Operators(%s)" % ",".join("%s:%s" % kv for kv in self.to_json().items())


def _check(pairs, where, labels):
  # labels == ANY_LABEL: any label may be named (checked again once a model says which it has).
  known = None if labels == ANY_LABEL else (
      labels_lib.KNOWN_LABELS | frozenset(l.upper() for l in (labels or ())))
  by_label = collections.OrderedDict()
  default = DEFAULT_OPERATOR
  for label, operator in pairs:
    if operator not in OPERATORS:
      raise fileio.InputError("%s: unknown operator %r%s; expected one of %s" % (
          where, operator, " for %s" % label if label != DEFAULT else "", ", ".join(OPERATORS)))
    if label.lower() == DEFAULT:
      default = operator
      if operator in ONLY_FOR:
        raise fileio.InputError("%s: %s applies to %s labels only, not as the default" % (
            where, operator, "/".join(ONLY_FOR[operator])))
      continue
    upper = label.upper()
    if known is not None and upper not in known:
      raise fileio.InputError("%s: unknown label %r; expected default or one of %s" % (
          where, label, ", ".join(sorted(known))))
    if upper in by_label:
      raise fileio.InputError("%s: label %s is given twice" % (where, upper))
    if operator in ONLY_FOR and labels_lib.family(upper) not in ONLY_FOR[operator]:
      raise fileio.InputError("%s: %s applies to %s labels only, not %s" % (
          where, operator, "/".join(ONLY_FOR[operator]), upper))
    by_label[upper] = operator
  return Operators(by_label, default)


def parse_operators(spec, labels=None, flag="--replace"):
  """An `Operators` from one operator name or `LABEL:op,...,default:op`.

  Args:
    spec: the flag's value.
    labels: labels beyond the known PHI labels (a model's own) that the spec may name, or
      ANY_LABEL to allow any (before a model is loaded).
    flag: the flag named in errors.

  Raises:
    fileio.InputError: one line naming an unknown operator or label.
  """
  if isinstance(spec, Operators):
    return spec
  where = "%s=%s" % (flag, spec)
  items = [item.strip() for item in (spec or "").split(",") if item.strip()]
  if not items:
    raise fileio.InputError("%s: expected an operator (%s) or LABEL:operator pairs" % (
        where, ", ".join(OPERATORS)))
  pairs = []
  for item in items:
    if ":" in item:
      label, operator = (part.strip() for part in item.split(":", 1))
    elif len(items) == 1:
      label, operator = DEFAULT, item
    else:
      raise fileio.InputError("%s: %r is not LABEL:operator" % (where, item))
    pairs.append((label, operator))
  return _check(pairs, where, labels)


def load_operators_file(path, labels=None):
  """An `Operators` from a JSON object {label: operator, "default": operator} in `path`."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except OSError as e:
    raise fileio.InputError("--operators_file=%s: cannot be read (%s)" % (
        path, e.strerror or type(e).__name__)) from None
  except (ValueError, UnicodeDecodeError) as e:
    raise fileio.InputError("--operators_file=%s: not JSON (%s)" % (
        path, getattr(e, "msg", type(e).__name__))) from None
  if not isinstance(record, dict) or not all(
      isinstance(k, str) and isinstance(v, str) for k, v in record.items()):
    raise fileio.InputError("--operators_file=%s: expected a JSON object of label -> operator "
                            "names" % path)
  return _check(list(record.items()), "--operators_file=%s" % path, labels)
