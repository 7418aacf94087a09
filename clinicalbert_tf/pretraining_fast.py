"""The fast path of create_pretraining_data's instance building: Google's draws in two passes.

What it is: `create_instances` builds every instance of a corpus into a
pretraining_data.InstanceStore, as pretraining_data's per-draw path does, for per-piece masking.
The words the draws consume do not depend on which positions the candidate shuffle chooses, only on
how many candidates there are; so a first pass in Python walks the random stream as Google's code
would (everything but the shuffle read straight off the 32-bit words, each shuffle skipped with one
regular-expression match over the words' top bytes), writes the unmasked tokens and records per
instance where its shuffle starts and the outcome of each 80/10/10 draw; a second pass
(`_finish_instances`) then runs the shuffles and masking of thousands of instances at once with
numpy. The gain is that the regex engine and numpy do the per-word work in C.

Why it gives the same draws and bytes as the per-draw path: the draws are Google's, all of them, in
order. `random.Random` and numpy's MT19937 are the same Mersenne Twister with the same state, so
`_WordStream` continues the run's stream word for word; each draw is decoded from those words as
CPython computes it (`getrandbits(k)`, k <= 32, is a word's top k bits; `random()` is
`((w1 >> 5) * 2**26 + (w2 >> 6)) / 2**53`; `randint` and `shuffle` repeat rejected values exactly as
`_randbelow`). The store then holds the same arrays (tokens, offsets, segment starts, masked
positions, ids and counts, next-sentence labels) and the generator is left in the same state, so the
final shuffle of instances and the writing, shared with the per-draw path, give the same bytes.
Checked against the per-draw path by tests/pretraining_fast_path_test.py and against Google's
script by tests/pretraining_data_test.py.

When it applies (`applies`): per-piece masking (not --do_whole_word_mask) and
max_seq_length <= 258, i.e. at most 255 masking candidates, so that every shuffle draw has a bit
length <= 8 and is decided by its word's top byte. Otherwise pretraining_data draws one value at a
time.

This module imports nothing from pretraining_data: it gets the store, vocabulary and options from
its caller.
"""

import array
import re

import numpy as np

# Words of the random stream generated per refill of the window (5 bytes each: word and top byte).
_STREAM_CHUNK = 1 << 20
# A refill happens before an instance once fewer words than this remain: far more than one
# instance draws besides its truncation (which checks its own need) and shuffle (matched in place).
_STREAM_MARGIN = 1 << 15
# Shuffles are matched with one compiled pattern per multiple of this size (the compile is slow),
# the missing leading steps fed zero bytes, which every step accepts.
_PATTERN_STEP = 16
# Every shuffle draw is decided by a word's top byte while bit lengths stay <= 8.
_MAX_FAST_CANDIDATES = 255
_HALF = 1 << 31  # random() < 0.5 exactly when the first of its two words is below 2**31
_INV_2_53 = 1.0 / 9007199254740992.0

_SHUFFLE_PATTERNS = {}


def applies(options):
  """Whether `create_instances` can build instances for `options` (see the module docstring)."""
  return (not options.do_whole_word_mask and
          options.max_seq_length - 3 <= _MAX_FAST_CANDIDATES)


def _word_bounds(x):
  """(lo, hi): `random() < x` is true if its first word is < lo, false if >= hi, else undecided.

  random() is (a * 2**26 + b) / 2**53 with a = first word >> 5 and b = second word >> 6, so only
  the first word matters unless a == floor(x * 2**27) and x * 2**27 is not an integer.
  """
  c = x * 134217728.0  # exact: a power of two
  a = int(c)
  lo = min(a, 1 << 27) << 5
  return lo, (lo if a == c else (a + 1) << 5)


def _shuffle_pattern(size):
  """A regex matching the top bytes of the words a shuffle of `size` items consumes.

  Step m (m = size .. 2) draws getrandbits(k), k = m.bit_length() <= 8, until the value is < m: a
  word is taken when its top byte is below m << (8 - k), and rejected otherwise.
  """
  pattern = _SHUFFLE_PATTERNS.get(size)
  if pattern is None:
    parts = []
    for m in range(size, 1, -1):
      t = m << (8 - m.bit_length())
      parts.append(b"[\\x%02x-\\xff]*+[\\x00-\\x%02x]" % (t, t - 1))
    pattern = _SHUFFLE_PATTERNS[size] = re.compile(b"".join(parts))
  return pattern


