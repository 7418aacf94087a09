"""The one test-utility module: a TestCase base, a tiny BERT and model dir, notes, records, runs.

Every test class derives from `testutil.TestCase`. Temporary folders come from `self.temp_dir()`
(or `cls.class_temp_dir()` in `setUpClass`) and are removed when the test (or the class) ends, so
no test leaves files behind. `assertAllClose` / `assertAllEqual` compare with numpy, as
`tf.test.TestCase`'s do, without importing TensorFlow: this module imports TensorFlow only inside
the functions that need it (some tests prove that a code path never imports it). A test that needs
a TF session builds its own graph (`with tf.Graph().as_default(), tf.Session() as sess:`).

  from absl.testing import absltest
  from tests import testutil

  class MyTest(testutil.TestCase):

    @classmethod
    def setUpClass(cls):
      super().setUpClass()
      cls.dir = cls.class_temp_dir()                             # removed after the class
      cls.vocab_file = testutil.write_vocab(cls.dir)             # the tiny vocabulary
      cls.config = testutil.tiny_config()                        # 2 layers x 32 hidden
      cls.config_file = testutil.write_config(cls.dir, cls.config)  # <dir>/bert_config.json
      cls.ckpt = testutil.write_checkpoint(os.path.join(cls.dir, "model.ckpt"), cls.config,
                                           heads="pretraining")

    def test_something(self):
      out = self.temp_dir()                                      # removed after this test
      r = testutil.run_module("extract_features", ["--output_file=" + out + "/f.jsonl"],
                              check=False)
      self.assertEqual(r.returncode, 0, r.stderr)

  if __name__ == "__main__":
    absltest.main()

Everything here is invented, never real clinical data.
"""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

# The repository root (holds the top-level scripts and `clinicalbert_tf/`).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------
# The TestCase base.
# ---------------------------------------------------------------------------------------------


def _new_temp_dir(prefix):
  # Under Bazel, TEST_TMPDIR is the test's own scratch space; elsewhere the system's.
  return tempfile.mkdtemp(prefix=prefix + "-", dir=os.environ.get("TEST_TMPDIR"))


def _assert_nested(check, a, b, path=""):
  """Applies `check(a, b, path)` to matching leaves of dicts, lists and tuples."""
  if isinstance(a, dict) or isinstance(b, dict):
    if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
      raise AssertionError("%s: keys differ: %r vs %r" % (
          path or "value", sorted(a) if isinstance(a, dict) else type(a),
          sorted(b) if isinstance(b, dict) else type(b)))
    for key in sorted(a, key=str):
      _assert_nested(check, a[key], b[key], "%s[%r]" % (path, key))
  elif isinstance(a, (list, tuple)) and a and isinstance(a[0], dict):
    # A list of structures: compare element by element.
    if not isinstance(b, (list, tuple)) or len(a) != len(b):
      raise AssertionError("%s: lengths differ" % (path or "value"))
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_nested(check, x, y, "%s[%d]" % (path, i))
  else:
    check(np.asarray(a), np.asarray(b), path)


