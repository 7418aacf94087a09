"""A fine-tuned model as a versioned SavedModel for TF Serving (and for `predict.py --model_dir`).

  savedmodel.export("finetune/i2b2_2010", "serving/i2b2_2010")   # -> serving/i2b2_2010/1

Writes `<export_dir>/<version>/` (version: one more than the highest already there, or the one
given) with the `serve` tag and a `serving_default` signature:

  inputs   input_ids, input_mask, segment_ids        int32 [batch, length], length <= the model's
  outputs  probabilities  float32 [batch, length, num_labels] (token head) or [batch, num_labels]
           label_ids      int32   [batch, length] or [batch]

The graph is the head's `serving_outputs` (is_training False), the variables the checkpoint's. As
assets it carries `vocab.txt`, `finetune_head.json` (head, label order, casing, max_seq_length, word
rules) and `bert_config.json`, so the directory alone is enough for `predict.py`. Plain TensorFlow
loads it (`tf.saved_model.load(path).signatures["serving_default"]`) without this project's code.
The version directory is built under a temporary name and renamed when complete.
"""

import os
import shutil
import tempfile

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import head_record
from clinicalbert_tf.inference import model as model_lib


def next_version(export_dir):
  """One more than the highest numbered version directory in `export_dir` (1 if none)."""
  names = os.listdir(export_dir) if os.path.isdir(export_dir) else []
  return 1 + max([int(n) for n in names if n.isdigit()] or [0])


def export(model_dir, export_dir, version=None, bert_config_file=None, vocab_file=None,
           init_checkpoint=None):
  """Exports the fine-tuned model in `model_dir` as `<export_dir>/<version>`. Returns that path.

  Raises:
    InputError: the model directory lacks a piece (see `inference.model.locate_model`), or the version
      directory exists already.
  """
  files = model_lib.locate_model(model_dir, bert_config_file, vocab_file, init_checkpoint)
  if files.saved_model_dir:
    raise fileio.InputError("--model_dir=%s is a SavedModel already" % model_dir)
  fileio.check_output_dir(export_dir, "export_dir")
  version = next_version(export_dir) if version is None else int(version)
  final = os.path.join(export_dir, str(version))
  if os.path.exists(final):
    raise fileio.InputError("--export_dir=%s: version %d exists already" % (export_dir, version))
  os.makedirs(export_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".tmp-%d-" % version, dir=export_dir)
  build = os.path.join(staging, "model")  # the builder wants a directory that does not exist
  try:
    with tf.Graph().as_default() as graph:
      model = model_lib.LoadedModel(files, graph=graph, finalize=False, position_outputs=False)
      with graph.as_default():
        assets = [tf.constant(path, name="asset_" + os.path.basename(path).replace(".", "_"))
                  for path in _asset_files(files, staging)]
        for asset in assets:
          tf.add_to_collection(tf.GraphKeys.ASSET_FILEPATHS, asset)
        signature = tf.saved_model.signature_def_utils.predict_signature_def(
            inputs=dict(model.inputs), outputs=dict(model.outputs))
        builder = tf.saved_model.Builder(build)
        builder.add_meta_graph_and_variables(
            model.session, [tf.saved_model.tag_constants.SERVING],
            signature_def_map={model_lib.SERVING_SIGNATURE: signature},
            assets_collection=tf.get_collection(tf.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.tables_initializer(), strip_default_attrs=True)
        builder.save()
      model.close()
    os.replace(build, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  logging.info("exported %s (%s head, %d labels) to %s", files.checkpoint, files.record.head,
               len(files.record.labels), final)
  return final


def _asset_files(files, staging):
  """Copies of the vocabulary, the head record and the config under their standard names."""
  assets_dir = os.path.join(staging, "assets")
  os.makedirs(assets_dir)
  paths = []
  head_record.write_copy(assets_dir, files.record)
  for source, name in ((files.vocab_file, checkpoints.VOCAB_FILE),
                       (files.bert_config_file, checkpoints.BERT_CONFIG_FILE)):
    shutil.copyfile(source, os.path.join(assets_dir, name))
  for name in (checkpoints.VOCAB_FILE, checkpoints.HEAD_RECORD_FILE, checkpoints.BERT_CONFIG_FILE):
    paths.append(os.path.join(assets_dir, name))
  return paths
