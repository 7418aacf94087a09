"""Dates inside PHI spans: found in their many forms, shifted by days, printed in the same form.

Forms read (case-insensitive; `/`, `-` or `.` as separators, the same one twice):
  * full dates: `2019-03-04`, `3/4/2019`, `03-04-19`, `March 4, 2019`, `Mar. 4th 2019`,
    `4 March 2019`, `4th of March, 2019`;
  * partial dates: `3/4`, `March 4` (month-day: read in the year of the note's latest full date
    before it, else 2000), `3/2019`, `10-/2101` (MIMIC's), `2019-03`, `March 2019` (month-year: its 15th),
    `2019` (a year alone: its July 1), `March` (a month alone: its 15th);
  * weekdays: `Monday`, `Mon.`, `TUES`.
A shift of d days moves each date by d and prints it as it was written: the same separators,
zero padding, month names (full, abbreviated, with a dot, in the same case), ordinal suffixes
(recomputed) and two- or four-digit years. Partial dates move their middle day: a year alone
changes when the shift carries July 1 into another year and keeps its value otherwise (years are
not identifying under Safe Harbor); a month alone or a month-year moves at least one month, in the
shift's direction, since a month is an element of a date. A weekday
moves by d mod 7 days: next to a date it becomes that date's new weekday (adjusted, not removed);
the anonymizer's offsets are never a whole number of weeks, so every weekday changes.
"""

import datetime
import re

_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MON = (r"(?P<month_name>(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
        r"aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?)")
_DAY = r"(?P<day>[0-3]?\d)(?P<ord>st|nd|rd|th)?"
_YEAR4 = r"(?P<year>(?:1[6-9]|2\d)\d\d)"
_YEAR = r"(?:(?P<year>(?:1[6-9]|2\d)\d\d)|'?(?P<year2>\d\d))"
_WEEKDAY = (r"(?P<weekday>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|"
            r"fri(?:day)?|sat(?:urday)?|sun(?:day)?)\.?")
_B, _E = r"(?<![\w/.-])", r"(?![\w]|[/-]\d)"

# (kind, pattern) tried at each position in this order; the longest match wins.
PATTERNS = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in (
    ("full", _B + r"(?P<year>\d{4})(?P<sep>[-/.])(?P<month>[01]?\d)(?P=sep)(?P<day>[0-3]?\d)" + _E),
    ("full", _B + r"(?P<month>[01]?\d)(?P<sep>[-/.])(?P<day>[0-3]?\d)(?P=sep)"
     r"(?:(?P<year>\d{4})|(?P<year2>\d\d))" + _E),
    ("full", r"\b" + _MON + r"\s+" + _DAY + r",?\s+" + _YEAR + r"\b"),
    ("full", r"\b" + _DAY + r"(?:\s+of)?\s+" + _MON + r",?\s+" + _YEAR4 + r"\b"),
    ("month_year", r"\b" + _MON + r",?\s+" + _YEAR4 + r"\b"),
    ("month_day", r"\b" + _MON + r"\s+" + _DAY + r"\b"),
    ("month_day", r"\b" + _DAY + r"(?:\s+of)?\s+" + _MON + r"(?![\w])"),
    ("month_year", _B + r"(?P<month>[01]?\d)(?:/|-/?)" + _YEAR4 + _E),
    ("month_year", _B + _YEAR4 + r"-(?P<month>[01]\d)" + _E),
    ("month_day", _B + r"(?P<month>[01]?\d)(?P<sep>[-/])(?P<day>[0-3]?\d)" + _E),
    ("year", _B + _YEAR4 + _E),
    ("weekday", r"\b" + _WEEKDAY + r"(?![\w])"),
    ("month", r"\b" + _MON + r"(?![\w])"),
))


class Piece(object):
  """One date found in a text: where, its kind, the date it stands for, its match."""

  def __init__(self, kind, match, date, weekday):
    self.kind = kind
    self.match = match
    self.start, self.end = match.span()
    self.date = date  # datetime.date (partial dates: their middle) or None (a weekday)
    self.weekday = weekday  # 0 = Monday, for a weekday piece


def _month_of(name):
  bare = name.rstrip(".").lower()
  for i, full in enumerate(_MONTH_NAMES):
    if full.startswith(bare[:3]):
      return i + 1
  return None


def _year_of(match):
  groups = match.groupdict()
  if groups.get("year"):
    return int(groups["year"])
  if groups.get("year2"):
    yy = int(groups["year2"])
    return 2000 + yy if yy < 50 else 1900 + yy
  return None


def _valid(year, month, day):
  try:
    return datetime.date(year, month, day)
  except ValueError:
    return None


def _piece(kind, match, context_year):
  groups = match.groupdict()
  if kind == "weekday":
    word = groups["weekday"].lower()
    return Piece(kind, match, None,
                 next(i for i, w in enumerate(_WEEKDAYS) if w.startswith(word[:3])))
  month = int(groups["month"]) if groups.get("month") else (
      _month_of(groups["month_name"]) if groups.get("month_name") else None)
  day = int(groups["day"]) if groups.get("day") else None
  year = _year_of(match)
  if kind == "full":
    date = _valid(year, month, day)
  elif kind == "month_day":
    date = _valid(context_year or 2000, month, day) or _valid(2000, month, day)
  elif kind == "month_year":
    date = _valid(year, month, 15)
  elif kind == "year":
    date = _valid(year, 7, 1)
  else:  # month
    date = _valid(2001, month, 15) if month else None
  return Piece(kind, match, date, None) if date else None


