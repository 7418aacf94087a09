"""Contextual embeddings from a checkpoint: Google's `extract_features`, streamed.

Reads text the way Google's `extract_features.py` does (one example per line; `text_a ||| text_b`
makes a pair; every line, blank or not, is an example numbered from 0), builds the same features
([CLS] a [SEP] (b [SEP]), truncation, zero padding) and writes the same JSON lines:

  {"linex_index": 0, "features": [{"token": "[CLS]", "layers": [{"index": -1, "values": [...]},
   ...]}, ...]}

with each value `round(float(x), 6)`, as Google writes them. Differences: examples are read, run and
written a batch at a time (Google reads the whole file into memory first); the model runs in a plain
`tf.compat.v1.Session` (prediction needs no Estimator machinery); every encoder variable must be in
the checkpoint (Google would silently run a partly random model); output is written atomically.

`BertEncoder` is the reusable part: a graph with placeholders that returns the chosen encoder
layers for batches of ids.

`nearest_neighbors` (the paper's Table 3) uses it to give every frequent word type one contextual
embedding: each occurrence's word pieces are averaged (over the chosen layers and the pieces), then
the occurrences are averaged with running sums, so memory is bounded by the number of word types
tracked, not by the corpus; neighbours are by cosine, side by side per checkpoint, as markdown.
"""

import collections
import itertools
import json
import os
import re
import time

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints as checkpoint_lib
from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import progress
from clinicalbert_tf import tokenization
from clinicalbert_tf import vocab as vocab_lib

InputExample = collections.namedtuple("InputExample", ["unique_id", "text_a", "text_b"])
# One example as the encoder's inputs (padded to the sequence length), with its word pieces.
EncoderInput = collections.namedtuple(
    "EncoderInput", ["unique_id", "tokens", "input_ids", "input_mask", "input_type_ids"])

_PAIR_RE = re.compile(r"^(.*) \|\|\| (.*)$")


def parse_layers(layers, num_hidden_layers, flag_name="layers"):
  """Parses a comma list of encoder layer indexes ("-1,-2" or "0,11") and checks the range.

  Raises:
    InputError: a non-integer or an index outside [-num_hidden_layers, num_hidden_layers - 1].
  """
  out = []
  for item in fileio.split_comma_list(layers):
    try:
      index = int(item)
    except ValueError:
      raise fileio.InputError("--%s: %r is not a layer index (expected e.g. -1,-2,-3,-4)" %
                              (flag_name, item)) from None
    if not -num_hidden_layers <= index < num_hidden_layers:
      raise fileio.InputError("--%s: layer %d does not exist in a model of %d layers" %
                              (flag_name, index, num_hidden_layers))
    out.append(index)
  if not out:
    raise fileio.InputError("--%s is empty: expected e.g. -1,-2,-3,-4" % flag_name)
  return out


def read_examples(input_file):
  """Yields `InputExample`s, one per line of `input_file`, with Google's rules (streamed)."""
  unique_id = 0
  with tf.io.gfile.GFile(input_file, "rb") as reader:
    for raw in reader:
      line = tokenization.convert_to_unicode(raw).strip()
      m = _PAIR_RE.match(line)
      if m is None:
        yield InputExample(unique_id, line, None)
      else:
        yield InputExample(unique_id, m.group(1), m.group(2))
      unique_id += 1


def convert_example(example, seq_length, tokenizer):
  """One `InputExample` -> `EncoderInput`, exactly as Google's `convert_examples_to_features`."""
  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
  if tokens_b:
    tokenization.truncate_seq_pair(tokens_a, tokens_b, seq_length - 3)  # [CLS], [SEP], [SEP]
  elif len(tokens_a) > seq_length - 2:
    tokens_a = tokens_a[0:seq_length - 2]  # [CLS], [SEP]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  input_type_ids = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    input_type_ids += [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  input_mask = [1] * len(input_ids)
  padding = seq_length - len(input_ids)
  return EncoderInput(example.unique_id, tokens, input_ids + [0] * padding,
                      input_mask + [0] * padding, input_type_ids + [0] * padding)


