"""Word rules: how raw text becomes sentences of words, the way a task's training files were split.

A model sees words the way its training data split them; a raw note given to it at prediction time
must be split the same way, or a span carries punctuation the model never saw attached to a word
("Eastchester," as one word). The rules a task used are recorded in the head record
(`finetune_head.json`, "word_rules") and applied by `predict.py`, `deidentify.py` and the service.

  lines_whitespace   a line is a sentence; words are runs of non-whitespace
                     (`documents.tokenize_document` with no entities: what the character-offset
                     readers give training notes, i2b2 2006 / 2012 / 2014);
  lines_punctuation  a line is a sentence; words are runs of non-whitespace with every punctuation
                     character a word of its own (Google's BasicTokenizer split, as CoNLL-style
                     pre-split files and i2b2 2010's tokenized text have it);
  sentence_pairs     two texts per example (NLI); no splitting into words.

Adding rules is one class with `name` and `sentences` and one `register` line. Offsets are kept:
every word is `text[start:end]` of the note given.
"""

import dataclasses
import re
from typing import List

from clinicalbert_tf import fileio
from clinicalbert_tf import tokenization
from clinicalbert_tf.tasks import documents

LINES_WHITESPACE = "lines_whitespace"
LINES_PUNCTUATION = "lines_punctuation"
SENTENCE_PAIRS = "sentence_pairs"


@dataclasses.dataclass
class Sentence:
  """A line's words and where each sits: (start, end) characters of the note, the line (1-based)."""
  words: List[str]
  offsets: List[tuple]
  line: int


class WordRules(object):
  """Splits whole lines of a note into sentences of words (see the module docstring)."""

  name = None
  splits_words = True  # False: the text is used whole (sentence pairs)

  def sentences(self, text, start, end, first_line):
    """The sentences of `text[start:end]` (whole lines), offsets into `text`.

    Args:
      text: the whole note.
      start, end: a block of whole lines.
      first_line: the 1-based line number of `text[start]`.
    """
    raise NotImplementedError()


class LinesWhitespace(WordRules):
  """Lines are sentences, whitespace-separated words: exactly the task readers' own split."""

  name = LINES_WHITESPACE

  def sentences(self, text, start, end, first_line):
    # `tokenize_document` with no entities gives exactly the words (and sentence breaks) the
    # readers give training notes; offsets are shifted back into the whole note.
    result = []
    line, cursor = first_line, start
    for sentence in documents.tokenize_document(text[start:end], [], "note"):
      begin = start + sentence.positions[0][0]
      line += text.count("\n", cursor, begin)
      cursor = begin
      result.append(Sentence(sentence.words,
                             [(start + a, start + b) for a, b in sentence.positions], line))
    return result


def split_punctuation(word, offset):
  """[(start, end)] of the pieces of one whitespace word: punctuation characters alone.

  Args:
    word: a run of non-whitespace.
    offset: where `word` starts in the note.
  """
  if word.isalnum():  # the common case: no punctuation at all
    return [(offset, offset + len(word))]
  pieces = []
  begin = None
  for i, char in enumerate(word):
    if tokenization._is_punctuation(char):  # pylint: disable=protected-access
      if begin is not None:
        pieces.append((offset + begin, offset + i))
        begin = None
      pieces.append((offset + i, offset + i + 1))
    elif begin is None:
      begin = i
  if begin is not None:
    pieces.append((offset + begin, offset + len(word)))
  return pieces


_LINE = re.compile(r"[^\n]*\n?")
_WORD = re.compile(r"\S+")


class LinesPunctuation(WordRules):
  """Lines are sentences; words are whitespace runs split at each punctuation character."""

  name = LINES_PUNCTUATION

  def sentences(self, text, start, end, first_line):
    result = []
    line = first_line
    position = start
    while position < end:
      match = _LINE.match(text, position, end)
      line_end = match.end()
      offsets = []
      for word in _WORD.finditer(text, position, line_end):
        offsets.extend(split_punctuation(word.group(), word.start()))
      if offsets:
        result.append(Sentence([text[a:b] for a, b in offsets], offsets, line))
      line += 1
      position = line_end if line_end > position else end
    return result


class SentencePairs(WordRules):
  """Sentence pairs: each example is two whole texts."""

  name = SENTENCE_PAIRS
  splits_words = False

  def sentences(self, text, start, end, first_line):
    raise ValueError("sentence_pairs rules read pairs of texts, not sentences of a note")


_REGISTRY = {}


def register(rules_class):
  """Adds a WordRules class to the registry under its `name` (usable as a decorator)."""
  _REGISTRY[rules_class.name] = rules_class()
  return rules_class


for _rules in (LinesWhitespace, LinesPunctuation, SentencePairs):
  register(_rules)

NAMES = tuple(_REGISTRY)


def get(name, where="head record"):
  """The registered WordRules called `name`; InputError naming `where` if there is none."""
  if name not in _REGISTRY:
    raise fileio.InputError("%s: word_rules %r is not one of %s (a newer version wrote it?)" %
                            (where, name, ", ".join(NAMES)))
  return _REGISTRY[name]
