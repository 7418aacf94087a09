"""Finding and loading a fine-tuned model: one TensorFlow session, its tokenizer and its head.

A model directory is what `run_finetune.py` leaves: the checkpoint, `bert_config.json`, `vocab.txt`
and the head record `finetune_head.json` (`finetuning/head_record.py`: head, label order, casing,
`max_seq_length`, word rules). A directory from before those files were written works with Google's
flags (`bert_config_file`, `vocab_file`, `init_checkpoint`). A SavedModel made by
`export_savedmodel.py` carries its vocabulary and head record as assets, so its directory alone is
enough. Paths go through `tf.io.gfile`, so a model on any file system TensorFlow reads (a bucket, a
cluster's storage) loads as a local one does.
"""

import collections
import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import head_record
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import word_rules as word_rules_lib

SERVING_INPUTS = ("input_ids", "input_mask", "segment_ids")
SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"


@dataclasses.dataclass
class ModelFiles:
  """Where a model's pieces are (`saved_model_dir` set: a SavedModel, else a checkpoint)."""
  record: head_record.HeadRecord
  vocab_file: str
  bert_config_file: Optional[str] = None
  checkpoint: Optional[str] = None
  saved_model_dir: Optional[str] = None


def _is_file(path):
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def find_saved_model(model_dir):
  """`model_dir` itself if it holds `saved_model.pb`, else its highest numbered version, or None."""
  if _is_file(os.path.join(model_dir, SAVED_MODEL_FILE)):
    return model_dir
  names = tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else []
  versions = [int(name.rstrip("/")) for name in names if name.rstrip("/").isdigit() and
              _is_file(os.path.join(model_dir, name.rstrip("/"), SAVED_MODEL_FILE))]
  return os.path.join(model_dir, str(max(versions))) if versions else None


def locate_model(model_dir, bert_config_file=None, vocab_file=None, init_checkpoint=None):
  """The pieces of the model in `model_dir` (see the module docstring). Flags given win.

  Raises:
    InputError: no such directory, no head record, or a piece that is neither in the directory nor
      given by its flag.
  """
  if not model_dir or not tf.io.gfile.isdir(model_dir):
    raise fileio.InputError("--model_dir=%s: no such directory" % model_dir)
  saved = find_saved_model(model_dir)
  if saved:
    assets = os.path.join(saved, "assets")
    return ModelFiles(record=head_record.read(assets),
                      vocab_file=os.path.join(assets, checkpoints.VOCAB_FILE),
                      saved_model_dir=saved)
  record = head_record.read(model_dir)
  found = {}
  for flag, value, name in (("bert_config_file", bert_config_file, checkpoints.BERT_CONFIG_FILE),
                            ("vocab_file", vocab_file, checkpoints.VOCAB_FILE)):
    path = value or os.path.join(model_dir, name)
    if not _is_file(path):
      raise fileio.InputError("--%s=%s: no such file (a directory from an older run_finetune.py "
                              "lacks %s: pass --%s)" % (flag, path, name, flag))
    found[flag] = path
  return ModelFiles(record=record, vocab_file=found["vocab_file"],
                    bert_config_file=found["bert_config_file"],
                    checkpoint=checkpoints.resolve_checkpoint(init_checkpoint or model_dir))


def build_serving_graph(head, bert_config):
  """Placeholders [batch, length] (int32, any length up to the model's) and the head's outputs.

  Returns:
    ({name: placeholder} for SERVING_INPUTS, {name: output tensor}).
  """
  inputs = collections.OrderedDict(
      (name, tf.placeholder(tf.int32, [None, None], name=name)) for name in SERVING_INPUTS)
  outputs = head.serving_outputs(bert_config, inputs["input_ids"], inputs["input_mask"],
                                 inputs["segment_ids"])
  return inputs, outputs


def build_position_outputs(head, bert_config, inputs):
  """A word-labelling head's outputs at given positions only, on the same variables.

  The predictor reads a window only at the first pieces of the words it predicts (about 40% of
  a long line's positions), so this second copy of the graph, sharing every variable with the
  first, computes the last encoder layer and the output layer only there
  (`modeling.BertModel(output_positions=...)`). The other layers are the same ops on the same
  inputs as the full graph's.

  Returns:
    (the int32 [batch, positions] placeholder, {name: output tensor [batch, positions, ...]}).
  """
  positions = tf.placeholder(tf.int32, [None, None], name="output_positions")
  with tf.variable_scope(tf.get_variable_scope(), reuse=True):
    with tf.name_scope("at_positions"):
      outputs = head.serving_outputs(bert_config, inputs["input_ids"], inputs["input_mask"],
                                     inputs["segment_ids"], output_positions=positions)
  return positions, outputs


