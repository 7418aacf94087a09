"""Masked-LM / next-sentence pretraining data: Google's TFRecords, faster and in bounded memory.

`create_pretraining_data(...)` writes the same bytes as google-research/bert's
`create_pretraining_data.py` (bert-tensorflow 1.0.4 under the same Python 3) for the same inputs and
flags, and adds whole-word masking with Google's later rule. What is reproduced, in Google's order:

  * reading: every input file is read line by line in the order given (documents run on across file
    boundaries, as in Google's loop); TF's reader splits on "\\n" only and drops every "\\r"; each line
    is stripped (Python's `str.strip`); an empty line starts a new document; a line is tokenized and
    kept only if it has word pieces; empty documents are dropped;
  * one `random.Random(random_seed)` draws, in order: the shuffle of the documents; then for each of
    `dupe_factor` passes over the documents, per document `random()` for a short target length
    (`randint(2, max_seq_length - 3)` if taken); per instance `randint` for the A/B split,
    `random() < 0.5` for a random next sentence, `randint` for the random document (up to 10 tries
    to avoid the current one) and its start sentence; one `random()` per token removed by truncation
    (front or back of the longer segment); the shuffle of the masking candidates and per masked
    position `random() < 0.8` ([MASK]), `random() < 0.5` (keep), else `randint(0, len(vocab) - 1)`
    (random word); finally the shuffle of all instances;
  * `num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))`
    with Python 3's round-half-to-even;
  * the tf.train.Example features `input_ids`, `input_mask`, `segment_ids`, `masked_lm_positions`,
    `masked_lm_ids`, `masked_lm_weights` (float), `next_sentence_labels`, serialized as protobuf 4.25
    (upb) serializes Google's Example (its map order, below), written round-robin over the outputs in
    TFRecord framing.

Why it is faster and smaller (same random draws, same result):
  * documents are one flat array of word-piece ids (2 bytes each for vocabularies up to 65,536) with
    sentence offsets; segments A and B are always contiguous runs of it, so an instance is a few
    integer bounds until it is written;
  * tokenization is memoised per space-separated chunk of a line (Google's rules treat the chunks
    independently), on top of the tokenizer's own fast paths;
  * the random draws inline `random.Random` internals (`getrandbits` with the same rejection loop as
    `_randbelow`), which halves the cost of the candidate shuffle that dominates;
  * instances are kept as packed arrays (~350 bytes each at length 128, instead of Python objects),
    and written in batches: the Example protobuf bytes, the TFRecord framing and its CRC-32C are
    computed with numpy for thousands of records at a time, without importing TensorFlow.

Sharded mode (`num_workers > 1` or `shard_per_file`) treats each input file as an independent shard with
its own RNG and outputs; see `shard_seed` and `shard_output_path`.
"""

import array
import collections
import contextlib
import hashlib
import os
import random
import time

import numpy as np

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import tokenization

# Feature names in the order Google's script inserts them into the Example (its OrderedDict).
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                 "masked_lm_weights", "next_sentence_labels")

# The order in which protobuf 4.25 (upb) serializes those seven map entries: upb writes a map in its
# hash-table order, which for these keys inserted in Google's order is this one (fixed, not seeded per
# process). A test checks it against tf.train.Example.SerializeToString().
SERIALIZED_FEATURE_ORDER = ("masked_lm_ids", "input_ids", "masked_lm_positions",
                            "next_sentence_labels", "input_mask", "masked_lm_weights", "segment_ids")

_REQUIRED_TOKENS = ("[CLS]", "[SEP]", "[MASK]")

# Instances per batch when encoding and writing (bounded working memory: ~10 kB per instance).
_WRITE_BATCH = 4096

# Distinct space-separated chunks remembered by the tokenization cache before it is cleared.
_CHUNK_CACHE_LIMIT = 200000


class Options(collections.namedtuple("Options", [
    "max_seq_length", "max_predictions_per_seq", "masked_lm_prob", "short_seq_prob", "dupe_factor",
    "do_whole_word_mask", "do_lower_case", "random_seed", "preserve_unused_tokens"])):
  """Settings of a run (the flags of create_pretraining_data.py, same names and meanings)."""

  def __new__(cls, max_seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.15,
              short_seq_prob=0.1, dupe_factor=5, do_whole_word_mask=False, do_lower_case=True,
              random_seed=12345, preserve_unused_tokens=False):
    return super().__new__(cls, max_seq_length, max_predictions_per_seq, masked_lm_prob,
                           short_seq_prob, dupe_factor, do_whole_word_mask, do_lower_case,
                           random_seed, preserve_unused_tokens)


def max_predictions_needed(max_seq_length, masked_lm_prob):
  """The most predictions masking asks for in a sequence of `max_seq_length` tokens (Google's rule)."""
  return max(1, int(round(max_seq_length * masked_lm_prob)))


