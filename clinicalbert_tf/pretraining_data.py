"""Masked-LM / next-sentence pretraining data: Google's TFRecords, faster and in bounded memory.

`create_pretraining_data(...)` writes the same bytes as google-research/bert's
`create_pretraining_data.py` (bert-tensorflow 1.0.4 under the same Python 3) for the same inputs and
flags, and adds whole-word masking with Google's later rule. What is reproduced, in Google's order:

  * reading and tokenizing (pretraining_text.py): files in the order given, documents running on
    across files, TF's line splitting, `str.strip`, blank lines ending documents, lines without word
    pieces and empty documents dropped;
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
  * documents are one flat array of word-piece ids with sentence offsets (pretraining_text.Corpus,
    tokenization memoised per space-separated chunk); segments A and B are always contiguous runs of
    it, so an instance is a few integer bounds until it is written;
  * with per-piece masking and max_seq_length <= 258 (the fast path, pretraining_fast.py), the
    Mersenne Twister words are generated with numpy (the same generator and state as
    `random.Random`) and read directly; each candidate shuffle, most of Google's draws, is skipped
    with one regular-expression match over the words' top bytes, truncation is counted from top
    bits, and a second numpy pass runs the shuffles and masking of thousands of instances at once.
    Otherwise the draws inline `random.Random` internals (`getrandbits` with the same rejection
    loop as `_randbelow`);
  * instances are kept as packed arrays (~350 bytes each at length 128, instead of Python objects),
    and written in batches: the Example protobuf bytes, the TFRecord framing and its CRC-32C are
    computed with numpy for thousands of records at a time (tfrecord.py), without importing
    TensorFlow.

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
from clinicalbert_tf import pretraining_fast
from clinicalbert_tf import pretraining_text
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import tfrecord

# Feature names in the order Google's script inserts them into the Example (its OrderedDict).
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                 "masked_lm_weights", "next_sentence_labels")

# The order in which protobuf 4.25 (upb) serializes those seven map entries: upb writes a map in its
# hash-table order, which for these keys inserted in Google's order is this one (fixed, not seeded per
# process): `tfrecord.serialized_feature_order(FEATURE_NAMES)`, written out here so that
# writing needs no TensorFlow. A test checks it against tf.train.Example.SerializeToString().
SERIALIZED_FEATURE_ORDER = ("masked_lm_ids", "input_ids", "masked_lm_positions",
                            "next_sentence_labels", "input_mask", "masked_lm_weights", "segment_ids")

# Instances per batch when encoding and writing (bounded working memory: ~10 kB per instance).
_WRITE_BATCH = 4096


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

  Google's `create_training_instances` after reading: shuffle the documents, then `dupe_factor`
  passes of `create_instances_from_document` over them. Each step is one function below; each
  binds what its loop needs once, so that the calls per instance stay cheap.

  Args:
    corpus: a pretraining_text.Corpus with at least one document.
    vocab: a pretraining_text.Vocab.
    options: Options.
    rng: the `random.Random` shared with the rest of the run (its state advances exactly as in
      Google's `create_training_instances`, before the final shuffle of instances).
    store: an InstanceStore that receives the instances in creation order.
    progress: optional progress.Progress counting documents over all passes.
  """
  num_docs = corpus.num_documents
  order = list(range(num_docs))
  rng.shuffle(order)  # Google shuffles its list of documents: the draws depend only on the count
  doc_starts = corpus.doc_starts
  # Per shuffled position: first sentence index and sentence count of that document.
  doc_first = [doc_starts[d] for d in order]
  doc_nsent = [doc_starts[d + 1] - doc_starts[d] for d in order]

  if pretraining_fast.applies(options):
    pretraining_fast.create_instances(corpus, doc_first, doc_nsent, vocab, options, rng, store,
                                      progress)
    return order
  add_instance = _instance_adder(store, corpus.tokens, vocab, options, rng)
  document_instances = _document_instance_maker(corpus.sentence_starts, doc_first, doc_nsent,
                                                options, rng, add_instance)
  for dupe in range(options.dupe_factor):
    for document_index in range(num_docs):
      if progress is not None and not document_index & 255 and progress.due():
        progress.log(dupe * num_docs + document_index, "pass %d of %d, %d instances, %.0f "
                     "instances/s" % (dupe + 1, options.dupe_factor, len(store),
                                      progress.rate(len(store))))
      document_instances(document_index)
  return order


