"""A tiny BERT (config, vocabulary, Google-format checkpoint) for tests. Invented, never real data.

  from tests import tiny_model
  vocab_file = tiny_model.write_vocab(dir)
  config = tiny_model.config()                      # modeling.BertConfig, 2 layers x 32 hidden
  prefix = tiny_model.write_checkpoint(dir + "/model.ckpt", config, heads="pretraining")

`heads`: None (encoder only), "pretraining" (Google's `cls/` MLM and NSP heads), or
("output_weights" [num_labels, hidden] + "output_bias", Google's run_classifier names) with
`num_labels`. Every variable gets random values (LayerNorm and biases too), so a test cannot pass
because a loader left a default in place. Optimizer slots and `global_step` are written as a
training run would.
"""

import json
import os

import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import modeling

WORDS = ("patient denies chest pain shortness of breath fever cough history hypertension "
         "diabetes kidney heart lung liver renal cardiac failure disease admitted discharged "
         "home stable the a and to with was is no").split()

SPECIAL = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocab_tokens():
  """The tiny vocabulary: specials, punctuation, letters (whole and ##), words, a few suffixes."""
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  tokens = list(SPECIAL) + list(".,;:()/-[]*") + [str(d) for d in range(10)]
  tokens += letters + [l.upper() for l in letters] + ["##" + l for l in letters]
  tokens += ["##" + str(d) for d in range(10)]
  tokens += WORDS + [w.capitalize() for w in WORDS[:10]] + ["##s", "##ed", "##ing", "##al"]
  seen = set()
  return [t for t in tokens if not (t in seen or seen.add(t))]  # unique, first kept


def write_vocab(directory, name="vocab.txt"):
  path = os.path.join(directory, name)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab_tokens()) + "\n")
  return path


def config(hidden_act="gelu", **overrides):
  d = dict(vocab_size=len(vocab_tokens()), hidden_size=32, num_hidden_layers=2,
           num_attention_heads=4, intermediate_size=64, hidden_act=hidden_act,
           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
           max_position_embeddings=64, type_vocab_size=2, initializer_range=0.02)
  d.update(overrides)
  return modeling.BertConfig.from_dict(d)


def write_config(directory, bert_config, name="bert_config.json"):
  path = os.path.join(directory, name)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(bert_config.to_dict(), f, indent=2, sort_keys=True)
  return path


def write_checkpoint(prefix, bert_config, heads=None, num_labels=3, seed=1, optimizer_slots=True):
  """Writes a randomly initialised Google-format checkpoint; returns `prefix`."""
  hidden, vocab = bert_config.hidden_size, bert_config.vocab_size
  with tf.Graph().as_default():
    tf.set_random_seed(seed)
    ids = tf.zeros([1, 4], tf.int32)
    modeling.BertModel(bert_config, is_training=False, input_ids=ids)
    if heads == "pretraining":
      with tf.variable_scope("cls/predictions"):
        with tf.variable_scope("transform"):
          modeling.layer_norm(modeling.dense(tf.zeros([1, hidden]), hidden, name="dense"))
        tf.get_variable("output_bias", [vocab], initializer=tf.zeros_initializer())
      with tf.variable_scope("cls/seq_relationship"):
        tf.get_variable("output_weights", [2, hidden], initializer=tf.zeros_initializer())
        tf.get_variable("output_bias", [2], initializer=tf.zeros_initializer())
    elif heads == "classifier":
      tf.get_variable("output_weights", [num_labels, hidden], initializer=tf.zeros_initializer())
      tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())
    elif heads is not None:
      raise ValueError("heads must be None, 'pretraining' or 'classifier'")
    tvars = tf.trainable_variables()
    randomise = [v.assign(tf.random_normal(v.shape, stddev=0.2)) for v in tvars]
    if optimizer_slots:
      for v in tvars:
        for slot in ("adam_m", "adam_v"):
          tf.get_variable(v.op.name + "/" + slot, v.shape, initializer=tf.zeros_initializer(),
                          trainable=False)
      tf.train.get_or_create_global_step()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(randomise)
      tf.train.Saver().save(sess, prefix, write_meta_graph=False)
  return prefix


def read_checkpoint(prefix):
  """{name: array} of every variable in a checkpoint."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def random_ids(batch, seq, vocab_size, seed=0):
  """Random ids, mask with some padding, and segment ids for comparisons."""
  rng = np.random.RandomState(seed)
  ids = rng.randint(6, vocab_size, size=[batch, seq]).astype(np.int32)
  mask = np.ones([batch, seq], np.int32)
  for b in range(batch):
    mask[b, seq - b % max(1, seq // 2):] = 0
  ids = ids * mask
  types = np.zeros([batch, seq], np.int32)
  types[:, seq // 2:] = 1
  types = types * mask
  return ids, mask, types
