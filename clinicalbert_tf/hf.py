"""Google-format checkpoints <-> HuggingFace BERT model directories, without torch or transformers.

Export (`export_checkpoint`) reads a checkpoint by name and writes what `transformers` loads with
`from_pretrained(dir)`:

  config.json              model_type "bert", the architecture, Google's config keys, `hidden_act`
                           mapped (Google's tanh "gelu" -> HF "gelu_new", "gelu_exact" -> HF "gelu"),
                           `layer_norm_eps` 1e-12, and `id2label`/`label2id` for a fine-tuned head;
  model.safetensors        float tensors written with numpy and the `safetensors` package;
  vocab.txt                the model's vocabulary, unchanged;
  tokenizer_config.json    BertTokenizer with the model's `do_lower_case` (HF's default is True, which
                           silently breaks cased models such as the clinical ones);
  special_tokens_map.json  [UNK] [SEP] [PAD] [CLS] [MASK].

Heads (`head`):
  pretraining              `cls/predictions/*` and `cls/seq_relationship/*` -> BertForPreTraining
                           (the decoder is tied to the word embeddings, as in Google's model);
  token_classification     `output_weights` [num_labels, hidden] + `output_bias` on the sequence
                           output (run_finetune's NER head) -> BertForTokenClassification (no pooler);
  sequence_classification  the same names on the pooled output (Google's run_classifier, run_finetune's
                           NLI head) -> BertForSequenceClassification;
  none                     the encoder only -> BertModel;
  auto                     pretraining when `cls/` is there; a classifier when `finetune_head.json`
                           (see below) sits next to the checkpoint; none when there is no head.
The classifier names are the same for NER and NLI, so the kind of head and its labels come from
`finetune_head.json` ({"head": ..., "labels": [...]}) or from the caller (`head`, `labels`).

Import (`import_hf_dir`) does the reverse for a local directory with `config.json` (model_type bert)
and `model.safetensors` (or a sharded `model.safetensors.index.json`): `bert_model.ckpt`,
`bert_config.json`, `vocab.txt`, and `finetune_head.json` for a classifier head. Older PyTorch names
(`LayerNorm.gamma`/`beta`) are accepted. `pytorch_model.bin` is refused: reading it needs torch.

Name mapping (L = layer): `bert/encoder/layer_L/...` <-> `bert.encoder.layer.L....`; `kernel` <->
`weight` transposed ([in, out] vs [out, in]); `gamma`/`beta` <-> `weight`/`bias`; `*_embeddings` <->
`*_embeddings.weight`; `cls/predictions/output_bias` <-> `cls.predictions.bias`;
`cls/seq_relationship/output_weights` <-> `cls.seq_relationship.weight` (same layout);
`output_weights`/`output_bias` <-> `classifier.weight`/`classifier.bias`.
"""

import json
import os
import re
import shutil

from absl import logging
import numpy as np

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import head_record
from clinicalbert_tf.finetuning import heads as heads_lib
from clinicalbert_tf import modeling

HIDDEN_ACT_TO_HF = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu", "tanh": "tanh"}
# HF's "gelu_pytorch_tanh" is the same tanh approximation as "gelu_new".
HF_TO_HIDDEN_ACT = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact",
                    "relu": "relu", "tanh": "tanh"}

# The checkpoint's own kinds of head; the fine-tuning heads add theirs from the head registry.
ARCHITECTURES = {"none": "BertModel", "pretraining": "BertForPreTraining"}
ARCHITECTURES.update(heads_lib.hf_architectures())
HEADS = ("auto",) + tuple(ARCHITECTURES)
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
_GOOGLE_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "hidden_act", "hidden_dropout_prob",
                       "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                       "initializer_range")
_OPTIMIZER_PARTS = frozenset(["adam_m", "adam_v", "AdamWeightDecayOptimizer",
                              "AdamWeightDecayOptimizer_1", "global_step"])
_CLASSIFIER_NAMES = ("output_weights", "output_bias")


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------