def validate_options(options):
  """Checks option values; raises fileio.InputError naming the flag. Returns a list of warnings."""
  o = options
  if o.max_seq_length > 65535:
    raise fileio.InputError("--max_seq_length=%d: must be at most 65535" % o.max_seq_length)
  if o.max_seq_length < 5:
    raise fileio.InputError(
        "--max_seq_length=%d: must be at least 5 ([CLS], one token of A, [SEP], one token of B, "
        "[SEP])" % o.max_seq_length)
  if o.max_predictions_per_seq < 0:
    raise fileio.InputError("--max_predictions_per_seq=%d: must be >= 0" % o.max_predictions_per_seq)
  if not 0.0 <= o.masked_lm_prob <= 1.0:
    raise fileio.InputError("--masked_lm_prob=%r: must be between 0 and 1" % o.masked_lm_prob)
  if not 0.0 <= o.short_seq_prob <= 1.0:
    raise fileio.InputError("--short_seq_prob=%r: must be between 0 and 1" % o.short_seq_prob)
  if o.dupe_factor < 1:
    raise fileio.InputError("--dupe_factor=%d: must be at least 1" % o.dupe_factor)
  warnings = []
  needed = max_predictions_needed(o.max_seq_length, o.masked_lm_prob)
  if o.max_predictions_per_seq < needed:
    warnings.append(
        "--max_predictions_per_seq=%d is smaller than the %d predictions masking produces for a "
        "full sequence (--max_seq_length=%d x --masked_lm_prob=%g); longer sequences get only %d "
        "masked tokens" % (o.max_predictions_per_seq, needed, o.max_seq_length, o.masked_lm_prob,
                           o.max_predictions_per_seq))
  return warnings


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


def load_vocab(vocab_file):
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
    return len(self.doc_starts) - 1

  @property
  def num_sentences(self):
    return len(self.sentence_starts) - 1

  def _end_document(self):
    if self.doc_starts[-1] != self.num_sentences:  # drop empty documents
      self.doc_starts.append(self.num_sentences)

  def read(self, input_files, encoder, progress=None):
    """Reads `input_files` with Google's rules (documents continue across files)."""
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
          if progress is not None and not number & 1023:
            progress.maybe_log(self)
      except OSError as e:
        raise fileio.InputError("--input_file: cannot read %s: %s" % (path, e)) from None
    self._end_document()


# --------------------------------------------------------------------------------------------------
# Random draws. Python's `random.Random` methods, inlined for speed with identical consumption of the
# Mersenne Twister stream: `randint(a, b)` is `a + _randbelow(b - a + 1)` and `_randbelow(n)` draws
# `getrandbits(n.bit_length())` until the value is below n (even for n == 1); `shuffle(x)` swaps x[i]
# with x[_randbelow(i + 1)] for i from len(x) - 1 down to 1.


def _randbelow(getrandbits, n):
  k = n.bit_length()
  r = getrandbits(k)
  while r >= n:
    r = getrandbits(k)
  return r


class _Shuffler(object):
  """`random.Random.shuffle` with the per-length bounds precomputed."""

  def __init__(self, getrandbits):
    self._getrandbits = getrandbits
    self._plans = {}
    self._split_plans = {}

  def _plan(self, n):
    plan = self._plans.get(n)
    if plan is None:
      # Step for i = n-1 .. 1: j = _randbelow(i + 1), then swap x[i] and x[j].
      plan = self._plans[n] = tuple((m, m.bit_length(), m - 1) for m in range(n, 1, -1))
    return plan

  def shuffle(self, x):
    """Shuffles the list (or array) `x` in place exactly as `random.Random.shuffle`."""
    getrandbits = self._getrandbits
    for m, k, i in self._plans.get(len(x)) or self._plan(len(x)):
      j = getrandbits(k)
      while j >= m:
        j = getrandbits(k)
      x[i], x[j] = x[j], x[i]

  def shuffle_prefix(self, x, keep):
    """Like `shuffle`, but only x[:keep] is left meaningful (the draws are the same).

    Once step i has run, x[i] is final and never read again, so for i >= keep only the element
    moving down needs storing.
    """
    n = len(x)
    plans = self._split_plans.get((n, keep))
    if plans is None:
      plan = self._plan(n)
      plans = self._split_plans[(n, keep)] = (
          tuple(s for s in plan if s[2] >= keep), tuple(s for s in plan if s[2] < keep))
    getrandbits = self._getrandbits
    tail, head = plans
    for m, k, i in tail:
      j = getrandbits(k)
      while j >= m:
        j = getrandbits(k)
      x[j] = x[i]
    for m, k, i in head:
      j = getrandbits(k)
      while j >= m:
        j = getrandbits(k)
      x[i], x[j] = x[j], x[i]


def _word_groups(tokens, la, is_cont):
  """Whole-word candidate groups of an instance, or None when every group is a single position.

  As in Google's whole-word masking, a word piece starting with "##" joins the group before it;
  [CLS] and the two [SEP]s are skipped, so a "##" piece right after the middle [SEP] joins the last
  word of segment A.
  """
  groups = []
  grouped = False
  n = len(tokens)
  for pos in range(1, n - 1):
    if pos == la + 1:
      continue
    if groups and is_cont[tokens[pos]]:
      groups[-1].append(pos)
      grouped = True
    else:
      groups.append([pos])
  return groups if grouped else None


# --------------------------------------------------------------------------------------------------
# Instances


