"""Tests for clinicalbert_tf/hf.py, export_hf.py and import_hf.py, with transformers as the oracle.

Export: the directory loads in transformers 4.57.6 with no missing, unexpected or mismatched keys,
the tensors equal those of HF's own converter (`load_tf_weights_in_bert`, checked strictly by
tests/hf_util.py), the tokenizer config keeps the case, and HF's outputs equal ours within 1e-5.
Import: an HF model saved by transformers becomes a Google checkpoint whose outputs match HF's
within 1e-5, and exporting it again gives the same tensors, bit for bit.
"""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf
import torch
import transformers
from safetensors.numpy import load_file

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import hf
from clinicalbert_tf import modeling
from clinicalbert_tf import tokenization
from tests import hf_util
from tests import testutil

tf.disable_v2_behavior()
torch.set_num_threads(1)
transformers.logging.set_verbosity_error()

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 12
ATOL = 1e-5


def our_outputs(ckpt, bert_config, ids, mask, types, head=None):
  """Runs our BertModel (and Google-style heads) from `ckpt`; returns numpy outputs."""
  with tf.Graph().as_default():
    model = modeling.BertModel(bert_config, is_training=False, input_ids=tf.constant(ids),
                               input_mask=tf.constant(mask), token_type_ids=tf.constant(types))
    seq = model.get_sequence_output()
    out = {"sequence": seq, "pooled": model.get_pooled_output()}
    hidden = bert_config.hidden_size
    if head == "pretraining":
      # Google's run_pretraining heads, at every position.
      with tf.variable_scope("cls/predictions"):
        with tf.variable_scope("transform"):
          h = modeling.dense(seq, hidden, name="dense",
                             activation=modeling.get_activation(bert_config.hidden_act))
          h = modeling.layer_norm(h)
        bias = tf.get_variable("output_bias", [bert_config.vocab_size])
        out["mlm"] = tf.nn.bias_add(
            tf.tensordot(h, model.get_embedding_table(), [[2], [1]]), bias)
      with tf.variable_scope("cls/seq_relationship"):
        w = tf.get_variable("output_weights", [2, hidden])
        b = tf.get_variable("output_bias", [2])
        out["nsp"] = tf.nn.bias_add(tf.matmul(out["pooled"], w, transpose_b=True), b)
    elif head in ("token_classification", "sequence_classification"):
      num_labels = tf.train.load_variable(ckpt, "output_bias").shape[0]
      w = tf.get_variable("output_weights", [num_labels, hidden])
      b = tf.get_variable("output_bias", [num_labels])
      if head == "token_classification":
        out["logits"] = tf.nn.bias_add(tf.tensordot(seq, w, [[2], [1]]), b)
      else:
        out["logits"] = tf.nn.bias_add(tf.matmul(out["pooled"], w, transpose_b=True), b)
    tvars = tf.global_variables()
    loaded = checkpoints.init_from_checkpoint(ckpt, tvars)
    unloaded = [v.op.name for v in tvars if v.op.name not in loaded]
    # A token classifier has no pooler (HF's BertForTokenClassification drops it).
    assert all(n.startswith("bert/pooler/") for n in unloaded), unloaded
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return sess.run(out)


def hf_outputs(model, ids, mask, types):
  with torch.no_grad():
    kwargs = dict(input_ids=torch.tensor(ids, dtype=torch.long),
                  attention_mask=torch.tensor(mask, dtype=torch.long),
                  token_type_ids=torch.tensor(types, dtype=torch.long))
    base = model.bert if hasattr(model, "bert") else model
    out = {"sequence": base(**kwargs).last_hidden_state.numpy()}
    if getattr(base, "pooler", None) is not None:
      out["pooled"] = base(**kwargs).pooler_output.numpy()
    if isinstance(model, transformers.BertForPreTraining):
      r = model(**kwargs)
      out["mlm"], out["nsp"] = r.prediction_logits.numpy(), r.seq_relationship_logits.numpy()
    elif hasattr(model, "classifier"):
      out["logits"] = model(**kwargs).logits.numpy()
  return out


def assert_outputs_close(test, ours, theirs, mask):
  test.assertTrue(set(theirs) <= set(ours), (sorted(ours), sorted(theirs)))
  for key, value in theirs.items():
    mine = ours[key]
    if key in ("sequence", "mlm") or (key == "logits" and mine.ndim == 3):
      # Padding positions are not outputs anyone uses; compare real tokens.
      mine, value = mine[mask == 1], value[mask == 1]
    diff = float(np.max(np.abs(mine - value)))
    test.assertLess(diff, ATOL, "%s differs by %g" % (key, diff))