def tf_to_hf_name(tf_name):
  """Maps a Google variable name to its HF parameter name.

  Returns:
    (hf_name, transpose): `transpose` is True for dense kernels.

  Raises:
    ValueError: a name outside `bert/`, `cls/` and the classifier head.
  """
  if tf_name == "output_weights":
    return "classifier.weight", False
  if tf_name == "output_bias":
    return "classifier.bias", False
  if tf_name == "cls/predictions/output_bias":
    return "cls.predictions.bias", False
  parts = tf_name.split("/")
  if parts[0] not in ("bert", "cls") or len(parts) < 3:
    raise ValueError("not a BERT variable: %s" % tf_name)
  out = []
  transpose = False
  for i, part in enumerate(parts):
    last = i == len(parts) - 1
    m = re.fullmatch(r"layer_(\d+)", part)
    if m:
      out.extend(["layer", m.group(1)])
    elif last and part in ("kernel", "gamma", "output_weights"):
      out.append("weight")
      transpose = part == "kernel"
    elif last and part in ("beta", "bias", "output_bias"):
      out.append("bias")
    elif last and part.endswith("_embeddings"):
      out.extend([part, "weight"])
    elif last:
      raise ValueError("not a BERT variable: %s" % tf_name)
    else:
      out.append(part)
  return ".".join(out), transpose


def hf_to_tf_name(hf_name):
  """Maps an HF parameter name (with or without the `bert.` prefix) to the Google name.

  Returns:
    (tf_name, transpose), or (None, False) for tied or derived entries that the Google checkpoint
    does not store (`cls.predictions.decoder.*`, `embeddings.position_ids`).

  Raises:
    ValueError: a name this mapping does not know.
  """
  name = hf_name
  if name in ("classifier.weight", "classifier.bias"):
    return ("output_weights" if name.endswith("weight") else "output_bias"), False
  if name.startswith(("embeddings.", "encoder.", "pooler.")):
    name = "bert." + name
  if name in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
              "bert.embeddings.position_ids"):
    return None, False
  if name == "cls.predictions.bias":
    return "cls/predictions/output_bias", False
  parts = name.split(".")
  if parts[0] not in ("bert", "cls") or len(parts) < 3:
    raise ValueError("not a BERT parameter: %s" % hf_name)
  out = []
  i = 0
  while i < len(parts) - 1:
    if parts[i] == "layer" and parts[i + 1].isdigit():
      out.append("layer_%s" % parts[i + 1])
      i += 2
    else:
      out.append(parts[i])
      i += 1
  if i != len(parts) - 1:
    raise ValueError("not a BERT parameter: %s" % hf_name)
  leaf, parent = parts[-1], out[-1]
  if parent.endswith("_embeddings") and leaf == "weight":
    return "/".join(out), False
  if parent == "LayerNorm":
    if leaf in ("weight", "gamma"):
      return "/".join(out + ["gamma"]), False
    if leaf in ("bias", "beta"):
      return "/".join(out + ["beta"]), False
  if parent == "seq_relationship":
    return "/".join(out + ["output_weights" if leaf == "weight" else "output_bias"]), False
  if leaf == "weight":
    return "/".join(out + ["kernel"]), True
  if leaf == "bias":
    return "/".join(out + ["bias"]), False
  raise ValueError("not a BERT parameter: %s" % hf_name)


def is_optimizer_variable(name):
  """True for optimizer state and other training bookkeeping that is not a model weight."""
  return any(part in _OPTIMIZER_PARTS for part in name.split("/"))


def expected_encoder_names(bert_config, with_pooler=True):
  """The Google variable names an encoder of this config must have."""
  names = ["bert/embeddings/word_embeddings", "bert/embeddings/token_type_embeddings",
           "bert/embeddings/position_embeddings", "bert/embeddings/LayerNorm/beta",
           "bert/embeddings/LayerNorm/gamma"]
  for layer in range(bert_config["num_hidden_layers"]):
    p = "bert/encoder/layer_%d/" % layer
    for dense in ("attention/self/query", "attention/self/key", "attention/self/value",
                  "attention/output/dense", "intermediate/dense", "output/dense"):
      names += [p + dense + "/kernel", p + dense + "/bias"]
    for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
      names += [p + norm + "/beta", p + norm + "/gamma"]
  if with_pooler:
    names += ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"]
  return names


PRETRAINING_HEAD_NAMES = (
    "cls/predictions/output_bias", "cls/predictions/transform/dense/kernel",
    "cls/predictions/transform/dense/bias", "cls/predictions/transform/LayerNorm/beta",
    "cls/predictions/transform/LayerNorm/gamma", "cls/seq_relationship/output_weights",
    "cls/seq_relationship/output_bias")


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------