def _document_instance_maker(sent, doc_first, doc_nsent, options, rng, add_instance):
  """Returns `make(document_index)`: Google's `create_instances_from_document` for one document.

  Args:
    sent: the corpus's sentence starts (sentence s is tokens[sent[s]:sent[s + 1]]).
    doc_first, doc_nsent: first sentence and sentence count per shuffled document position.
    options: Options.
    rng: the run's `random.Random`.
    add_instance: `_instance_adder`'s function; gets the token bounds of segments A and B.

  Sentences are gathered into a chunk until it reaches the target length (or the document ends);
  a random number of them form segment A; B is the rest of the chunk, or (half the time, and
  always for a one-sentence chunk) a random run of another document, the unused sentences then
  going back to the document.
  """
  getrandbits = rng.getrandbits
  rand = rng.random
  draw_target_length = _target_length_draw(getrandbits, rand, options)
  random_segment = _random_segment_picker(sent, doc_first, doc_nsent, getrandbits)
  truncate = _pair_truncator(rand, options.max_seq_length - 3)

  def make(document_index):
    s0 = doc_first[document_index]
    n_sent = doc_nsent[document_index]
    target_seq_length = draw_target_length()
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
          b_lo, b_hi = random_segment(document_index, target_seq_length - (a_hi - a_lo))
          # Google puts the unused sentences of the chunk back.
          i -= chunk_count - a_end
        else:
          is_random_next = 0
          b_lo = a_hi
          b_hi = sent[chunk_first + chunk_count]
        a_lo, a_hi, b_lo, b_hi = truncate(a_lo, a_hi, b_lo, b_hi)
        add_instance(a_lo, a_hi, b_lo, b_hi, is_random_next)
        chunk_count = 0
        current_length = 0
        chunk_first = s0 + i + 1
      i += 1
  return make


def _target_length_draw(getrandbits, rand, options):
  """Returns `draw()`: a document's target length, short (`randint(2, max)`) with short_seq_prob."""
  max_num_tokens = options.max_seq_length - 3
  short_seq_prob = options.short_seq_prob
  short_k = (max_num_tokens - 1).bit_length()

  def draw():
    if rand() < short_seq_prob:
      # randint(2, max_num_tokens)
      r = getrandbits(short_k)
      while r >= max_num_tokens - 1:
        r = getrandbits(short_k)
      return 2 + r
    return max_num_tokens
  return draw


def _random_segment_picker(sent, doc_first, doc_nsent, getrandbits):
  """Returns `pick(document_index, target_b_length)`: the token bounds of a random segment B.

  Google's draws: up to 10 `randint`s for a document other than the current one (the last one is
  taken if all 10 hit it), one for the start sentence; sentences are then added until the segment
  reaches the target length or the document ends.
  """
  num_docs = len(doc_first)
  docs_k = num_docs.bit_length()

  def pick(document_index, target_b_length):
    for _ in range(10):
      r = getrandbits(docs_k)
      while r >= num_docs:
        r = getrandbits(docs_k)
      if r != document_index:
        break
    r_first = doc_first[r]
    r_n = doc_nsent[r]
    j = r_first + _randbelow(getrandbits, r_n)
    b_lo = sent[j]
    last = r_first + r_n
    while True:
      j += 1
      b_hi = sent[j]
      if b_hi - b_lo >= target_b_length or j == last:
        return b_lo, b_hi
  return pick


