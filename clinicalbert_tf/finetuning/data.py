"""Fine-tuning inputs: features, word pieces, windows, the TFRecord files and their `input_fn`.

A token-classification sentence longer than a window is split so that every word gets exactly one
prediction (`plan_word_windows`): each window predicts a core run of words and carries neighbouring
words as context. Each word's label sits on its first word piece. A sentence pair is one input,
`[CLS] a [SEP] b [SEP]`, truncated to fit.

Which fields a record holds is the head's business (`Head.record_spec`, `Head.record_values`);
this module writes and reads them.
"""

import dataclasses
from typing import List

import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import tfrecord
from clinicalbert_tf import tokenization


@dataclasses.dataclass
class TokenFeatures:
  """One window of a TaggedSentence: a label per position, counted where `label_mask` is 1.

  Attributes:
    input_ids, input_mask, segment_ids: [max_seq_length] ints.
    label_ids: [max_seq_length] label ids (0 where the mask is 0).
    label_mask: [max_seq_length], 1 at the first piece of each word this window predicts.
    example_index: the sentence this window belongs to (-1 for padding).
    word_indexes: the words predicted here, in position order (one per 1 in `label_mask`).
    is_real_example: False for the padding that fills a TPU batch.
  """
  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]
  label_ids: List[int]
  label_mask: List[int]
  example_index: int = -1
  word_indexes: List[int] = dataclasses.field(default_factory=list)
  is_real_example: bool = True


@dataclasses.dataclass
class PairFeatures:
  """One SentencePair as `[CLS] a [SEP] b [SEP]`, with its label id.

  Attributes:
    input_ids, input_mask, segment_ids: [max_seq_length] ints.
    label_id: the label's index in the label list.
    example_index: the pair this is (-1 for padding).
    is_real_example: False for the padding that fills a TPU batch.
  """
  input_ids: List[int]
  input_mask: List[int]
  segment_ids: List[int]
  label_id: int
  example_index: int = -1
  is_real_example: bool = True


def word_pieces(words, tokenizer, max_pieces):
  """Word pieces of each word (never empty: [UNK] stands in), at most `max_pieces` per word.

  Returns:
    (pieces per word, number of words whose pieces were cut).
  """
  result, cut = [], 0
  for word in words:
    pieces = tokenizer.tokenize(word) or ["[UNK]"]
    if len(pieces) > max_pieces:
      pieces = pieces[:max_pieces]  # the label sits on the first piece, which is kept
      cut += 1
    result.append(pieces)
  return result, cut