def hf_config_dict(bert_config, head, labels=None):
  """config.json for `transformers` from a Google config dict.

  Args:
    bert_config: dict with Google's keys.
    head: one of HEADS except "auto".
    labels: the label list (index = id) for a classifier head.

  Returns:
    A JSON-ready dict.
  """
  act = bert_config.get("hidden_act", "gelu")
  if act not in HIDDEN_ACT_TO_HF:
    raise fileio.InputError("hidden_act %r has no HuggingFace equivalent (expected one of %s)" %
                            (act, ", ".join(HIDDEN_ACT_TO_HF)))
  config = {
      "architectures": [ARCHITECTURES[head]],
      "model_type": "bert",
      "vocab_size": bert_config["vocab_size"],
      "hidden_size": bert_config["hidden_size"],
      "num_hidden_layers": bert_config["num_hidden_layers"],
      "num_attention_heads": bert_config["num_attention_heads"],
      "intermediate_size": bert_config["intermediate_size"],
      "hidden_act": HIDDEN_ACT_TO_HF[act],
      "hidden_dropout_prob": bert_config.get("hidden_dropout_prob", 0.1),
      "attention_probs_dropout_prob": bert_config.get("attention_probs_dropout_prob", 0.1),
      "max_position_embeddings": bert_config.get("max_position_embeddings", 512),
      "type_vocab_size": bert_config.get("type_vocab_size", 16),
      "initializer_range": bert_config.get("initializer_range", 0.02),
      "layer_norm_eps": 1e-12,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "torch_dtype": "float32",
  }
  if labels is not None:
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    config["num_labels"] = len(labels)
  return config


def google_config_from_hf(hf_config):
  """Google's bert_config dict from an HF config.json dict.

  Raises:
    InputError: not a BERT config, or a setting Google's model cannot express.
  """
  if hf_config.get("model_type") != "bert":
    raise fileio.InputError("config.json: model_type is %r, expected \"bert\"" %
                            hf_config.get("model_type"))
  act = hf_config.get("hidden_act", "gelu")
  if act not in HF_TO_HIDDEN_ACT:
    raise fileio.InputError("config.json: hidden_act %r has no equivalent here (expected one of %s)"
                            % (act, ", ".join(HF_TO_HIDDEN_ACT)))
  if hf_config.get("position_embedding_type", "absolute") != "absolute":
    raise fileio.InputError("config.json: position_embedding_type %r is not supported (only "
                            "\"absolute\", as Google's BERT)" % hf_config["position_embedding_type"])
  eps = hf_config.get("layer_norm_eps", 1e-12)
  if abs(eps - 1e-12) > 1e-15:
    logging.warning("config.json: layer_norm_eps is %g; Google's BERT uses 1e-12, so outputs will "
                "differ slightly", eps)
  defaults = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
              "type_vocab_size": 2, "initializer_range": 0.02}
  out = {}
  for key in _GOOGLE_CONFIG_KEYS:
    if key == "hidden_act":
      out[key] = HF_TO_HIDDEN_ACT[act]
    elif key in hf_config:
      out[key] = hf_config[key]
    elif key in defaults:
      out[key] = defaults[key]
    else:
      raise fileio.InputError("config.json has no %s" % key)
  return out


def tokenizer_config_dict(do_lower_case, model_max_length):
  """tokenizer_config.json for HF's BertTokenizer / BertTokenizerFast."""
  config = {
      "tokenizer_class": "BertTokenizer",
      "do_lower_case": bool(do_lower_case),
      # None: strip accents exactly when lower-casing, as Google's tokenizer does.
      "strip_accents": None,
      "tokenize_chinese_chars": True,
      "do_basic_tokenize": True,
      "model_max_length": int(model_max_length),
      "clean_up_tokenization_spaces": True,
  }
  config.update(SPECIAL_TOKENS)
  return config


def _read_json(path, what):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except OSError as e:
    raise fileio.InputError("%s %s cannot be read: %s" % (what, path, e)) from e
  except ValueError as e:
    raise fileio.InputError("%s %s is not valid JSON: %s" % (what, path, e)) from e


def _count_lines(path):
  with open(path, "rb") as f:
    return sum(1 for _ in f)


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------


