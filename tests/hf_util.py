"""HuggingFace `transformers` as an oracle for Google-format checkpoints (tests only).

`transformers.load_tf_weights_in_bert` is the reference converter from Google's checkpoints to
HuggingFace's `BertForPreTraining`, but it skips variable names it cannot place without complaint
(it logs at INFO and moves on), so "it loaded" proves nothing. `assert_strict_hf_load` therefore
checks both directions by value:

  * every checkpoint variable except optimizer state (`adam_m`, `adam_v`, `global_step`, ...) landed on
    the HuggingFace parameter its name maps to, with equal values (kernels transposed as HF does);
  * every HuggingFace parameter was written by the loader: all parameters are filled with NaN before
    loading, so one that still holds a NaN afterwards came from nowhere.

Tied parameters are handled as HF ties them: `cls.predictions.decoder.weight` is
`bert.embeddings.word_embeddings.weight`, and `cls.predictions.decoder.bias` is `cls.predictions.bias`.

Usage:
  from tests import hf_util
  model = hf_util.assert_strict_hf_load(ckpt_prefix, bert_config)   # BertForPreTraining, eval mode
  model = hf_util.load_into_hf_pretraining(ckpt_prefix, bert_config)  # no strictness checks

`bert_config` may be a path to a `bert_config.json`, a dict, or an object with `to_dict()` (our or
Google's `modeling.BertConfig`). Imports torch and transformers: never use from the product.
"""

import json
import logging
import re

import numpy as np

from tests import testutil

# Google's activation names -> HuggingFace's. Google's current "gelu" is the tanh approximation
# (HF "gelu_new"); "gelu_exact" is the erf form (HF "gelu").
_HIDDEN_ACT_TO_HF = {
    "gelu": "gelu_new",
    "gelu_exact": "gelu",
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}

# Path components of optimizer state that `load_tf_weights_in_bert` skips on purpose.
OPTIMIZER_NAME_PARTS = frozenset(
    ["adam_m", "adam_v", "AdamWeightDecayOptimizer", "AdamWeightDecayOptimizer_1", "global_step"])


def _config_dict(bert_config):
  if isinstance(bert_config, str):
    with open(bert_config, encoding="utf-8") as f:
      return json.load(f)
  if isinstance(bert_config, dict):
    return dict(bert_config)
  if hasattr(bert_config, "to_dict"):
    return bert_config.to_dict()
  raise TypeError("bert_config must be a path, a dict or a BertConfig, got %r" % (bert_config,))


def hf_config(bert_config):
  """A `transformers.BertConfig` equivalent to a Google `bert_config` (dropout kept as given)."""
  import transformers  # pylint: disable=g-import-not-at-top
  d = _config_dict(bert_config)
  act = d.get("hidden_act", "gelu")
  if act not in _HIDDEN_ACT_TO_HF:
    raise ValueError("no HuggingFace equivalent for hidden_act %r" % act)
  return transformers.BertConfig(
      vocab_size=d["vocab_size"],
      hidden_size=d.get("hidden_size", 768),
      num_hidden_layers=d.get("num_hidden_layers", 12),
      num_attention_heads=d.get("num_attention_heads", 12),
      intermediate_size=d.get("intermediate_size", 3072),
      hidden_act=_HIDDEN_ACT_TO_HF[act],
      hidden_dropout_prob=d.get("hidden_dropout_prob", 0.1),
      attention_probs_dropout_prob=d.get("attention_probs_dropout_prob", 0.1),
      max_position_embeddings=d.get("max_position_embeddings", 512),
      type_vocab_size=d.get("type_vocab_size", 16),
      initializer_range=d.get("initializer_range", 0.02),
      layer_norm_eps=1e-12)


def load_into_hf_pretraining(ckpt_prefix, bert_config):
  """Loads a Google-format checkpoint into a fresh `BertForPreTraining` with HF's own converter.

  Args:
    ckpt_prefix: checkpoint prefix (e.g. `.../model.ckpt-100` or `.../bert_model.ckpt`).
    bert_config: path, dict or BertConfig (see module docstring).

  Returns:
    The `transformers.BertForPreTraining` model in eval mode. Names the converter could not place
    are silently skipped: use `assert_strict_hf_load` to check.
  """
  import transformers  # pylint: disable=g-import-not-at-top
  from transformers.models.bert import modeling_bert  # pylint: disable=g-import-not-at-top
  config = hf_config(bert_config)
  model = transformers.BertForPreTraining(config)
  modeling_bert.load_tf_weights_in_bert(model, config, ckpt_prefix)
  model.eval()
  return model


def is_optimizer_variable(name):
  """True for checkpoint variables that hold optimizer state rather than model weights."""
  return any(part in OPTIMIZER_NAME_PARTS for part in name.split("/"))


def expected_hf_name(tf_name):
  """The HF parameter a Google variable name maps to, written independently of HF's converter.

  Returns:
    (hf_name, transpose): `transpose` is True for dense kernels (TF [in, out], torch [out, in]).
  """
  parts = tf_name.split("/")
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
    elif last and part in ("beta", "output_bias"):
      out.append("bias")
    elif last and part.endswith("_embeddings"):
      out.extend([part, "weight"])
    else:
      out.append(part)
  return ".".join(out), transpose


