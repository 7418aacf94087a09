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
layers for batches of ids; `nearest_neighbors` uses it too.
"""

import collections
import json
import logging
import re
import time

import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import tokenization
from clinicalbert_tf import training

log = logging.getLogger(__name__)

InputExample = collections.namedtuple("InputExample", ["unique_id", "text_a", "text_b"])
InputFeatures = collections.namedtuple(
    "InputFeatures", ["unique_id", "tokens", "input_ids", "input_mask", "input_type_ids"])

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


def _truncate_seq_pair(tokens_a, tokens_b, max_length):
  """Truncates a pair in place, one token at a time from the longer one (Google's heuristic)."""
  while len(tokens_a) + len(tokens_b) > max_length:
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def convert_example(example, seq_length, tokenizer):
  """One `InputExample` -> `InputFeatures`, exactly as Google's `convert_examples_to_features`."""
  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
  if tokens_b:
    _truncate_seq_pair(tokens_a, tokens_b, seq_length - 3)  # [CLS], [SEP], [SEP]
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
  return InputFeatures(example.unique_id, tokens, input_ids + [0] * padding,
                       input_mask + [0] * padding, input_type_ids + [0] * padding)


def check_vocab_matches_config(tokenizer, bert_config, vocab_file):
  """A vocabulary with more tokens than the config's `vocab_size` would index outside the table."""
  if len(tokenizer.vocab) > bert_config.vocab_size:
    raise fileio.InputError(
        "--vocab_file=%s has %d tokens but the config's vocab_size is %d: they do not belong "
        "together" % (vocab_file, len(tokenizer.vocab), bert_config.vocab_size))


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
    if max_seq_length > bert_config.max_position_embeddings:
      raise fileio.InputError(
          "--max_seq_length=%d is longer than max_position_embeddings=%d of the config" %
          (max_seq_length, bert_config.max_position_embeddings))
    self.layer_indexes = list(layer_indexes)
    self.checkpoint = training.resolve_checkpoint(init_checkpoint)
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
      loaded = set(training.init_from_checkpoint(self.checkpoint, tvars))
      missing = [v.op.name for v in tvars if v.op.name not in loaded]
      if missing:
        raise fileio.InputError(
            "--init_checkpoint=%s lacks %d of the model's %d variables (first: %s): is it a BERT "
            "checkpoint of this config?" % (self.checkpoint, len(missing), len(tvars), missing[0]))
      self.session = tf.Session(graph=self.graph, config=session_config)
      self.session.run(tf.global_variables_initializer())
    self.graph.finalize()

  def run(self, input_ids, input_mask, input_type_ids):
    """Returns one float32 array [batch, seq, hidden] per requested layer."""
    return self.session.run(self.outputs, feed_dict={
        self.input_ids: input_ids, self.input_mask: input_mask,
        self.input_type_ids: input_type_ids})

  def run_features(self, features):
    """Runs a list of `InputFeatures`; returns the layers as `run` does."""
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
    feature: its `InputFeatures`.
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
  try:
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  except (ValueError, tf.errors.OpError) as e:
    raise fileio.InputError("--bert_config_file=%s: %s" % (bert_config_file, e)) from e
  layer_indexes = parse_layers(layers, bert_config.num_hidden_layers)
  fileio.expand_file_patterns(input_file, "input_file")  # a clear error if it is missing
  if not tf.io.gfile.exists(vocab_file):
    raise fileio.InputError("--vocab_file=%s does not exist" % vocab_file)
  tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
  check_vocab_matches_config(tokenizer, bert_config, vocab_file)

  count = 0
  start = last = time.time()
  with BertEncoder(bert_config, init_checkpoint, max_seq_length, layer_indexes,
                   use_one_hot_embeddings=use_one_hot_embeddings) as encoder:
    with fileio.atomic_open(output_file, "w", newline="\n") as writer:
      for examples in _batches(read_examples(input_file), batch_size):
        features = [convert_example(e, max_seq_length, tokenizer) for e in examples]
        outputs = encoder.run_features(features)
        for b, feature in enumerate(features):
          writer.write(feature_json(feature, [o[b] for o in outputs], layer_indexes) + "\n")
        count += len(features)
        now = time.time()
        if now - last >= log_every_s:
          last = now
          log.info("extract_features: %d examples (%.1f/s)", count, count / (now - start))
  log.info("extract_features: wrote %d examples to %s in %.1fs", count, output_file,
           time.time() - start)
  return count