class InstanceStore(object):
  """Training instances packed in arrays, in creation order.

  Per instance: its input ids (after masking, unpadded), the length of segment A plus [CLS] and [SEP]
  (where segment 1 starts), its masked positions and original ids (padded with 0 to
  `max_predictions_per_seq`), how many there are, and the next-sentence label.
  """

  def __init__(self, typecode, max_predictions_per_seq):
    self.max_predictions_per_seq = max_predictions_per_seq
    self.tokens = array.array(typecode)
    self.offsets = array.array("q", [0])
    self.segment_starts = array.array("H")
    self.masked_positions = array.array("H")
    self.masked_ids = array.array(typecode)
    self.masked_counts = array.array("H")
    self.next_sentence = array.array("B")

  def __len__(self):
    return len(self.next_sentence)

  def nbytes(self):
    return sum(a.itemsize * len(a) for a in (
        self.tokens, self.offsets, self.segment_starts, self.masked_positions, self.masked_ids,
        self.masked_counts, self.next_sentence))

  def gather(self, indices, max_seq_length):
    """Padded numpy arrays for the instances `indices` (an int64 array), in that order."""
    p = self.max_predictions_per_seq
    tokens = np.frombuffer(self.tokens, dtype=self.tokens.typecode)
    offsets = np.frombuffer(self.offsets, dtype=np.int64)
    starts = offsets[indices]
    lengths = offsets[indices + 1] - starts
    cols = np.arange(max_seq_length, dtype=np.int64)
    valid = cols[None, :] < lengths[:, None]
    if len(tokens):
      idx = np.minimum(starts[:, None] + cols[None, :], len(tokens) - 1)
      input_ids = np.where(valid, tokens[idx], 0).astype(np.uint32)
    else:
      input_ids = np.zeros(valid.shape, np.uint32)
    seg_start = np.frombuffer(self.segment_starts, dtype=np.uint16)[indices].astype(np.int64)
    segment_ids = (valid & (cols[None, :] >= seg_start[:, None])).astype(np.uint32)
    if p:
      positions = np.frombuffer(self.masked_positions, dtype=np.uint16).reshape(-1, p)[indices]
      ids = np.frombuffer(self.masked_ids, dtype=self.masked_ids.typecode).reshape(-1, p)[indices]
    else:
      positions = ids = np.zeros((len(indices), 0), np.uint32)
    counts = np.frombuffer(self.masked_counts, dtype=np.uint16)[indices]
    nsl = np.frombuffer(self.next_sentence, dtype=np.uint8)[indices]
    return {
        "input_ids": input_ids,
        "input_mask": valid.astype(np.uint32),
        "segment_ids": segment_ids,
        "masked_lm_positions": positions.astype(np.uint32),
        "masked_lm_ids": ids.astype(np.uint32),
        "masked_lm_weights": (np.arange(p)[None, :] < counts[:, None]).astype("<f4"),
        "next_sentence_labels": nsl.astype(np.uint32).reshape(-1, 1),
    }