def find(text, context_year=None):
  """[Piece] of the dates in `text`, left to right, not overlapping (the longest at a position)."""
  candidates = []
  for kind, pattern in PATTERNS:
    for match in pattern.finditer(text):
      candidates.append((match.start(), -(match.end() - match.start()), kind, match))
  candidates.sort(key=lambda c: (c[0], c[1]))
  pieces, end = [], 0
  for start, _, kind, match in candidates:
    if start < end:
      continue
    piece = _piece(kind, match, context_year)
    if piece is not None:
      pieces.append(piece)
      end = piece.end
      if kind == "full":
        context_year = piece.date.year
  return pieces


def _case_like(original, new):
  if original.isupper() and len(original) > 1:
    return new.upper()
  if original.islower():
    return new.lower()
  return new[0].upper() + new[1:]


def _name_like(original, full_names, index):
  """`full_names[index]` written as `original` was: in full or as three letters, dot, case."""
  bare = original.rstrip(".")
  written_in_full = bare.lower() in full_names
  name = full_names[index] if written_in_full else full_names[index][:3]
  return _case_like(bare, name) + original[len(bare):]


def _ordinal(day):
  if 10 <= day % 100 <= 20:
    return "th"
  return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def render(piece, new_date=None, new_weekday=None):
  """The piece's text with its date replaced by `new_date` (or its weekday by `new_weekday`)."""
  match = piece.match
  text = match.group(0)
  base = match.start()
  groups = match.groupdict()
  numeric = [groups.get(g) for g in ("month", "day") if groups.get(g)]
  # Zero padding as written: ISO dates always; others when a month or day shows a leading zero
  # (`11/20/2019` says nothing either way and is printed unpadded).
  year_first = groups.get("year") is not None and match.start("year") == base and groups.get(
      "month") is not None
  pad = year_first or any(len(v) == 2 and v.startswith("0") for v in numeric)
  replacements = []
  for name in ("year", "year2", "month", "month_name", "day", "ord", "weekday"):
    value = groups.get(name)
    if value is None:
      continue
    if name == "weekday":
      new = _name_like(match.group(0)[:match.end("weekday") - base], _WEEKDAYS, new_weekday)
      replacements.append((match.start(name), match.end(0), new))
      continue
    if name == "year":
      new = "%04d" % new_date.year
    elif name == "year2":
      new = "%02d" % (new_date.year % 100)
    elif name == "month":
      new = ("%02d" if pad else "%d") % new_date.month
    elif name == "month_name":
      new = _name_like(value, _MONTH_NAMES, new_date.month - 1)
    elif name == "day":
      new = ("%02d" if pad else "%d") % new_date.day
    else:  # ord
      new = _case_like(value, _ordinal(new_date.day))
    replacements.append((match.start(name), match.end(name), new))
  replacements.sort()
  out, last = [], base
  for start, end, new in replacements:
    out.append(match.string[last:start])
    out.append(new)
    last = end
  out.append(match.string[last:match.end(0)])
  return "".join(out)


def _next_month(date, step):
  """The 15th of the month `step` (+-1) months after `date`'s."""
  month = date.month - 1 + step
  return datetime.date(date.year + month // 12, month % 12 + 1, 15)


# What may stand between and around the dates of a span that is shifted: whitespace, punctuation
# and joining words. Anything else (a number, a name) is kept by a shift, so such a span is not
# shifted at all (the caller writes its placeholder): a model's DATE span that also covers a phone
# number must not release the number.
_JOINING = re.compile(
    r"(?:[^\w]|_|\b(?:to|through|thru|and|or|of|on|the|from|until|till|til|between|at|in|since|"
    r"by|before|after|around|about|approx|approximately|circa|dated?)\b)*", re.I)


def only_dates(text, pieces):
  """True when `text` holds nothing but `pieces` (its dates), punctuation and joining words."""
  last = 0
  for piece in list(pieces) + [None]:
    gap = text[last:piece.start] if piece is not None else text[last:]
    if _JOINING.fullmatch(gap) is None:
      return False
    if piece is not None:
      last = piece.end
  return True


def shift(text, days, context_year=None):
  """`text` with every date in it moved by `days`.

  Returns None when there is no date, a date out of range, or anything but dates, punctuation and
  joining words in `text` (which a shift would keep: see `only_dates`).
  """
  pieces = find(text, context_year)
  if not pieces or not only_dates(text, pieces):
    return None
  out, last = [], 0
  for piece in pieces:
    out.append(text[last:piece.start])
    if piece.kind == "weekday":
      out.append(render(piece, new_weekday=(piece.weekday + days) % 7))
    else:
      try:
        new_date = piece.date + datetime.timedelta(days=days)
      except OverflowError:
        return None
      if not 1000 <= new_date.year <= 9999:
        return None
      if piece.kind in ("month", "month_year") and days and (
          new_date.year, new_date.month) == (piece.date.year, piece.date.month):
        new_date = _next_month(piece.date, 1 if days > 0 else -1)
      out.append(render(piece, new_date))
    last = piece.end
  out.append(text[last:])
  return "".join(out)


def first_year(text, context_year=None):
  """The year of the first date in `text` with one (as written: 4 digits), or None."""
  for piece in find(text, context_year):
    if piece.kind in ("full", "month_year", "year"):
      return "%04d" % piece.date.year
  return None


def latest_full_year(text, context_year=None):
  """The year of the last full date in `text` (a month-day date after it is read in that year)."""
  years = [p.date.year for p in find(text, context_year) if p.kind == "full"]
  return years[-1] if years else context_year
