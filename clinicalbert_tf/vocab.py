"""Building a WordPiece vocabulary from pretraining text.

The learner is tensorflow-text's (`tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib`,
the algorithm behind `bert_vocab_from_dataset`): a binary search over a count threshold, each step
keeping the word pieces that occur at least that often, until the vocabulary is just under the asked
size. What this module adds around it:

  * words are counted with *our* `tokenization.BasicTokenizer` (Google's rules: cleaning, punctuation
    splitting, optional lower-casing and accent stripping), so the pieces are learnt on exactly the
    words that `FullTokenizer` will later split (tf-text's own BasicTokenizer differs in details);
  * text is read with Google's rules for pretraining text (UTF-8, invalid bytes dropped, one sentence
    per line, blank lines ignored) and streamed: memory grows with the number of distinct words, not
    with the corpus; `num_workers` counts chunks of lines in parallel (counts are sums, so the result
    does not depend on the number of workers);
  * cased by default, as the clinical models are;
  * Google's special tokens first: `[PAD]`, then `[unused0]`.. (at most 99 before `[UNK]`, as in
    Google's vocabularies), `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, then any remaining `[unusedN]`;
  * deterministic: counts are handed to the learner sorted by (count desc, word), and the learner
    itself sorts its output by (count desc, piece); the same text gives the same bytes.
"""

import collections
import itertools
import multiprocessing
import time

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import progress as progress_lib
from clinicalbert_tf import tokenization

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# Google's vocabularies put 99 (cased) or 99 of 994 (uncased) [unusedN] tokens between [PAD] and [UNK].
MAX_UNUSED_BEFORE_UNK = 99
_LINES_PER_CHUNK = 20000


def reserved_tokens(num_unused=0):
  """Google's special tokens in Google's order, with `num_unused` `[unusedN]` placeholders.

  Args:
    num_unused: how many `[unusedN]` tokens (room to add domain words later without resizing).

  Returns:
    A list of tokens: `[PAD]`, `[unused0..k-1]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, `[unusedk..]`
    with k = min(num_unused, 99).
  """
  if num_unused < 0:
    raise fileio.InputError("--num_unused_tokens must be >= 0, got %d" % num_unused)
  before = min(num_unused, MAX_UNUSED_BEFORE_UNK)
  unused = ["[unused%d]" % i for i in range(num_unused)]
  return [PAD] + unused[:before] + [UNK, CLS, SEP, MASK] + unused[before:]


def read_lines(input_files):
  """Yields the stripped, non-empty lines of each file in order (Google's reading rules)."""
  for path in input_files:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, "rb") as reader:
      for raw in reader:
        line = tokenization.convert_to_unicode(raw).strip()
        if line:
          yield line


def _count_chunk(args):
  """Counts the words of a list of lines (a worker's unit of work)."""
  lines, do_lower_case = args
  basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  counts = collections.Counter()
  for line in lines:
    counts.update(basic.tokenize(line))
  return counts, len(lines)


def count_words(input_files, do_lower_case=False, num_workers=1, log_every_s=30.0):
  """Counts the words (Google's basic tokenization) of the given text files.

  Args:
    input_files: list of paths.
    do_lower_case: lower-case and strip accents before counting, as `FullTokenizer` would.
    num_workers: processes counting chunks of lines in parallel (1 = in this process).
    log_every_s: seconds between progress lines.

  Returns:
    (counts, num_lines): a `collections.Counter` of word -> count and the number of lines read.
  """
  chunks = _chunked(read_lines(input_files), _LINES_PER_CHUNK)
  work = ((chunk, do_lower_case) for chunk in chunks)
  counts = collections.Counter()
  num_lines = 0
  progress = progress_lib.Progress("lines", every_seconds=log_every_s, label="counting words: ")
  if num_workers > 1:
    pool = multiprocessing.get_context("spawn").Pool(num_workers)
    results = pool.imap(_count_chunk, work)
  else:
    pool = None
    results = map(_count_chunk, work)
  try:
    for chunk_counts, n in results:
      counts.update(chunk_counts)
      num_lines += n
      progress.maybe_log(num_lines, "%d distinct words" % len(counts))
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  return counts, num_lines


def _chunked(iterable, size):
  it = iter(iterable)
  while True:
    chunk = list(itertools.islice(it, size))
    if not chunk:
      return
    yield chunk