def create_instances(corpus, vocab, options, rng, store, progress=None):
  """Builds every instance of `corpus` into `store` with Google's draws; returns the document order.

  Args:
    corpus: a Corpus with at least one document.
    vocab: a Vocab.
    options: Options.
    rng: the `random.Random` shared with the rest of the run (its state advances exactly as in
      Google's `create_training_instances`, before the final shuffle of instances).
    store: an InstanceStore that receives the instances in creation order.
    progress: optional _Progress.
  """
  o = options
  getrandbits = rng.getrandbits
  rand = rng.random
  shuffler = _Shuffler(getrandbits)
  shuffle = shuffler.shuffle
  shuffle_prefix = shuffler.shuffle_prefix

  num_docs = corpus.num_documents
  order = list(range(num_docs))
  rng.shuffle(order)  # Google shuffles its list of documents: the draws depend only on the count

  doc_starts = corpus.doc_starts
  sent = corpus.sentence_starts
  flat = corpus.tokens
  # Per shuffled position: first sentence index and sentence count of that document.
  doc_first = [doc_starts[d] for d in order]
  doc_nsent = [doc_starts[d + 1] - doc_starts[d] for d in order]

  max_seq_length = o.max_seq_length
  max_num_tokens = max_seq_length - 3
  short_seq_prob = o.short_seq_prob
  p = o.max_predictions_per_seq
  zeros_p = [0] * p
  cls_id, sep_id, mask_id = vocab.cls_id, vocab.sep_id, vocab.mask_id
  vocab_size = vocab.size
  vocab_k = vocab_size.bit_length()
  is_cont = vocab.is_continuation
  wwm = o.do_whole_word_mask
  # num_to_predict by sequence length, with Python 3's round() as in Google's code.
  to_predict = [min(p, max(1, int(round(n * o.masked_lm_prob)))) for n in range(max_seq_length + 1)]
  ranks = list(range(max_seq_length))
  short_k = (max_num_tokens - 1).bit_length()
  docs_k = num_docs.bit_length()

  st_tokens = store.tokens
  st_offsets = store.offsets
  st_seg = store.segment_starts
  st_mpos = store.masked_positions
  st_mids = store.masked_ids
  st_mcnt = store.masked_counts
  st_nsl = store.next_sentence

  for dupe in range(o.dupe_factor):
    for document_index in range(num_docs):
      if progress is not None and not document_index & 255:
        progress.maybe_log_generation(dupe, document_index, num_docs, len(store))
      s0 = doc_first[document_index]
      n_sent = doc_nsent[document_index]

      target_seq_length = max_num_tokens
      if rand() < short_seq_prob:
        # randint(2, max_num_tokens)
        r = getrandbits(short_k)
        while r >= max_num_tokens - 1:
          r = getrandbits(short_k)
        target_seq_length = 2 + r

      i = 0
      chunk_first = s0  # sentence index of the first sentence in the current chunk
      chunk_count = 0
      current_length = 0
      while i < n_sent:
        chunk_count += 1
        current_length += sent[s0 + i + 1] - sent[s0 + i]
        if i == n_sent - 1 or current_length >= target_seq_length:
          a_end = 1
          if chunk_count >= 2:
            a_end = 1 + _randbelow(getrandbits, chunk_count - 1)
          a_lo = sent[chunk_first]
          a_hi = sent[chunk_first + a_end]

          if chunk_count == 1 or rand() < 0.5:
            is_random_next = 1
            target_b_length = target_seq_length - (a_hi - a_lo)
            for _ in range(10):
              r = getrandbits(docs_k)
              while r >= num_docs:
                r = getrandbits(docs_k)
              random_document_index = r
              if random_document_index != document_index:
                break
            r_first = doc_first[random_document_index]
            r_n = doc_nsent[random_document_index]
            random_start = _randbelow(getrandbits, r_n)
            b_lo = sent[r_first + random_start]
            j = r_first + random_start
            last = r_first + r_n
            while True:
              j += 1
              b_hi = sent[j]
              if b_hi - b_lo >= target_b_length or j == last:
                break
            # Google puts the unused sentences of the chunk back.
            i -= chunk_count - a_end
          else:
            is_random_next = 0
            b_lo = a_hi
            b_hi = sent[chunk_first + chunk_count]

          # truncate_seq_pair: one draw per removed token, from the longer segment (B on ties).
          la = a_hi - a_lo
          lb = b_hi - b_lo
          while la + lb > max_num_tokens:
            if la > lb:
              if rand() < 0.5:
                a_lo += 1
              else:
                a_hi -= 1
              la -= 1
            else:
              if rand() < 0.5:
                b_lo += 1
              else:
                b_hi -= 1
              lb -= 1

          # The instance's input ids go straight into the store; masking then edits them there.
          base = len(st_tokens)
          st_tokens.append(cls_id)
          st_tokens += flat[a_lo:a_hi]
          st_tokens.append(sep_id)
          st_tokens += flat[b_lo:b_hi]
          st_tokens.append(sep_id)
          n_tokens = la + lb + 3
          num_to_predict = to_predict[n_tokens]

          groups = None
          if wwm:
            groups = _word_groups(st_tokens[base:base + n_tokens].tolist(), la, is_cont)
          if groups is not None:
            # Google's whole-word masking: a word that would overshoot num_to_predict is skipped.
            shuffle(groups)
            chosen = []
            for group in groups:
              if len(chosen) >= num_to_predict:
                break
              if len(chosen) + len(group) > num_to_predict:
                continue
              chosen += group
          else:
            # Candidates are positions 1..la and la+2..n_tokens-2 ([CLS] and [SEP]s excluded).
            cand = ranks[1:la + 1] + ranks[la + 2:n_tokens - 1]
            shuffle_prefix(cand, num_to_predict)
            chosen = cand[:num_to_predict]
          positions = sorted(chosen)
          labels = [st_tokens[base + pos] for pos in positions]
          # The 80/10/10 draws, in candidate order.
          for pos in chosen:
            if rand() < 0.8:
              st_tokens[base + pos] = mask_id
            elif rand() >= 0.5:
              r = getrandbits(vocab_k)
              while r >= vocab_size:
                r = getrandbits(vocab_k)
              st_tokens[base + pos] = r
          n_masked = len(positions)

          st_offsets.append(base + n_tokens)
          st_seg.append(la + 2)
          st_mpos.extend(positions)
          st_mids.extend(labels)
          if n_masked < p:
            st_mpos.extend(zeros_p[n_masked:])
            st_mids.extend(zeros_p[n_masked:])
          st_mcnt.append(n_masked)
          st_nsl.append(is_random_next)

          chunk_count = 0
          current_length = 0
          chunk_first = s0 + i + 1
        i += 1
  return order


# --------------------------------------------------------------------------------------------------
# Serialization: tf.train.Example protobuf bytes and TFRecord framing, for many records at once.


def _varint_bytes(n):
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _varint_len(values):
  """Varint byte counts (int64 array) of non-negative integers below 2**35 (numpy, any shape)."""
  v = np.asarray(values)
  if v.size and int(v.max()) < 1 << 16:
    return np.take(_VARINT_LEN, v).astype(np.int64)
  n = np.ones(v.shape, np.int64)
  for bits in (7, 14, 21, 28):
    n += v >= (1 << bits)
  return n


def _varint_tables():
  v = np.arange(1 << 16, dtype=np.int64)
  lengths = 1 + (v >= 1 << 7) + (v >= 1 << 14)
  slots = np.empty((1 << 16, 3), np.uint8)
  for s in range(3):
    slots[:, s] = ((v >> (7 * s)) & 0x7F) | ((lengths > s + 1) << 7)
  mask = np.arange(3)[None, :] < lengths[:, None]
  # Contiguous tables per slot count (np.take on a column slice would copy the table every call).
  return ({w: np.ascontiguousarray(slots[:, :w]) for w in (2, 3)},
          {w: np.ascontiguousarray(mask[:, :w]) for w in (2, 3)}, lengths.astype(np.uint8))


# Varint bytes and their validity (2 or 3 slots) and byte count, for every value below 2**16.
_VARINT_SLOTS, _VARINT_MASK, _VARINT_LEN = _varint_tables()