class TestCase(absltest.TestCase):
  """The base for every test: self-removing temporary folders and numpy comparisons."""

  def temp_dir(self):
    """A fresh folder, removed (with everything in it) when this test ends."""
    path = _new_temp_dir(self.id().rsplit(".", 1)[-1])
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  @classmethod
  def class_temp_dir(cls):
    """A fresh folder for `setUpClass`, removed when every test of the class has run."""
    path = _new_temp_dir(cls.__name__)
    cls.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def assertAllClose(self, a, b, rtol=1e-6, atol=1e-6, msg=None):  # pylint: disable=invalid-name
    """|a - b| <= atol + rtol * |b| elementwise, same shapes (nested dicts/lists allowed)."""

    def check(x, y, path):
      if x.shape != y.shape:
        raise AssertionError("%s: shape %s != %s %s" % (path or "value", x.shape, y.shape,
                                                         msg or ""))
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg="%s %s" % (path, msg or ""))

    _assert_nested(check, a, b)

  def assertAllEqual(self, a, b, msg=None):  # pylint: disable=invalid-name
    """Elementwise equality with equal shapes (nested dicts/lists allowed)."""

    def check(x, y, path):
      if x.shape != y.shape:
        raise AssertionError("%s: shape %s != %s %s" % (path or "value", x.shape, y.shape,
                                                         msg or ""))
      np.testing.assert_array_equal(x, y, err_msg="%s %s" % (path, msg or ""))

    _assert_nested(check, a, b)

  def assertResultsClose(self, ours, google, rtol, keys=None):  # pylint: disable=invalid-name
    """Compares two result dicts (`key = value` files) key by key with a relative tolerance."""
    for key in keys or sorted(google):
      a, b = float(ours[key]), float(google[key])
      self.assertLessEqual(abs(a - b), rtol * max(abs(b), 1e-12),
                           "%s: ours %r vs Google's %r (rtol %g)" % (key, a, b, rtol))


# ---------------------------------------------------------------------------------------------
# A tiny BERT: vocabulary, config, Google-format checkpoints.
# ---------------------------------------------------------------------------------------------

WORDS = ("patient denies chest pain shortness of breath fever cough history hypertension "
         "diabetes kidney heart lung liver renal cardiac failure disease admitted discharged "
         "home stable the a and to with was is no").split()

SPECIAL = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# `heads` of write_checkpoint. Both classification heads are Google's run_classifier variables
# (`output_weights` [num_labels, hidden], `output_bias` [num_labels]); they differ in what they
# read (sequence vs pooled output), not in their names.
HEADS = (None, "pretraining", "token_classification", "sequence_classification")


def vocab_tokens():
  """The tiny vocabulary: specials, punctuation, letters (whole and ##), words, a few suffixes."""
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  tokens = list(SPECIAL) + list(".,;:()/-[]*") + [str(d) for d in range(10)]
  tokens += letters + [l.upper() for l in letters] + ["##" + l for l in letters]
  tokens += ["##" + str(d) for d in range(10)]
  tokens += WORDS + [w.capitalize() for w in WORDS[:10]] + ["##s", "##ed", "##ing", "##al"]
  seen = set()
  return [t for t in tokens if not (t in seen or seen.add(t))]  # unique, first kept


def write_vocab(directory):
  """Writes the tiny vocabulary to `<directory>/vocab.txt`; returns the path."""
  path = os.path.join(directory, "vocab.txt")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab_tokens()) + "\n")
  return path


def tiny_config(**overrides):
  """The suite's tiny `modeling.BertConfig`: 2 layers, hidden 32, 4 heads, the tiny vocabulary.

  Args:
    **overrides: Google's config keys (`vocab_size=97`, `hidden_act="relu"`, ...); `dropout` sets
      both `hidden_dropout_prob` and `attention_probs_dropout_prob`.
  """
  from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top  (imports TF)
  d = dict(vocab_size=len(vocab_tokens()), hidden_size=32, num_hidden_layers=2,
           num_attention_heads=4, intermediate_size=64, hidden_act="gelu",
           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
           max_position_embeddings=64, type_vocab_size=2, initializer_range=0.02)
  if "dropout" in overrides:
    dropout = overrides.pop("dropout")
    d.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
  d.update(overrides)
  return modeling.BertConfig.from_dict(d)


def _config_dict(config):
  return dict(config) if isinstance(config, dict) else config.to_dict()


def _bert_config(config):
  from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
  return modeling.BertConfig.from_dict(config) if isinstance(config, dict) else config


