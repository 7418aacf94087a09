"""Rule-based splitting of a clinical note into sections, list items and paragraphs.

This is the first half of `sentences.py`'s sentence splitting: it cuts a note into *segments* that
the sentence splitter then works on one at a time, so that no sentence ever runs across two
segments.
The rules are in the spirit of the heuristic the ClinicalBERT authors used (Willie Boag's
`heuristic_tokenize.sent_tokenize_rules`), written afresh and kept small enough to test one by one:

  R1 Line endings. `\\r\\n` and lone `\\r` become `\\n` before anything else.
  R2 Rules separate. A run of three or more `-`, `_` or `=` (`-----`, `_____`, `=====`) ends the
     segment before it and starts a new one after it; the rule itself is not part of any segment.
  R3 Paragraphs. A blank line (empty or only whitespace) ends a segment.
  R4 Fixed header lines. A line `Admission Date: ... Discharge Date: ...` (and likewise
     `Date of Birth: ... Sex: ...`) is one segment of its own, kind FIXED: it is never split
     further.
  R5 Section headers. A line that starts with a title followed by `:` and then whitespace or the end
     of the line (`HISTORY OF PRESENT ILLNESS:`, `Discharge Medications:`, `Chief Complaint: ...`)
     starts a new section. A title is at most 8 words of at most 60 characters, starts with an
     upper-case letter or a number and a space (`24 Hour Events:`, not `1. CHF:`), and every word
     except `of on or and at to in for the with by a an` starts with an upper-case letter or a
     non-letter (words in parentheses are ignored, as in `BP (mm Hg):`). `Disp:`, `Sig:` and
     `Refills:` (parts of a medication entry) are not titles. A header alone on its line is one
     segment of kind HEADER (never split further); a header with text after it on the same line
     starts a TEXT segment with that line (`Sex: M` stays together).
  R6 Enumerated lists. A line that starts with a number item (`1.`, `2)`, `(3)`, followed by
     whitespace or the end of the line) starts a new segment of kind ITEM, provided its number is
     1 or one more than the previous item's number in the same section (so a wrapped line that
     happens to start with `80.` is not an item). A line that starts with a bullet (`-`, `--`,
     `*`, `•`, followed by something other than a digit or `-`; or `#` followed by anything, as in
     `# CHF` or `#2 HTN`) also starts an ITEM. An item runs until the next item, header, rule or
     blank line.
  R7 Everything else is prose: consecutive non-blank lines form one TEXT segment, newlines kept
     (the sentence splitter turns them into spaces).

Segments are returned in note order; their text is stripped and never empty. The splitter does not
know about de-identification placeholders: `sentences.py` replaces each `[**...**]` by a lower-case
stand-in word before calling it, so no rule can fire inside a placeholder.
"""

import collections
import re

# Kinds of segment. FIXED and HEADER segments are emitted as one line each, without sentence
# splitting; ITEM and TEXT segments go through the sentence splitter.
TEXT = "text"
ITEM = "item"
HEADER = "header"
FIXED = "fixed"

Segment = collections.namedtuple("Segment", ["text", "kind"])

# R2: horizontal rules.
_RULE_RE = re.compile(r"-{3,}|_{3,}|={3,}")

# R4: header lines that stay one unit.
_FIXED_LINE_RES = (
    re.compile(r"Admission Date:.*Discharge Date:", re.IGNORECASE),
    re.compile(r"Date of Birth:.*Sex:", re.IGNORECASE),
)

# R5: a title candidate at the start of a (stripped) line: an upper-case letter or a number and a
# space (`24 Hour Events:`; never a list item like `1. CHF:`), up to 60 characters without a colon,
# then a colon followed by whitespace or the end of the line (so `10:30` is not a title).
_HEADER_RE = re.compile(r"((?:[A-Z]|\d+ )[^:\n]{0,59}):(?=\s|$)")
_PARENTHESIZED_RE = re.compile(r"\([^)]*\)")
_TITLE_STOPWORDS = frozenset(["of", "on", "or", "and", "at", "to", "in", "for", "the", "with",
                              "by", "a", "an"])