def load_learner_lib():
  """Imports tensorflow-text's `wordpiece_tokenizer_learner_lib` without importing tensorflow_text.

  The learner is a pure-Python module (numpy only), but `import tensorflow_text` runs the package's
  `__init__`, which imports tensorflow_hub, which needs `pkg_resources` (setuptools) at import time.
  Loading the one file by path keeps the learner available without those.

  Raises:
    ImportError: tensorflow-text is not installed.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  name = "tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib"
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec("tensorflow_text")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("tensorflow-text is not installed (pip install tensorflow-text==2.15.0)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "tools", "wordpiece_vocab",
                      "wordpiece_tokenizer_learner_lib.py")
  lib_spec = importlib.util.spec_from_file_location("_tf_text_wordpiece_learner", path)
  module = importlib.util.module_from_spec(lib_spec)
  lib_spec.loader.exec_module(module)
  return module


def learn_vocab(word_counts, vocab_size, num_unused=0, lower_thresh=10, upper_thresh=int(1e7),
                num_iterations=4, max_input_words=int(5e6), max_token_length=50,
                max_unique_chars=1000, slack_ratio=0.05):
  """Learns a WordPiece vocabulary from word counts with tensorflow-text's learner.

  Args:
    word_counts: dict word -> count.
    vocab_size: the largest vocabulary wanted (special tokens included). The learner stops when the
      size is within `slack_ratio` below it; a small corpus can give a smaller vocabulary.
    num_unused: number of `[unusedN]` tokens (see `reserved_tokens`).
    lower_thresh: lowest count threshold the search may use (a piece rarer than this is never kept
      on its own; single characters always are).
    upper_thresh: highest count threshold of the search.
    num_iterations: refinement passes of the learner per threshold.
    max_input_words: keep only the most frequent words (None or -1: all).
    max_token_length: longer words are not learnt from.
    max_unique_chars: alphabet size; words with rarer characters are not learnt from.
    slack_ratio: acceptable relative shortfall from `vocab_size`.

  Returns:
    A list of tokens: Google's special tokens first, then single characters, then pieces.

  Raises:
    fileio.InputError: no words, or a vocab_size too small for the special tokens.
  """
  learner = load_learner_lib()
  reserved = reserved_tokens(num_unused)
  if vocab_size <= len(reserved):
    raise fileio.InputError("--vocab_size=%d leaves no room after the %d special tokens" %
                            (vocab_size, len(reserved)))
  if not word_counts:
    raise fileio.InputError("the input has no words to learn a vocabulary from")
  # Sorted so that ties at the `max_input_words` cut, and every dict the learner builds, come in
  # one order whatever order the words were counted in.
  ordered = sorted(word_counts.items(), key=lambda wc: (-wc[1], wc[0]))
  vocab = learner.learn(
      ordered, vocab_size, reserved,
      upper_thresh=upper_thresh, lower_thresh=lower_thresh, num_iterations=num_iterations,
      max_input_tokens=-1 if max_input_words is None else max_input_words,
      max_token_length=max_token_length, max_unique_chars=max_unique_chars,
      slack_ratio=slack_ratio, include_joiner_token=True, joiner="##")
  if len(vocab) > vocab_size:
    # The learner always keeps every allowed character, whole and as a `##` continuation, so a
    # large alphabet can overshoot a small target; a vocabulary larger than asked would not match
    # the bert_config the user writes for it.
    num_chars = sum(1 for t in vocab[len(reserved):] if len(t) == 1 or
                    (t.startswith("##") and len(t) == 3))
    raise fileio.InputError(
        "--vocab_size=%d is too small for this text: the learner's smallest vocabulary has %d "
        "tokens (%d of them single characters and their ## forms); raise --vocab_size or lower "
        "--max_unique_chars" % (vocab_size, len(vocab), num_chars))
  # The learner keeps the reserved tokens in front and never repeats a token; check anyway, since
  # everything downstream relies on it.
  assert vocab[:len(reserved)] == reserved, vocab[:len(reserved)]
  assert len(set(vocab)) == len(vocab)
  return vocab


def write_vocab(path, vocab):
  """Writes one token per line (UTF-8, '\\n'), atomically."""
  for token in vocab:
    if not token or any(c.isspace() for c in token):
      raise ValueError("vocabulary token %r is empty or has whitespace" % token)
  with fileio.atomic_open(path, "w", newline="\n") as f:
    for token in vocab:
      f.write(token + "\n")


def build_vocab(input_files, output_file, vocab_size, do_lower_case=False, num_unused=0,
                num_workers=1, **learn_kwargs):
  """Counts words in `input_files`, learns a vocabulary, writes it and a sidecar record.

  Args:
    input_files: list of text files (one sentence per line).
    output_file: the vocab.txt to write.
    vocab_size: the largest vocabulary wanted.
    do_lower_case: lower-case before learning (False for a cased model, the default here).
    num_unused: `[unusedN]` tokens to reserve.
    num_workers: processes for counting.
    **learn_kwargs: passed to `learn_vocab`.

  Returns:
    A dict with counts (lines, words, distinct words, vocabulary size) also written to the sidecar.
  """
  fileio.check_output_file(output_file)  # before the counting pass, not after it
  start = time.time()
  counts, num_lines = count_words(input_files, do_lower_case=do_lower_case,
                                  num_workers=num_workers)
  if not counts:
    raise fileio.InputError("--input_file: no text in %s" % ", ".join(input_files))
  logging.info("counted %d lines, %d words, %d distinct; learning pieces", num_lines,
               sum(counts.values()), len(counts))
  vocab = learn_vocab(counts, vocab_size, num_unused=num_unused, **learn_kwargs)
  write_vocab(output_file, vocab)
  record = {
      "input_files": list(input_files),
      "do_lower_case": do_lower_case,
      "vocab_size_requested": vocab_size,
      "vocab_size": len(vocab),
      "num_unused_tokens": num_unused,
      "learn_params": dict(learn_kwargs),
      "num_lines": num_lines,
      "num_words": sum(counts.values()),
      "num_distinct_words": len(counts),
      "sha256": fileio.sha256_of_file(output_file),
      "seconds": round(time.time() - start, 3),
  }
  fileio.write_sidecar(output_file, record)
  logging.info("wrote %s: %d tokens (asked for at most %d)", output_file, len(vocab), vocab_size)
  return record