def read_checkpoint(ckpt_prefix, include_optimizer=False):
  """{name: numpy array} of a checkpoint's variables, sorted (optimizer state dropped by default)."""
  values = testutil.read_checkpoint(ckpt_prefix)
  return {name: values[name] for name in sorted(values)
          if include_optimizer or not is_optimizer_variable(name)}


def hf_parameters(model):
  """{name: numpy array} of every parameter, tied aliases included under each of their names."""
  return {
      name: p.detach().cpu().numpy().copy()
      for name, p in model.named_parameters(remove_duplicate=False)
  }


def strict_load_problems(ckpt_prefix, model, config):
  """Loads `ckpt_prefix` into `model` (all parameters NaN first) and lists what did not land.

  Returns:
    A list of human-readable problems; empty when every non-optimizer checkpoint variable landed on
    its HF parameter by value and every HF parameter was written from the checkpoint.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from transformers.models.bert import modeling_bert  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    for p in model.parameters():
      p.fill_(float("nan"))
  # The converter logs each skipped name at INFO; keep them for the report.
  skipped = []

  class _Grab(logging.Handler):

    def emit(self, record):
      msg = record.getMessage()
      if msg.startswith("Skipping") and not is_optimizer_variable(msg.split()[-1]):
        skipped.append(msg.split()[-1])

  hf_logger = logging.getLogger(modeling_bert.__name__)
  handler = _Grab()
  old_level, old_propagate = hf_logger.level, hf_logger.propagate
  hf_logger.addHandler(handler)
  hf_logger.setLevel(logging.INFO)
  hf_logger.propagate = False  # one INFO line per variable would flood the test log
  problems = []
  try:
    modeling_bert.load_tf_weights_in_bert(model, config, ckpt_prefix)
  except (AttributeError, ValueError, TypeError, IndexError) as e:
    # The converter crashes on some unknown names (after skipping a path component it ends on a
    # module without `.shape`); report it with the rest instead of as a bare traceback.
    problems.append("load_tf_weights_in_bert raised %s: %s" % (type(e).__name__, e))
  finally:
    hf_logger.removeHandler(handler)
    hf_logger.setLevel(old_level)
    hf_logger.propagate = old_propagate
  model.eval()

  ckpt = read_checkpoint(ckpt_prefix)
  params = hf_parameters(model)
  for name, array in ckpt.items():
    hf_name, transpose = expected_hf_name(name)
    if hf_name not in params and hf_name.startswith("bert.") and hf_name[5:] in params:
      hf_name = hf_name[5:]  # a bare BertModel has no `bert.` prefix
    want = np.transpose(array) if transpose else array
    if hf_name not in params:
      # Say where (if anywhere) the values ended up, to make the report useful.
      same = [k for k, v in params.items() if v.shape == want.shape and np.array_equal(v, want)]
      problems.append("checkpoint variable %s (%s) has no HF parameter %s%s" %
                      (name, list(array.shape), hf_name,
                       "; equal values found in %s" % same if same else ""))
      continue
    got = params[hf_name]
    if got.shape != want.shape:
      problems.append("checkpoint variable %s: HF %s has shape %s, expected %s" %
                      (name, hf_name, list(got.shape), list(want.shape)))
    elif not np.array_equal(got, want):
      problems.append("checkpoint variable %s did not land on HF %s (%s)" %
                      (name, hf_name, "HF value still NaN" if np.isnan(got).all() else
                       "max |diff| %g" % float(np.nanmax(np.abs(got - want)))))
  for name, value in params.items():
    if np.isnan(value).any():
      problems.append("HF parameter %s %s was not written from the checkpoint" %
                      (name, list(value.shape)))
  if problems and skipped:
    problems.append("the converter silently skipped: %s" % ", ".join(skipped))
  return problems


def assert_strict_hf_load(ckpt_prefix, bert_config, model_class=None):
  """Loads with `load_tf_weights_in_bert` and fails unless every weight landed both ways.

  Args:
    ckpt_prefix: a Google-format checkpoint prefix (with `cls/` heads for BertForPreTraining).
    bert_config: path, dict or BertConfig.
    model_class: a transformers class (default `BertForPreTraining`; `BertModel` for a
      checkpoint without heads).

  Returns:
    The loaded model in eval mode.

  Raises:
    AssertionError: listing every variable that did not land and every parameter not written.
  """
  import transformers  # pylint: disable=g-import-not-at-top
  config = hf_config(bert_config)
  model_class = model_class or transformers.BertForPreTraining
  model = model_class(config)
  problems = strict_load_problems(ckpt_prefix, model, config)
  if problems:
    raise AssertionError("strict HuggingFace load of %s failed (%d problems):\n  %s" %
                         (ckpt_prefix, len(problems), "\n  ".join(problems)))
  return model
