"""Replacing PHI spans in a note: a registry of operators, applied per note.

  anonymizer = anonymize.Anonymizer(anonymize.parse_operators("placeholder"))
  result = anonymizer.anonymize(text, spans, note_id)     # result.text, result.items

Operators: `placeholder` (MIMIC-III's `[**TYPE**]`), `tag` (`<TYPE>`), `mask` (the span's length of
`mask_char`) and `surrogate` (a realistic value, `surrogates.Surrogates`: consistent within the
note, seeded by the run's seed and the note's id). A new operator is one function and one registry
line. Items give each replacement's place in the output text (and in the input), never the text.
"""

import dataclasses

from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates as surrogates_lib


@dataclasses.dataclass
class Item:
  """One replacement: where it lies in the output text ([start, end)) and where it was."""
  start: int
  end: int
  label: str
  operator: str
  input_start: int
  input_end: int

  def to_json(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Result:
  """A de-identified note and its replacement items."""
  text: str
  items: list


def _placeholder(label, value, options):  # pylint: disable=unused-argument
  return "[**%s**]" % label  # MIMIC-III's de-identification brackets


def _tag(label, value, options):  # pylint: disable=unused-argument
  return "<%s>" % label


def _mask(label, value, options):
  return options.mask_char * len(value)


# name -> function(label, original text, anonymizer) -> replacement; `surrogate` works on the
# whole note (its values depend on the note's other PHI) and is applied by `Anonymizer`.
OPERATORS = {"placeholder": _placeholder, "tag": _tag, "mask": _mask, "surrogate": None}
OPERATOR_NAMES = tuple(OPERATORS)


def parse_operators(spec):
  """The operator of `spec` (one operator name). Raises InputError naming an unknown one."""
  if spec not in OPERATORS:
    raise fileio.InputError("--replace=%s: unknown operator (expected one of %s)" %
                            (spec, ", ".join(OPERATOR_NAMES)))
  return spec


class Anonymizer(object):
  """Applies operators to the PHI spans of notes."""

  def __init__(self, operators="placeholder", secret=None, random_seed=surrogates_lib.DEFAULT_SEED,
               locale=surrogates_lib.DEFAULT_LOCALE, mask_char="*"):
    if secret is not None:
      raise fileio.InputError("a secret needs the keyed operators, which this build lacks")
    self.operator = parse_operators(operators)
    self.mask_char = mask_char
    if self.operator == "mask" and len(mask_char) != 1:
      raise fileio.InputError("--mask_char=%r: expected one character" % mask_char)
    self.surrogates = None
    if self.operator == "surrogate":
      surrogates_lib.check_locale(locale)
      self.surrogates = surrogates_lib.Surrogates(locale=locale, random_seed=random_seed)

  def anonymize(self, text, spans, note_id, patient=None):  # pylint: disable=unused-argument
    """The note with every span (disjoint; objects with start, end, label) replaced."""
    spans = sorted(spans, key=lambda s: s.start)
    if self.surrogates is not None:
      new_text, _ = self.surrogates.replace_spans(text, [(s.start, s.end, s.label) for s in spans],
                                                  note_id)
      return Result(new_text, [])
    parts, items = [], []
    last = 0
    length = 0
    for s in spans:
      parts.append(text[last:s.start])
      length += s.start - last
      value = OPERATORS[self.operator](s.label, text[s.start:s.end], self)
      parts.append(value)
      items.append(Item(length, length + len(value), s.label, self.operator, s.start, s.end))
      length += len(value)
      last = s.end
    parts.append(text[last:])
    return Result("".join(parts), items)
