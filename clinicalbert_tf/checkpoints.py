"""Model configs and checkpoints: load and check a BERT config, resolve a checkpoint, init from it.

Every script that reads a model goes through these functions, so a missing or malformed
`bert_config.json`, a directory without a checkpoint, or a checkpoint of another shape gives the
same one-line `fileio.InputError` everywhere. Nothing here needs the Estimator machinery, so
inference code (features, export, prediction) imports it without `estimator.py`.

A fine-tuned model directory holds, next to its checkpoint, `bert_config.json`, `vocab.txt` and
`finetune_head.json` (HEAD_RECORD_FILE: the head type and the label order).
"""

import re

from absl import logging
import tensorflow.compat.v1 as tf

from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import tokenization

BERT_CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
# Written next to a fine-tuned checkpoint: the head type and label order (read by export_hf.py).
HEAD_RECORD_FILE = "finetune_head.json"

# Config entries that must be integers for the model to be built at all.
_INTEGER_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size")


def load_bert_config(bert_config_file, max_seq_length=None, flag_name="bert_config_file"):
  """Reads and checks a `bert_config.json`.

  Args:
    bert_config_file: the path.
    max_seq_length: if given, it must fit the config's `max_position_embeddings`.
    flag_name: the flag the path came from, for messages.

  Returns:
    A `modeling.BertConfig`.

  Raises:
    InputError: missing path, no such file, not JSON, not a BERT config (a required entry missing or
      not an integer), or `max_seq_length` longer than the model allows.
  """
  if not bert_config_file:
    raise fileio.InputError("--%s is required (the model's bert_config.json)" % flag_name)
  if not tf.io.gfile.exists(bert_config_file):
    raise fileio.InputError("--%s=%s: no such file" % (flag_name, bert_config_file))
  try:
    config = modeling.BertConfig.from_json_file(bert_config_file)
  except (ValueError, TypeError, AttributeError, tf.errors.OpError) as e:
    message = str(e)
    if bert_config_file not in message:
      message = "not a BERT config (%s)" % message
    raise fileio.InputError("--%s=%s: %s" % (flag_name, bert_config_file, message)) from None
  for key in _INTEGER_KEYS:
    value = getattr(config, key, None)
    if not isinstance(value, int) or isinstance(value, bool):
      raise fileio.InputError("--%s=%s: %r must be an integer, got %r" %
                              (flag_name, bert_config_file, key, value))
  if max_seq_length is not None:
    check_max_seq_length(max_seq_length, config, bert_config_file)
  return config


def check_max_seq_length(max_seq_length, bert_config, bert_config_file=None):
  """Sequences longer than the config's `max_position_embeddings` have no position embedding.

  For callers that check the length later than they load the config (`load_bert_config` takes
  `max_seq_length` too).

  Raises:
    InputError: `max_seq_length > bert_config.max_position_embeddings` (naming the config file
      when given).
  """
  if max_seq_length > bert_config.max_position_embeddings:
    where = " in %s" % bert_config_file if bert_config_file else ""
    raise fileio.InputError(
        "--max_seq_length=%d is longer than the model's max_position_embeddings (%d%s)" %
        (max_seq_length, bert_config.max_position_embeddings, where))


def check_vocab_matches_config(num_tokens, bert_config, vocab_file, flag_name="vocab_file"):
  """A vocabulary must belong to the config: not larger than `vocab_size`, not far smaller.

  Larger: ids past the embedding table (on a GPU `tf.gather` returns zeros without an error).
  Less than half of `vocab_size`: the vocabulary of another model (a 50-token file against
  BERT's 30522); most of the table could never be used, so it is an error too. Smaller by more
  than 10% but at least half: a warning (some models pad `vocab_size` for the hardware, by a few
  entries; none by that much). Within 10%: silent.

  Raises:
    InputError: `num_tokens > bert_config.vocab_size` or `2 * num_tokens < vocab_size`.
  """
  vocab_size = bert_config.vocab_size
  if num_tokens > vocab_size:
    raise fileio.InputError(
        "--%s=%s has %d tokens but the config's vocab_size is %d: they do not belong together" %
        (flag_name, vocab_file, num_tokens, vocab_size))
  if 2 * num_tokens < vocab_size:
    raise fileio.InputError(
        "--%s=%s has %d tokens but the config's vocab_size is %d (less than half): they do not "
        "belong together (is it the vocab.txt of this model?)" %
        (flag_name, vocab_file, num_tokens, vocab_size))
  if 10 * num_tokens < 9 * vocab_size:
    logging.warning("--%s=%s has %d tokens, the config's vocab_size is %d: is it the vocab.txt "
                    "of this model?", flag_name, vocab_file, num_tokens, vocab_size)