def write_config(path_or_dir, config):
  """Writes a config (BertConfig or dict) as JSON; a directory gets `bert_config.json`.

  Returns:
    The path written.
  """
  path = path_or_dir
  if os.path.isdir(path_or_dir):
    path = os.path.join(path_or_dir, "bert_config.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(_config_dict(config), f, indent=2, sort_keys=True)
  return path


def write_checkpoint(prefix, config, heads=None, num_labels=3, seed=1, released=False,
                     extra_variables=()):
  """Writes a randomly initialised Google-format checkpoint of `modeling.BertModel`; returns prefix.

  Args:
    prefix: the checkpoint prefix (`.../model.ckpt`); missing folders are created.
    config: a `modeling.BertConfig` or a dict of Google's keys.
    heads: one of HEADS: None (encoder only), "pretraining" (Google's `cls/predictions` MLM and
      `cls/seq_relationship` NSP heads), or a classification head with `num_labels` labels.
    num_labels: the classification head's labels.
    seed: the graph seed (the same arguments write the same values).
    released: False (default): as a training run leaves it: every trainable variable, LayerNorm
      and biases included, drawn from N(0, 0.2), so a test cannot pass because a loader left a
      default in place; Adam slots (`adam_m`, `adam_v`) and `global_step` written too.
      True: as Google's released checkpoints: the model's own initialisers with biases and
      LayerNorm betas nudged (N(0, 0.02)), so a bias that fails to load still shows; model
      variables only. The pretraining heads are then built by `pretraining.py` itself, a realistic
      starting point for training.
    extra_variables: (name, shape) pairs of further variables (e.g. one no loader knows).
  """
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
  if heads not in HEADS:
    raise ValueError("heads must be one of %s, got %r" % (HEADS, heads))
  bert_config = _bert_config(config)
  hidden, vocab = bert_config.hidden_size, bert_config.vocab_size
  with tf.Graph().as_default():
    tf.set_random_seed(seed)
    model = modeling.BertModel(bert_config, is_training=False,
                               input_ids=tf.zeros([1, 8 if released else 4], tf.int32))
    if heads == "pretraining" and released:
      from clinicalbert_tf import pretraining  # pylint: disable=g-import-not-at-top
      pretraining.get_masked_lm_output(
          bert_config, model.get_sequence_output(), model.get_embedding_table(),
          tf.zeros([1, 2], tf.int32), tf.zeros([1, 2], tf.int32), tf.ones([1, 2]))
      pretraining.get_next_sentence_output(bert_config, model.get_pooled_output(),
                                           tf.zeros([1, 1], tf.int32))
    elif heads == "pretraining":
      # Values are drawn below; zero initialisers keep the graph (and so the draws) as it was.
      with tf.variable_scope("cls/predictions"):
        with tf.variable_scope("transform"):
          modeling.layer_norm(modeling.dense(tf.zeros([1, hidden]), hidden, name="dense"))
        tf.get_variable("output_bias", [vocab], initializer=tf.zeros_initializer())
      with tf.variable_scope("cls/seq_relationship"):
        tf.get_variable("output_weights", [2, hidden], initializer=tf.zeros_initializer())
        tf.get_variable("output_bias", [2], initializer=tf.zeros_initializer())
    elif heads is not None:
      weights_init = (modeling.create_initializer(bert_config.initializer_range) if released
                      else tf.zeros_initializer())
      tf.get_variable("output_weights", [num_labels, hidden], initializer=weights_init)
      tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())
    for name, shape in extra_variables:
      tf.get_variable(name, shape, initializer=tf.random_normal_initializer(stddev=0.2))
    tvars = tf.trainable_variables()
    if released:
      draws = [v.assign(v + tf.random.normal(v.shape, stddev=0.02))
               for v in tf.global_variables() if v.name.endswith(("bias:0", "beta:0"))]
    else:
      draws = [v.assign(tf.random_normal(v.shape, stddev=0.2)) for v in tvars]
      for v in tvars:
        for slot in ("adam_m", "adam_v"):
          tf.get_variable(v.op.name + "/" + slot, v.shape, initializer=tf.zeros_initializer(),
                          trainable=False)
      tf.train.get_or_create_global_step()
    saver = tf.train.Saver(tf.global_variables())
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(draws)
      saver.save(sess, prefix, write_meta_graph=False)
  return prefix