def _resolve_head(head, names, ckpt_dir, labels):
  """Decides the head and its labels (see module docstring)."""
  has_cls = any(n.startswith("cls/") for n in names)
  has_classifier = all(n in names for n in _CLASSIFIER_NAMES)
  recorded = head_record.read(ckpt_dir, required=False)
  if head == "auto":
    if has_classifier and recorded:
      head = recorded.head
    elif has_classifier:
      raise fileio.InputError(
          "the checkpoint has a fine-tuned head (output_weights/output_bias) and no %s next to "
          "it: pass --head=%s and --labels" % (checkpoints.HEAD_RECORD_FILE, " or --head=".join(
              "%s (%s)" % (name, ", ".join(heads_lib.head_class(name).task_kinds).upper())
              for name in heads_lib.hf_architectures())))
    elif has_cls:
      head = "pretraining"
    else:
      head = "none"
  if head not in ARCHITECTURES:
    raise fileio.InputError("--head=%r: expected one of %s" % (head, ", ".join(HEADS)))
  if head in heads_lib.head_names():
    if not has_classifier:
      raise fileio.InputError("--head=%s but the checkpoint has no output_weights/output_bias"
                              % head)
    if labels is None and recorded and recorded.head == head:
      labels = recorded.labels
    if not labels:
      raise fileio.InputError("--head=%s needs the label list (--labels, or %s next to the "
                              "checkpoint)" % (head, checkpoints.HEAD_RECORD_FILE))
  elif head == "pretraining":
    missing = [n for n in PRETRAINING_HEAD_NAMES if n not in names]
    if missing:
      raise fileio.InputError("--head=pretraining but the checkpoint lacks %s (use --head=none to "
                              "export the encoder only)" % ", ".join(missing))
    labels = None
  else:
    labels = None
  return head, labels


def checkpoint_to_hf_tensors(init_checkpoint, bert_config, head="auto", labels=None):
  """Reads a checkpoint and returns the HF tensors, the head and its labels.

  Args:
    init_checkpoint: checkpoint prefix or directory.
    bert_config: Google config dict.
    head: one of HEADS.
    labels: label list for a classifier head (or None to read `finetune_head.json`).

  Returns:
    (tensors, head, labels, skipped): {hf_name: float array}, the resolved head, labels or None,
    and the checkpoint names left out (optimizer state, heads not exported).
  """
  path, reader = checkpoints.load_checkpoint(init_checkpoint)
  shapes = reader.get_variable_to_shape_map()
  names = sorted(n for n in shapes if not is_optimizer_variable(n))
  head, labels = _resolve_head(head, set(names), os.path.dirname(os.path.abspath(path)), labels)

  with_pooler = (heads_lib.head_class(head).hf_with_pooler if head in heads_lib.head_names()
                 else True)
  wanted = expected_encoder_names(bert_config, with_pooler=with_pooler)
  if head == "pretraining":
    wanted += list(PRETRAINING_HEAD_NAMES)
  elif head != "none":
    wanted += list(_CLASSIFIER_NAMES)
  missing = [n for n in wanted if n not in shapes]
  if missing:
    raise fileio.InputError(
        "--init_checkpoint=%s lacks %d variables a model of this config has (first: %s): is "
        "--bert_config_file the config of this checkpoint?" % (path, len(missing), missing[0]))
  extra_bert = [n for n in names if n.startswith("bert/") and n not in wanted and
                not (n.startswith("bert/pooler/") and not with_pooler)]
  if extra_bert:
    raise fileio.InputError("--init_checkpoint=%s has encoder variables this config does not "
                            "explain (first: %s): is --bert_config_file right?" %
                            (path, extra_bert[0]))

  hidden, vocab = bert_config["hidden_size"], bert_config["vocab_size"]
  expected_shapes = {
      "bert/embeddings/word_embeddings": [vocab, hidden],
      "bert/embeddings/position_embeddings": [bert_config["max_position_embeddings"], hidden],
      "bert/embeddings/token_type_embeddings": [bert_config["type_vocab_size"], hidden],
      "cls/predictions/output_bias": [vocab],
      "bert/encoder/layer_0/intermediate/dense/kernel": [hidden, bert_config["intermediate_size"]],
  }
  if labels is not None:
    expected_shapes["output_weights"] = [len(labels), hidden]
  for name, want in expected_shapes.items():
    if name in wanted and list(shapes[name]) != want:
      raise fileio.InputError(
          "--init_checkpoint=%s: %s has shape %s but the config%s says %s" %
          (path, name, list(shapes[name]), " and labels" if name == "output_weights" else "", want))

  tensors = {}
  for name in wanted:
    hf_name, transpose = tf_to_hf_name(name)
    if head == "none" and hf_name.startswith("bert."):
      hf_name = hf_name[len("bert."):]  # HF's BertModel saves without the prefix
    array = reader.get_tensor(name)
    if array.dtype != np.float32:
      array = array.astype(np.float32)
    tensors[hf_name] = np.ascontiguousarray(np.transpose(array) if transpose else array)
  skipped = [n for n in sorted(shapes) if n not in wanted]
  return tensors, head, labels, skipped


