"""TF Serving's REST API, the subset a client of an exported model speaks (JSON in, JSON out).

  GET  /v1/models/{name}            model_status(version)
  GET  /v1/models/{name}/metadata   metadata(name, version, signature_def)
  POST /v1/models/{name}:predict    parse_predict(body, ...) -> feeds; format_predict(outputs, ...)

As tensorflow_model_server answers them (https://www.tensorflow.org/tfx/serving/api_rest): the
row format (`{"instances": [{"input_ids": [...], ...}, ...]}` -> `{"predictions": [...]}`) and the
columnar one (`{"inputs": {"input_ids": [[...]], ...}}` -> `{"outputs": {...}}`), outputs as the
SavedModel's `serving_default` signature names them, errors as `{"error": "..."}`. Inputs are
checked before they reach the model: rectangular integer arrays, ids inside the vocabulary, a mask
of 0/1, segments inside the type vocabulary, lengths up to the position embeddings.
"""

import numpy as np
from google.protobuf import json_format

from clinicalbert_tf import fileio

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def model_status(version):
  """GET /v1/models/{name}: one version, available."""
  return {"model_version_status": [{"version": str(version), "state": "AVAILABLE",
                                    "status": {"error_code": "OK", "error_message": ""}}]}


def signature_def(inputs, outputs):
  """The `serving_default` SignatureDef of {name: tensor} inputs and outputs (what the export
  writes: `predict_signature_def`)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  return tf.saved_model.signature_def_utils.predict_signature_def(inputs=dict(inputs),
                                                                  outputs=dict(outputs))


def metadata(name, version, signature):
  """GET /v1/models/{name}/metadata: the signature as TF Serving prints it (proto field names)."""
  as_dict = json_format.MessageToDict(signature, preserving_proto_field_name=True,
                                      including_default_value_fields=True)
  return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
          "metadata": {"signature_def": {"signature_def": {SIGNATURE: as_dict}}}}


def _array(value, where):
  """`value` (nested lists of ints) as an int32 [batch, length] array, or InputError."""
  try:
    array = np.array(value)
  except (ValueError, TypeError):
    raise fileio.InputError("%s: not a rectangular array (rows of different lengths?)" %
                            where) from None
  if array.ndim != 2 or array.size == 0:
    raise fileio.InputError("%s: expected [batch, length] integers, got shape %s" %
                            (where, list(array.shape)))
  if array.dtype.kind not in "iu":
    raise fileio.InputError("%s: expected integers, got %s values" % (where, array.dtype.name))
  return array


def parse_predict(body, input_names, max_rows, limits):
  """The feeds of a :predict body, checked. Returns ({name: int32 array}, "row" or "columnar").

  Args:
    body: the parsed JSON object.
    input_names: the signature's input names (all required).
    max_rows: the most rows (instances) one request may hold.
    limits: {"vocab_size", "type_vocab_size", "max_positions"} of the model.

  Raises:
    InputError: one line naming the field and what was expected.
  """
  if not isinstance(body, dict):
    raise fileio.InputError("the body must be a JSON object with \"instances\" or \"inputs\"")
  unknown = sorted(set(body) - {"instances", "inputs", "signature_name"})
  if unknown:
    raise fileio.InputError("unknown field %r (expected instances or inputs, signature_name)" %
                            unknown[0])
  signature = body.get("signature_name", SIGNATURE)
  if signature != SIGNATURE:
    raise fileio.InputError("signature_name: %r is not one of the model's (%s)" %
                            (signature, SIGNATURE))
  if ("instances" in body) == ("inputs" in body):
    raise fileio.InputError("give exactly one of \"instances\" (row format) and \"inputs\" "
                            "(columnar format)")
  if "instances" in body:
    form, rows = "row", body["instances"]
    if not isinstance(rows, list) or not rows:
      raise fileio.InputError("instances: expected a non-empty list of objects")
    for i, row in enumerate(rows):
      if not isinstance(row, dict) or set(row) != set(input_names):
        raise fileio.InputError("instances[%d]: expected an object with exactly %s" %
                                (i, ", ".join(input_names)))
    columns = {name: [row[name] for row in rows] for name in input_names}
  else:
    form, columns = "columnar", body["inputs"]
    if not isinstance(columns, dict) or set(columns) != set(input_names):
      raise fileio.InputError("inputs: expected an object with exactly %s" %
                              ", ".join(input_names))
  feeds = {}
  for name in input_names:
    where = ("instances[*].%s" if form == "row" else "inputs.%s") % name
    feeds[name] = _array(columns[name], where)
  shapes = {name: feeds[name].shape for name in input_names}
  if len(set(shapes.values())) != 1:
    raise fileio.InputError("inputs have different shapes: %s" % ", ".join(
        "%s %s" % (n, list(s)) for n, s in shapes.items()))
  rows, length = feeds[input_names[0]].shape
  if rows > max_rows:
    raise fileio.InputError("%d rows: more than the limit of %d per request (--max_texts)" %
                            (rows, max_rows))
  if length > limits["max_positions"]:
    raise fileio.InputError("length %d: more than the model's %d positions" %
                            (length, limits["max_positions"]))
  bounds = {"input_ids": limits["vocab_size"], "input_mask": 2,
            "segment_ids": limits["type_vocab_size"]}
  for name, bound in bounds.items():
    if name in feeds:
      values = feeds[name]
      if values.min() < 0 or values.max() >= bound:
        raise fileio.InputError("%s: values must be in [0, %d)" % (name, bound))
  return {name: feeds[name].astype(np.int32) for name in input_names}, form


def format_predict(outputs, form):
  """The :predict answer of {name: array [batch, ...]} outputs in the request's format.

  As TF Serving: with one output the predictions (outputs) are its values, with several an object
  per row (one object of columns).
  """
  names = sorted(outputs)
  if form == "row":
    rows = len(outputs[names[0]])
    if len(names) == 1:
      return {"predictions": outputs[names[0]].tolist()}
    return {"predictions": [{n: outputs[n][i].tolist() for n in names} for i in range(rows)]}
  if len(names) == 1:
    return {"outputs": outputs[names[0]].tolist()}
  return {"outputs": {n: outputs[n].tolist() for n in names}}
