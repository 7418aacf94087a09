"""Notes -> blocks of lines -> sentences of words (the model's word rules) -> spans back in the note.

A long note is cut into blocks of whole lines of about BLOCK_CHARS characters, so its words and
windows never all sit in memory at once; each block is split into sentences by the word rules the
model's task used in training (`finetuning/word_rules.py`, named in the head record). A sentence's
word labels become character spans after seqeval's lenient repair (an `I-` after `O` or another type
starts a span).
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from clinicalbert_tf import tasks

# A long note is split into blocks of whole lines of about this many characters.
BLOCK_CHARS = 1 << 16


@dataclasses.dataclass
class Span:
  """A predicted (or given) entity over characters [start, end) of its note.

  `first` and `last` are the (line, token) positions of its first and last word (line 1-based,
  token 0-based within the line), which the i2b2 2010 `.con` format counts in.
  """
  start: int
  end: int
  label: str
  score: float
  first: Optional[Tuple[int, int]] = None
  last: Optional[Tuple[int, int]] = None

  def to_json(self):
    return {"start": self.start, "end": self.end, "label": self.label,
            "score": round(float(self.score), 6)}


def note_blocks(text, block_chars=None):
  """(start, end) of blocks of whole lines of about `block_chars` (BLOCK_CHARS) characters."""
  block_chars = block_chars or BLOCK_CHARS
  start = 0
  while start < len(text):
    end = text.find("\n", min(len(text), start + block_chars))
    end = len(text) if end < 0 else end + 1
    yield start, end
    start = end


def note_sentences(text, word_rules, block_chars=None):
  """Yields (block's sentences) for each block of `text`, split by `word_rules`.

  Args:
    text: the note.
    word_rules: a `word_rules.WordRules`.
    block_chars: see `note_blocks`.
  """
  line = 1
  for start, end in note_blocks(text, block_chars):
    yield word_rules.sentences(text, start, end, line)
    line += text.count("\n", start, end)


def sentence_spans(sentence, labels, ids, probabilities):
  """Spans of one sentence from its word labels (repaired to IOB2 first).

  Args:
    sentence: a `word_rules.Sentence`.
    labels, ids: its words' labels and label ids (the head's `decode`).
    probabilities: [num_words, num_labels]; a span's score is the mean probability of its words'
      labels.
  """
  repaired, _ = tasks.repair_iob2(labels)
  spans = []
  for s, e, typ in tasks.iob_to_spans(repaired):
    score = float(np.mean([probabilities[w, ids[w]] for w in range(s, e)]))
    spans.append(Span(start=sentence.offsets[s][0], end=sentence.offsets[e - 1][1], label=typ,
                      score=score, first=(sentence.line, s), last=(sentence.line, e - 1)))
  return spans