def load_hf(cls, directory):
  model, info = cls.from_pretrained(directory, output_loading_info=True)
  model.eval()
  return model, info


class ExportTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(cls.dir)
    cls.ids, cls.mask, cls.types = testutil.random_ids(3, SEQ, len(testutil.vocab_tokens()))

  def _model(self, name, head, hidden_act="gelu", **kwargs):
    d = os.path.join(self.dir, name)
    os.makedirs(d)
    config = testutil.tiny_config(hidden_act=hidden_act)
    config_file = testutil.write_config(d, config)
    ckpt = testutil.write_checkpoint(os.path.join(d, "model.ckpt-7"), config, heads=head,
                                     **kwargs)
    return config, config_file, ckpt

  def _check_loading_info(self, info):
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
      self.assertEqual(list(info[key]), [], key)

  def test_pretraining_export_loads_and_matches(self):
    for act, hf_act in (("gelu", "gelu_new"), ("gelu_exact", "gelu")):
      config, config_file, ckpt = self._model("pre_" + act, "pretraining", hidden_act=act)
      out = os.path.join(self.dir, "hf_pre_" + act)
      summary = hf.export_checkpoint(config_file, ckpt, self.vocab, False, out)
      self.assertEqual(summary["architecture"], "BertForPreTraining")
      self.assertEqual(summary["skipped_other"], [])
      with open(os.path.join(out, "config.json")) as f:
        hf_config = json.load(f)
      self.assertEqual(hf_config["model_type"], "bert")
      self.assertEqual(hf_config["hidden_act"], hf_act)
      self.assertEqual(hf_config["architectures"], ["BertForPreTraining"])
      model, info = load_hf(transformers.BertForPreTraining, out)
      self._check_loading_info(info)
      self.assertEqual(model.config.hidden_act, hf_act)
      # The same tensors as HF's own converter puts in (checked strictly both ways).
      reference = hf_util.assert_strict_hf_load(ckpt, config)
      ours_state, ref_state = model.state_dict(), reference.state_dict()
      self.assertEqual(sorted(ours_state), sorted(ref_state))
      for key in ref_state:
        self.assertTrue(torch.equal(ours_state[key], ref_state[key]), key)
      theirs = hf_outputs(model, self.ids, self.mask, self.types)
      ours = our_outputs(ckpt, config, self.ids, self.mask, self.types, head="pretraining")
      assert_outputs_close(self, ours, theirs, self.mask)
      # The test can see a wrong activation mapping: the other GELU is off by more than ATOL.
      other = "gelu" if hf_act == "gelu_new" else "gelu_new"
      wrong = transformers.BertForPreTraining.from_pretrained(out, hidden_act=other).eval()
      wrong_out = hf_outputs(wrong, self.ids, self.mask, self.types)
      self.assertGreater(float(np.max(np.abs(wrong_out["mlm"] - theirs["mlm"]))), ATOL)

  def test_tokenizer_config_keeps_case(self):
    config, config_file, ckpt = self._model("tok", None)
    text = "Patient denies Chest pain, café [**2101-10-20**]"
    for lower in (False, True):
      out = os.path.join(self.dir, "hf_tok_%s" % lower)
      summary = hf.export_checkpoint(config_file, ckpt, self.vocab, lower, out)
      self.assertEqual(summary["architecture"], "BertModel")
      model, info = load_hf(transformers.BertModel, out)
      self._check_loading_info(info)
      ours = tokenization.FullTokenizer(self.vocab, do_lower_case=lower).tokenize(text)
      for cls in (transformers.BertTokenizer, transformers.BertTokenizerFast):
        self.assertEqual(cls.from_pretrained(out).tokenize(text), ours, (cls, lower))
      theirs = hf_outputs(model, self.ids, self.mask, self.types)
      assert_outputs_close(self, our_outputs(ckpt, config, self.ids, self.mask, self.types),
                           theirs, self.mask)

  def test_classifier_heads(self):
    labels = ["O", "B-problem", "I-problem", "B-test", "I-test"]
    config, config_file, ckpt = self._model("ner", "token_classification", num_labels=len(labels))
    for head, cls in (("token_classification", transformers.BertForTokenClassification),
                      ("sequence_classification", transformers.BertForSequenceClassification)):
      out = os.path.join(self.dir, "hf_" + head)
      summary = hf.export_checkpoint(config_file, ckpt, self.vocab, False, out, head=head,
                                     labels=labels)
      self.assertEqual(summary["architecture"], cls.__name__)
      model, info = load_hf(cls, out)
      self._check_loading_info(info)
      self.assertEqual(model.config.id2label, dict(enumerate(labels)))
      self.assertEqual(model.config.num_labels, len(labels))
      theirs = hf_outputs(model, self.ids, self.mask, self.types)
      self.assertIn("logits", theirs)
      ours = our_outputs(ckpt, config, self.ids, self.mask, self.types, head=head)
      assert_outputs_close(self, ours, theirs, self.mask)

  def test_head_resolution(self):
    labels = ["contradiction", "entailment", "neutral"]
    _, config_file, ckpt = self._model("nli", "sequence_classification", num_labels=3)
    out = os.path.join(self.dir, "hf_nli")
    with self.assertRaisesRegex(fileio.InputError, "finetune_head.json"):
      hf.export_checkpoint(config_file, ckpt, self.vocab, False, out)
    with self.assertRaisesRegex(fileio.InputError, r"output_weights has shape \[3, 32\]"):
      hf.export_checkpoint(config_file, ckpt, self.vocab, False, out,
                           head="sequence_classification", labels=["a", "b"])
    fileio.write_json_atomic(os.path.join(os.path.dirname(ckpt), checkpoints.HEAD_RECORD_FILE),
                             {"head": "sequence_classification", "labels": labels})
    summary = hf.export_checkpoint(config_file, os.path.dirname(ckpt), self.vocab, False, out)
    self.assertEqual(summary["architecture"], "BertForSequenceClassification")
    self.assertEqual(summary["labels"], labels)
    # The encoder alone can always be exported.
    summary = hf.export_checkpoint(config_file, ckpt, self.vocab, False, out + "_enc", head="none")
    self.assertEqual(summary["skipped_other"], ["output_bias", "output_weights"])

  def test_export_errors(self):
    config, config_file, ckpt = self._model("err", None)
    out = os.path.join(self.dir, "hf_err")
    with self.assertRaisesRegex(fileio.InputError, "lacks cls/predictions/output_bias"):
      hf.export_checkpoint(config_file, ckpt, self.vocab, False, out, head="pretraining")
    other = testutil.write_config(os.path.join(self.dir, "c3.json"),
                                  testutil.tiny_config(num_hidden_layers=3))
    with self.assertRaisesRegex(fileio.InputError, "layer_2"):
      hf.export_checkpoint(other, ckpt, self.vocab, False, out)
    short_vocab = os.path.join(self.dir, "short_vocab.txt")
    with open(short_vocab, "w") as f:
      f.write("[PAD]\n[UNK]\n" * 100)
    with self.assertRaisesRegex(fileio.InputError, "has 200 tokens but the config's vocab_size"):
      hf.export_checkpoint(config_file, ckpt, short_vocab, False, out)
    self.assertFalse(os.path.exists(os.path.join(out, "model.safetensors")))
    del config


