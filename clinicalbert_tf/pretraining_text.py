"""Pretraining text read into token-id arrays, with Google's tokenization rules, without TensorFlow.

The input of create_pretraining_data is Google's format: one sentence per line, a blank line ends a
document. `Corpus.read` reads it as google-research/bert's `create_training_instances` does
(bert-tensorflow 1.0.4):

  * every input file is read line by line in the order given (documents run on across file
    boundaries, as in Google's loop); TF's reader splits on "\\n" only and drops every "\\r";
  * each line is stripped (Python's `str.strip`); an empty line starts a new document;
  * a line is tokenized (`FullTokenizer.tokenize`, then ids) and kept only if it has word pieces;
  * empty documents are dropped.

Why it is fast and small: the documents are one flat array of word-piece ids (2 bytes each for
vocabularies up to 65,536) with sentence and document offsets, and tokenization is memoised per
space-separated chunk of a line (Google's rules treat the chunks independently), on top of the
tokenizer's own fast paths. TensorFlow is imported only for a remote ("://") path.
"""

import array
import collections
import os

from clinicalbert_tf import fileio
from clinicalbert_tf import tokenization

# Tokens every instance needs.
_REQUIRED_TOKENS = ("[CLS]", "[SEP]", "[MASK]")

# Distinct space-separated chunks remembered by the tokenization cache before it is cleared.
_CHUNK_CACHE_LIMIT = 200000


# --------------------------------------------------------------------------------------------------
# Vocabulary and tokenization


def _read_lines_binary(path):
  """Yields the lines of `path` as bytes the way TF's GFile.readline splits them ("\\n" only)."""
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, "rb") as f:
      while True:
        line = f.readline()
        if not line:
          break
        yield line
  else:
    with open(path, "rb") as f:
      yield from f


def _decode_line(raw, path, line_number):
  # TF's buffered reader drops every carriage return, not only those before a line feed.
  if b"\r" in raw:
    raw = raw.replace(b"\r", b"")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise fileio.InputError("%s:%d: not valid UTF-8 (%s)" % (path, line_number, e.reason)) from None


def load_vocab_without_tensorflow(vocab_file):
  """Reads a vocabulary as Google's `tokenization.load_vocab` does, without importing TensorFlow.

  Each line, stripped, is a token; a repeated token keeps its first id and takes no new one (so ids
  are 0..len-1 in order); a blank line is the token "".

  Raises:
    fileio.InputError: if the file is missing, unreadable or empty.
  """
  if "://" not in vocab_file and not os.path.isfile(vocab_file):
    raise fileio.InputError("--vocab_file: no such file: %s" % vocab_file)
  vocab = collections.OrderedDict()
  try:
    for number, raw in enumerate(_read_lines_binary(vocab_file), 1):
      token = _decode_line(raw, vocab_file, number).strip()
      if token not in vocab:
        vocab[token] = len(vocab)
  except OSError as e:
    raise fileio.InputError("--vocab_file: cannot read %s: %s" % (vocab_file, e)) from None
  if not vocab:
    raise fileio.InputError("--vocab_file %s is empty" % vocab_file)
  return vocab


class Vocab(object):
  """The vocabulary as the generator needs it: ids of the special tokens, `##` flags, id width."""

  def __init__(self, vocab, vocab_file="vocab"):
    self.vocab = vocab
    self.words = list(vocab.keys())  # Google's `vocab_words`; ids are positions in it
    self.size = len(self.words)
    for token in _REQUIRED_TOKENS:
      if token not in vocab:
        raise fileio.InputError("--vocab_file %s has no %s token (every instance needs %s)" %
                                (vocab_file, token, ", ".join(_REQUIRED_TOKENS)))
    self.cls_id = vocab["[CLS]"]
    self.sep_id = vocab["[SEP]"]
    self.mask_id = vocab["[MASK]"]
    # Whole-word masking groups a word piece with the previous one when it starts with "##".
    self.is_continuation = bytes(1 if w.startswith("##") else 0 for w in self.words)
    self.id_typecode = "H" if self.size <= 1 << 16 else "I"