def export_checkpoint(bert_config_file, init_checkpoint, vocab_file, do_lower_case, output_dir,
                      head="auto", labels=None):
  """Writes an HF model directory for a Google-format checkpoint (see module docstring).

  Returns:
    A summary dict (head, architecture, number of tensors, skipped names, files).
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  if head not in HEADS:
    raise fileio.InputError("--head=%r: expected one of %s" % (head, ", ".join(HEADS)))
  config = checkpoints.load_bert_config(bert_config_file)
  fileio.check_output_dir(output_dir)
  # The conversion reads the config as a dict of Google's keys (defaults filled in).
  bert_config = config.to_dict()
  if not os.path.isfile(vocab_file):
    raise fileio.InputError("--vocab_file=%s does not exist" % vocab_file)
  num_tokens = _count_lines(vocab_file)
  checkpoints.check_vocab_matches_config(num_tokens, config, vocab_file)
  if num_tokens < bert_config["vocab_size"]:
    logging.warning("--vocab_file has %d tokens, fewer than vocab_size %d (the extra rows of the "
                "embedding table are never used)", num_tokens, bert_config["vocab_size"])

  tensors, head, labels, skipped = checkpoint_to_hf_tensors(init_checkpoint, bert_config, head,
                                                            labels)
  optimizer = [n for n in skipped if is_optimizer_variable(n)]
  other = [n for n in skipped if not is_optimizer_variable(n)]
  if other:
    logging.warning("not exported (not part of a %s): %s", ARCHITECTURES[head], ", ".join(other))
  logging.info("exporting %d tensors as %s (%d optimizer variables left out)", len(tensors),
           ARCHITECTURES[head], len(optimizer))

  os.makedirs(output_dir, exist_ok=True)
  weights = os.path.join(output_dir, "model.safetensors")
  with fileio.atomic_output(weights) as tmp:
    save_file(tensors, tmp, metadata={"format": "pt"})
  fileio.write_json_atomic(os.path.join(output_dir, "config.json"),
                           hf_config_dict(bert_config, head, labels))
  fileio.write_json_atomic(
      os.path.join(output_dir, "tokenizer_config.json"),
      tokenizer_config_dict(do_lower_case, bert_config.get("max_position_embeddings", 512)))
  fileio.write_json_atomic(os.path.join(output_dir, "special_tokens_map.json"), SPECIAL_TOKENS)
  with fileio.atomic_output(os.path.join(output_dir, "vocab.txt")) as tmp:
    shutil.copyfile(vocab_file, tmp)
  return {
      "head": head,
      "architecture": ARCHITECTURES[head],
      "labels": labels,
      "num_tensors": len(tensors),
      "skipped_optimizer": len(optimizer),
      "skipped_other": other,
      "output_dir": output_dir,
  }


# ------------------------------------------------------------------------------------------------
# Import
# ------------------------------------------------------------------------------------------------


def read_hf_weights(hf_dir):
  """{name: array} from `model.safetensors` or a sharded safetensors index in `hf_dir`.

  Raises:
    InputError: no safetensors weights (e.g. only `pytorch_model.bin`).
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  single = os.path.join(hf_dir, "model.safetensors")
  index = os.path.join(hf_dir, "model.safetensors.index.json")
  if os.path.isfile(single):
    files = [single]
  elif os.path.isfile(index):
    shards = sorted(set(_read_json(index, "safetensors index")["weight_map"].values()))
    files = [os.path.join(hf_dir, s) for s in shards]
  else:
    hint = ""
    if os.path.exists(os.path.join(hf_dir, "pytorch_model.bin")):
      hint = (" (it has pytorch_model.bin, which needs torch to read: convert it once with "
              "transformers, `AutoModel.from_pretrained(dir).save_pretrained(dir, "
              "safe_serialization=True)`)")
    raise fileio.InputError("--hf_dir=%s has no model.safetensors%s" % (hf_dir, hint))
  tensors = {}
  for path in files:
    if not os.path.isfile(path):
      raise fileio.InputError("--hf_dir: %s (named in %s) does not exist" % (path, index))
    try:
      tensors.update(load_file(path))
    except Exception as e:  # pylint: disable=broad-except  (safetensors' own error type)
      # safetensors checks that its header parses and that the data is as long as the header
      # says, so a file cut short, or one of another format, ends here.
      raise fileio.InputError(
          "--hf_dir: %s is not a complete safetensors file (%s): an interrupted download? "
          "expected an 8-byte header length, a JSON header and the tensors it lists" %
          (path, fileio.one_line(e))) from None
  return tensors


