"""Prediction: notes (or sentence pairs) through one loaded model, batched across notes, streamed.

  model = inference.load_model("finetune/i2b2_2010")
  for note, spans in inference.Predictor(model).predict(notes):      # a word-labelling head
    ...
  for pair, label, probabilities in inference.predict_pairs(model, pairs):   # a pair head
    ...

Windows of many notes are batched together, sorted by length so a batch pads little; notes stream
through a bounded buffer (memory does not grow with the number of notes) and come out in input
order. Every decision that depends on the kind of model (unlabelled examples, decoding, the word
rules) is the head's. Nothing here logs note text.
"""

import collections

from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.inference import text as text_lib


def check_output(model, output, what):
  """InputError unless `model`'s head outputs `output` (heads.WORD_LABELS or heads.PAIR_LABEL)."""
  if model.head.output != output:
    raise fileio.InputError("the model has a %s head, which outputs %s: %s needs a model whose "
                            "head outputs %s" % (model.head.name, model.head.output, what, output))


def check_window_context(window_context, max_seq_length):
  """InputError unless `window_context` (None, or pieces of context) leaves a core of a piece."""
  most = (max_seq_length - 3) // 2  # [CLS], [SEP] and a core of at least one piece
  if window_context is not None and not 0 <= window_context <= most:
    raise fileio.InputError(
        "--window_context=%d: expected 0 to %d pieces of context for a model of "
        "max_seq_length %d" % (window_context, most, max_seq_length))


class _Pending(object):
  """A note in flight: its spans so far and how many of its blocks are still unpredicted."""

  def __init__(self, item):
    self.item = item
    self.spans = []
    self.words = 0
    self.blocks_left = 0
    self.read = False


class Predictor(object):
  """Runs a word-labelling `LoadedModel` over notes, batched across notes, streamed."""

  def __init__(self, model, batch_size=32, min_probability=None, buffer_words=None,
               after_batch=None, window_context=None):
    """Args:
      model: a LoadedModel whose head outputs word labels.
      batch_size: windows per session run.
      min_probability: see the head's `decode` (P(not O) threshold).
      buffer_words: words of notes collected before they are predicted together.
      after_batch: called with no arguments after each buffer is predicted (progress lines
        within one long note).
      window_context: pieces of context on each side of a long line's window cores
        (`data.plan_word_windows`); None: training's windows (cores of half a window).
    """
    check_output(model, heads.WORD_LABELS, "spans (a sentence-pair model predicts pairs: see "
                 "predict_pairs)")
    self.model = model
    self.batch_size = batch_size
    self.min_probability = min_probability
    # Enough words for many full batches, so length sorting has something to sort.
    self.buffer_words = buffer_words or 64 * batch_size * max(8, model.max_seq_length // 4)
    self.words_done = 0
    self.after_batch = after_batch
    check_window_context(window_context, model.max_seq_length)
    self.window_context = window_context

  def _run(self, pending):
    """Predicts the buffered blocks [(state, sentences)] and adds their spans to their notes."""
    sentences = [s for _, block in pending for s in block]
    model = self.model
    head = model.head
    examples = head.prediction_examples(sentences)
    features = head.convert_examples(examples, model.max_seq_length, model.tokenizer,
                                     split="predict", window_context=self.window_context)
    probabilities = model.probabilities(features, self.batch_size)
    per_word = head.word_probabilities(examples, features, probabilities)
    k = 0
    for state, block in pending:
      for sentence in block:
        labels, ids = head.decode(per_word[k], self.min_probability)
        state.spans.extend(text_lib.sentence_spans(sentence, labels, ids, per_word[k]))
        state.words += len(sentence.words)
        k += 1
      state.blocks_left -= 1
    self.words_done += sum(len(s.words) for s in sentences)
    if self.after_batch:
      self.after_batch()

  def predict(self, items, text_of=lambda item: item.text):
    """Yields (item, spans) for each item (a note), in order, spans sorted by start.

    Args:
      items: an iterable of notes (consumed lazily).
      text_of: the note text of an item.
    """
    queue = collections.deque()
    pending, buffered = [], 0
    for item in items:
      state = _Pending(item)
      queue.append(state)
      for block in text_lib.note_sentences(text_of(item), self.model.word_rules):
        if not block:
          continue
        state.blocks_left += 1
        pending.append((state, block))
        buffered += sum(len(s.words) for s in block)
        if buffered >= self.buffer_words:
          self._run(pending)
          pending, buffered = [], 0
          yield from self._finished(queue)
      state.read = True
      yield from self._finished(queue)
    if pending:
      self._run(pending)
    yield from self._finished(queue)

  @staticmethod
  def _finished(queue):
    while queue and queue[0].read and queue[0].blocks_left == 0:
      state = queue.popleft()
      yield state.item, sorted(state.spans, key=lambda s: s.start)


def predict_pairs(model, pairs, batch_size=32):
  """Yields (pair, label, {label: probability}) for (text_a, text_b) pairs (a sentence-pair model).

  Args:
    model: a LoadedModel whose head outputs a pair label.
    pairs: an iterable of objects with `text` and `text_b`, consumed in chunks.
    batch_size: pairs per session run.
  """
  check_output(model, heads.PAIR_LABEL, "sentence-pair prediction")
  head = model.head
  chunk = []

  def run(chunk):
    examples = head.prediction_examples(chunk)
    features = head.convert_examples(examples, model.max_seq_length, model.tokenizer,
                                     split="predict")
    for pair, probs in zip(chunk, model.probabilities(features, batch_size)):
      label, probabilities = head.decode(probs)
      yield pair, label, probabilities

  for pair in pairs:
    chunk.append(pair)
    if len(chunk) >= 64 * batch_size:
      yield from run(chunk)
      chunk = []
  if chunk:
    yield from run(chunk)
