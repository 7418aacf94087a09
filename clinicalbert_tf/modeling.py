"""The BERT model: configuration, graph and checkpoint name mapping.

Same public API, variable names and shapes as google-research/bert's `modeling.py`, so that code written
against Google's module works with this one, and Google's released checkpoints (BERT, BioBERT,
ClinicalBERT) load into it by name. Graph mode (`tf.compat.v1`), no `tf.contrib`: layer
normalisation and dense layers are created here with the variable names the checkpoints use
(`<scope>/LayerNorm/{beta,gamma}`, `<scope>/kernel`, `<scope>/bias`).

Variables (L = layer index, H = hidden size, I = intermediate size, V = vocabulary size):
  bert/embeddings/word_embeddings                [V, H]
  bert/embeddings/token_type_embeddings          [type_vocab_size, H]
  bert/embeddings/position_embeddings            [max_position_embeddings, H]
  bert/embeddings/LayerNorm/{beta,gamma}         [H]
  bert/encoder/layer_L/attention/self/{query,key,value}/{kernel [H, H], bias [H]}
  bert/encoder/layer_L/attention/output/dense/{kernel [H, H], bias [H]}
  bert/encoder/layer_L/attention/output/LayerNorm/{beta,gamma}
  bert/encoder/layer_L/intermediate/dense/{kernel [H, I], bias [I]}
  bert/encoder/layer_L/output/dense/{kernel [I, H], bias [H]}
  bert/encoder/layer_L/output/LayerNorm/{beta,gamma}
  bert/pooler/dense/{kernel [H, H], bias [H]}

Activations (`hidden_act`): "gelu" is Google's current tanh approximation; "gelu_exact" is the erf form
the released BERT and BioBERT weights were trained with; also "relu", "tanh" and "linear".
"""

import collections
import copy
import json
import math
import re

import numpy as np
import tensorflow.compat.v1 as tf

# Epsilon of Google's (contrib) layer normalisation; the checkpoints were trained with it.
LAYER_NORM_EPSILON = 1e-12
# Added to attention logits of padding positions (Google's value; large enough to zero them).
ATTENTION_MASK_ADDER = -10000.0