def plan_word_windows(piece_counts, max_pieces, context=None):
  """Splits a sentence into windows of at most `max_pieces` word pieces.

  Each word is predicted in exactly one window (its "core"); a window also carries context words
  on both sides, as many as fit. When the whole sentence fits, there is one window.

  The cores are what a window predicts, so they set the model's work: a sentence of N pieces costs
  about N / core windows. By default (`context` None, as training makes its windows) a core holds
  up to half a window, so every piece of a long sentence runs through the model about twice.
  `context=c` makes cores of up to `max_pieces - 2c` pieces, leaving at least c pieces of context
  on each side of a core wherever the sentence has them: far fewer windows for long lines (a
  note written as one line), at the price of less context at core edges.

  Args:
    piece_counts: the number of pieces of each word (each <= max_pieces).
    max_pieces: pieces per window (max_seq_length - 2).
    context: pieces of context wanted on each side of a core (None: cores of half a window).

  Returns:
    A list of (start, end, core_start, core_end) word ranges (end exclusive); the cores partition
    range(len(piece_counts)) in order.
  """
  n = len(piece_counts)
  if sum(piece_counts) <= max_pieces:
    return [(0, n, 0, n)]
  if context is None:
    core_budget = max(1, max_pieces // 2)
  else:
    core_budget = max(1, max_pieces - 2 * context)
  windows = []
  core_start = 0
  while core_start < n:
    core_end, total = core_start, 0
    while core_end < n and (core_end == core_start or
                            total + piece_counts[core_end] <= core_budget):
      total += piece_counts[core_end]
      core_end += 1
    start, end = core_start, core_end
    grew = True
    while grew:  # add context alternately right and left while it fits
      grew = False
      if end < n and total + piece_counts[end] <= max_pieces:
        total += piece_counts[end]
        end += 1
        grew = True
      if start > 0 and total + piece_counts[start - 1] <= max_pieces:
        total += piece_counts[start - 1]
        start -= 1
        grew = True
    windows.append((start, end, core_start, core_end))
    core_start = core_end
  return windows


def _label_id(label_map, guid, label):
  """The id of `label`; 0 for an unlabelled example (label None: prediction on raw text)."""
  if label is None:
    return 0
  if label not in label_map:
    raise fileio.InputError("%s: label %r is not in the label set" % (guid, label))
  return label_map[label]


def convert_tagged_sentence(example_index, example, label_map, max_seq_length, tokenizer,
                            context=None):
  """Windows (TokenFeatures) for one TaggedSentence; labels on first pieces of core words.

  `context`: see `plan_word_windows` (None: training's windows).

  Returns:
    (list of TokenFeatures, number of words whose pieces were cut to fit a window).
  """
  max_pieces = max_seq_length - 2
  pieces, cut = word_pieces(example.words, tokenizer, max_pieces)
  features = []
  for start, end, core_start, core_end in plan_word_windows(
      [len(p) for p in pieces], max_pieces, context):
    tokens = ["[CLS]"]
    label_ids = [0]
    label_mask = [0]
    word_indexes = []
    for w in range(start, end):
      in_core = core_start <= w < core_end
      for k, piece in enumerate(pieces[w]):
        tokens.append(piece)
        is_label_position = in_core and k == 0
        label_mask.append(1 if is_label_position else 0)
        if is_label_position:
          label_ids.append(0 if example.labels is None else
                           _label_id(label_map, example.guid, example.labels[w]))
          word_indexes.append(w)
        else:
          label_ids.append(0)
    tokens.append("[SEP]")
    label_ids.append(0)
    label_mask.append(0)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    padding = max_seq_length - len(input_ids)
    features.append(TokenFeatures(
        input_ids=input_ids + [0] * padding,
        input_mask=input_mask + [0] * padding,
        segment_ids=[0] * max_seq_length,
        label_ids=label_ids + [0] * padding,
        label_mask=label_mask + [0] * padding,
        example_index=example_index,
        word_indexes=word_indexes))
  return features, cut


def convert_sentence_pair(example_index, example, label_map, max_seq_length, tokenizer):
  """PairFeatures for one SentencePair. Returns (features, truncated).

  Google's `run_classifier` conversion: a pair is `[CLS] a [SEP] b [SEP]` (segment ids 0, then 1
  from the first piece of b), the longer text losing its last piece until the pair fits; a single
  sentence (`text_b` None, as CoLA's) is `[CLS] a [SEP]`, cut at `max_seq_length - 2` pieces.
  """
  tokens_a = tokenizer.tokenize(example.text_a)
  if example.text_b is None:
    truncated = len(tokens_a) > max_seq_length - 2
    tokens = ["[CLS]"] + tokens_a[:max_seq_length - 2] + ["[SEP]"]
    segment_ids = [0] * len(tokens)
  else:
    tokens_b = tokenizer.tokenize(example.text_b)
    truncated = len(tokens_a) + len(tokens_b) > max_seq_length - 3
    tokenization.truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  padding = max_seq_length - len(input_ids)
  return PairFeatures(
      input_ids=input_ids + [0] * padding,
      input_mask=[1] * len(input_ids) + [0] * padding,
      segment_ids=segment_ids + [0] * padding,
      label_id=_label_id(label_map, example.guid, example.label),
      example_index=example_index), truncated


def write_records(path, head, features):
  """Writes `features` as tf.train.Examples (the fields of `head.record_values`), atomically.

  Returns:
    The number of records written.
  """
  return tfrecord.write_int64_examples(path, (head.record_values(f) for f in features))


def input_fn_builder(input_file, head, seq_length, is_training, drop_remainder, num_examples=None,
                     seed=None):
  """An `input_fn` reading records written by `write_records` (Google's file-based input_fn).

  Training repeats and shuffles with a buffer as large as the data (up to 10,000), seeded, so the
  same seed gives the same batches; evaluation keeps the file order. Shuffling comes before
  batching, so the example order does not depend on the batch size: a batch of 2B covers the same
  examples as two batches of B (gradient accumulation relies on it).

  Under a multi-worker strategy `params["input_context"]` (set by `estimator.build_estimator`)
  gives each worker every n-th record of the training file; `params["batch_size"]` is then the
  per-replica batch. Evaluation and prediction are never sharded (they run on the chief alone).
  """
  name_to_features = head.record_spec(seq_length)

  def decode(record):
    example = tf.parse_single_example(record, name_to_features)
    # tf.Example holds int64; the TPU wants int32.
    return {name: tf.cast(t, tf.int32) for name, t in example.items()}

  def input_fn(params):
    batch_size = params["batch_size"]
    input_context = params.get("input_context")
    d = tf.data.TFRecordDataset(input_file)
    if is_training:
      if input_context is not None and input_context.num_input_pipelines > 1:
        # One file: shard its records, before repeating, so the workers' shards are disjoint.
        d = d.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
      d = d.repeat()
      d = d.shuffle(buffer_size=max(1, min(num_examples or 100, 10000)), seed=seed)
    d = d.map(decode, num_parallel_calls=tf.data.experimental.AUTOTUNE)  # keeps the order
    d = d.batch(batch_size, drop_remainder=drop_remainder)
    return d.prefetch(2)

  return input_fn