def read_checkpoint(prefix):
  """{name: numpy array} of every variable in a checkpoint (optimizer state included)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def random_ids(batch, seq, vocab_size, seed=0):
  """Random (input_ids, input_mask, segment_ids), each int32 [batch, seq], with some padding."""
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


# ---------------------------------------------------------------------------------------------
# Pretraining records, written directly.
# ---------------------------------------------------------------------------------------------


def pretraining_examples(num, max_seq_length, max_predictions_per_seq, vocab_size, seed=0,
                         full_masks=False, nan_weight_records=()):
  """Returns `num` serialized pretraining `tf.train.Example`s (deterministic in `seed`).

  The seven features `create_pretraining_data.py` writes (variable lengths with zero padding,
  1..max_predictions masked positions with weight 1.0 and zero-padded rest, random next-sentence
  labels): the pretraining code does not care how they were made, and this keeps every shape under
  the test's control.

  Args:
    full_masks: every example has exactly `max_predictions_per_seq` masks (then the masked-LM loss
      of a batch is the mean of its halves' losses, which makes accumulation exactly comparable).
    nan_weight_records: indexes of examples whose masked_lm_weights are NaN (an injected NaN loss).
  """
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(num):
    length = int(rng.randint(max(4, max_seq_length // 2), max_seq_length + 1))
    input_ids = np.zeros(max_seq_length, np.int64)
    input_ids[:length] = rng.randint(5, vocab_size, size=length)
    input_ids[0] = 2  # a [CLS]-like id
    input_mask = np.zeros(max_seq_length, np.int64)
    input_mask[:length] = 1
    segment_ids = np.zeros(max_seq_length, np.int64)
    segment_ids[length // 2:length] = 1
    k = int(rng.randint(1, min(max_predictions_per_seq, length - 2) + 1))
    if full_masks:
      k = max_predictions_per_seq
    positions = np.sort(rng.choice(np.arange(1, length - 1), size=k, replace=False))
    masked_lm_positions = np.zeros(max_predictions_per_seq, np.int64)
    masked_lm_positions[:k] = positions
    masked_lm_ids = np.zeros(max_predictions_per_seq, np.int64)
    masked_lm_ids[:k] = input_ids[positions]
    input_ids[positions] = 3  # a [MASK]-like id
    masked_lm_weights = np.zeros(max_predictions_per_seq, np.float32)
    masked_lm_weights[:k] = 1.0
    if len(out) in nan_weight_records:
      masked_lm_weights[:] = np.nan

    def ints(values):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    features = {
        "input_ids": ints(input_ids),
        "input_mask": ints(input_mask),
        "segment_ids": ints(segment_ids),
        "masked_lm_positions": ints(masked_lm_positions),
        "masked_lm_ids": ints(masked_lm_ids),
        "masked_lm_weights": tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(v) for v in masked_lm_weights])),
        "next_sentence_labels": ints([rng.randint(0, 2)]),
    }
    out.append(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
  return out


def write_pretraining_records(path, num, max_seq_length, max_predictions_per_seq, vocab_size,
                              seed=0, **kwargs):
  """Writes `pretraining_examples(...)` to the TFRecord file `path`; returns `path`."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path) as writer:
    for record in pretraining_examples(num, max_seq_length, max_predictions_per_seq, vocab_size,
                                       seed, **kwargs):
      writer.write(record)
  return path


def write_pretraining_setup(directory, max_seq_length, max_predictions_per_seq,
                            full_masks=False):
  """The pretraining tests' tiny model on disk, under `directory`.

  A `tiny_config` with a 97-word vocabulary, 2 heads and no dropout (so runs compare exactly),
  its `bert_config.json`, 64 training records (`write_pretraining_records`, `full_masks` passed on)
  and a released-style init checkpoint with the pretraining heads.

  Returns:
    (config, config_file, records_path, init_checkpoint_prefix).
  """
  config = tiny_config(vocab_size=97, num_attention_heads=2, dropout=0.0)
  config_file = write_config(directory, config)
  records = write_pretraining_records(
      os.path.join(directory, "train.tfrecord"), 64, max_seq_length, max_predictions_per_seq,
      config.vocab_size, full_masks=full_masks)
  init = write_checkpoint(os.path.join(directory, "init", "model.ckpt"), config,
                          heads="pretraining", released=True)
  return config, config_file, records, init


# ---------------------------------------------------------------------------------------------
# A tiny fine-tuned model directory and notes to apply it to (predict.py, the SavedModel export).
# ---------------------------------------------------------------------------------------------

NER_LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test"]

# Invented notes over the tiny vocabulary's words: blank lines, tabs, CRLF, an empty note, one of
# whitespace only, and one longer than a window.
NOTES = [
    "Patient denies chest pain .\n\n  Shortness of breath,  fever\tand cough .\r\nNo history",
    "",
    "   \n\t\n",
    "history of hypertension and diabetes with renal failure " * 12,  # longer than a window
    "Admitted with kidney disease ; discharged home stable .\nLiver and lung : no disease .",
]


def write_model_dir(directory, labels=NER_LABELS, head="token_classification", max_seq_length=16,
                    seed=1, config=None, released=False):
  """A tiny model directory as run_finetune.py leaves it (random weights).

  `config`: another BertConfig (default `tiny_config()`); `released`: weights initialised as
  Google's released checkpoints are (see `write_checkpoint`), so labels vary from word to word.
  """
  from clinicalbert_tf import checkpoints  # pylint: disable=g-import-not-at-top  (imports TF)
  os.makedirs(directory, exist_ok=True)
  config = config or tiny_config()
  write_config(directory, config)
  write_vocab(directory)
  write_checkpoint(os.path.join(directory, "model.ckpt-3"), config, heads=head,
                   num_labels=len(labels), seed=seed, released=released)
  with open(os.path.join(directory, checkpoints.HEAD_RECORD_FILE), "w") as f:
    json.dump({"head": head, "labels": labels, "do_lower_case": True,
               "max_seq_length": max_seq_length, "task_name": "i2b2_2010"}, f)
  return directory


def deid_demo_notes(directory):
  """[(note id, text, [(start, end, TYPE)])] of the demo's invented i2b2 2014 set (all splits),
  written under `directory` by `deid_demo.write_dataset` (imports TensorFlow)."""
  from clinicalbert_tf import deid_demo  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.tasks import i2b2_2012  # pylint: disable=g-import-not-at-top
  deid_demo.write_dataset(directory)
  notes = []
  for split, _ in deid_demo.SPLITS:
    folder = os.path.join(directory, split)
    for name in sorted(os.listdir(folder)):
      text, entities = i2b2_2012.read_annotated_xml(os.path.join(folder, name), "deIdi2b2", None,
                                                    "TYPE", lambda typ, where: None)
      notes.append((name[:-4], text, [(e.start, e.end, e.type) for e in entities]))
  return notes


# ---------------------------------------------------------------------------------------------
# Invented MIMIC-III NOTEEVENTS files.
# ---------------------------------------------------------------------------------------------

# MIMIC-III's NOTEEVENTS header, in file order (written out here, not read from the reader).
NOTEEVENTS_HEADER = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME",
                     "CATEGORY", "DESCRIPTION", "CGID", "ISERROR", "TEXT"]