def _pair_truncator(rand, max_num_tokens):
  """Returns `truncate(a_lo, a_hi, b_lo, b_hi)`: Google's `truncate_seq_pair` on token bounds.

  Until A and B fit in `max_num_tokens`, one token goes from the longer segment (B on ties), from
  its front or back by one `random() < 0.5` draw.
  """
  def truncate(a_lo, a_hi, b_lo, b_hi):
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
    return a_lo, a_hi, b_lo, b_hi
  return truncate


def _instance_adder(store, flat, vocab, options, rng):
  """Returns `add(a_lo, a_hi, b_lo, b_hi, is_random_next)`: masks one instance into `store`.

  The input ids `[CLS] A [SEP] B [SEP]` (A and B token bounds into `flat`, the corpus's tokens) go
  straight into the store; masking then edits them there. Google's masking: `num_to_predict`
  positions from the candidates (`_candidate_chooser`), then per chosen position, in draw order,
  `random() < 0.8`: [MASK]; else `random() < 0.5`: kept; else a random word of the vocabulary.
  """
  getrandbits = rng.getrandbits
  rand = rng.random
  p = options.max_predictions_per_seq
  zeros_p = [0] * p
  cls_id, sep_id, mask_id = vocab.cls_id, vocab.sep_id, vocab.mask_id
  vocab_size = vocab.size
  vocab_k = vocab_size.bit_length()
  # num_to_predict by sequence length, with Python 3's round() as in Google's code.
  to_predict = [min(p, max(1, int(round(n * options.masked_lm_prob))))
                for n in range(options.max_seq_length + 1)]
  st_tokens = store.tokens
  append_token = st_tokens.append
  extend_tokens = st_tokens.extend
  st_offsets = store.offsets
  st_seg = store.segment_starts
  st_mpos = store.masked_positions
  st_mids = store.masked_ids
  st_mcnt = store.masked_counts
  st_nsl = store.next_sentence
  choose = _candidate_chooser(st_tokens, vocab, options, getrandbits)

  def add(a_lo, a_hi, b_lo, b_hi, is_random_next):
    la = a_hi - a_lo
    base = len(st_tokens)
    append_token(cls_id)
    extend_tokens(flat[a_lo:a_hi])
    append_token(sep_id)
    extend_tokens(flat[b_lo:b_hi])
    append_token(sep_id)
    n_tokens = la + (b_hi - b_lo) + 3
    chosen = choose(base, la, n_tokens, to_predict[n_tokens])
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
  return add


def _candidate_chooser(tokens, vocab, options, getrandbits):
  """Returns `choose(base, la, n_tokens, num_to_predict)`: the positions to mask, in draw order.

  The instance is `tokens[base:base + n_tokens]` with segment A `la` tokens long. Candidates are
  every position but [CLS] and the two [SEP]s, shuffled (Google's `rng.shuffle(cand_indexes)`);
  with whole-word masking a candidate is a word (`_word_groups`), and a word that would overshoot
  `num_to_predict` is skipped.
  """
  shuffler = _Shuffler(getrandbits)
  shuffle = shuffler.shuffle
  shuffle_prefix = shuffler.shuffle_prefix
  ranks = list(range(options.max_seq_length))
  is_cont = vocab.is_continuation

  def choose_pieces(base, la, n_tokens, num_to_predict):
    # Candidates are positions 1..la and la+2..n_tokens-2 ([CLS] and [SEP]s excluded).
    cand = ranks[1:la + 1] + ranks[la + 2:n_tokens - 1]
    shuffle_prefix(cand, num_to_predict)
    return cand[:num_to_predict]

  def choose_words(base, la, n_tokens, num_to_predict):
    groups = _word_groups(tokens[base:base + n_tokens].tolist(), la, is_cont)
    if groups is None:  # one piece per word: the same draws and choice as single positions
      return choose_pieces(base, la, n_tokens, num_to_predict)
    shuffle(groups)
    chosen = []
    for group in groups:
      if len(chosen) >= num_to_predict:
        break
      if len(chosen) + len(group) > num_to_predict:
        continue
      chosen += group
    return chosen
  return choose_words if options.do_whole_word_mask else choose_pieces


