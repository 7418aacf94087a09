"""Pattern recognizers: structured PHI found by rules, beside (or without) the model.

A safety net under the model (a model that predicts nothing must not leave every date in place):
each recognizer is one function text -> [(start, end, label)] and one registry line. Labels are
the i2b2 2014 TYPEs, so operators and scores treat them like the model's.

  date           full dates (`3/4/2019`, `2019-03-04`, `March 4, 2019`, `4 Mar 2019`), month-year
                 (`March 2019`, `2019-03`), written month-day (`March 4`), numeric month-day,
                 months and years after a cue (`on 3/4`, `in March`, `in 2019`, `in '19`),
                 holidays (`Christmas Eve`), a weekday right before (`Monday, 3/4/2019`: one span)
                 or after (`3/4/2019 (Mon)`: its own span); two dates joined by `-`/`to`/
                 `through` are one span (a range)
  phone          North American numbers (`(617) 555-1234`, `617.555.1234`, `+1-617-555-1234x12`,
                 `001-617-555-1234`; ten bare digits after `phone`/`call`/`fax`/...); FAX when
                 `fax` is among the 25 characters before (after any earlier number); pager
                 numbers after `page`/`pager`/`beeper`
  email, url, ip e-mail addresses; `http(s)://` and `www.` addresses; dotted IPv4 addresses
  ssn            `123-45-6789`
  id             numbers after their cue words: MEDICALRECORD after `MRN`, `MR#`, `medical record
                 (number)`; DEVICE after `serial (number)`; IDNUM after `account`, `acct`, `ID`,
                 `unit number`, `job`, `MD number`, `member`, `policy`, `license`, `record #`
  zip            5-digit ZIP codes (and ZIP+4) after a US state (name or code) or `ZIP`
  age            ages over 89 (`92 year old`, `92-year-old`, `92 y/o`, `aged 92`, `age: 101`)

Merging with the model's spans: `spans.merge(model_spans, pattern_spans)`: overlapping spans
become one over their union, labelled as the model labelled it.
"""

import collections
import re

from clinicalbert_tf.anonymize import dates as dates_lib
from clinicalbert_tf.anonymize import spans as spans_lib

_STATES = ("Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|"
           "Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|"
           "Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|"
           "New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|"
           "Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|"
           "Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming|District of Columbia")
_STATE_CODES = ("AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|"
                "NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC|PR|AA|AE|"
                "AP|AS|GU|MP|VI|FM|MH|PW")

# The date forms of `dates.py` safe to take without a cue: full dates, month-year, written
# month-day (numeric month-day and years alone need a cue word before them).
_DATE_FORMS = tuple(p for k, p in dates_lib.PATTERNS if k in ("full", "month_year") or (
    k == "month_day" and "month_name" in p.pattern))
_DATE_CUE = (r"(?:\b(?:on|since|from|until|till|to|through|dated?|by|after|before|of|in|that)"
             r"\s+)")
_NUMERIC_MONTH_DAY = re.compile(_DATE_CUE + r"(?P<d>(?:0?[1-9]|1[0-2])[/-](?:0?[1-9]|[12]\d|3[01]))"
                                r"(?![\w/]|\.\d)", re.I)
_CUED_YEAR = re.compile(r"\b(?:in|since|of|year|that)\s+(?:'(?P<d2>\d\d)|(?P<d>(?:19|20)\d\d))\b"
                        r"(?![/-]\d)", re.I)
_CUED_MONTH = re.compile(r"\b(?:in|since|of|during|until)\s+(?P<d>(?:January|February|March|April|"
                         r"May|June|July|August|September|October|November|December))\b")
_HOLIDAY = re.compile(r"\b(?:the\s+)?(?:Christmas(?: Eve| Day)?|New Year's(?: Eve| Day)?|Thanksgiving(?: Day)?|"
                      r"Easter(?: Sunday)?|Independence Day|Fourth of July|Memorial Day|Labor Day|"
                      r"Halloween|Presidents' Day|Martin Luther King(?:,? Jr\.?)? Day|"
                      r"Veterans Day|Columbus Day|Valentine's Day|Mother's Day|Father's Day)\b")
_WEEKDAY_AFTER = re.compile(r"(?i)^,?\s*\(?(?P<d>(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)"
                            r"(?:day|sday|nesday|rsday|urday)?)\b")
_RANGE_JOIN = re.compile(r"\s*(?:-|\u2013|to|through|until)\s*$")
_WEEKDAY_BEFORE = re.compile(r"(?i)\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)"
                             r"(?:day|sday|nesday|rsday|urday)?\.?,?\s+$")

_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+?1|001)[-.\s]?)?(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?!\w)", re.I)
_BARE_PHONE = re.compile(r"(?i)\b(?:phone|tel|telephone|call|called|reached at|fax|cell|contact)"
                         r"\b[^\n\d]{0,20}?(?P<d>(?<!\d)\d{10}(?!\d))")
_PAGER = re.compile(r"\b(?:page|pager|beeper)(?:\s+(?:number|no\.?|#))?[:#\s]+(?P<d>\d{4,7})\b",
                    re.I)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'()\[\]]+")
_IP = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
                 r"(?![\d.]\d)")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-]\d)")