class _WordStream(object):
  """The 32-bit outputs of a `random.Random`, from its current state on, generated with numpy.

  `random.Random` and numpy's MT19937 are the same Mersenne Twister with the same state (624 words
  and a position), so numpy continues Python's stream exactly, millions of words per call. The
  window `words` (uint32) and `top` (their top bytes) starts at absolute position `base`.
  """

  def __init__(self, rng, chunk):
    self._rng_state = rng.getstate()
    internal = self._rng_state[1]
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937",
                  "state": {"key": np.array(internal[:-1], np.uint32), "pos": internal[-1]}}
    # Full-range uint32 integers are the raw outputs, one per value.
    self._generator = np.random.Generator(bits)
    self._chunk = chunk
    self._checkpoints = []  # (absolute position, generator state) where each chunk starts
    self._generated = 0
    self.base = 0
    self.words = array.array("I")
    self.top = b""
    self.advance(0)

  def advance(self, offset):
    """Drops the first `offset` words of the window and appends a chunk; returns (words, top)."""
    self._checkpoints.append((self._generated, self._generator.bit_generator.state))
    words = self.words[offset:]
    tops = [self.top[offset:]]
    for begin in range(0, self._chunk, 1 << 18):  # bounded temporaries
      raw = self._generator.integers(0, 0xFFFFFFFF, min(1 << 18, self._chunk - begin),
                                     dtype=np.uint32, endpoint=True)
      words.frombytes(raw.tobytes())
      tops.append((raw >> 24).astype(np.uint8).tobytes())
    self._generated += self._chunk
    self.base += offset
    self.words = words
    self.top = b"".join(tops)
    return self.words, self.top

  def python_state(self, offset):
    """The `random.Random` state (getstate()) at window position `offset`."""
    position = self.base + offset
    start, state = [c for c in self._checkpoints if c[0] <= position][-1]
    bits = np.random.MT19937()
    bits.state = state
    for begin in range(start, position, 1 << 18):
      bits.random_raw(min(1 << 18, position - begin))
    internal = bits.state["state"]
    return (self._rng_state[0],
            tuple(internal["key"].tolist()) + (int(internal["pos"]),), self._rng_state[2])


_THRESHOLDS = np.array([0, 0] + [m << (8 - m.bit_length()) for m in range(2, 256)], np.uint8)
_SHIFTS = np.array([0] + [8 - m.bit_length() for m in range(1, 256)], np.uint8)
_THRESHOLD_BYTES = _THRESHOLDS.tobytes()