class BertEncoder(object):
  """A BERT encoder in its own graph and session, returning chosen encoder layers.

  Usage:
    encoder = BertEncoder(bert_config, "model.ckpt-1000", max_seq_length=128, layer_indexes=[-1])
    [last] = encoder.run(input_ids, input_mask, input_type_ids)   # each [batch, seq, hidden]
    encoder.close()
  """

  def __init__(self, bert_config, init_checkpoint, max_seq_length, layer_indexes,
               use_one_hot_embeddings=False, session_config=None):
    """Builds the graph and loads every encoder variable from `init_checkpoint`.

    Args:
      bert_config: `modeling.BertConfig`.
      init_checkpoint: checkpoint prefix or a directory (its latest checkpoint).
      max_seq_length: sequence length of the inputs.
      layer_indexes: encoder layers to return (Python indexes into the layer list).
      use_one_hot_embeddings: one-hot embedding lookup (faster on TPU only).
      session_config: optional `tf.ConfigProto`.

    Raises:
      InputError: no checkpoint, a shape mismatch, a variable missing from the checkpoint, or
        `max_seq_length` longer than the config allows.
    """
    checkpoint_lib.check_max_seq_length(max_seq_length, bert_config)
    self.layer_indexes = list(layer_indexes)
    self.checkpoint = checkpoint_lib.resolve_checkpoint(init_checkpoint)
    self.graph = tf.Graph()
    with self.graph.as_default():
      # [batch, seq]
      self.input_ids = tf.placeholder(tf.int32, [None, max_seq_length], name="input_ids")
      self.input_mask = tf.placeholder(tf.int32, [None, max_seq_length], name="input_mask")
      self.input_type_ids = tf.placeholder(tf.int32, [None, max_seq_length], name="input_type_ids")
      model = modeling.BertModel(
          config=bert_config, is_training=False, input_ids=self.input_ids,
          input_mask=self.input_mask, token_type_ids=self.input_type_ids,
          use_one_hot_embeddings=use_one_hot_embeddings)
      all_layers = model.get_all_encoder_layers()
      self.outputs = [all_layers[i] for i in self.layer_indexes]
      tvars = tf.trainable_variables()
      loaded = set(checkpoint_lib.init_from_checkpoint(self.checkpoint, tvars))
      missing = [v.op.name for v in tvars if v.op.name not in loaded]
      if missing:
        raise fileio.InputError(
            "--init_checkpoint=%s lacks %d of the model's %d variables (first: %s): is it a BERT "
            "checkpoint of this config?" % (self.checkpoint, len(missing), len(tvars), missing[0]))
      self.session = checkpoint_lib.new_session(self.graph, config=session_config)
      self.session.run(tf.global_variables_initializer())
    self.graph.finalize()

  def run(self, input_ids, input_mask, input_type_ids):
    """Returns one float32 array [batch, seq, hidden] per requested layer."""
    return self.session.run(self.outputs, feed_dict={
        self.input_ids: input_ids, self.input_mask: input_mask,
        self.input_type_ids: input_type_ids})

  def run_features(self, features):
    """Runs a list of `EncoderInput`s; returns the layers as `run` does."""
    return self.run(np.array([f.input_ids for f in features], np.int32),
                    np.array([f.input_mask for f in features], np.int32),
                    np.array([f.input_type_ids for f in features], np.int32))

  def close(self):
    self.session.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()


def feature_json(feature, layer_outputs, layer_indexes):
  """Google's JSON line for one example.

  Args:
    feature: its `EncoderInput`.
    layer_outputs: per requested layer, the example's [seq, hidden] array.
    layer_indexes: the requested layer indexes (written as "index").

  Returns:
    The JSON text (no newline), key order and rounding as Google's.
  """
  all_features = []
  for i, token in enumerate(feature.tokens):
    all_layers = []
    for layer_index, output in zip(layer_indexes, layer_outputs):
      layers = collections.OrderedDict()
      layers["index"] = layer_index
      layers["values"] = [round(float(x), 6) for x in output[i]]
      all_layers.append(layers)
    token_features = collections.OrderedDict()
    token_features["token"] = token
    token_features["layers"] = all_layers
    all_features.append(token_features)
  output_json = collections.OrderedDict()
  output_json["linex_index"] = feature.unique_id
  output_json["features"] = all_features
  return json.dumps(output_json)