_NOT_TITLES = frozenset(["Disp", "Sig", "Refills"])
_MAX_TITLE_WORDS = 8

# R6: list items. Numbered: `1.`, `2)`, `(3)` then whitespace. Bullets: `-`, `--`, `*`, `•`
# followed (after optional spaces) by something that is not a digit (`-5` is a number) or `-`;
# problem-list `#` followed by anything.
_NUMBERED_ITEM_RE = re.compile(r"(?:\((\d{1,2})\)|(\d{1,2})[.)])(?:\s|$)")
_BULLET_ITEM_RE = re.compile(r"(?:--?|\*|\u2022)\s*[^\s\d-]|#\s*\S")


def is_fixed_line(line):
  """True if the stripped `line` is a header line that stays one unit (rule R4)."""
  return any(pattern.match(line) for pattern in _FIXED_LINE_RES)


def match_header(line):
  """Returns the section title (with its colon) that starts the stripped `line`, or None (R5).

  Args:
    line: one line of a note, stripped.

  Returns:
    For `"HISTORY OF PRESENT ILLNESS: He was..."` the string `"HISTORY OF PRESENT ILLNESS:"`;
    None if the line does not start with a title.
  """
  match = _HEADER_RE.match(line)
  if not match:
    return None
  title = match.group(1).strip()
  if title in _NOT_TITLES:
    return None
  words = _PARENTHESIZED_RE.sub(" ", title).split()
  if not words or len(words) > _MAX_TITLE_WORDS:
    return None
  for word in words:
    if word in _TITLE_STOPWORDS:
      continue
    if word[0].isalpha() and not word[0].isupper():
      return None
  return title + ":"


def match_item(line, previous_number):
  """Says whether the stripped `line` starts a list item (rule R6).

  Args:
    line: one line of a note, stripped.
    previous_number: the number of the previous numbered item in this section, or None.

  Returns:
    (is_item, number): number is the item's number for a numbered item, else `previous_number`
    unchanged (a bullet does not interrupt a numbered list's count).
  """
  match = _NUMBERED_ITEM_RE.match(line)
  if match:
    number = int(match.group(1) or match.group(2))
    if number == 1 or (previous_number is not None and number == previous_number + 1):
      return True, number
    return False, previous_number
  if _BULLET_ITEM_RE.match(line):
    return True, previous_number
  return False, previous_number


def _split_block(block, segments):
  """Applies rules R3-R7 to `block` (text between two rules) and appends to `segments`."""
  lines = []  # lines of the segment being built
  kind = TEXT
  item_number = None  # R6: the last numbered item's number in the current section

  def flush():
    if lines:
      text = "\n".join(lines).strip()
      if text:
        segments.append(Segment(text, kind))
      del lines[:]

  for line in block.split("\n"):
    stripped = line.strip()
    if not stripped:  # R3
      flush()
      kind = TEXT
      continue
    if is_fixed_line(stripped):  # R4
      flush()
      segments.append(Segment(" ".join(stripped.split()), FIXED))
      kind = TEXT
      item_number = None
      continue
    header = match_header(stripped)
    if header is not None:  # R5
      flush()
      item_number = None
      if stripped == header:
        segments.append(Segment(header, HEADER))
        kind = TEXT
      else:
        lines.append(stripped)
        kind = TEXT
      continue
    is_item, item_number = match_item(stripped, item_number)
    if is_item:  # R6
      flush()
      lines.append(stripped)
      kind = ITEM
      continue
    lines.append(stripped)  # R7
  flush()


def split_sections(text):
  """Splits a note into segments by rules R1-R7 (see the module docstring).

  Args:
    text: the note's TEXT, with placeholders already replaced by a stand-in word.

  Returns:
    A list of `Segment(text, kind)` in note order, each with non-empty stripped text. Lines inside
    a segment are stripped and joined by `\\n`.
  """
  text = text.replace("\r\n", "\n").replace("\r", "\n")  # R1
  segments = []
  for block in _RULE_RE.split(text):  # R2
    _split_block(block, segments)
  return segments