def _finish_instances(fields, exceptions, top, store, vocab, p):
  """Second pass: runs the shuffles and masking of a batch of instances the first pass recorded.

  Args:
    fields: int64 buffer of 6 values per instance: where its tokens start in `store.tokens`
      (written unmasked by the first pass), the length of segment A, the number of candidates,
      where its shuffle starts in `top` and how many words it takes, and how many positions it
      masks.
    exceptions: a flat list of pairs (instance * p + slot, value) for the draws that did not give
      [MASK]: -1 to keep the token, else a random word id.
    top: the top bytes of the random words the shuffles consumed.
    store: the InstanceStore, which gets the masked positions and labels of the batch.
    vocab: the Vocab.
    p: max_predictions_per_seq.
  """
  f = np.frombuffer(fields, np.int64).reshape(-1, 6)
  n = len(f)
  starts, la, n_cand, shuffle_start, consumed, keep = (f[:, c] for c in range(6))
  width = max(int(n_cand.max()), p, 1)

  # Every shuffle's draws at once, word by word: a row's word is taken by its current step,
  # m = n_cand - (steps done), when its top byte is below the step's threshold; a finished row
  # (m = 1) has threshold 0 and takes nothing. `draws` lists each row's j in step order.
  length = int(consumed.max())
  if length:
    topa = np.frombuffer(top + bytes(length), np.uint8)
    window = np.ascontiguousarray(
        np.lib.stride_tricks.sliding_window_view(topa, length)[shuffle_start].T)  # [word, row]
    m_bytes = bytearray(np.minimum(n_cand, 255).astype(np.uint8).tobytes())
    m = np.frombuffer(m_bytes, np.uint8)  # a view: `m -= ...` updates m_bytes
    taken = np.empty((length, n), bool)
    for q in range(length):
      # bytes.translate looks the thresholds up in C, faster than numpy's indexing here.
      a = taken[q] = window[q] < np.frombuffer(m_bytes.translate(_THRESHOLD_BYTES), np.uint8)
      m -= a.view(np.uint8)
    del m
    draws = window.T[taken.T]  # each row's taken top bytes, in step order
    del window, taken
    # Draw d of a row has m = n_cand - d: j is the top byte's k = m.bit_length() high bits.
    steps = np.maximum(n_cand - 1, 0)
    draw_m = np.repeat(n_cand + np.cumsum(steps) - steps, steps) - np.arange(len(draws))
    draws = draws >> _SHIFTS[draw_m]
  else:
    draws = np.zeros(0, np.uint8)
  # Fisher-Yates with those draws: step t swaps x[m - 1] and x[j]. Rows sorted by candidate count
  # (most first), so that those still shuffling are a prefix.
  steps = np.maximum(n_cand - 1, 0)
  first_draw = np.cumsum(steps) - steps
  order = np.argsort(-n_cand, kind="stable")
  counts = n_cand[order]
  first_draw = first_draw[order]
  x = np.empty((n, width), np.int16)
  x[:] = np.arange(width, dtype=np.int16)
  flat_x = x.reshape(-1)
  row_base = np.arange(n) * width
  last = counts - 1 + row_base
  active = np.searchsorted(-counts, -np.arange(2, width + 1), side="right")
  for t in range(width - 1):
    c = int(active[t])
    if not c:
      break
    i = last[:c] - t
    j = draws[first_draw[:c] + t] + row_base[:c]
    xi = flat_x[i]
    flat_x[i] = flat_x[j]
    flat_x[j] = xi
  chosen = np.empty((n, p), np.int64)  # candidate ranks in draw order
  chosen[order] = x[:, :p]
  del x, flat_x

  valid = np.arange(p)[None, :] < keep[:, None]
  positions = chosen + 1 + (chosen >= la[:, None])  # skip [CLS], and the middle [SEP]
  sorted_positions = np.sort(np.where(valid, positions, 1 << 30), axis=1)
  sorted_positions[~valid] = 0
  tokens = np.frombuffer(store.tokens, dtype=store.tokens.typecode)
  try:
    index = np.where(valid, starts[:, None] + positions, 0)
    original = tokens[index]
    labels = np.where(valid, tokens[starts[:, None] + sorted_positions], 0)
    new = np.full((n, p), vocab.mask_id, np.int64)
    if len(exceptions):
      e = np.array(exceptions, np.int64).reshape(-1, 2)
      new.reshape(-1)[e[:, 0]] = e[:, 1]
    new = np.where(new < 0, original, new)
    tokens[index[valid]] = new[valid]
  finally:
    del tokens  # releases store.tokens for resizing
  store.masked_positions.frombytes(sorted_positions.astype(np.uint16).tobytes())
  store.masked_ids.frombytes(labels.astype(store.masked_ids.typecode).tobytes())
  store.masked_counts.frombytes(keep.astype(np.uint16).tobytes())