# --------------------------------------------------------------------------------------------------
# Writing


def encode_features(features):
  """Serialized Examples of a batch of instances (`InstanceStore.gather`'s arrays), Google's bytes.

  Returns:
    (data, lengths): the concatenated records (uint8 array) and each one's length.
  """
  return tfrecord.encode_examples([(name, features[name]) for name in SERIALIZED_FEATURE_ORDER])


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

  Args:
    store: the InstanceStore.
    permutation: the order to write them in (int64 array or array.array("q")).
    output_paths: the files to write (created or overwritten).
    options: Options.
    vocab_words: the vocabulary's tokens, for `log_examples`.
    log_examples: log the first this many instances written.
    progress: optional progress.Progress counting the instances written.

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
        if num_files == 1:
          part = features
        else:
          rows = np.arange(f, len(idx), num_files)
          if not len(rows):
            continue
          part = {k: v[rows] for k, v in features.items()}
        data, lengths = encode_features(part)
        files[f].write(tfrecord.frame_tfrecords(data, lengths))
        counts[f] += len(lengths)
      written += len(idx)
      if progress is not None:
        progress.maybe_log(written)
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
  t0 = time.time()
  corpus = _read_corpus(input_files, vocab, encoder, progress_seconds, label)
  t_read = time.time()
  store, permutation = _make_instances(corpus, vocab, options, seed, progress_seconds, label)
  logging.info("%smade %d instances in %.1f s (%.1f MB packed)", label, len(store),
               time.time() - t_read, store.nbytes() / 1e6)
  del corpus

  logging.info("%s*** Writing to output files ***", label)
  for path in output_files:
    logging.info("%s  %s", label, path)
  progress = progress_lib.Progress("instances", total=len(store), every_seconds=progress_seconds,
                                   label=label + "writing: ")
  counts = write_instances(store, permutation, temp_outputs, options, vocab_words=vocab.words,
                           log_examples=log_examples, progress=progress)
  progress.log(len(store))
  return {"instances": len(store), "counts": counts, "seconds": time.time() - t0}


def _read_corpus(input_files, vocab, encoder, progress_seconds, label):
  """The Corpus of `input_files`; raises fileio.InputError if it has no document."""
  t0 = time.time()
  progress = progress_lib.Progress("kB", total=max(1, _total_size(input_files) // 1000),
                                   every_seconds=progress_seconds, label=label + "reading: ")
  corpus = pretraining_text.Corpus(vocab.id_typecode)
  corpus.read(input_files, encoder, progress)
  if corpus.num_documents == 0:
    raise fileio.InputError("--input_file: no non-empty document in %s" % ", ".join(input_files))
  logging.info("%sread %d documents, %d sentences, %d word pieces in %.1f s", label,
               corpus.num_documents, corpus.num_sentences, len(corpus.tokens), time.time() - t0)
  return corpus


def _make_instances(corpus, vocab, options, seed, progress_seconds, label):
  """(InstanceStore, the order to write it in): Google's instances and final shuffle."""
  rng = random.Random(seed)
  store = InstanceStore(vocab.id_typecode, options.max_predictions_per_seq)
  progress = progress_lib.Progress(
      "documents", total=corpus.num_documents * options.dupe_factor,
      every_seconds=progress_seconds, label=label + "making instances: ")
  create_instances(corpus, vocab, options, rng, store, progress)
  # Google's final rng.shuffle(instances): shuffling the indices draws the same numbers.
  permutation = array.array("q", range(len(store)))
  _Shuffler(rng.getrandbits).shuffle(permutation)
  return store, permutation


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
  vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(vocab_file),
                                 vocab_file)
  encoder = pretraining_text.LineEncoder(vocab.vocab, options.do_lower_case,
                                         options.preserve_unused_tokens, vocab_file)
  label = "[shard %d/%d] " % (shard + 1, num_shards)
  summary = _make_one([input_file], final_outputs, temp_outputs, vocab, encoder, options,
                      shard_seed(options.random_seed, shard), log_examples if shard == 0 else 0,
                      label, progress_seconds)
  return shard, summary


