"""Google's BERT code (`bert-tensorflow==1.0.4`) made importable on TF 2.15, for tests only.

Google's `modeling.py` imports `tensorflow.contrib.layers` for `layer_norm`, which TF 2 removed. This
module registers a minimal stand-in for `tensorflow.contrib.layers.layer_norm` (variables
`<scope>/LayerNorm/beta` and `gamma`, epsilon 1e-12, normalising and scaling the last axis, as
contrib's did with `begin_norm_axis=-1, begin_params_axis=-1`) before Google's modules are imported.
Google's code itself is imported unmodified.

Usage:
  from tests import oracle
  oracle.modeling.BertModel(...)
  oracle.tokenization.FullTokenizer(...)

Also sets up TF1 graph behaviour (`disable_v2_behavior`) as Google's scripts expect and marks absl
flags as parsed so that Google's tokenizer can read its `--preserve_unused_tokens` default.
"""

import sys
import types

import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()


def _contrib_layer_norm(inputs, begin_norm_axis=-1, begin_params_axis=-1, scope=None, **unused):
  """What Google's modeling.layer_norm needs from tf.contrib.layers.layer_norm."""
  if begin_norm_axis != -1 or begin_params_axis != -1:
    raise NotImplementedError("the stand-in only normalises the last axis")
  with tf.variable_scope(scope, "LayerNorm", [inputs]):
    params_shape = inputs.shape[-1:]
    beta = tf.get_variable("beta", shape=params_shape, dtype=inputs.dtype,
                           initializer=tf.zeros_initializer())
    gamma = tf.get_variable("gamma", shape=params_shape, dtype=inputs.dtype,
                            initializer=tf.ones_initializer())
    mean, variance = tf.nn.moments(inputs, [inputs.shape.ndims - 1], keep_dims=True)
    return tf.nn.batch_normalization(inputs, mean, variance, offset=beta, scale=gamma,
                                     variance_epsilon=1e-12)


def _install_contrib_stand_in():
  if "tensorflow.contrib.layers" in sys.modules:
    return
  contrib = types.ModuleType("tensorflow.contrib")
  layers = types.ModuleType("tensorflow.contrib.layers")
  layers.layer_norm = _contrib_layer_norm
  contrib.layers = layers
  sys.modules["tensorflow.contrib"] = contrib
  sys.modules["tensorflow.contrib.layers"] = layers


_install_contrib_stand_in()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags as _flags

from bert import modeling  # noqa: E402
from bert import optimization  # noqa: E402
from bert import tokenization  # noqa: E402

if not _flags.FLAGS.is_parsed():
  _flags.FLAGS.mark_as_parsed()

__all__ = ["modeling", "optimization", "tokenization", "layer_norm_stand_in"]

layer_norm_stand_in = _contrib_layer_norm