_ID_CUES = (
    ("MEDICALRECORD", r"MRN|MR\s*#|medical\s+record(?:\s+(?:number|no\.?|#))?"),
    ("DEVICE", r"serial(?:\s+(?:number|no\.?|#))?"),
    ("IDNUM", r"account(?:\s+(?:number|no\.?|#))?|acct\.?(?:\s*#)?|ID|unit\s+(?:number|no\.?|#)|"
              r"job(?:\s+(?:number|no\.?|#))?|MD\s+(?:number|no\.?|#)|member\s+(?:ID|number)|"
              r"policy(?:\s+(?:number|no\.?|#))?|licen[sc]e(?:\s+(?:number|no\.?|#))?|record\s*#"),
)
_ID = tuple((label, re.compile(r"\b(?:%s)(?:\s+is)?[\s:#.]*(?P<d>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]"
                               r"{3,}[A-Z0-9])\b" % cue, re.I)) for label, cue in _ID_CUES)
_ZIP = re.compile(r"(?:\b(?:%s),?\s+|\b(?:%s)\b,?\s+|\bzip(?:\s*code)?[:#\s]+)"
                  r"(?P<d>\d{5}(?:-\d{4})?)\b" % (_STATES, _STATE_CODES))
_ZIP_CUE_CASELESS = re.compile(r"(?i)\bzip(?:\s*code)?[:#\s]+(?P<d>\d{5}(?:-\d{4})?)\b")
_AGE = re.compile(r"(?i)(?:\b(?P<d>9\d|1[0-2]\d)(?:\s*-\s*|\s+)(?:years?|yrs?)(?:\s*-\s*|\s+)old\b"
                  r"|\b(?P<e>9\d|1[0-2]\d)\s*(?:y/?o|y\.o\.|yo)\b"
                  r"|\b(?:aged?|age:)\s*(?P<f>9\d|1[0-2]\d)\b)")


def _group_spans(pattern, text, label, group="d"):
  return [(m.start(group), m.end(group), label) for m in pattern.finditer(text)
          if m.group(group) is not None]


def dates(text):
  found = [(m.start(), m.end(), "DATE") for p in _DATE_FORMS for m in p.finditer(text)]
  found += _group_spans(_NUMERIC_MONTH_DAY, text, "DATE")
  found += _group_spans(_CUED_YEAR, text, "DATE") + _group_spans(_CUED_YEAR, text, "DATE", "d2")
  found += _group_spans(_CUED_MONTH, text, "DATE")
  found += [(m.start(), m.end(), "DATE") for m in _HOLIDAY.finditer(text)]
  out = []
  for start, end, label in spans_lib.merge(found):
    weekday = _WEEKDAY_BEFORE.search(text[max(0, start - 12):start])
    if weekday:
      start = start - len(weekday.group(0))
    if out and _RANGE_JOIN.fullmatch(text[out[-1][1]:start]):  # a range: one span
      start = out.pop()[0]
    out.append((start, end, label))
    weekday = _WEEKDAY_AFTER.search(text[end:end + 14])
    if weekday:  # `3/4/2019 (Monday)`: the weekday is a date of its own
      out.append((end + weekday.start("d"), end + weekday.end("d"), label))
  return out


def phones(text):
  out = []
  last = 0
  for m in _PHONE.finditer(text):
    before = text[max(last, m.start() - 25):m.start()].lower()  # not past the previous number
    out.append((m.start(), m.end(), "FAX" if "fax" in before else "PHONE"))
    last = m.end()
  for m in _BARE_PHONE.finditer(text):
    out.append((m.start("d"), m.end("d"), "FAX" if "fax" in m.group(0).lower() else "PHONE"))
  return out + _group_spans(_PAGER, text, "PHONE")


def emails(text):
  return [(m.start(), m.end(), "EMAIL") for m in _EMAIL.finditer(text)]


def urls(text):
  return [(m.start(), m.start() + len(m.group(0).rstrip(".,;:!?")), "URL")
          for m in _URL.finditer(text)]


def ip_addresses(text):
  return [(m.start(), m.end(), "IPADDR") for m in _IP.finditer(text)]


def ssns(text):
  return [(m.start(), m.end(), "SSN") for m in _SSN.finditer(text)]


def ids(text):
  out = []
  for label, pattern in _ID:
    out += _group_spans(pattern, text, label)
  return out


def zip_codes(text):
  return _group_spans(_ZIP, text, "ZIP") + _group_spans(_ZIP_CUE_CASELESS, text, "ZIP")


def ages(text):
  out = []
  for m in _AGE.finditer(text):
    group = next(g for g in ("d", "e", "f") if m.group(g) is not None)
    out.append((m.start(group), m.end(group), "AGE"))
  return out


# name -> function(text) -> [(start, end, label)]. The first-listed win label ties in merging.
RECOGNIZERS = collections.OrderedDict([
    ("email", emails),
    ("url", urls),
    ("ssn", ssns),
    ("phone", phones),
    ("ip", ip_addresses),
    ("id", ids),
    ("zip", zip_codes),
    ("age", ages),
    ("date", dates),
])


def recognize(text, names=None):
  """The pattern recognizers' spans in `text` (disjoint, sorted; `names`: a subset to run)."""
  spans = []
  for name, function in RECOGNIZERS.items():
    if names is None or name in names:
      spans.append(function(text))
  return [tuple(s) for s in spans_lib.merge(*spans)]


def merge_with_model(model_spans, pattern_spans):
  """The model's spans and the patterns' merged: overlaps joined, labelled as the model did."""
  return spans_lib.merge(model_spans, pattern_spans)