class LineEncoder(object):
  """Turns a stripped line into word-piece ids exactly as Google's `FullTokenizer.tokenize` would.

  Google's basic tokenizer maps an ASCII space to a token boundary and treats every other character
  locally, so the chunks of a line between single spaces tokenize independently; their ids are
  memoised (a bounded cache), which makes reading a corpus mostly dictionary look-ups.
  """

  def __init__(self, vocab, do_lower_case=True, preserve_unused_tokens=False, vocab_file="vocab"):
    self._vocab = vocab
    self._vocab_file = vocab_file
    self._preserve = preserve_unused_tokens
    self._basic = tokenization.BasicTokenizer(
        do_lower_case=do_lower_case, vocab=vocab, preserve_unused_tokens=preserve_unused_tokens)
    self._wordpiece = tokenization.WordpieceTokenizer(vocab=vocab)
    self._cache = {}

  def _chunk_ids(self, chunk):
    vocab = self._vocab
    ids = []
    for word in self._basic.tokenize(chunk):
      if self._preserve and tokenization.preserve_token(word, vocab, True):
        pieces = (word,)
      else:
        pieces = self._wordpiece.tokenize_word(word)
      for piece in pieces:
        try:
          ids.append(vocab[piece])
        except KeyError:
          raise fileio.InputError(
              "--vocab_file %s has no %s token, which the input needs" %
              (self._vocab_file, piece)) from None
    return tuple(ids)

  def encode(self, line):
    """Returns the list of word-piece ids of `line` (already stripped)."""
    cache = self._cache
    out = []
    for chunk in line.split(" "):
      ids = cache.get(chunk)
      if ids is None:
        ids = self._chunk_ids(chunk)
        if len(cache) >= _CHUNK_CACHE_LIMIT:
          cache.clear()
        cache[chunk] = ids
      out += ids
    return out


# --------------------------------------------------------------------------------------------------
# Documents


class Corpus(object):
  """All documents as one flat array of word-piece ids.

  Sentence `s` is `tokens[sentence_starts[s]:sentence_starts[s + 1]]`; document `d` is sentences
  `doc_starts[d]` to `doc_starts[d + 1] - 1`. Only non-empty documents are kept, in reading order.
  """

  def __init__(self, typecode):
    self.tokens = array.array(typecode)
    self.sentence_starts = array.array("q", [0])
    self.doc_starts = array.array("q", [0])
    self.bytes_read = 0

  @property
  def num_documents(self):
    """The number of (non-empty) documents read so far."""
    return len(self.doc_starts) - 1

  @property
  def num_sentences(self):
    """The number of sentences (lines with word pieces) read so far."""
    return len(self.sentence_starts) - 1

  def _end_document(self):
    if self.doc_starts[-1] != self.num_sentences:  # drop empty documents
      self.doc_starts.append(self.num_sentences)

  def read(self, input_files, encoder, progress=None):
    """Reads `input_files` with Google's rules (documents continue across files).

    `progress`, a progress.Progress counting kB, gets a line now and then.
    """
    tokens = self.tokens
    starts = self.sentence_starts
    encode = encoder.encode
    for path in input_files:
      try:
        for number, raw in enumerate(_read_lines_binary(path), 1):
          self.bytes_read += len(raw)
          line = _decode_line(raw, path, number).strip()
          if not line:
            self._end_document()
            continue
          ids = encode(line)
          if ids:
            tokens.extend(ids)
            starts.append(len(tokens))
          if progress is not None and not number & 1023 and progress.due():
            progress.log(self.bytes_read // 1000, "%d documents" % self.num_documents)
      except OSError as e:
        raise fileio.InputError("--input_file: cannot read %s: %s" % (path, e)) from None
    self._end_document()