def _batches(iterable, size):
  batch = []
  for item in iterable:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def extract_features(input_file, output_file, bert_config_file, init_checkpoint, vocab_file,
                     layers="-1,-2,-3,-4", max_seq_length=128, do_lower_case=True, batch_size=32,
                     use_one_hot_embeddings=False, log_every_s=30.0):
  """Writes Google's per-token JSON lines for every line of `input_file`.

  Args:
    input_file: text, one example per line (`a ||| b` for a pair).
    output_file: JSON lines to write (atomically).
    bert_config_file: the model's bert_config.json.
    init_checkpoint: checkpoint prefix or directory.
    vocab_file: the model's vocab.txt.
    layers: comma list of encoder layer indexes.
    max_seq_length: longer inputs are truncated (as Google's).
    do_lower_case: must match the model (False for cased models).
    batch_size: examples per run.
    use_one_hot_embeddings: one-hot embedding lookup.
    log_every_s: seconds between progress lines.

  Returns:
    The number of examples written.
  """
  if batch_size < 1:
    raise fileio.InputError("--batch_size must be >= 1, got %d" % batch_size)
  if max_seq_length < 3:
    raise fileio.InputError("--max_seq_length must be >= 3, got %d" % max_seq_length)
  bert_config = checkpoint_lib.load_bert_config(bert_config_file)
  layer_indexes = parse_layers(layers, bert_config.num_hidden_layers)
  fileio.expand_file_patterns(input_file, "input_file")  # a clear error if it is missing
  fileio.check_output_file(output_file)
  tokenizer = checkpoint_lib.load_tokenizer(vocab_file, do_lower_case, bert_config)

  count = 0
  reporter = progress.Progress("examples", every_seconds=log_every_s, label="extract_features: ")
  with BertEncoder(bert_config, init_checkpoint, max_seq_length, layer_indexes,
                   use_one_hot_embeddings=use_one_hot_embeddings) as encoder:
    with fileio.atomic_open(output_file, "w", newline="\n") as writer:
      for examples in _batches(read_examples(input_file), batch_size):
        features = [convert_example(e, max_seq_length, tokenizer) for e in examples]
        outputs = encoder.run_features(features)
        for b, feature in enumerate(features):
          writer.write(feature_json(feature, [o[b] for o in outputs], layer_indexes) + "\n")
        count += len(features)
        reporter.maybe_log(count)
      if not count:
        # Said, not written as an empty file that looks like a result (inside the atomic block,
        # so nothing appears under the output's name).
        raise fileio.InputError("--input_file=%s holds no examples (expected one line of text "
                                "per example); nothing written" % input_file)
  logging.info("extract_features: wrote %d examples to %s in %s", count, output_file,
               progress.format_duration(reporter.elapsed()))
  return count


# ------------------------------------------------------------------------------------------------
# Nearest neighbours of word types (the paper's Table 3)
# ------------------------------------------------------------------------------------------------

_HAS_LETTER = re.compile(r"[^\W\d_]")


def select_word_types(counts, min_count=5, max_word_types=30000, letters_only=True):
  """The word types to embed: frequent enough, most frequent first, ties by word.

  Args:
    counts: word -> number of occurrences.
    min_count: fewer occurrences and a word has no embedding (too noisy an average).
    max_word_types: keep at most this many (bounds memory: one float64 row of `hidden` each).
    letters_only: skip words without a letter (punctuation, numbers) as neighbour candidates.

  Returns:
    A list of words.
  """
  words = [(w, c) for w, c in counts.items()
           if c >= min_count and (not letters_only or _HAS_LETTER.search(w))]
  words.sort(key=lambda wc: (-wc[1], wc[0]))
  return [w for w, _ in words[:max_word_types]]