def _randomise(model, seed=3):
  """HF initialises LayerNorm to 1/0 and biases to 0: make every parameter informative."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
  return model


class ImportTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.vocab = testutil.write_vocab(cls.dir)
    cls.ids, cls.mask, cls.types = testutil.random_ids(3, SEQ, len(testutil.vocab_tokens()))

  def _hf_dir(self, name, cls, hidden_act="gelu", do_lower_case=False, **config_kwargs):
    config = transformers.BertConfig(
        vocab_size=len(testutil.vocab_tokens()), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
        type_vocab_size=2, hidden_act=hidden_act, **config_kwargs)
    torch.manual_seed(0)
    model = _randomise(cls(config)).eval()
    d = os.path.join(self.dir, name)
    model.save_pretrained(d)
    tokenizer = transformers.BertTokenizer(self.vocab, do_lower_case=do_lower_case)
    tokenizer.save_pretrained(d)
    return d, model

  def _round_trip(self, name, cls, head, **kwargs):
    d, model = self._hf_dir(name, cls, **kwargs)
    ours_dir = os.path.join(self.dir, name + "_google")
    summary = hf.import_hf_dir(d, ours_dir)
    self.assertEqual(summary["architecture"], cls.__name__)
    self.assertFalse(summary["do_lower_case"])
    ckpt = os.path.join(ours_dir, "bert_model.ckpt")
    config = modeling.BertConfig.from_json_file(os.path.join(ours_dir, "bert_config.json"))
    ours = our_outputs(ckpt, config, self.ids, self.mask, self.types, head=head)
    assert_outputs_close(self, ours, hf_outputs(model, self.ids, self.mask, self.types), self.mask)
    # ... and back: the same tensors, bit for bit.
    back = os.path.join(self.dir, name + "_back")
    hf.export_checkpoint(os.path.join(ours_dir, "bert_config.json"), ckpt,
                         os.path.join(ours_dir, "vocab.txt"), summary["do_lower_case"], back)
    original = load_file(os.path.join(d, "model.safetensors"))
    again = load_file(os.path.join(back, "model.safetensors"))
    self.assertEqual(sorted(original), sorted(again))
    for key in original:
      self.assertEqual(original[key].dtype, again[key].dtype, key)
      np.testing.assert_array_equal(original[key], again[key], err_msg=key)
    with open(os.path.join(d, "config.json")) as f:
      hf_config = json.load(f)
    with open(os.path.join(back, "config.json")) as f:
      back_config = json.load(f)
    for key in ("architectures", "hidden_act", "vocab_size", "hidden_size", "num_hidden_layers",
                "num_attention_heads", "intermediate_size", "max_position_embeddings",
                "type_vocab_size", "layer_norm_eps"):
      self.assertEqual(hf_config[key], back_config[key], key)
    if "id2label" in hf_config:
      self.assertEqual(hf_config["id2label"], back_config["id2label"])
    return summary

  def test_pretraining_round_trip(self):
    for act in ("gelu", "gelu_new"):
      self._round_trip("pre_" + act, transformers.BertForPreTraining, "pretraining",
                       hidden_act=act)

  def test_encoder_round_trip(self):
    self._round_trip("enc", transformers.BertModel, None)

  def test_classifier_round_trips(self):
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    summary = self._round_trip("nli", transformers.BertForSequenceClassification,
                               "sequence_classification", id2label=labels,
                               label2id={v: k for k, v in labels.items()})
    self.assertEqual(summary["labels"], ["contradiction", "entailment", "neutral"])
    ner = {0: "O", 1: "B-problem", 2: "I-problem"}
    summary = self._round_trip("ner", transformers.BertForTokenClassification,
                               "token_classification", id2label=ner,
                               label2id={v: k for k, v in ner.items()})
    with open(os.path.join(self.dir, "ner_google", checkpoints.HEAD_RECORD_FILE)) as f:
      self.assertEqual(json.load(f), {"head": "token_classification",
                                      "labels": ["O", "B-problem", "I-problem"]})

  def test_import_errors(self):
    d = os.path.join(self.dir, "bad")
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump({"model_type": "roberta"}, f)
    with self.assertRaisesRegex(fileio.InputError, "model_type is 'roberta'"):
      hf.import_hf_dir(d, os.path.join(self.dir, "bad_out"))
    good, _ = self._hf_dir("bin_only", transformers.BertModel)
    os.rename(os.path.join(good, "model.safetensors"), os.path.join(good, "pytorch_model.bin"))
    with self.assertRaisesRegex(fileio.InputError, "pytorch_model.bin, which needs torch"):
      hf.import_hf_dir(good, os.path.join(self.dir, "bin_out"))

  def test_scripts(self):
    d, _ = self._hf_dir("script", transformers.BertForPreTraining)
    out = os.path.join(self.dir, "script_google")
    env = dict(os.environ, PYTHONPATH=_REPO)
    r = subprocess.run([sys.executable, os.path.join(_REPO, "import_hf.py"), "--hf_dir=" + d,
                        "--output_dir=" + out], capture_output=True, text=True, env=env,
                       check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("use --do_lower_case=False", r.stdout)
    back = os.path.join(self.dir, "script_back")
    base = [sys.executable, os.path.join(_REPO, "export_hf.py"),
            "--bert_config_file=" + os.path.join(out, "bert_config.json"),
            "--init_checkpoint=" + os.path.join(out, "bert_model.ckpt"),
            "--vocab_file=" + os.path.join(out, "vocab.txt"), "--output_dir=" + back]
    r = subprocess.run(base, capture_output=True, text=True, env=env, check=False)
    self.assertNotEqual(r.returncode, 0)
    self.assertIn("export_hf.py: error: --do_lower_case is required", r.stderr)
    r = subprocess.run(base + ["--do_lower_case=False"], capture_output=True, text=True, env=env,
                       check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("BertForPreTraining", r.stdout)
    with open(os.path.join(back, "tokenizer_config.json")) as f:
      self.assertFalse(json.load(f)["do_lower_case"])


if __name__ == "__main__":
  absltest.main()