class LoadedModel(object):
  """A fine-tuned model held in one TensorFlow session, with its tokenizer and head.

  Attributes:
    head: the fine-tuning head (`finetuning.heads`), built from the head record; every decision
      that depends on the kind of model is the head's.
    record: the head record (`head_record.HeadRecord`).
    label_list: the labels, in the output layer's order.
    tokenizer: the model's `tokenization.FullTokenizer`.
    max_seq_length: the window length the model was fine-tuned with.
    word_rules: the `word_rules.WordRules` raw text is split by.
    output_positions, position_outputs: a word-labelling checkpoint's `build_position_outputs`
      (what `probabilities` runs), else None.
  """

  def __init__(self, files, max_seq_length=None, do_lower_case=None, num_threads=0, graph=None,
               finalize=True, use_bf16=False, position_outputs=True):
    """Args (besides the attributes'): `use_bf16`: the session runs in bfloat16 mixed precision
    (`checkpoints.new_session`); `position_outputs`: False leaves out `build_position_outputs`
    (a graph to export as it is)."""
    self.files = files
    self.record = files.record
    self.head = self.record.make_head()
    self.label_list = list(self.record.labels)
    if do_lower_case is None:
      do_lower_case = bool(self.record.do_lower_case)
    self.max_seq_length = int(max_seq_length or self.record.max_seq_length or 128)
    self.word_rules = word_rules_lib.get(self.record.word_rules)
    bert_config = None
    if not files.saved_model_dir:
      bert_config = checkpoints.load_bert_config(files.bert_config_file, self.max_seq_length)
    self.tokenizer = checkpoints.load_tokenizer(files.vocab_file, do_lower_case, bert_config)
    self.graph = graph or tf.Graph()
    self.output_positions, self.position_outputs = None, None
    self.session = checkpoints.new_session(self.graph, num_threads, use_bf16=use_bf16)
    with self.graph.as_default():
      if files.saved_model_dir:
        self._load_saved_model(files.saved_model_dir)
      else:
        self._load_checkpoint(files, bert_config, position_outputs)
    if finalize:
      self.graph.finalize()

  def _load_checkpoint(self, files, bert_config, position_outputs):
    self.inputs, self.outputs = build_serving_graph(self.head, bert_config)
    if position_outputs and self.head.output == heads.WORD_LABELS:
      self.output_positions, self.position_outputs = build_position_outputs(
          self.head, bert_config, self.inputs)
    variables = tf.global_variables()
    initialised = checkpoints.init_from_checkpoint(files.checkpoint, variables)
    if len(initialised) != len(variables):
      missing = sorted(set(checkpoints.variable_name(v) for v in variables) - set(initialised))
      raise fileio.InputError("%s is not a fine-tuned %s checkpoint: it lacks %s" % (
          files.checkpoint, self.head.name, ", ".join(missing[:3])))
    self.session.run(tf.global_variables_initializer())

  def _load_saved_model(self, path):
    meta_graph = tf.saved_model.loader.load(self.session, [tf.saved_model.tag_constants.SERVING],
                                            path)
    signature = meta_graph.signature_def[SERVING_SIGNATURE]
    self.inputs = {k: self.graph.get_tensor_by_name(v.name) for k, v in signature.inputs.items()}
    self.outputs = {k: self.graph.get_tensor_by_name(v.name) for k, v in signature.outputs.items()}

  def probabilities(self, features, batch_size=32):
    """The head's probabilities for each feature, in the order given.

    Features are run in batches of similar length (sorted by real length), each padded only to
    its longest member. Token head: per feature [length, num_labels] (length at least the
    feature's real length); from a checkpoint, only the rows at the feature's `label_mask` are
    computed (the others are zero: `build_position_outputs`). Sequence head: [num_labels].
    """
    order = sorted(range(len(features)), key=lambda i: sum(features[i].input_mask))
    result = [None] * len(features)
    at_positions = (self.output_positions is not None and bool(features) and
                    hasattr(features[0], "label_mask"))
    fetch = (self.position_outputs if at_positions else self.outputs)["probabilities"]
    for begin in range(0, len(order), batch_size):
      batch = order[begin:begin + batch_size]
      length = max(sum(features[i].input_mask) for i in batch)
      feed = {self.inputs[name]: np.array([getattr(features[i], name)[:length] for i in batch],
                                          dtype=np.int32) for name in SERVING_INPUTS}
      if not at_positions:
        for i, value in zip(batch, self.session.run(fetch, feed)):
          result[i] = value
        continue
      # Only the positions a window is read at (the first pieces of its core words); a window
      # with fewer repeats its last one (or [CLS]).
      positions = [np.flatnonzero(features[i].label_mask[:length]) for i in batch]
      width = max(1, max(len(p) for p in positions))
      padded = np.array([np.pad(p, (0, width - len(p)), mode="edge") if len(p) else
                         np.zeros(width, np.int64) for p in positions], dtype=np.int32)
      feed[self.output_positions] = padded
      values = self.session.run(fetch, feed)  # [batch, width, C]
      for i, p, value in zip(batch, positions, values):
        full = np.zeros((length, value.shape[-1]), np.float32)  # [length, C], read at p only
        full[p] = value[:len(p)]
        result[i] = full
    return result

  def close(self):
    self.session.close()


def load_model(model_dir, bert_config_file=None, vocab_file=None, init_checkpoint=None,
               max_seq_length=None, do_lower_case=None, num_threads=0, use_bf16=False):
  """The `LoadedModel` of `model_dir` (fine-tuned directory or SavedModel); flags override."""
  files = locate_model(model_dir, bert_config_file, vocab_file, init_checkpoint)
  return LoadedModel(files, max_seq_length=max_seq_length, do_lower_case=do_lower_case,
                     num_threads=num_threads, use_bf16=use_bf16)