def create_instances(corpus, doc_first, doc_nsent, vocab, options, rng, store, progress):
  """pretraining_data.create_instances's passes over the shuffled documents, when `applies`.

  Args:
    corpus: a pretraining_text.Corpus.
    doc_first, doc_nsent: first sentence and sentence count per shuffled document position.
    vocab: a pretraining_text.Vocab.
    options: pretraining_data.Options for which `applies(options)`.
    rng: the run's `random.Random`, after the shuffle of the documents; left in the state the
      per-draw path leaves it in.
    store: a pretraining_data.InstanceStore that receives the instances in creation order.
    progress: optional progress.Progress counting documents over all passes, or None.
  """
  sent = corpus.sentence_starts
  flat = corpus.tokens
  st_tokens = store.tokens
  append_token = st_tokens.append
  extend_tokens = st_tokens.extend
  st_offsets = store.offsets
  st_seg = store.segment_starts
  st_nsl = store.next_sentence
  cls_id, sep_id = vocab.cls_id, vocab.sep_id
  num_docs = len(doc_first)
  max_num_tokens = options.max_seq_length - 3
  short_seq_prob = options.short_seq_prob
  short_shift = 32 - (max_num_tokens - 1).bit_length()
  docs_shift = 32 - num_docs.bit_length()
  vocab_size = vocab.size
  vocab_shift = 32 - vocab_size.bit_length()
  p = options.max_predictions_per_seq
  to_predict = [min(p, max(1, int(round(n * options.masked_lm_prob))))
                for n in range(options.max_seq_length + 1)]
  mask_lo, mask_hi = _word_bounds(0.8)
  # Pairs of words whose first top byte is below this are random() < 0.8 whatever the rest.
  mask_run = re.compile(b"(?:[\\x00-\\x%02x](?s:.))*+" % ((mask_lo >> 24) - 1)).match
  pads = [b"\x00" * k for k in range(_PATTERN_STEP)]
  # Per candidate count n: (zero bytes to feed first, pattern size); patterns compiled when needed.
  patterns = [(0, 0), (0, 0)]
  for n in range(2, max_num_tokens + 1):
    size = min(-(-n // _PATTERN_STEP) * _PATTERN_STEP, max_num_tokens)
    patterns.append((size - n, size))
  compiled = [None] * (max_num_tokens + 1)
  half = _HALF
  inv = _INV_2_53
  low_bytes = bytes(range(128))  # top bytes of the words below 2**31
  margin = _STREAM_MARGIN

  stream = _WordStream(rng, _STREAM_CHUNK)
  words, top = stream.words, stream.top
  limit = len(words) - margin
  fields = array.array("q")  # the first pass's record of each pending instance
  exceptions = []  # (instance * p + slot, value) flattened
  add_exception = exceptions.append
  pending = 0
  w = 0  # position in the window

  def refill(w, pending):
    if pending:
      _finish_instances(fields, exceptions, stream.top, store, vocab, p)
      del fields[:]
      del exceptions[:]
    words, top = stream.advance(w)
    return words, top, len(words) - margin

  for dupe in range(options.dupe_factor):
    for document_index in range(num_docs):
      if progress is not None and not document_index & 255 and progress.due():
        progress.log(dupe * num_docs + document_index, "pass %d of %d, %d instances, %.0f "
                     "instances/s" % (dupe + 1, options.dupe_factor, len(store),
                                      progress.rate(len(store))))
      s0 = doc_first[document_index]
      n_sent = doc_nsent[document_index]
      if w > limit:
        words, top, limit = refill(w, pending)
        w = pending = 0
      # rng.random() < short_seq_prob: then randint(2, max_num_tokens).
      u = ((words[w] >> 5) * 67108864.0 + (words[w + 1] >> 6)) * inv
      w += 2
      if u < short_seq_prob:
        r = words[w] >> short_shift
        w += 1
        while r >= max_num_tokens - 1:
          r = words[w] >> short_shift
          w += 1
        target_seq_length = 2 + r
      else:
        target_seq_length = max_num_tokens
      i = 0
      chunk_first = s0
      chunk_count = 0
      current_length = 0
      while i < n_sent:
        chunk_count += 1
        current_length += sent[s0 + i + 1] - sent[s0 + i]
        if i == n_sent - 1 or current_length >= target_seq_length:
          if w > limit:
            words, top, limit = refill(w, pending)
            w = pending = 0
          a_end = 1
          if chunk_count >= 2:  # randint(1, chunk_count - 1)
            k = 32 - (chunk_count - 1).bit_length()
            r = words[w] >> k
            w += 1
            while r >= chunk_count - 1:
              r = words[w] >> k
              w += 1
            a_end = 1 + r
          a_lo = sent[chunk_first]
          a_hi = sent[chunk_first + a_end]
          if chunk_count == 1:
            is_random_next = 1
          else:
            is_random_next = 1 if words[w] < half else 0
            w += 2
          if is_random_next:
            target_b_length = target_seq_length - (a_hi - a_lo)
            for _ in range(10):  # randint(0, num_docs - 1), another document if possible
              r = words[w] >> docs_shift
              w += 1
              while r >= num_docs:
                r = words[w] >> docs_shift
                w += 1
              if r != document_index:
                break
            r_first = doc_first[r]
            r_n = doc_nsent[r]
            k = 32 - r_n.bit_length()
            j = words[w] >> k
            w += 1
            while j >= r_n:
              j = words[w] >> k
              w += 1
            j += r_first
            b_lo = sent[j]
            last = r_first + r_n
            while True:
              j += 1
              b_hi = sent[j]
              if b_hi - b_lo >= target_b_length or j == last:
                break
            i -= chunk_count - a_end  # Google puts the unused sentences back
          else:
            b_lo = a_hi
            b_hi = sent[chunk_first + chunk_count]
          la = a_hi - a_lo
          lb = b_hi - b_lo
          if la + lb > max_num_tokens:  # truncate_seq_pair: one random() per token removed
            while w + 2 * (la + lb - max_num_tokens) > limit:
              words, top, limit = refill(w, pending)
              w = pending = 0
            # The longer segment loses d tokens, then B and A take turns (B first); a token
            # comes off the front when its random() < 0.5: when its first word's top bit is 0.
            r = la + lb - max_num_tokens
            d = la - lb if la > lb else lb - la
            if d > r:
              d = r
            alt_b = top[w + 2 * d:w + 2 * r:4]
            alt_a = top[w + 2 * d + 2:w + 2 * r:4]
            if la > lb:
              run_a = top[w:w + 2 * d:2]
              front = len(run_a) - len(run_a.translate(None, low_bytes))
              removed_a = d + len(alt_a)
              removed_b = len(alt_b)
            else:
              run_b = top[w:w + 2 * d:2]
              front = len(run_b) - len(run_b.translate(None, low_bytes))
              b_lo += front
              b_hi -= d - front
              front = 0
              removed_a = len(alt_a)
              removed_b = d + len(alt_b)
            front += len(alt_a) - len(alt_a.translate(None, low_bytes))
            a_lo += front
            a_hi -= removed_a - front
            front = len(alt_b) - len(alt_b.translate(None, low_bytes))
            b_lo += front
            b_hi -= len(alt_b) - front
            la -= removed_a
            lb -= removed_b
            w += 2 * r
          n_cand = la + lb
          keep = to_predict[n_cand + 3]
          if keep > n_cand:
            keep = n_cand
          shuffle_start = w
          if n_cand >= 2:
            pad, size = patterns[n_cand]
            pattern = compiled[size]
            if pattern is None:
              pattern = compiled[size] = _shuffle_pattern(size)
            span = 2 * size + 64
            while True:
              if pad:
                match = pattern.match(pads[pad] + top[w:w + span])
              else:
                match = pattern.match(top, w, w + span)
              if match is not None:
                break
              if w + span < len(top):
                span *= 4
              else:  # the window ends first
                words, top, limit = refill(w, pending)
                w = pending = 0
                shuffle_start = 0
            w = w + match.end() - pad if pad else match.end()
          shuffle_words = w - shuffle_start
          # The 80/10/10 draws: [MASK] unless recorded as an exception. A run of draws whose
          # first word's top byte alone says random() < 0.8 is skipped in one match.
          slot = 0
          while slot < keep:
            end = mask_run(top, w, w + 2 * (keep - slot)).end()
            slot += (end - w) >> 1
            w = end
            if slot == keep:
              break
            v = words[w]
            if v < mask_lo or (v < mask_hi and
                               ((v >> 5) * 67108864.0 + (words[w + 1] >> 6)) * inv < 0.8):
              w += 2
              slot += 1
              continue
            if words[w + 2] < half:  # random() < 0.5: keep the token
              w += 4
              add_exception(pending * p + slot)
              add_exception(-1)
            else:
              w += 4
              r = words[w] >> vocab_shift
              w += 1
              while r >= vocab_size:
                r = words[w] >> vocab_shift
                w += 1
              add_exception(pending * p + slot)
              add_exception(r)
            slot += 1
          base = len(st_tokens)
          append_token(cls_id)
          extend_tokens(flat[a_lo:a_hi])
          append_token(sep_id)
          extend_tokens(flat[b_lo:b_hi])
          append_token(sep_id)
          st_offsets.append(base + n_cand + 3)
          st_seg.append(la + 2)
          st_nsl.append(is_random_next)
          fields.extend((base, la, n_cand, shuffle_start, shuffle_words, keep))
          pending += 1
          chunk_count = 0
          current_length = 0
          chunk_first = s0 + i + 1
        i += 1
  if pending:
    _finish_instances(fields, exceptions, stream.top, store, vocab, p)
  rng.setstate(stream.python_state(w))