def create_pretraining_data(input_files, output_files, vocab_file, options, num_workers=1,
                            shard_per_file=False, log_examples=0, progress_seconds=30.0,
                            map_shards=None):
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
    map_shards: (fn, jobs) -> [fn(job) for job in jobs], run elsewhere (sharded mode:
      `engines.spark.map_shards` runs one Spark task per shard); None: this machine's processes.

  Returns:
    a dict with the paths written and the instance counts.

  Raises:
    fileio.InputError: bad flags, vocabulary or input. No output is left behind.
  """
  for warning in validate_options(options):
    logging.warning(warning)
  _check_paths(input_files, output_files, num_workers)
  vocab = pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(vocab_file),
                                 vocab_file)
  vocab_sha256 = fileio.sha256_of_file(vocab_file) if "://" not in vocab_file else None
  if num_workers > 1 or shard_per_file or map_shards is not None:
    return _create_sharded(input_files, output_files, vocab_file, vocab_sha256, options,
                           num_workers, log_examples, progress_seconds, map_shards)

  encoder = pretraining_text.LineEncoder(vocab.vocab, options.do_lower_case,
                                         options.preserve_unused_tokens, vocab_file)
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


def _check_paths(input_files, output_files, num_workers):
  """Raises fileio.InputError, naming the flag, for outputs, inputs or workers that cannot work."""
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
    fileio.check_output_file(path)
  if not input_files:
    raise fileio.InputError("--input_file: no input files")
  for path in input_files:
    if "://" not in path and not os.path.isfile(path):
      raise fileio.InputError("--input_file: %s is not a file" % path)


def _create_sharded(input_files, output_files, vocab_file, vocab_sha256, options, num_workers,
                    log_examples, progress_seconds, map_shards=None):
  """Sharded mode: each input file an independent shard with its own seed and outputs."""
  num_shards = len(input_files)
  finals = [[shard_output_path(out, s, num_shards) for out in output_files]
            for s in range(num_shards)]
  temps = [[fileio.temporary_path_for(path) for path in paths] for paths in finals]
  jobs = [(s, num_shards, input_files[s], finals[s], temps[s], vocab_file, options, log_examples,
           progress_seconds, logging.get_verbosity()) for s in range(num_shards)]
  summaries = _run_shards(jobs, finals, temps, num_workers, map_shards)
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


def _run_shards(jobs, finals, temps, num_workers, map_shards=None):
  """Runs the shard jobs (in worker processes if more than one); returns shard -> summary.

  Outputs appear under their final names only once every shard has succeeded; on any failure
  every temporary file is removed.
  """
  summaries = {}
  try:
    for paths in finals:
      for path in paths:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if map_shards is not None:
      for shard, summary in map_shards(_shard_worker, jobs):
        summaries[shard] = summary
    elif num_workers == 1 or len(jobs) == 1:
      for job in jobs:
        shard, summary = _shard_worker(job)
        summaries[shard] = summary
    else:
      import concurrent.futures  # pylint: disable=g-import-not-at-top
      import multiprocessing  # pylint: disable=g-import-not-at-top
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(
          max_workers=min(num_workers, len(jobs)), mp_context=context) as pool:
        for shard, summary in pool.map(_shard_worker, jobs):
          summaries[shard] = summary
    for shard_temps, shard_finals in zip(temps, finals):
      for temp, final in zip(shard_temps, shard_finals):
        os.replace(temp, final)
  except BaseException:
    for paths in temps:
      for temp in paths:
        with contextlib.suppress(OSError):
          os.remove(temp)
    raise
  return summaries