def split_into_windows(words, pieces_of, max_pieces):
  """Splits a sentence's words into windows of at most `max_pieces` word pieces.

  A sentence longer than the model's length is cut at word boundaries, so every word is embedded
  in context once; a single word with more pieces than a window keeps its first `max_pieces`.

  Args:
    words: the sentence's words.
    pieces_of: word -> list of word pieces.
    max_pieces: pieces per window (max_seq_length - 2).

  Returns:
    A list of windows, each a list of (word, pieces).
  """
  windows, current, used = [], [], 0
  for word in words:
    pieces = pieces_of(word)[:max_pieces]
    if used + len(pieces) > max_pieces and current:
      windows.append(current)
      current, used = [], 0
    current.append((word, pieces))
    used += len(pieces)
  if current:
    windows.append(current)
  return windows


class WordTypeEmbeddings(object):
  """Running sums of word-occurrence embeddings, one row per tracked word type (bounded memory)."""

  def __init__(self, words, hidden_size):
    self.words = list(words)
    self.index = {w: i for i, w in enumerate(self.words)}
    self.sums = np.zeros([len(self.words), hidden_size], np.float64)
    self.counts = np.zeros([len(self.words)], np.int64)

  def add_batch(self, windows, layer_outputs):
    """Adds the occurrences of tracked words in a batch of windows.

    Args:
      windows: list (batch) of windows as `split_into_windows` returns; window b starts at
        position 1 (after [CLS]).
      layer_outputs: list of [batch, seq, hidden] arrays; their mean is the token vector.
    """
    vectors = layer_outputs[0] if len(layer_outputs) == 1 else np.mean(layer_outputs, axis=0)
    rows, positions, starts, types = [], [], [], []
    for b, window in enumerate(windows):
      position = 1
      for word, pieces in window:
        t = self.index.get(word)
        if t is not None:
          starts.append(len(rows))
          types.append(t)
          rows.extend([b] * len(pieces))
          positions.extend(range(position, position + len(pieces)))
        position += len(pieces)
    if not types:
      return
    # [num_pieces, hidden] -> per occurrence: the mean of its pieces (pieces are contiguous).
    piece_vectors = vectors[np.array(rows), np.array(positions)].astype(np.float64)
    starts = np.array(starts)
    lengths = np.diff(np.append(starts, len(rows)))
    occurrence = np.add.reduceat(piece_vectors, starts, axis=0) / lengths[:, None]
    types = np.array(types)
    np.add.at(self.sums, types, occurrence)
    self.counts += np.bincount(types, minlength=len(self.words))

  def means(self):
    """[num_types, hidden] average embeddings (rows of unseen types are zero)."""
    return self.sums / np.maximum(self.counts, 1)[:, None]


def embed_word_types(encoder, tokenizer, lines, words, max_seq_length, batch_size,
                     do_lower_case=False, total_lines=None, log_every_s=30.0, label=""):
  """Streams `lines` through `encoder` and averages each tracked word's contextual embedding.

  Args:
    encoder: a `BertEncoder`.
    tokenizer: the checkpoint's `FullTokenizer`.
    lines: iterable of sentences.
    words: the word types to track.
    max_seq_length: model length (windows hold max_seq_length - 2 pieces).
    batch_size: windows per run.
    do_lower_case: how the words were made (the same basic tokenization is applied).
    total_lines: for the ETA in the log.
    log_every_s: seconds between progress lines.
    label: the checkpoint's name, for the log.

  Returns:
    A `WordTypeEmbeddings`.
  """
  basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
  hidden = encoder.outputs[0].shape[-1]
  acc = WordTypeEmbeddings(words, int(hidden))
  pieces_of = tokenizer.wordpiece_tokenizer.tokenize_word
  max_pieces = max_seq_length - 2
  vocab = tokenizer.vocab
  num_lines = 0
  reporter = progress.Progress("sentences", total=total_lines, every_seconds=log_every_s,
                               label="%s: embedded " % label)

  def run(batch):
    ids = np.zeros([len(batch), max_seq_length], np.int32)
    mask = np.zeros([len(batch), max_seq_length], np.int32)
    for b, window in enumerate(batch):
      tokens = ["[CLS]"] + [p for _, pieces in window for p in pieces] + ["[SEP]"]
      ids[b, :len(tokens)] = [vocab[t] for t in tokens]
      mask[b, :len(tokens)] = 1
    acc.add_batch(batch, encoder.run(ids, mask, np.zeros_like(ids)))

  batch = []
  for line in lines:
    num_lines += 1
    for window in split_into_windows(basic.tokenize(line), pieces_of, max_pieces):
      batch.append(window)
      if len(batch) == batch_size:
        run(batch)
        batch = []
    reporter.maybe_log(num_lines)
  if batch:
    run(batch)
  return acc