def load_tokenizer(vocab_file, do_lower_case, bert_config=None, flag_name="vocab_file"):
  """The model's `FullTokenizer`, checked against its config (when given) and its casing.

  The one tokenizer set-up of every reader of a model (`features.py`'s encoder, the fine-tuned
  models of `inference/`), so a wrong vocabulary fails the same way everywhere.

  Raises:
    InputError: no `vocab_file`, or a vocabulary that does not belong to `bert_config`.
  """
  if not tf.io.gfile.exists(vocab_file):
    raise fileio.InputError("--%s=%s does not exist" % (flag_name, vocab_file))
  tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)
  if bert_config is not None:
    check_vocab_matches_config(len(tokenizer.vocab), bert_config, vocab_file, flag_name)
  check_case_matches_vocab(tokenizer.vocab, do_lower_case, vocab_file, flag_name)
  return tokenizer


def cpu_has_bf16():
  """True when the CPU multiplies bfloat16 natively (AMX or AVX512_BF16, as /proc/cpuinfo says)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          cpu_flags = set(line.split(":", 1)[1].split())
          return bool(cpu_flags & {"amx_bf16", "avx512_bf16"})
  except OSError:
    pass
  return False


def new_session(graph, num_threads=0, config=None, use_bf16=False):
  """A session on `graph` with `num_threads` intra- and inter-op threads (0: TensorFlow's choice).

  The one way a model is held for prediction (`features.py`'s encoder, `inference/`).

  Args:
    graph: the graph.
    num_threads: intra- and inter-op threads (0: TensorFlow's choice).
    config: a whole `ConfigProto` instead (num_threads and use_bf16 then unused).
    use_bf16: bfloat16 mixed precision on the CPU: Grappler's oneDNN rewrite
      (`auto_mixed_precision_onednn_bfloat16`) runs the matrix multiplications, and the ops its
      lists allow around them, in bfloat16 (AMX / AVX512_BF16); variables stay float32.
      Predictions differ slightly from float32's; on a CPU without native bfloat16 it is slower,
      so that is warned about.
  """
  if config is None:
    config = tf.ConfigProto(intra_op_parallelism_threads=num_threads,
                            inter_op_parallelism_threads=num_threads)
    if use_bf16:
      from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-import-not-at-top
      if not cpu_has_bf16():
        logging.warning("--use_bf16: this CPU has no native bfloat16 (AMX or AVX512_BF16); "
                        "expect it to be slower than float32")
      config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
          rewriter_config_pb2.RewriterConfig.ON)
  return tf.Session(graph=graph, config=config)


# A vocabulary is taken as cased when more than this share of its word entries has a capital.
CASED_VOCAB_SHARE = 0.05


def check_case_matches_vocab(vocab_tokens, do_lower_case, vocab_file, flag_name="vocab_file"):
  """Warns when --do_lower_case does not fit the vocabulary's own casing (a cheap look).

  Google's `validate_case_matches_checkpoint` knows only the released checkpoints' names. This
  looks at the vocabulary instead: lower-casing input for a vocabulary with many capitalised
  entries (cased BERT, BioBERT, ClinicalBERT) leaves those entries unused; keeping the case for a
  vocabulary with none (uncased BERT) turns capitalised words into pieces or [UNK]. A warning,
  not an error: a model may have been trained that way on purpose.

  Returns:
    The warning text, or None.
  """
  words = [t[2:] if t.startswith("##") else t for t in vocab_tokens
           if not (t.startswith("[") and t.endswith("]"))]
  words = [w for w in words if any(c.isalpha() for c in w)]
  if not words:
    return None
  cased = sum(1 for w in words if any(c.isupper() for c in w))
  message = None
  if do_lower_case and cased > CASED_VOCAB_SHARE * len(words):
    message = ("--do_lower_case=True but --%s=%s looks cased (%d of %d entries have capitals, "
               "which lower-cased input never reaches): pass --do_lower_case=False for a cased "
               "model" % (flag_name, vocab_file, cased, len(words)))
  elif not do_lower_case and cased == 0 and len(words) >= 100:
    message = ("--do_lower_case=False but --%s=%s has no entry with a capital (an uncased "
               "model's): pass --do_lower_case=True" % (flag_name, vocab_file))
  if message:
    logging.warning("%s", message)
  return message


def resolve_checkpoint(init_checkpoint, flag_name="init_checkpoint"):
  """`init_checkpoint` as a checkpoint prefix (a directory gives its latest checkpoint).

  Raises:
    InputError: no checkpoint there.
  """
  path = init_checkpoint
  if not path:
    raise fileio.InputError("--%s is required (a checkpoint prefix or directory)" % flag_name)
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      raise fileio.InputError("--%s=%s is a directory without a checkpoint" % (flag_name, path))
    return latest
  if not tf.io.gfile.exists(path + ".index") and not tf.io.gfile.exists(path):
    raise fileio.InputError(
        "--%s=%s: no checkpoint (expected %s.index and its data files)" % (flag_name, path, path))
  check_checkpoint_complete(path, flag_name)
  return path


def check_checkpoint_complete(prefix, flag_name="init_checkpoint"):
  """A checkpoint's index must parse and its data files must hold every tensor it lists: cheap.

  Reads the `.index` (names, shapes, dtypes) and compares the bytes its numeric tensors need
  with the sizes of the `.data-*` files, so a checkpoint cut short (an interrupted download)
  or a file of another kind (records, a safetensors file) given as a checkpoint is one line here,
  not a traceback when the Estimator restores it. The data's checksums are not verified (that
  reads every byte); a corrupt byte inside a full-size data file shows when it is read.
  Remote checkpoints (`gs://...`) get the index check only.

  Raises:
    InputError: the index is not a checkpoint index, or the data files are shorter than the
      tensors the index lists.
  """
  try:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
  except (tf.errors.OpError, ValueError) as e:
    raise fileio.InputError(
        "--%s=%s cannot be read: not a TensorFlow checkpoint (expected %s.index and %s.data-* "
        "files written by a TF saver): %s" % (flag_name, prefix, prefix, prefix, fileio.one_line(e))
    ) from None
  if "://" in prefix:
    return
  needed = 0
  for name, shape in shapes.items():
    dtype = dtypes.get(name)
    if dtype is None or dtype == tf.string:
      continue
    count = 1
    for dim in shape:
      count *= int(dim)
    needed += count * dtype.size
  data_files = tf.io.gfile.glob(prefix + ".data-*-of-*")
  have = sum(tf.io.gfile.stat(f).length for f in data_files)
  if have < needed:
    raise fileio.InputError(
        "--%s=%s is cut short: its index lists %d tensors of %d bytes but its data file(s) %s hold "
        "%d bytes (an interrupted copy? download or copy it again)" %
        (flag_name, prefix, len(shapes), needed,
         ", ".join(sorted(data_files)) or "(none)", have))


def load_checkpoint(init_checkpoint, flag_name="init_checkpoint"):
  """Resolves `init_checkpoint` and opens it. Returns (prefix, `tf.train.CheckpointReader`).

  Raises:
    InputError: no checkpoint, or one that cannot be read (truncated, not a checkpoint).
  """
  path = resolve_checkpoint(init_checkpoint, flag_name)
  try:
    return path, tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise fileio.InputError("--%s=%s cannot be read: %s" % (flag_name, init_checkpoint, e)) from e


def variable_shapes(init_checkpoint, flag_name="init_checkpoint"):
  """{variable name: shape} of a checkpoint (prefix or directory). Raises InputError as above."""
  path = resolve_checkpoint(init_checkpoint, flag_name)
  try:
    return dict(tf.train.list_variables(path))
  except (tf.errors.OpError, ValueError) as e:
    raise fileio.InputError("--%s=%s cannot be read: %s" % (flag_name, path, e)) from e


def variable_name(var):
  """A variable's name without the `:0` output suffix."""
  name = var.name
  m = re.match("^(.*):\\d+$", name)
  return m.group(1) if m else name


def init_from_checkpoint(init_checkpoint, tvars=None):
  """Initialises the variables that `init_checkpoint` holds, by name, as Google's scripts do.

  Call it while building the graph, after the model. Variables the checkpoint lacks keep their
  initialisers (e.g. a fresh classifier head); checkpoint entries the model lacks (optimizer slots,
  heads of another task) are ignored.

  Args:
    init_checkpoint: checkpoint prefix or directory (its latest checkpoint).
    tvars: variables to initialise (default: all trainable variables).

  Returns:
    The sorted names of the initialised variables (without ":0").

  Raises:
    InputError: no checkpoint, or a variable whose shape differs from the checkpoint's (the message
      names the variable and both shapes).
  """
  path = resolve_checkpoint(init_checkpoint)
  if tvars is None:
    tvars = tf.trainable_variables()
  ckpt_shapes = variable_shapes(path)

  assignment_map = {}
  for var in tvars:
    name = variable_name(var)
    if name not in ckpt_shapes:
      continue
    want = var.shape.as_list()
    have = list(ckpt_shapes[name])
    if want != have:
      raise fileio.InputError(
          "--init_checkpoint=%s: variable %s has shape %s in the checkpoint but %s in the model "
          "(is bert_config_file the config of this checkpoint, e.g. the same vocab_size?)" %
          (path, name, have, want))
    assignment_map[name] = var

  if assignment_map:
    tf.train.init_from_checkpoint(path, assignment_map)
  names = sorted(assignment_map)
  missing = sorted(variable_name(v) for v in tvars if variable_name(v) not in assignment_map)
  logging.info("init_checkpoint %s: initialised %d of %d variables", path, len(names), len(tvars))
  for name in missing:
    logging.info("  not in init_checkpoint (kept its initialiser): %s", name)
  return names


def init_from_checkpoint_in_model_fn(init_checkpoint, tvars, use_tpu):
  """`init_from_checkpoint` as a model_fn needs it; returns the TPUEstimatorSpec `scaffold_fn`.

  On TPU the assignment must run inside the scaffold (Google's pattern), so this returns a
  `scaffold_fn` doing it; elsewhere it initialises now and returns None. No checkpoint: None.
  """
  if not init_checkpoint:
    return None
  if use_tpu:
    def tpu_scaffold():
      init_from_checkpoint(init_checkpoint, tvars)
      return tf.train.Scaffold()
    return tpu_scaffold
  init_from_checkpoint(init_checkpoint, tvars)
  return None