class _Pieces(object):
  """Builds many records at once as rows of byte slots plus a validity mask per slot.

  Each appended piece is a block of columns; a record's bytes are its valid slots read left to right,
  so `join` extracts every record, in order, with one boolean selection.
  """

  def __init__(self, num_records):
    self.n = num_records
    self.bytes = []
    self.masks = []

  def const(self, data):
    row = np.frombuffer(data, np.uint8)
    self.bytes.append(np.broadcast_to(row, (self.n, len(row))))
    self.masks.append(np.ones((self.n, len(row)), bool))

  def raw(self, matrix):
    """Appends fixed-width bytes ([n, w] uint8)."""
    self.bytes.append(matrix)
    self.masks.append(np.ones(matrix.shape, bool))

  def varints(self, values, lengths=None):
    """Appends the varints of `values` ([n, k] non-negative integers below 2**35)."""
    v = np.asarray(values)
    if lengths is None:
      lengths = _varint_len(v)
    width = int(lengths.max()) if lengths.size else 1
    if width == 1:
      self.raw(v.astype(np.uint8))
      return
    if width <= 3 and int(v.max()) < 1 << 16:
      # Values below 65,536 (word-piece ids of most vocabularies): look the bytes up.
      slots = np.take(_VARINT_SLOTS[width], v, axis=0)
      mask = np.take(_VARINT_MASK[width], v, axis=0)
    else:
      v = v.astype(np.int64)
      slots = np.empty(v.shape + (width,), np.uint8)
      for s in range(width):
        slots[..., s] = ((v >> (7 * s)) & 0x7F) | ((lengths > s + 1) << 7)
      mask = np.arange(width)[None, None, :] < lengths[..., None]
    self.bytes.append(slots.reshape(self.n, -1))
    self.masks.append(mask.reshape(self.n, -1))

  def join(self):
    """Returns (flat uint8 data of all records in order, per-record lengths as int64)."""
    data = np.concatenate(self.bytes, axis=1)
    mask = np.concatenate(self.masks, axis=1)
    return data[mask], mask.sum(axis=1).astype(np.int64)


def encode_examples(features):
  """Serializes a batch of tf.train.Examples exactly as Google's protobuf call does.

  Args:
    features: dict of feature name -> [n, k] array (non-negative integers for the int64 features,
      float32 for masked_lm_weights), as returned by InstanceStore.gather.

  Returns:
    (data, lengths): the concatenated serialized records (uint8 array) and each one's length.
  """
  n = features["input_ids"].shape[0]
  # First the length of every nested message, per record (they prefix the messages).
  parts = []
  features_len = np.zeros(n, np.int64)
  for name in SERIALIZED_FEATURE_ORDER:
    values = features[name]
    key = name.encode("ascii")
    count = values.shape[1]
    if name == "masked_lm_weights":
      payload_lens = None
      packed_len = np.full(n, 4 * count, np.int64)
      list_tag = b"\x12"  # Feature.float_list
    else:
      if count and int(values.max()) < 128:
        payload_lens = None  # one byte per value
        packed_len = np.full(n, count, np.int64)
      else:
        payload_lens = _varint_len(values)
        packed_len = payload_lens.sum(axis=1)
      list_tag = b"\x1a"  # Feature.int64_list
    if count:  # a packed field with no values is not written at all
      list_len = 1 + _varint_len(packed_len) + packed_len
    else:
      list_len = np.zeros(n, np.int64)
    feature_len = 1 + _varint_len(list_len) + list_len
    entry_len = 2 + len(key) + 1 + _varint_len(feature_len) + feature_len
    features_len += 1 + _varint_len(entry_len) + entry_len
    parts.append((name, key, values, payload_lens, packed_len, list_tag, count, list_len,
                  feature_len, entry_len))

  pieces = _Pieces(n)
  pieces.const(b"\x0a")  # Example.features
  pieces.varints(features_len[:, None])
  for (name, key, values, payload_lens, packed_len, list_tag, count, list_len, feature_len,
       entry_len) in parts:
    pieces.const(b"\x0a")  # an entry of the Features.feature map
    pieces.varints(entry_len[:, None])
    pieces.const(b"\x0a" + _varint_bytes(len(key)) + key + b"\x12")  # key, then the value's tag
    pieces.varints(feature_len[:, None])
    pieces.const(list_tag)
    pieces.varints(list_len[:, None])
    if count:
      pieces.const(b"\x0a")  # the packed `value` field
      pieces.varints(packed_len[:, None])
      if name == "masked_lm_weights":
        pieces.raw(np.ascontiguousarray(values, dtype="<f4").view(np.uint8).reshape(n, -1))
      elif payload_lens is None:
        pieces.raw(values.astype(np.uint8))
      else:
        pieces.varints(values, payload_lens)
  return pieces.join()


_CRC32C_POLY = 0x82F63B78


def _crc_tables():
  """Tables for CRC-32C four bytes at a time, and the usual one-byte table."""
  x = np.arange(1 << 16, dtype=np.uint32)

  def shift(values, nbits):
    r = values.copy()
    for _ in range(nbits):
      r = np.where(r & 1, (r >> 1) ^ np.uint32(_CRC32C_POLY), r >> 1).astype(np.uint32)
    return r
  # register' = LO[v & 0xFFFF] ^ HI[v >> 16] where v = register ^ (next 4 bytes, little-endian).
  return shift(x, 32), shift(x << np.uint32(16), 32), [int(v) for v in shift(x[:256], 8)]


_CRC_LO, _CRC_HI, _CRC_BYTE = _crc_tables()
# _INIT_EFFECT[k]: what the initial register value 0xFFFFFFFF has become after k bytes, all else 0.
_INIT_EFFECT = [0xFFFFFFFF]