# The sample file of the demo: 46 invented rows over MIMIC-III's 15 categories.
NOTEEVENTS_SAMPLE = os.path.join(REPO, "testdata", "NOTEEVENTS_sample.csv")


def noteevents_row(row_id, category, text, iserror="", subject_id="1"):
  """One NOTEEVENTS row (HADM_ID 2, a fixed CHARTDATE, DESCRIPTION `Report`)."""
  return [str(row_id), subject_id, "2", "2101-01-01", "", "", category, "Report", "", iserror,
          text]


def write_noteevents_csv(path, rows, header=None, lineterminator="\n", quoting=csv.QUOTE_MINIMAL):
  """Writes `header` (default NOTEEVENTS_HEADER) and `rows` as a CSV file; returns `path`."""
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, lineterminator=lineterminator, quoting=quoting)
    writer.writerow(header or NOTEEVENTS_HEADER)
    writer.writerows(rows)
  return path


# ---------------------------------------------------------------------------------------------
# Running scripts (ours and Google's) as child processes.
# ---------------------------------------------------------------------------------------------


def script_env(extra=None):
  """The environment for a child Python that imports what this process imports (CPU only)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p])
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["CUDA_VISIBLE_DEVICES"] = ""
  env.pop("TF_CONFIG", None)
  if extra:
    env.update(extra)
  return env


def flag_args(flags):
  """{"do_train": True, "x": 3} -> ["--do_train=True", "--x=3"] (None values are left out)."""
  return ["--%s=%s" % (k, v) for k, v in flags.items() if v is not None]


def flag_defaults(script):
  """{flag name: default} of a top-level script, read in a child process that imports it."""
  code = ("import json, %s; from absl import flags; "
          "print(json.dumps({n: flags.FLAGS[n].default for n in flags.FLAGS}))" % script)
  out = subprocess.run([sys.executable, "-c", code], env=script_env(), capture_output=True,
                       text=True, check=True, cwd=REPO).stdout
  return json.loads(out.strip().splitlines()[-1])


def run_module(module, args=(), env=None, timeout=600, check=True, popen=False):
  """Runs `python -m module args...` in a child process with `script_env(env)`.

  `module` is a top-level script's name without `.py` ("run_pretraining") or a dotted module
  ("tests.run_google_pretraining", "bert.create_pretraining_data").

  Returns:
    The `subprocess.CompletedProcess` (text stdout/stderr), or the `Popen` when `popen`.

  Raises:
    AssertionError: when `check` and the child exits non-zero (with the tail of its stderr).
  """
  cmd = [sys.executable, "-m", module] + list(args)
  if popen:
    return subprocess.Popen(cmd, env=script_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  proc = subprocess.run(cmd, env=script_env(env), capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError("%s failed (%d):\n%s" % (module, proc.returncode, proc.stderr[-5000:]))
  return proc


def run_google_pretraining(flags, no_shuffle=False, timeout=600, check=True):
  """Runs Google's run_pretraining.py, unmodified (see tests/run_google_pretraining.py).

  `no_shuffle`: `tf.data` shuffles are identities in that process (Google's record shuffle buffer
  is unseeded, so otherwise two runs never see the same batches).
  """
  extra = {"GOOGLE_PRETRAINING_NO_SHUFFLE": "1"} if no_shuffle else None
  return run_module("tests.run_google_pretraining", flag_args(flags), env=extra, timeout=timeout,
                    check=check)


def free_ports(n):
  """n distinct free TCP ports on 127.0.0.1 (held open together so they differ), for TF_CONFIG."""
  socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def run_workers(module, args, num_workers=2, timeout=300):
  """Runs `module args` as `num_workers` multi-worker processes on 127.0.0.1 and waits for all.

  Each child gets a `TF_CONFIG` naming the same cluster of free local ports and its own worker
  index (worker 0 is the chief). If one does not end within `timeout` seconds, all are killed and
  `subprocess.TimeoutExpired` is raised.

  Returns:
    [(returncode, stderr)] in worker order.
  """
  cluster = {"worker": ["127.0.0.1:%d" % p for p in free_ports(num_workers)]}
  procs = []
  for index in range(num_workers):
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    procs.append(run_module(module, args, popen=True, env={"TF_CONFIG": json.dumps(tf_config)}))
  results = []
  for proc in procs:
    try:
      _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    results.append((proc.returncode, err))
  return results