class BertConfig(object):
  """Configuration for `BertModel` (Google's eleven keys; unknown keys are kept)."""

  def __init__(self,
               vocab_size,
               hidden_size=768,
               num_hidden_layers=12,
               num_attention_heads=12,
               intermediate_size=3072,
               hidden_act="gelu",
               hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1,
               max_position_embeddings=512,
               type_vocab_size=16,
               initializer_range=0.02):
    """Constructs BertConfig.

    Args:
      vocab_size: Vocabulary size of `inputs_ids` in `BertModel`.
      hidden_size: Size of the encoder layers and the pooler layer.
      num_hidden_layers: Number of hidden layers in the Transformer encoder.
      num_attention_heads: Number of attention heads for each attention layer.
      intermediate_size: Size of the "intermediate" (feed-forward) layer.
      hidden_act: The non-linear activation function in the encoder and pooler (see module docstring).
      hidden_dropout_prob: Dropout probability for all fully connected layers in the embeddings,
        encoder and pooler.
      attention_probs_dropout_prob: Dropout ratio for the attention probabilities.
      max_position_embeddings: The maximum sequence length this model might ever be used with.
      type_vocab_size: The vocabulary size of the `token_type_ids` passed into `BertModel`.
      initializer_range: Stddev of the truncated_normal_initializer for all weight matrices.
    """
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.num_hidden_layers = num_hidden_layers
    self.num_attention_heads = num_attention_heads
    self.hidden_act = hidden_act
    self.intermediate_size = intermediate_size
    self.hidden_dropout_prob = hidden_dropout_prob
    self.attention_probs_dropout_prob = attention_probs_dropout_prob
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.initializer_range = initializer_range

  @classmethod
  def from_dict(cls, json_object):
    """Constructs a `BertConfig` from a Python dictionary of parameters (all keys kept)."""
    config = BertConfig(vocab_size=None)
    for (key, value) in json_object.items():
      config.__dict__[key] = value
    return config

  @classmethod
  def from_json_file(cls, json_file):
    """Constructs a `BertConfig` from a json file of parameters."""
    with tf.io.gfile.GFile(json_file, "r") as reader:
      text = reader.read()
    try:
      return cls.from_dict(json.loads(text))
    except ValueError as e:
      raise ValueError("%s is not a valid BERT config (JSON): %s" % (json_file, e)) from e

  def to_dict(self):
    """Serializes this instance to a Python dictionary."""
    return copy.deepcopy(self.__dict__)

  def to_json_string(self):
    """Serializes this instance to a JSON string."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


class BertModel(object):
  """BERT model ("Bidirectional Encoder Representations from Transformers").

  Example usage:

  ```python
  # Already been converted into WordPiece token ids
  input_ids = tf.constant([[31, 51, 99], [15, 5, 0]])
  input_mask = tf.constant([[1, 1, 1], [1, 1, 0]])
  token_type_ids = tf.constant([[0, 0, 1], [0, 2, 0]])

  config = modeling.BertConfig(vocab_size=32000, hidden_size=512,
    num_hidden_layers=8, num_attention_heads=6, intermediate_size=1024)

  model = modeling.BertModel(config=config, is_training=True,
    input_ids=input_ids, input_mask=input_mask, token_type_ids=token_type_ids)

  label_embeddings = tf.get_variable(...)
  pooled_output = model.get_pooled_output()
  logits = tf.matmul(pooled_output, label_embeddings)
  ...
  ```
  """

  def __init__(self,
               config,
               is_training,
               input_ids,
               input_mask=None,
               token_type_ids=None,
               use_one_hot_embeddings=False,
               scope=None,
               output_positions=None):
    """Constructor for BertModel.

    Args:
      config: `BertConfig` instance.
      is_training: bool. true for training model, false for eval model. Controls whether dropout
        will be applied.
      input_ids: int32 Tensor of shape [batch_size, seq_length].
      input_mask: (optional) int32 Tensor of shape [batch_size, seq_length].
      token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length].
      use_one_hot_embeddings: (optional) bool. Whether to use one-hot word embeddings or
        tf.gather() for the word embedding lookup (one-hot is faster on TPUs).
      scope: (optional) variable scope. Defaults to "bert".
      output_positions: (optional) int32 Tensor of shape [batch_size, num_positions]. When given,
        the last encoder layer is computed only at these positions and at [CLS] (its keys and
        values still come from every position), so `get_sequence_output()` is [batch_size,
        num_positions, hidden_size], the rows at `output_positions`, and the pooler is unchanged.
        Pretraining reads nothing else of the last layer: its masked-LM and next-sentence losses
        are the same, for about 1/num_hidden_layers less work. Variables are the same either way.

    Raises:
      ValueError: The config is invalid or one of the input tensor shapes is invalid.
    """
    config = copy.deepcopy(config)
    if not is_training:
      config.hidden_dropout_prob = 0.0
      config.attention_probs_dropout_prob = 0.0

    input_shape = get_shape_list(input_ids, expected_rank=2)
    batch_size = input_shape[0]
    seq_length = input_shape[1]

    if input_mask is None:
      input_mask = tf.ones(shape=[batch_size, seq_length], dtype=tf.int32)

    if token_type_ids is None:
      token_type_ids = tf.zeros(shape=[batch_size, seq_length], dtype=tf.int32)

    final_layer_positions = None
    if output_positions is not None:
      # [batch_size, 1 + num_positions]: [CLS] (for the pooler) first, then the asked-for rows.
      final_layer_positions = tf.concat(
          [tf.zeros([batch_size, 1], tf.int32), tf.cast(output_positions, tf.int32)], axis=1)

    with tf.variable_scope(scope, default_name="bert"):
      with tf.variable_scope("embeddings"):
        # [batch_size, seq_length, hidden_size]
        (self.embedding_output, self.embedding_table) = embedding_lookup(
            input_ids=input_ids,
            vocab_size=config.vocab_size,
            embedding_size=config.hidden_size,
            initializer_range=config.initializer_range,
            word_embedding_name="word_embeddings",
            use_one_hot_embeddings=use_one_hot_embeddings)

        # Adds segment and position embeddings, then layer norm and dropout.
        self.embedding_output = embedding_postprocessor(
            input_tensor=self.embedding_output,
            use_token_type=True,
            token_type_ids=token_type_ids,
            token_type_vocab_size=config.type_vocab_size,
            token_type_embedding_name="token_type_embeddings",
            use_position_embeddings=True,
            position_embedding_name="position_embeddings",
            initializer_range=config.initializer_range,
            max_position_embeddings=config.max_position_embeddings,
            dropout_prob=config.hidden_dropout_prob)

      with tf.variable_scope("encoder"):
        # [batch_size, seq_length, seq_length]: 1 where attention is allowed.
        attention_mask = create_attention_mask_from_input_mask(input_ids, input_mask)

        # A list of num_hidden_layers tensors of shape [batch_size, seq_length, hidden_size].
        self.all_encoder_layers = transformer_model(
            input_tensor=self.embedding_output,
            attention_mask=attention_mask,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            intermediate_act_fn=get_activation(config.hidden_act),
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            initializer_range=config.initializer_range,
            do_return_all_layers=True,
            final_layer_positions=final_layer_positions)

      # [batch_size, seq_length, hidden_size] (or [batch_size, 1 + num_positions, hidden_size])
      last_layer = self.all_encoder_layers[-1]
      self.sequence_output = last_layer
      if output_positions is not None:
        # [batch_size, num_positions, hidden_size]
        self.sequence_output = last_layer[:, 1:, :]
        self.all_encoder_layers[-1] = self.sequence_output
      # The pooler turns the [CLS] vector into a fixed-size sentence representation, used by
      # the next-sentence head in pretraining and by sentence-level classifiers.
      with tf.variable_scope("pooler"):
        # [batch_size, hidden_size]
        first_token_tensor = tf.squeeze(last_layer[:, 0:1, :], axis=1)
        self.pooled_output = dense(
            first_token_tensor,
            config.hidden_size,
            activation=tf.tanh,
            kernel_initializer=create_initializer(config.initializer_range))

  def get_pooled_output(self):
    """[batch_size, hidden_size]: the pooled [CLS] representation."""
    return self.pooled_output

  def get_sequence_output(self):
    """Gets final hidden layer of encoder.

    Returns:
      float Tensor of shape [batch_size, seq_length, hidden_size] corresponding to the final
      hidden of the transformer encoder ([batch_size, num_positions, hidden_size], the rows at
      `output_positions`, when the model was built with them).
    """
    return self.sequence_output

  def get_all_encoder_layers(self):
    """A list of [batch_size, seq_length, hidden_size] tensors, one per encoder layer."""
    return self.all_encoder_layers

  def get_embedding_output(self):
    """Gets output of the embedding lookup (i.e., input to the transformer).

    Returns:
      float Tensor of shape [batch_size, seq_length, hidden_size]: word + position + segment
      embeddings, after layer normalisation and dropout.
    """
    return self.embedding_output

  def get_embedding_table(self):
    """[vocab_size, hidden_size]: the word embedding matrix (tied to the MLM decoder)."""
    return self.embedding_table


def gelu(x):
  """Gaussian Error Linear Unit, tanh approximation (Google's current `modeling.gelu`).

  Original paper: https://arxiv.org/abs/1606.08415

  The forward pass is Google's expression, op for op; the derivative is given directly
  (`_gelu_tanh`), which takes about half the elementwise passes of the automatic gradient (and
  no `Pow`) over the [batch * seq, intermediate] activations.

  Args:
    x: float Tensor to perform activation.

  Returns:
    `x` with the GELU activation applied.
  """
  return _gelu_tanh(x)


@tf.custom_gradient
def _gelu_tanh(x):
  """Google's gelu; gradient 0.5 (1 + t) + x 0.5 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
  t = tf.tanh((np.sqrt(2 / np.pi) * (x + 0.044715 * tf.pow(x, 3))))
  cdf = 0.5 * (1.0 + t)

  def grad(dy):
    c = math.sqrt(2.0 / math.pi)
    dz = x * ((0.5 * c) + (1.5 * 0.044715 * c) * tf.square(x))
    # TanhGrad(t, d) = d (1 - t^2).
    return dy * (cdf + tf.raw_ops.TanhGrad(y=t, dy=dz))

  return x * cdf, grad


def gelu_exact(x):
  """Gaussian Error Linear Unit, exact erf form (what BERT and BioBERT were trained with)."""
  return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


_ACTIVATIONS = collections.OrderedDict([
    ("gelu", gelu),
    ("gelu_exact", gelu_exact),
    ("relu", tf.nn.relu),
    ("tanh", tf.tanh),
    ("linear", None),
])


def get_activation(activation_string):
  """Maps a string to a Python function, e.g., "relu" => `tf.nn.relu`.

  Args:
    activation_string: String name of the activation function (a non-string is returned as is).

  Returns:
    A Python function corresponding to the activation function. If `activation_string` is None,
    empty, or "linear", this will return None.

  Raises:
    ValueError: The `activation_string` does not correspond to a known activation.
  """
  if not isinstance(activation_string, str):
    return activation_string
  if not activation_string:
    return None
  act = activation_string.lower()
  if act not in _ACTIVATIONS:
    raise ValueError("Unsupported activation: %r (allowed: %s)" %
                     (activation_string, ", ".join(_ACTIVATIONS)))
  return _ACTIVATIONS[act]


def get_assignment_map_from_checkpoint(tvars, init_checkpoint):
  """Maps the variables in `tvars` that a checkpoint also has, by name.

  Args:
    tvars: the variables to initialise (usually `tf.trainable_variables()`).
    init_checkpoint: a checkpoint prefix.

  Returns:
    (assignment_map, initialized_variable_names): an OrderedDict of checkpoint name -> variable
    name for `tf.train.init_from_checkpoint`, and a dict whose keys are the initialised names
    (with and without the ":0" suffix).
  """
  initialized_variable_names = {}

  name_to_variable = collections.OrderedDict()
  for var in tvars:
    name = var.name
    m = re.match("^(.*):\\d+$", name)
    if m is not None:
      name = m.group(1)
    name_to_variable[name] = var

  assignment_map = collections.OrderedDict()
  for (name, _) in tf.train.list_variables(init_checkpoint):
    if name not in name_to_variable:
      continue
    assignment_map[name] = name
    initialized_variable_names[name] = 1
    initialized_variable_names[name + ":0"] = 1

  return (assignment_map, initialized_variable_names)


def dropout(input_tensor, dropout_prob):
  """Perform dropout.

  The distribution of `tf.nn.dropout(x, rate=dropout_prob)`: each element is kept, scaled by
  `1 / (1 - dropout_prob)`, where a uniform [0, 1) draw is `>= dropout_prob`, else zeroed. Written as
  one multiply by that per-element factor, so that the gradient is one multiply too (instead of a
  select and a multiply).

  Args:
    input_tensor: float Tensor.
    dropout_prob: Python float. The probability of dropping out a value (NOT of *keeping* a
      dimension as in the old `tf.nn.dropout`).

  Returns:
    A version of `input_tensor` with dropout applied.
  """
  if dropout_prob is None or dropout_prob == 0.0:
    return input_tensor
  dtype = input_tensor.dtype
  uniform = tf.random.uniform(tf.shape(input_tensor), dtype=dtype)
  keep_scale = tf.where_v2(uniform >= dropout_prob, tf.constant(1.0 / (1.0 - dropout_prob), dtype),
                        tf.constant(0.0, dtype))
  output = input_tensor * keep_scale
  output.set_shape(input_tensor.shape)
  return output


def layer_norm(input_tensor, name=None):
  """Layer normalisation over the last axis, with Google's variable names and epsilon.

  Creates `<scope>/LayerNorm/beta` (zeros) and `<scope>/LayerNorm/gamma` (ones), both [width].
  `(x - mean) / sqrt(variance + 1e-12) * gamma + beta`, as contrib's `layer_norm` (the same ops
  as `tf.nn.batch_normalization`), with the gradient given directly (`_layer_norm`) rather than
  differentiated through the moments.
  """
  with tf.variable_scope(name, default_name="LayerNorm"):
    params_shape = input_tensor.shape[-1:]
    beta = tf.get_variable("beta", shape=params_shape, dtype=input_tensor.dtype,
                           initializer=tf.zeros_initializer())
    gamma = tf.get_variable("gamma", shape=params_shape, dtype=input_tensor.dtype,
                            initializer=tf.ones_initializer())
    output = _layer_norm(input_tensor, gamma, beta)
    output.set_shape(input_tensor.shape)
    return output


@tf.custom_gradient
def _layer_norm(x, gamma, beta):
  """The forward pass of tf.nn.batch_normalization over moments; the closed-form gradient.

  Gradient: dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) with xhat = (x - mean) rstd
  and dxhat = dy gamma (means over the last axis); dgamma = sum(dy xhat), dbeta = sum(dy) over
  the other axes.
  """
  mean, variance = tf.nn.moments(x, [x.shape.ndims - 1], keep_dims=True)
  rstd = tf.math.rsqrt(variance + LAYER_NORM_EPSILON)
  inv = rstd * gamma

  def grad(dy):
    outer_axes = list(range(dy.shape.ndims - 1))
    xhat = (x - mean) * rstd
    dbeta = tf.reduce_sum(dy, axis=outer_axes)
    dgamma = tf.reduce_sum(dy * xhat, axis=outer_axes)
    dxhat = dy * gamma
    a = tf.reduce_mean(dxhat, axis=-1, keepdims=True)
    b = tf.reduce_mean(dxhat * xhat, axis=-1, keepdims=True)
    dx = (dxhat - a - xhat * b) * rstd
    return dx, dgamma, dbeta

  return x * inv + (beta - mean * inv), grad


def layer_norm_and_dropout(input_tensor, dropout_prob, name=None):
  """Runs layer normalization followed by dropout."""
  output_tensor = layer_norm(input_tensor, name)
  output_tensor = dropout(output_tensor, dropout_prob)
  return output_tensor


def create_initializer(initializer_range=0.02):
  """Creates a `truncated_normal_initializer` with the given range."""
  return tf.truncated_normal_initializer(stddev=initializer_range)


def dense(inputs, units, activation=None, name=None, kernel_initializer=None):
  """A fully connected layer with the variable names of `tf.layers.dense`.

  Creates `<name or "dense">/kernel` [in, units] and `/bias` [units] (zeros). Written here rather
  than taken from Keras so that the graph has no Keras layer objects and the names are fixed.

  Args:
    inputs: float Tensor of shape [..., in].
    units: output width.
    activation: optional function applied to the output.
    name: variable scope name; None gives "dense" (uniquified like `tf.layers.dense`).
    kernel_initializer: initializer of the kernel (default glorot uniform, as Keras).

  Returns:
    float Tensor of shape [..., units].
  """
  in_width = inputs.shape[-1]
  if in_width is None:
    raise ValueError("dense: the last dimension of %s must be known" % inputs.name)
  with tf.variable_scope(name, default_name="dense"):
    kernel = tf.get_variable("kernel", shape=[int(in_width), units], dtype=inputs.dtype,
                             initializer=kernel_initializer)
    bias = tf.get_variable("bias", shape=[units], dtype=inputs.dtype,
                           initializer=tf.zeros_initializer())
    if inputs.shape.ndims == 2:
      output = tf.matmul(inputs, kernel)
    else:
      output = tf.tensordot(inputs, kernel, [[inputs.shape.ndims - 1], [0]])
    output = tf.nn.bias_add(output, bias)
    if activation is not None:
      output = activation(output)
    return output


def embedding_lookup(input_ids,
                     vocab_size,
                     embedding_size=128,
                     initializer_range=0.02,
                     word_embedding_name="word_embeddings",
                     use_one_hot_embeddings=False):
  """Looks up words embeddings for id tensor.

  Args:
    input_ids: int32 Tensor of shape [batch_size, seq_length] containing word ids.
    vocab_size: int. Size of the embedding vocabulary.
    embedding_size: int. Width of the word embeddings.
    initializer_range: float. Embedding initialization range.
    word_embedding_name: string. Name of the embedding table.
    use_one_hot_embeddings: bool. If True, use one-hot method for word embeddings. If False, use
      `tf.gather()`.

  Returns:
    float Tensor of shape [batch_size, seq_length, embedding_size], and the table
    [vocab_size, embedding_size].
  """
  # This function assumes that the input is of shape [batch_size, seq_length, num_inputs].
  # If the input is a 2D tensor of shape [batch_size, seq_length], we reshape to
  # [batch_size, seq_length, 1].
  if input_ids.shape.ndims == 2:
    input_ids = tf.expand_dims(input_ids, axis=[-1])

  embedding_table = tf.get_variable(
      name=word_embedding_name,
      shape=[vocab_size, embedding_size],
      initializer=create_initializer(initializer_range))

  flat_input_ids = tf.reshape(input_ids, [-1])
  if use_one_hot_embeddings:
    one_hot_input_ids = tf.one_hot(flat_input_ids, depth=vocab_size)
    output = tf.matmul(one_hot_input_ids, embedding_table)
  else:
    output = tf.gather(embedding_table, flat_input_ids)

  input_shape = get_shape_list(input_ids)

  output = tf.reshape(output, input_shape[0:-1] + [input_shape[-1] * embedding_size])
  return (output, embedding_table)


def embedding_postprocessor(input_tensor,
                            use_token_type=False,
                            token_type_ids=None,
                            token_type_vocab_size=16,
                            token_type_embedding_name="token_type_embeddings",
                            use_position_embeddings=True,
                            position_embedding_name="position_embeddings",
                            initializer_range=0.02,
                            max_position_embeddings=512,
                            dropout_prob=0.1):
  """Performs various post-processing on a word embedding tensor.

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length, embedding_size].
    use_token_type: bool. Whether to add embeddings for `token_type_ids`.
    token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length]. Must be specified if
      `use_token_type` is True.
    token_type_vocab_size: int. The vocabulary size of `token_type_ids`.
    token_type_embedding_name: string. The name of the embedding table variable for token type ids.
    use_position_embeddings: bool. Whether to add position embeddings for the position of each
      token in the sequence.
    position_embedding_name: string. The name of the embedding table variable for positional
      embeddings.
    initializer_range: float. Range of the weight initialization.
    max_position_embeddings: int. Maximum sequence length that might ever be used with this model.
      This can be longer than the sequence length of input_tensor, but cannot be shorter.
    dropout_prob: float. Dropout probability applied to the final output tensor.

  Returns:
    float tensor with same shape as `input_tensor`.

  Raises:
    ValueError: One of the tensor shapes or input values is invalid.
  """
  input_shape = get_shape_list(input_tensor, expected_rank=3)
  batch_size = input_shape[0]
  seq_length = input_shape[1]
  width = input_shape[2]

  output = input_tensor

  if use_token_type:
    if token_type_ids is None:
      raise ValueError("`token_type_ids` must be specified if `use_token_type` is True.")
    token_type_table = tf.get_variable(
        name=token_type_embedding_name,
        shape=[token_type_vocab_size, width],
        initializer=create_initializer(initializer_range))
    # The segment vocabulary is tiny, so a one-hot matmul is faster than a gather.
    flat_token_type_ids = tf.reshape(token_type_ids, [-1])
    one_hot_ids = tf.one_hot(flat_token_type_ids, depth=token_type_vocab_size)
    token_type_embeddings = tf.matmul(one_hot_ids, token_type_table)
    token_type_embeddings = tf.reshape(token_type_embeddings, [batch_size, seq_length, width])
    output += token_type_embeddings

  if use_position_embeddings:
    if isinstance(seq_length, int) and seq_length > max_position_embeddings:
      raise ValueError(
          "Sequence length %d is longer than max_position_embeddings %d of the config" %
          (seq_length, max_position_embeddings))
    assert_op = tf.assert_less_equal(
        seq_length, max_position_embeddings,
        message="sequence length is longer than max_position_embeddings")
    with tf.control_dependencies([assert_op]):
      full_position_embeddings = tf.get_variable(
          name=position_embedding_name,
          shape=[max_position_embeddings, width],
          initializer=create_initializer(initializer_range))
      # Positions are always 0..seq_length-1, so the first rows of the table are sliced rather
      # than gathered.
      position_embeddings = tf.slice(full_position_embeddings, [0, 0], [seq_length, -1])
      num_dims = len(output.shape.as_list())

      # Only the last two dimensions are relevant (`seq_length` and `width`), so we broadcast
      # among the first dimensions, which is typically just the batch size.
      position_broadcast_shape = [1] * (num_dims - 2) + [seq_length, width]
      position_embeddings = tf.reshape(position_embeddings, position_broadcast_shape)
      output += position_embeddings

  output = layer_norm_and_dropout(output, dropout_prob)
  return output


def create_attention_mask_from_input_mask(from_tensor, to_mask):
  """Create 3D attention mask from a 2D tensor mask.

  Args:
    from_tensor: 2D or 3D Tensor of shape [batch_size, from_seq_length, ...].
    to_mask: int32 Tensor of shape [batch_size, to_seq_length].

  Returns:
    float Tensor of shape [batch_size, from_seq_length, to_seq_length].
  """
  from_shape = get_shape_list(from_tensor, expected_rank=[2, 3])
  batch_size = from_shape[0]
  from_seq_length = from_shape[1]

  to_shape = get_shape_list(to_mask, expected_rank=2)
  to_seq_length = to_shape[1]

  to_mask = tf.cast(tf.reshape(to_mask, [batch_size, 1, to_seq_length]), tf.float32)

  # We don't assume that `from_tensor` is a mask (although it could be): padding tokens may
  # attend, but nothing attends to them, and their outputs are ignored downstream.
  broadcast_ones = tf.ones(shape=[batch_size, from_seq_length, 1], dtype=tf.float32)

  # [batch_size, from_seq_length, to_seq_length]
  mask = broadcast_ones * to_mask
  return mask


def attention_layer(from_tensor,
                    to_tensor,
                    attention_mask=None,
                    num_attention_heads=1,
                    size_per_head=512,
                    query_act=None,
                    key_act=None,
                    value_act=None,
                    attention_probs_dropout_prob=0.0,
                    initializer_range=0.02,
                    do_return_2d_tensor=False,
                    batch_size=None,
                    from_seq_length=None,
                    to_seq_length=None):
  """Performs multi-headed attention from `from_tensor` to `to_tensor`.

  Scaled dot-product attention as in "Attention is all you need": each head projects `from_tensor`
  to queries and `to_tensor` to keys and values, then
  `context = softmax(Q K^T / sqrt(size_per_head) + mask_adder) V`.

  Args:
    from_tensor: float Tensor of shape [batch_size, from_seq_length, from_width] (or the 2D
      [batch_size * from_seq_length, from_width] with the sizes passed explicitly).
    to_tensor: float Tensor of shape [batch_size, to_seq_length, to_width] (or 2D likewise).
    attention_mask: (optional) int32 Tensor of shape [batch_size, from_seq_length, to_seq_length].
      The values should be 1 or 0. Positions with 0 get -10000 added to their logits.
    num_attention_heads: int. Number of attention heads.
    size_per_head: int. Size of each attention head.
    query_act: (optional) Activation function for the query transform.
    key_act: (optional) Activation function for the key transform.
    value_act: (optional) Activation function for the value transform.
    attention_probs_dropout_prob: (optional) float. Dropout probability of the attention
      probabilities.
    initializer_range: float. Range of the weight initializer.
    do_return_2d_tensor: bool. If True, the output is [batch_size * from_seq_length,
      num_attention_heads * size_per_head]; else [batch_size, from_seq_length,
      num_attention_heads * size_per_head].
    batch_size: (Optional) int. Needed if the inputs are 2D.
    from_seq_length: (Optional) Needed if the inputs are 2D.
    to_seq_length: (Optional) Needed if the inputs are 2D.

  Returns:
    float Tensor of the shape described under `do_return_2d_tensor`.

  Raises:
    ValueError: Any of the arguments or tensor shapes are invalid.
  """

  def transpose_for_scores(input_tensor, batch_size, num_attention_heads, seq_length, width):
    # [B*S, N*H] -> [B, N, S, H]
    output_tensor = tf.reshape(input_tensor, [batch_size, seq_length, num_attention_heads, width])
    return tf.transpose(output_tensor, [0, 2, 1, 3])

  from_shape = get_shape_list(from_tensor, expected_rank=[2, 3])
  to_shape = get_shape_list(to_tensor, expected_rank=[2, 3])

  if len(from_shape) != len(to_shape):
    raise ValueError("The rank of `from_tensor` (%d) must match the rank of `to_tensor` (%d)." %
                     (len(from_shape), len(to_shape)))

  if len(from_shape) == 3:
    batch_size = from_shape[0]
    from_seq_length = from_shape[1]
    to_seq_length = to_shape[1]
  elif len(from_shape) == 2:
    if batch_size is None or from_seq_length is None or to_seq_length is None:
      raise ValueError(
          "When passing in rank 2 tensors to attention_layer, the values for `batch_size`, "
          "`from_seq_length`, and `to_seq_length` must all be specified.")

  # Scalar dimensions referenced here:
  #   B = batch size (number of sequences)
  #   F = `from_tensor` sequence length
  #   T = `to_tensor` sequence length
  #   N = `num_attention_heads`
  #   H = `size_per_head`

  from_tensor_2d = reshape_to_matrix(from_tensor)
  to_tensor_2d = reshape_to_matrix(to_tensor)

  # `query_layer` = [B*F, N*H]
  query_layer = dense(from_tensor_2d, num_attention_heads * size_per_head, activation=query_act,
                      name="query", kernel_initializer=create_initializer(initializer_range))
  # `key_layer` = [B*T, N*H]
  key_layer = dense(to_tensor_2d, num_attention_heads * size_per_head, activation=key_act,
                    name="key", kernel_initializer=create_initializer(initializer_range))
  # `value_layer` = [B*T, N*H]
  value_layer = dense(to_tensor_2d, num_attention_heads * size_per_head, activation=value_act,
                      name="value", kernel_initializer=create_initializer(initializer_range))

  # The 1 / sqrt(H) of the scores is applied to the queries instead: [B*F, N*H] is smaller than
  # [B, N, F, T] when T >= H, and for H = 64 (BERT's heads) the factor 1/8 is exact either way.
  query_layer = tf.multiply(query_layer, 1.0 / math.sqrt(float(size_per_head)))

  # `query_layer` = [B, N, F, H]
  query_layer = transpose_for_scores(query_layer, batch_size, num_attention_heads,
                                     from_seq_length, size_per_head)
  # `key_layer` = [B, N, T, H]
  key_layer = transpose_for_scores(key_layer, batch_size, num_attention_heads, to_seq_length,
                                   size_per_head)

  # `attention_scores` = [B, N, F, T]
  attention_scores = tf.matmul(query_layer, key_layer, transpose_b=True)

  if attention_mask is not None:
    # `attention_mask` = [B, 1, F, T]
    attention_mask = tf.expand_dims(attention_mask, axis=[1])
    # 0 for allowed positions and -10000 for masked ones: after the softmax this is the same as
    # removing them entirely.
    adder = (1.0 - tf.cast(attention_mask, attention_scores.dtype)) * ATTENTION_MASK_ADDER
    attention_scores += adder

  # `attention_probs` = [B, N, F, T]
  attention_probs = tf.nn.softmax(attention_scores)

  # Drops whole tokens to attend to, as in the original Transformer.
  attention_probs = dropout(attention_probs, attention_probs_dropout_prob)

  # `value_layer` = [B, T, N, H] -> [B, N, T, H]
  value_layer = tf.reshape(value_layer,
                           [batch_size, to_seq_length, num_attention_heads, size_per_head])
  value_layer = tf.transpose(value_layer, [0, 2, 1, 3])

  # `context_layer` = [B, N, F, H] -> [B, F, N, H]
  context_layer = tf.matmul(attention_probs, value_layer)
  context_layer = tf.transpose(context_layer, [0, 2, 1, 3])

  if do_return_2d_tensor:
    # `context_layer` = [B*F, N*H]
    context_layer = tf.reshape(context_layer,
                               [batch_size * from_seq_length, num_attention_heads * size_per_head])
  else:
    # `context_layer` = [B, F, N*H]
    context_layer = tf.reshape(context_layer,
                               [batch_size, from_seq_length, num_attention_heads * size_per_head])

  return context_layer


def transformer_model(input_tensor,
                      attention_mask=None,
                      hidden_size=768,
                      num_hidden_layers=12,
                      num_attention_heads=12,
                      intermediate_size=3072,
                      intermediate_act_fn=gelu,
                      hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1,
                      initializer_range=0.02,
                      do_return_all_layers=False,
                      final_layer_positions=None):
  """Multi-headed, multi-layer Transformer encoder (post-layer-norm, as BERT).

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length, hidden_size].
    attention_mask: (optional) int32 Tensor of shape [batch_size, seq_length, seq_length], with 1
      for positions that can be attended to and 0 in positions that should not be.
    hidden_size: int. Hidden size of the Transformer.
    num_hidden_layers: int. Number of layers (blocks) in the Transformer.
    num_attention_heads: int. Number of attention heads in the Transformer.
    intermediate_size: int. The size of the "intermediate" (a.k.a., feed forward) layer.
    intermediate_act_fn: function. The non-linear activation function to apply to the output of
      the intermediate/feed-forward layer.
    hidden_dropout_prob: float. Dropout probability for the hidden layers.
    attention_probs_dropout_prob: float. Dropout probability of the attention probabilities.
    initializer_range: float. Range of the initializer (stddev of truncated normal).
    do_return_all_layers: Whether to also return all layers or just the final layer.
    final_layer_positions: (optional) int32 Tensor of shape [batch_size, num_positions]: the last
      layer computes its queries, attention output and feed-forward only at these positions (keys
      and values from all of them), and its output is [batch_size, num_positions, hidden_size].
      Each row is the same function of the previous layer as without it: every part of a layer
      but the keys and values works row by row.

  Returns:
    float Tensor of shape [batch_size, seq_length, hidden_size], the final hidden layer of the
    Transformer (or a list of one such tensor per layer).

  Raises:
    ValueError: A Tensor shape or parameter is invalid.
  """
  if hidden_size % num_attention_heads != 0:
    raise ValueError(
        "The hidden size (%d) is not a multiple of the number of attention heads (%d)" %
        (hidden_size, num_attention_heads))

  attention_head_size = int(hidden_size / num_attention_heads)
  input_shape = get_shape_list(input_tensor, expected_rank=3)
  batch_size = input_shape[0]
  seq_length = input_shape[1]
  input_width = input_shape[2]

  # The Transformer performs sum residuals on all layers so the input needs to be the same as
  # the hidden size.
  if input_width != hidden_size:
    raise ValueError("The width of the input tensor (%d) != hidden size (%d)" %
                     (input_width, hidden_size))

  # The tensor is kept 2D ([B*S, H]) between layers: reshapes between 3D and 2D are cheap on
  # CPU/GPU but not on TPU, and the dense layers want matrices anyway.
  prev_output = reshape_to_matrix(input_tensor)

  all_layer_outputs = []
  output_shape = input_shape
  for layer_idx in range(num_hidden_layers):
    with tf.variable_scope("layer_%d" % layer_idx):
      layer_input = prev_output
      # The rows this layer computes: all [B*S] of them, or [B*R] in a last layer given positions.
      from_input, from_length, from_mask = layer_input, seq_length, attention_mask
      if final_layer_positions is not None and layer_idx == num_hidden_layers - 1:
        from_length = get_shape_list(final_layer_positions, expected_rank=2)[1]
        # [B*R, H]
        from_input = gather_rows(layer_input, final_layer_positions, seq_length)
        if attention_mask is not None:
          # [B, R, S]
          from_mask = tf.gather(attention_mask, final_layer_positions, batch_dims=1)
        output_shape = [batch_size, from_length, hidden_size]

      with tf.variable_scope("attention"):
        with tf.variable_scope("self"):
          # [B*F, H], F = S or R
          attention_output = attention_layer(
              from_tensor=from_input,
              to_tensor=layer_input,
              attention_mask=from_mask,
              num_attention_heads=num_attention_heads,
              size_per_head=attention_head_size,
              attention_probs_dropout_prob=attention_probs_dropout_prob,
              initializer_range=initializer_range,
              do_return_2d_tensor=True,
              batch_size=batch_size,
              from_seq_length=from_length,
              to_seq_length=seq_length)

        # Run a linear projection of `hidden_size` then add a residual with `layer_input`.
        with tf.variable_scope("output"):
          attention_output = dense(attention_output, hidden_size,
                                   kernel_initializer=create_initializer(initializer_range))
          attention_output = dropout(attention_output, hidden_dropout_prob)
          attention_output = layer_norm(attention_output + from_input)

      # The activation is only applied to the "intermediate" hidden layer.
      with tf.variable_scope("intermediate"):
        # [B*S, I]
        intermediate_output = dense(attention_output, intermediate_size,
                                    activation=intermediate_act_fn,
                                    kernel_initializer=create_initializer(initializer_range))

      # Down-project back to `hidden_size` then add the residual.
      with tf.variable_scope("output"):
        layer_output = dense(intermediate_output, hidden_size,
                             kernel_initializer=create_initializer(initializer_range))
        layer_output = dropout(layer_output, hidden_dropout_prob)
        layer_output = layer_norm(layer_output + attention_output)
        prev_output = layer_output
        all_layer_outputs.append(layer_output)

  shapes = [input_shape] * (num_hidden_layers - 1) + [output_shape]
  if do_return_all_layers:
    return [reshape_from_matrix(output, shape) for output, shape in zip(all_layer_outputs, shapes)]
  return reshape_from_matrix(prev_output, output_shape)


def gather_rows(matrix, positions, seq_length):
  """Rows of a [batch_size * seq_length, width] matrix at per-sequence `positions`.

  Args:
    matrix: float Tensor of shape [batch_size * seq_length, width] (sequences flattened).
    positions: int32 Tensor of shape [batch_size, num_positions], each in [0, seq_length).
    seq_length: int or scalar Tensor, the length of each sequence in `matrix`.

  Returns:
    float Tensor of shape [batch_size * num_positions, width].
  """
  batch_size = get_shape_list(positions, expected_rank=2)[0]
  # Offsets turn per-sequence positions into rows of the flattened matrix.
  flat_offsets = tf.reshape(tf.range(0, batch_size, dtype=tf.int32) * seq_length, [-1, 1])
  return tf.gather(matrix, tf.reshape(positions + flat_offsets, [-1]))


def get_shape_list(tensor, expected_rank=None, name=None):
  """Returns a list of the shape of tensor, preferring static dimensions.

  Args:
    tensor: A tf.Tensor object to find the shape of.
    expected_rank: (optional) int or list of ints. The expected rank of `tensor`. If this is
      specified and the `tensor` has a different rank, an exception will be thrown.
    name: Optional name of the tensor for the error message.

  Returns:
    A list of dimensions of the shape of tensor. All static dimensions will be returned as python
    integers, and dynamic dimensions will be returned as tf.Tensor scalars.
  """
  if name is None:
    name = tensor.name

  if expected_rank is not None:
    assert_rank(tensor, expected_rank, name)

  shape = tensor.shape.as_list()

  non_static_indexes = [index for (index, dim) in enumerate(shape) if dim is None]
  if not non_static_indexes:
    return shape

  dyn_shape = tf.shape(tensor)
  for index in non_static_indexes:
    shape[index] = dyn_shape[index]
  return shape


def reshape_to_matrix(input_tensor):
  """Reshapes a >= rank 2 tensor to a rank 2 tensor (i.e., a matrix)."""
  ndims = input_tensor.shape.ndims
  if ndims < 2:
    raise ValueError("Input tensor must have at least rank 2. Shape = %s" % (input_tensor.shape))
  if ndims == 2:
    return input_tensor

  width = input_tensor.shape[-1]
  output_tensor = tf.reshape(input_tensor, [-1, width])
  return output_tensor


def reshape_from_matrix(output_tensor, orig_shape_list):
  """Reshapes a rank 2 tensor back to its original rank >= 2 tensor."""
  if len(orig_shape_list) == 2:
    return output_tensor

  output_shape = get_shape_list(output_tensor)

  orig_dims = orig_shape_list[0:-1]
  width = output_shape[-1]

  return tf.reshape(output_tensor, orig_dims + [width])


def assert_rank(tensor, expected_rank, name=None):
  """Raises an exception if the tensor rank is not of the expected rank.

  Args:
    tensor: A tf.Tensor to check the rank of.
    expected_rank: Python integer or list of integers, expected rank.
    name: Optional name of the tensor for the error message.

  Raises:
    ValueError: If the expected shape doesn't match the actual shape.
  """
  if name is None:
    name = tensor.name

  expected_rank_dict = {}
  if isinstance(expected_rank, int):
    expected_rank_dict[expected_rank] = True
  else:
    for x in expected_rank:
      expected_rank_dict[x] = True

  actual_rank = tensor.shape.ndims
  if actual_rank not in expected_rank_dict:
    scope_name = tf.get_variable_scope().name
    raise ValueError(
        "For the tensor `%s` in scope `%s`, the actual rank `%d` (shape = %s) is not equal to the "
        "expected rank `%s`" % (name, scope_name, actual_rank, str(tensor.shape), str(expected_rank)))