def _init_effects(lengths):
  """The linear contribution of the initial register to the CRC of each length in `lengths`."""
  top = int(lengths.max())
  table = _INIT_EFFECT
  while len(table) <= top:
    r = table[-1]
    table.append(_CRC_BYTE[r & 0xFF] ^ (r >> 8))
  return np.array(table, np.uint32)[lengths]


def crc32c_batch(data, starts, lengths):
  """CRC-32C (Castagnoli) of many byte strings at once.

  Args:
    data: bytes-like holding the strings.
    starts, lengths: int64 arrays locating each string in `data`.

  The strings are right-aligned in a zero-padded matrix and run through the CRC register starting
  from 0 four bytes at a time; leading zeros then change nothing (the CRC is linear), and the
  standard initial value's contribution, which depends only on the length, is added at the end.
  """
  n = len(lengths)
  if n == 0:
    return np.zeros(0, np.uint32)
  width = (int(lengths.max()) + 3) // 4 * 4
  mat = bytearray(n * width)
  view = memoryview(data)
  row_end = width
  for start, length in zip(starts.tolist(), lengths.tolist()):
    mat[row_end - length:row_end] = view[start:start + length]
    row_end += width
  words = np.frombuffer(mat, "<u4").reshape(n, width // 4).T.copy()
  reg = np.zeros(n, np.uint32)
  lo, hi = _CRC_LO, _CRC_HI
  for row in words:
    v = reg ^ row
    reg = lo[v & 0xFFFF] ^ hi[v >> 16]
  return reg ^ _init_effects(lengths) ^ np.uint32(0xFFFFFFFF)


def masked_crc32c_batch(data, starts, lengths):
  """TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8, mod 2**32."""
  crc = crc32c_batch(data, starts, lengths).astype(np.uint64)
  return ((((crc >> np.uint64(15)) | (crc << np.uint64(17))) + np.uint64(0xA282EAD8)) &
          np.uint64(0xFFFFFFFF)).astype(np.uint32)


def frame_tfrecords(data, lengths):
  """TFRecord framing of serialized records: returns the bytes to append to a .tfrecord file.

  Each record is: its length (uint64 LE), the masked CRC-32C of those 8 bytes (uint32 LE), the data,
  the masked CRC-32C of the data (uint32 LE).
  """
  n = len(lengths)
  lengths = np.asarray(lengths, np.int64)
  starts = np.zeros(n, np.int64)
  if n:
    starts[1:] = np.cumsum(lengths)[:-1]
  data = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
  header = lengths.astype("<u8").tobytes()
  header_crc = masked_crc32c_batch(header, np.arange(n, dtype=np.int64) * 8,
                                   np.full(n, 8, np.int64))
  heads = np.empty((n, 12), np.uint8)
  heads[:, :8] = np.frombuffer(header, np.uint8).reshape(n, 8)
  heads[:, 8:] = header_crc.astype("<u4").view(np.uint8).reshape(n, 4)
  heads = heads.tobytes()
  tails = masked_crc32c_batch(data, starts, lengths).astype("<u4").tobytes()
  out = []
  append = out.append
  view = memoryview(data)
  for r, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
    append(heads[12 * r:12 * r + 12])
    append(view[start:start + length])
    append(tails[4 * r:4 * r + 4])
  return b"".join(out)


# --------------------------------------------------------------------------------------------------
# Progress


class _Progress(object):
  """Periodic progress lines: documents read, instances made and written, rate, ETA."""

  def __init__(self, total_bytes, dupe_factor, every_seconds=30.0, label=""):
    self.total_bytes = max(1, total_bytes)
    self.dupe_factor = dupe_factor
    self.every = every_seconds
    self.label = label
    self.start = time.time()
    self.last = self.start
    self.phase_start = self.start

  def _due(self):
    now = time.time()
    if now - self.last < self.every:
      return None
    self.last = now
    return now

  def start_phase(self):
    self.phase_start = time.time()

  def maybe_log(self, corpus):
    now = self._due()
    if now is None:
      return
    elapsed = max(1e-9, now - self.phase_start)
    frac = corpus.bytes_read / self.total_bytes
    rate = corpus.bytes_read / elapsed
    eta = (self.total_bytes - corpus.bytes_read) / rate if rate > 0 else 0.0
    logging.info("%sreading: %d documents, %.1f of %.1f MB (%.0f%%), %.1f MB/s, ETA %.0f s",
                 self.label, corpus.num_documents, corpus.bytes_read / 1e6, self.total_bytes / 1e6,
                 100 * frac, rate / 1e6, eta)

  def maybe_log_generation(self, dupe, doc_index, num_docs, num_instances):
    now = self._due()
    if now is None:
      return
    elapsed = max(1e-9, now - self.phase_start)
    done = dupe * num_docs + doc_index
    total = num_docs * self.dupe_factor
    rate = num_instances / elapsed
    eta = elapsed * (total - done) / max(1, done)
    logging.info("%smaking instances: pass %d of %d, document %d of %d, %d instances, "
                 "%.0f instances/s, ETA %.0f s", self.label, dupe + 1, self.dupe_factor, doc_index,
                 num_docs, num_instances, rate, eta)

  def maybe_log_writing(self, written, total, force=False):
    now = time.time() if force else self._due()
    if now is None:
      return
    elapsed = max(1e-9, now - self.phase_start)
    rate = written / elapsed
    eta = (total - written) / rate if rate > 0 else 0.0
    logging.info("%swriting: %d of %d instances (%.0f%%), %.0f instances/s, ETA %.0f s",
                 self.label, written, total, 100.0 * written / max(1, total), rate, eta)


# --------------------------------------------------------------------------------------------------
# Writing


def _log_example(features, row, vocab_words):
  """Logs one instance as Google does for its first 20 (tokens and feature values)."""
  logging.info("*** Example ***")
  ids = features["input_ids"][row]
  n = int(features["input_mask"][row].sum())
  logging.info("tokens: %s", " ".join(vocab_words[int(t)] for t in ids[:n]))
  for name in FEATURE_NAMES:
    values = features[name][row]
    if name == "masked_lm_weights":
      text = " ".join(str(float(v)) for v in values)
    else:
      text = " ".join(str(int(v)) for v in values)
    logging.info("%s: %s", name, text)


def write_instances(store, permutation, output_paths, options, vocab_words=None, log_examples=0,
                    progress=None):
  """Writes the instances in `permutation` order round-robin over `output_paths` (TFRecord files).

  Returns:
    a list with the number of records written to each path.
  """
  num_files = len(output_paths)
  counts = [0] * num_files
  perm = np.frombuffer(permutation, dtype=np.int64) if not isinstance(
      permutation, np.ndarray) else permutation
  total = len(perm)
  files = []
  try:
    for path in output_paths:
      files.append(open(path, "wb"))
    written = 0
    # A multiple of the number of files keeps the round-robin phase aligned from batch to batch.
    batch = max(num_files, _WRITE_BATCH // num_files * num_files)
    for begin in range(0, total, batch):
      idx = perm[begin:begin + batch]
      features = store.gather(idx, options.max_seq_length)
      if log_examples and begin < log_examples:
        for row in range(min(len(idx), log_examples - begin)):
          _log_example(features, row, vocab_words)
      for f in range(num_files):
        rows = np.arange(f, len(idx), num_files)
        if not len(rows):
          continue
        part = {k: v[rows] for k, v in features.items()}
        data, lengths = encode_examples(part)
        files[f].write(frame_tfrecords(data, lengths))
        counts[f] += len(rows)
      written += len(idx)
      if progress is not None:
        progress.maybe_log_writing(written, total)
  finally:
    for fh in files:
      fh.close()
  return counts


# --------------------------------------------------------------------------------------------------
# Whole runs


def shard_seed(random_seed, shard_index):
  """The RNG seed of shard `shard_index` in sharded mode.

  The first 8 bytes (big-endian) of SHA-256 of the ASCII text "<random_seed>:<shard_index>", so that
  every shard's draws depend only on the seed and its position in the input list, not on the number
  of workers.
  """
  digest = hashlib.sha256(("%d:%d" % (random_seed, shard_index)).encode("ascii")).digest()
  return int.from_bytes(digest[:8], "big")


def shard_output_path(output_path, shard_index, num_shards):
  """`<output>-<shard>-of-<n>` with 5-digit numbers, TensorFlow's sharded-file convention."""
  return "%s-%05d-of-%05d" % (output_path, shard_index, num_shards)


def _total_size(paths):
  total = 0
  for path in paths:
    with contextlib.suppress(OSError):
      total += os.path.getsize(path)
  return total


def _make_one(input_files, output_files, temp_outputs, vocab, encoder, options, seed, log_examples,
              label, progress_seconds):
  """Reads, builds and writes one independent set (the whole run, or one shard). Returns a summary.

  The records go to `temp_outputs`; the caller renames them to `output_files` (logged) on success.
  """
  progress = _Progress(_total_size(input_files), options.dupe_factor,
                       every_seconds=progress_seconds, label=label)
  t0 = time.time()
  corpus = Corpus(vocab.id_typecode)
  corpus.read(input_files, encoder, progress)
  if corpus.num_documents == 0:
    raise fileio.InputError("--input_file: no non-empty document in %s" % ", ".join(input_files))
  t_read = time.time()
  logging.info("%sread %d documents, %d sentences, %d word pieces in %.1f s", label,
               corpus.num_documents, corpus.num_sentences, len(corpus.tokens), t_read - t0)

  rng = random.Random(seed)
  store = InstanceStore(vocab.id_typecode, options.max_predictions_per_seq)
  progress.start_phase()
  create_instances(corpus, vocab, options, rng, store, progress)
  # Google's final rng.shuffle(instances): shuffling the indices draws the same numbers.
  permutation = array.array("q", range(len(store)))
  _Shuffler(rng.getrandbits).shuffle(permutation)
  t_make = time.time()
  logging.info("%smade %d instances in %.1f s (%.1f MB packed)", label, len(store), t_make - t_read,
               store.nbytes() / 1e6)
  del corpus

  progress.start_phase()
  logging.info("%s*** Writing to output files ***", label)
  for path in output_files:
    logging.info("%s  %s", label, path)
  counts = write_instances(store, permutation, temp_outputs, options, vocab_words=vocab.words,
                           log_examples=log_examples, progress=progress)
  progress.maybe_log_writing(len(store), len(store), force=True)
  return {"instances": len(store), "counts": counts, "seconds": time.time() - t0}


def _sidecar_record(options, vocab_file, vocab_sha256, input_files, output_path, count, total,
                    shard=None):
  record = {
      "tool": "create_pretraining_data",
      "flags": dict(options._asdict()),
      "vocab_file": vocab_file,
      "vocab_sha256": vocab_sha256,
      "input_files": list(input_files),
      "output_file": output_path,
      "instances": count,
      "total_instances": total,
  }
  if shard is not None:
    record["shard"] = shard
  return record


def _shard_worker(args):
  """Runs one shard in a worker process; returns (shard index, temp paths, summary)."""
  (shard, num_shards, input_file, final_outputs, temp_outputs, vocab_file, options, log_examples,
   progress_seconds, verbosity) = args
  logging.set_verbosity(verbosity)
  vocab = Vocab(load_vocab(vocab_file), vocab_file)
  encoder = LineEncoder(vocab.vocab, options.do_lower_case, options.preserve_unused_tokens,
                        vocab_file)
  label = "[shard %d/%d] " % (shard + 1, num_shards)
  summary = _make_one([input_file], final_outputs, temp_outputs, vocab, encoder, options,
                      shard_seed(options.random_seed, shard), log_examples if shard == 0 else 0,
                      label, progress_seconds)
  return shard, summary


def create_pretraining_data(input_files, output_files, vocab_file, options, num_workers=1,
                            shard_per_file=False, log_examples=0, progress_seconds=30.0):
  """Writes masked-LM pretraining TFRecords (and a JSON sidecar next to each).

  Args:
    input_files: list of text files (one sentence per line, blank line between documents).
    output_files: list of output paths; instances go round-robin over them.
    vocab_file: WordPiece vocabulary.
    options: Options.
    num_workers: 1 reproduces Google's script byte for byte; more processes shard by input file.
    shard_per_file: shard by input file even with one worker (same bytes as any num_workers > 1).
    log_examples: log this many instances (tokens and features); 0 keeps clinical text out of logs.
    progress_seconds: interval between progress lines.

  Returns:
    a dict with the paths written and the instance counts.

  Raises:
    fileio.InputError: bad flags, vocabulary or input. No output is left behind.
  """
  for warning in validate_options(options):
    logging.warning(warning)
  if num_workers < 1:
    raise fileio.InputError("--num_workers=%d: must be at least 1" % num_workers)
  if not output_files:
    raise fileio.InputError("--output_file is empty: expected a path or a comma list of paths")
  for path in output_files:
    if "://" in path:
      raise fileio.InputError("--output_file %s: only local paths are supported (outputs are "
                              "written under a temporary name and renamed)" % path)
    if output_files.count(path) > 1:
      raise fileio.InputError("--output_file lists %s more than once" % path)
  if not input_files:
    raise fileio.InputError("--input_file: no input files")
  for path in input_files:
    if "://" not in path and not os.path.isfile(path):
      raise fileio.InputError("--input_file: %s is not a file" % path)
  vocab = Vocab(load_vocab(vocab_file), vocab_file)
  vocab_sha256 = fileio.sha256_of_file(vocab_file) if "://" not in vocab_file else None
  sharded = num_workers > 1 or shard_per_file

  if not sharded:
    encoder = LineEncoder(vocab.vocab, options.do_lower_case, options.preserve_unused_tokens,
                          vocab_file)
    with contextlib.ExitStack() as stack:
      temps = [stack.enter_context(fileio.atomic_output(path)) for path in output_files]
      summary = _make_one(input_files, output_files, temps, vocab, encoder, options,
                          options.random_seed, log_examples, "", progress_seconds)
    for path, count in zip(output_files, summary["counts"]):
      fileio.write_sidecar(path, _sidecar_record(options, vocab_file, vocab_sha256, input_files,
                                                 path, count, summary["instances"]))
    logging.info("Wrote %d total instances", summary["instances"])
    return {"outputs": list(output_files), "counts": summary["counts"],
            "instances": summary["instances"]}

  num_shards = len(input_files)
  finals = [[shard_output_path(out, s, num_shards) for out in output_files]
            for s in range(num_shards)]
  temps = [[fileio.temporary_path_for(path) for path in paths] for paths in finals]
  jobs = [(s, num_shards, input_files[s], finals[s], temps[s], vocab_file, options, log_examples,
           progress_seconds, logging.get_verbosity()) for s in range(num_shards)]
  summaries = {}
  try:
    for paths in finals:
      for path in paths:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if num_workers == 1 or num_shards == 1:
      for job in jobs:
        shard, summary = _shard_worker(job)
        summaries[shard] = summary
    else:
      import concurrent.futures  # pylint: disable=g-import-not-at-top
      import multiprocessing  # pylint: disable=g-import-not-at-top
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(
          max_workers=min(num_workers, num_shards), mp_context=context) as pool:
        for shard, summary in pool.map(_shard_worker, jobs):
          summaries[shard] = summary
    # Every shard succeeded: only now do outputs appear under their final names.
    for s in range(num_shards):
      for temp, final in zip(temps[s], finals[s]):
        os.replace(temp, final)
  except BaseException:
    for paths in temps:
      for temp in paths:
        with contextlib.suppress(OSError):
          os.remove(temp)
    raise
  total = sum(summary["instances"] for summary in summaries.values())
  outputs = []
  counts = []
  for s in range(num_shards):
    for path, count in zip(finals[s], summaries[s]["counts"]):
      fileio.write_sidecar(path, _sidecar_record(
          options, vocab_file, vocab_sha256, [input_files[s]], path, count,
          summaries[s]["instances"], shard={"index": s, "count": num_shards,
                                            "seed": shard_seed(options.random_seed, s)}))
      outputs.append(path)
      counts.append(count)
  logging.info("Wrote %d total instances in %d shards", total, num_shards)
  return {"outputs": outputs, "counts": counts, "instances": total}