def cosine_neighbors(means, counts, words, query, num_neighbors):
  """The `num_neighbors` words whose average embedding is closest in cosine to `query`'s.

  Returns:
    A list of (word, cosine), best first (ties by the order of `words`), or None when the query
    has no embedding.
  """
  index = {w: i for i, w in enumerate(words)}
  q = index.get(query)
  if q is None or counts[q] == 0:
    return None
  norms = np.linalg.norm(means, axis=1)
  valid = (counts > 0) & (norms > 0)
  sims = np.where(valid, means @ means[q] / np.maximum(norms * norms[q], 1e-30), -np.inf)
  sims[q] = -np.inf
  order = np.argsort(-sims, kind="stable")
  out = []
  for i in order[:num_neighbors]:
    if not np.isfinite(sims[i]):
      break
    out.append((words[i], float(sims[i])))
  return out


def format_neighbors_markdown(results, names, query_words, counts, min_count, summary):
  """The side-by-side markdown table(s): one section per query word, one column per checkpoint.

  Args:
    results: {name: {query: [(word, cosine)] or None}}.
    names: checkpoint names, in column order.
    query_words: in section order.
    counts: word -> occurrences in the corpus.
    min_count: for the "not enough occurrences" note.
    summary: a line describing the corpus and settings.

  Returns:
    Markdown text.
  """
  def cell(text):
    return text.replace("|", "\\|")

  lines = ["# Nearest neighbours by cosine similarity of contextual embeddings", "", summary, ""]
  for query in query_words:
    n = counts.get(query, 0)
    lines.append("## %s (%d occurrence%s)" % (query, n, "" if n == 1 else "s"))
    lines.append("")
    if all(results[name][query] is None for name in names):
      lines.append("Not embedded: %s." % (
          "not in the corpus" if n == 0 else "fewer than --min_count=%d occurrences, or not "
          "among the --max_word_types most frequent words" % min_count))
      lines.append("")
      continue
    lines.append("| rank | " + " | ".join(cell(name) for name in names) + " |")
    lines.append("|---:|" + "---|" * len(names))
    depth = max(len(results[name][query] or []) for name in names)
    for rank in range(depth):
      row = []
      for name in names:
        neighbours = results[name][query] or []
        row.append("%s (%.3f)" % (cell(neighbours[rank][0]), neighbours[rank][1])
                   if rank < len(neighbours) else "")
      lines.append("| %d | %s |" % (rank + 1, " | ".join(row)))
    lines.append("")
  return "\n".join(lines)