def hf_tensors_to_checkpoint_arrays(tensors):
  """Maps HF tensors to Google names; returns ({tf_name: array}, [dropped HF names]).

  Raises:
    InputError: an HF name this mapping does not know, or a tied copy that differs.
  """
  arrays = {}
  dropped = []
  for name in sorted(tensors):
    try:
      tf_name, transpose = hf_to_tf_name(name)
    except ValueError as e:
      raise fileio.InputError("--hf_dir: %s (only BERT encoders with pretraining or "
                              "classification heads are supported)" % e) from None
    if tf_name is None:
      dropped.append(name)
      continue
    if tf_name in arrays:
      raise fileio.InputError("--hf_dir: %s maps onto %s twice" % (name, tf_name))
    array = np.asarray(tensors[name])
    if array.dtype != np.float32:
      array = array.astype(np.float32)
    arrays[tf_name] = np.ascontiguousarray(np.transpose(array) if transpose else array)
  # Old files store the MLM bias only as the decoder's.
  if "cls.predictions.decoder.bias" in tensors and "cls/predictions/output_bias" not in arrays:
    arrays["cls/predictions/output_bias"] = np.asarray(
        tensors["cls.predictions.decoder.bias"], np.float32)
  # The decoder is tied to the word embeddings in Google's model; an untied copy cannot be kept.
  decoder = tensors.get("cls.predictions.decoder.weight")
  words = arrays.get("bert/embeddings/word_embeddings")
  if decoder is not None and words is not None and not np.array_equal(decoder, words):
    raise fileio.InputError("--hf_dir: cls.predictions.decoder.weight differs from the word "
                            "embeddings; Google's BERT ties them, so this model cannot be "
                            "converted faithfully")
  return arrays, dropped