def nearest_neighbors(input_files, checkpoints, query_words, output_file=None, num_neighbors=5,
                      min_count=5, max_word_types=30000, letters_only=True, layers="-1",
                      max_seq_length=128, batch_size=32, do_lower_case=False, max_sentences=None,
                      num_workers=1):
  """The paper's Table 3: cosine neighbours of query words, per checkpoint, side by side.

  Two streamed passes over the corpus: one counts words (Google's basic tokenization) to choose the
  tracked word types, then one per checkpoint runs the model and keeps running sums per type (word
  pieces of an occurrence averaged, then occurrences averaged). Memory: the word counts plus
  `max_word_types` x hidden float64 sums.

  Args:
    input_files: text files, one sentence per line.
    checkpoints: list of (name, bert_config_file, init_checkpoint, vocab_file).
    query_words: words to find neighbours for.
    output_file: markdown file to write (atomically), or None.
    num_neighbors: neighbours per query.
    min_count: occurrences a word needs to get an embedding.
    max_word_types: most frequent word types tracked.
    letters_only: only words with a letter are tracked (and so can be neighbours).
    layers: encoder layers averaged into the token vector ("-1": the last).
    max_seq_length: window length in word pieces, [CLS] and [SEP] included.
    batch_size: windows per model run.
    do_lower_case: lower-case words and input (must match the models).
    max_sentences: read at most this many sentences (None: all).
    num_workers: processes for the counting pass.

  Returns:
    (markdown, results) with results as `format_neighbors_markdown` takes them.
  """
  if not checkpoints:
    raise fileio.InputError("--init_checkpoint: at least one checkpoint is needed")
  if not query_words:
    raise fileio.InputError("--query_words is empty")
  fileio.check_output_file(output_file)  # before the long passes, not after them
  if num_neighbors < 1 or min_count < 1 or max_word_types < 1 or batch_size < 1:
    raise fileio.InputError("--num_neighbors, --min_count, --max_word_types and --batch_size must "
                            "be >= 1")
  if max_seq_length < 3:
    raise fileio.InputError("--max_seq_length must be >= 3, got %d" % max_seq_length)
  names = [c[0] for c in checkpoints]
  if len(set(names)) != len(names):
    raise fileio.InputError("--checkpoint_names must be distinct, got %s" % ", ".join(names))

  # Everything a checkpoint needs is checked before the long passes start.
  prepared = []
  for name, config_file, ckpt, vocab_file in checkpoints:
    bert_config = checkpoint_lib.load_bert_config(config_file)
    tokenizer = checkpoint_lib.load_tokenizer(vocab_file, do_lower_case, bert_config)
    layer_indexes = parse_layers(layers, bert_config.num_hidden_layers)
    checkpoint_lib.resolve_checkpoint(ckpt)
    prepared.append((name, bert_config, ckpt, tokenizer, layer_indexes))

  def lines():
    it = vocab_lib.read_lines(input_files)
    return itertools.islice(it, max_sentences) if max_sentences else it

  start = time.time()
  if max_sentences:
    counts, num_lines = collections.Counter(), 0
    basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    for line in lines():
      counts.update(basic.tokenize(line))
      num_lines += 1
  else:
    counts, num_lines = vocab_lib.count_words(input_files, do_lower_case=do_lower_case,
                                              num_workers=num_workers)
  if not num_lines:
    raise fileio.InputError("--input_file: no sentences in %s" % ", ".join(input_files))
  words = select_word_types(counts, min_count, max_word_types, letters_only)
  logging.info("counted %d sentences, %d distinct words; tracking %d word types with >= %d "
           "occurrences", num_lines, len(counts), len(words), min_count)

  results = {}
  for name, bert_config, ckpt, tokenizer, layer_indexes in prepared:
    with BertEncoder(bert_config, ckpt, max_seq_length, layer_indexes) as encoder:
      acc = embed_word_types(encoder, tokenizer, lines(), words, max_seq_length, batch_size,
                             do_lower_case=do_lower_case, total_lines=num_lines, label=name)
    means = acc.means()
    results[name] = {q: cosine_neighbors(means, acc.counts, acc.words, q, num_neighbors)
                     for q in query_words}
  summary = ("%d sentences, %d word types with at least %d occurrences%s; layers %s averaged over "
             "word pieces and occurrences; %s." % (
                 num_lines, len(words), min_count, " (containing a letter)" if letters_only else "",
                 layers, "lower-cased" if do_lower_case else "cased"))
  markdown = format_neighbors_markdown(results, names, query_words, counts, min_count, summary)
  if output_file:
    fileio.write_text_atomic(output_file, markdown + "\n")
  logging.info("nearest neighbours done in %s", progress.format_duration(time.time() - start))
  return markdown, results


def default_checkpoint_name(init_checkpoint):
  """A column name for a checkpoint: its directory's name (or the prefix's, for a bare file)."""
  path = os.path.abspath(init_checkpoint.rstrip("/"))
  if os.path.isdir(path):
    return os.path.basename(path)
  parent = os.path.basename(os.path.dirname(path))
  return parent or os.path.basename(path)