def write_checkpoint(arrays, prefix):
  """Writes {name: array} as a Google-format (TF1 Saver) checkpoint at `prefix`."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    variables, feeds, inits = [], {}, []
    for name in sorted(arrays):
      array = arrays[name]
      var = tf.get_variable(name, shape=array.shape, dtype=tf.as_dtype(array.dtype),
                            initializer=tf.zeros_initializer(), use_resource=False)
      # Fed through a placeholder so that the graph does not hold the weights as constants (a
      # graph over 2 GB cannot be serialised).
      ph = tf.placeholder(var.dtype.base_dtype, array.shape)
      inits.append(var.assign(ph))
      feeds[ph] = array
      variables.append(var)
    saver = tf.train.Saver(variables)
    with tf.Session() as sess:
      sess.run(inits, feed_dict=feeds)
      saver.save(sess, prefix, write_meta_graph=False, write_state=False)
  return prefix


def import_hf_dir(hf_dir, output_dir):
  """Converts a local HF BERT directory into `bert_model.ckpt` + `bert_config.json` + `vocab.txt`.

  Returns:
    A summary dict (architecture, do_lower_case, labels, files).
  """
  config_path = os.path.join(hf_dir, "config.json")
  if not os.path.isfile(config_path):
    raise fileio.InputError("--hf_dir=%s has no config.json" % hf_dir)
  hf_config = _read_json(config_path, "config.json")
  if not isinstance(hf_config, dict) or hf_config.get("model_type") != "bert":
    raise fileio.InputError(
        "--hf_dir: %s: model_type is %r (architectures: %s), expected \"bert\": only BERT "
        "encoders convert to Google's checkpoint" % (
            config_path, hf_config.get("model_type") if isinstance(hf_config, dict) else None,
            ", ".join(hf_config.get("architectures") or []) or "none"
            if isinstance(hf_config, dict) else "none"))
  fileio.check_output_dir(output_dir)
  bert_config = google_config_from_hf(hf_config)
  vocab_path = os.path.join(hf_dir, "vocab.txt")
  if not os.path.isfile(vocab_path):
    raise fileio.InputError("--hf_dir=%s has no vocab.txt (a BERT WordPiece vocabulary)" % hf_dir)
  checkpoints.check_vocab_matches_config(_count_lines(vocab_path),
                                         modeling.BertConfig.from_dict(bert_config), vocab_path,
                                         flag_name="hf_dir")

  do_lower_case = None
  tok_path = os.path.join(hf_dir, "tokenizer_config.json")
  if os.path.isfile(tok_path):
    do_lower_case = _read_json(tok_path, "tokenizer_config.json").get("do_lower_case")
  if do_lower_case is None:
    # HF's BertTokenizer lower-cases unless told otherwise.
    do_lower_case = True
    logging.warning("--hf_dir has no do_lower_case in tokenizer_config.json: HuggingFace's default "
                "(True) assumed; check it against the model card")

  arrays, dropped = hf_tensors_to_checkpoint_arrays(read_hf_weights(hf_dir))
  missing = [n for n in expected_encoder_names(bert_config, with_pooler=False) if n not in arrays]
  if missing:
    raise fileio.InputError("--hf_dir: the weights lack %d encoder tensors (first: %s)" %
                            (len(missing), missing[0]))
  head = "none"
  labels = None
  if all(n in arrays for n in _CLASSIFIER_NAMES):
    # A classifier of no known architecture reads as the pooled-output (sequence) classifier.
    head = heads_lib.head_of_hf_architectures(hf_config.get("architectures"),
                                              default="sequence_classification")
    id2label = hf_config.get("id2label") or {}
    num_labels = arrays["output_weights"].shape[0]
    labels = [id2label.get(str(i), id2label.get(i, "LABEL_%d" % i)) for i in range(num_labels)]
  elif any(n.startswith("cls/") for n in arrays):
    head = "pretraining"

  os.makedirs(output_dir, exist_ok=True)
  prefix = os.path.join(output_dir, "bert_model.ckpt")
  # Written under a temporary prefix, then each file renamed, so no half-written checkpoint ever
  # carries the final name.
  tmp_prefix = os.path.join(output_dir, ".bert_model.ckpt.tmp-%d" % os.getpid())
  try:
    write_checkpoint(arrays, tmp_prefix)
    tmp_files = [f for f in os.listdir(output_dir) if f.startswith(os.path.basename(tmp_prefix))]
    for f in tmp_files:
      os.replace(os.path.join(output_dir, f),
                 prefix + f[len(os.path.basename(tmp_prefix)):])
  finally:
    for f in os.listdir(output_dir):
      if f.startswith(os.path.basename(tmp_prefix)):
        os.remove(os.path.join(output_dir, f))
  fileio.write_json_atomic(os.path.join(output_dir, "bert_config.json"), bert_config)
  with fileio.atomic_output(os.path.join(output_dir, "vocab.txt")) as tmp:
    shutil.copyfile(vocab_path, tmp)
  head_file = os.path.join(output_dir, checkpoints.HEAD_RECORD_FILE)
  if labels is not None:
    head_record.write_labels_only(output_dir, head, labels)
  elif os.path.exists(head_file):
    os.remove(head_file)
  summary = {
      "hf_dir": os.path.abspath(hf_dir),
      "architecture": ARCHITECTURES[head],
      "head": head,
      "labels": labels,
      "do_lower_case": bool(do_lower_case),
      "num_variables": len(arrays),
      "dropped_tied": dropped,
      "checkpoint": prefix,
  }
  fileio.write_sidecar(prefix, summary)
  logging.info("imported %d tensors (%s) into %s; use --do_lower_case=%s with this model",
           len(arrays), ARCHITECTURES[head], prefix, bool(do_lower_case))
  return summary
