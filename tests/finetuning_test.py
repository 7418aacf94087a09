"""Tests for clinicalbert_tf/finetuning/: windows, loss mask, heads, metrics, tiny runs."""

import json
import os
import random
import subprocess
import sys

from absl import flags
from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import modeling
from clinicalbert_tf import tasks
from clinicalbert_tf.finetuning import data as data_lib
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import metrics
from clinicalbert_tf.finetuning import runner
from tests import testutil

tf.disable_v2_behavior()

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = ["the", "patient", "was", "seen", "today", "and", "reports", "feeling", "well", "with",
          "a", "history", "of", "on", "for", "since", "yesterday", "."]
TREATMENTS = ["aspirin", "heparin", "insulin", "warfarin"]
PROBLEMS = ["cough", "fever", "rash", "nausea"]
TESTS = ["ecg", "mri", "biopsy"]
NLI_WORDS = {"entailment": "indeed", "contradiction": "never", "neutral": "perhaps"}


def write_vocab(path, words):
  with open(path, "w") as f:
    f.write("\n".join(SPECIAL + sorted(set(words))) + "\n")


def write_bert_config(path, vocab_size, max_position_embeddings=64, dropout=0.1):
  config = modeling.BertConfig(
      vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=dropout,
      attention_probs_dropout_prob=dropout, max_position_embeddings=max_position_embeddings,
      type_vocab_size=2, initializer_range=0.02)
  with open(path, "w") as f:
    f.write(config.to_json_string())


def invented_ner_sentence(rng, min_words=4, max_words=12):
  """Filler words with 1-2 entities: `<treatment> drip` (2 words), a problem, or `<test> scan`."""
  words = [rng.choice(FILLER) for _ in range(rng.randint(min_words, max_words))]
  labels = ["O"] * len(words)
  for _ in range(rng.randint(1, 2)):
    kind = rng.choice(["treatment", "problem", "test"])
    if kind == "treatment":
      entity = [rng.choice(TREATMENTS)] + (["drip"] if rng.random() < 0.5 else [])
    elif kind == "problem":
      entity = [rng.choice(PROBLEMS)]
    else:
      entity = [rng.choice(TESTS), "scan"]
    at = rng.randint(0, len(words))
    words[at:at] = entity
    labels[at:at] = ["B-" + kind] + ["I-" + kind] * (len(entity) - 1)
  return words, labels


def write_conll_split(path, sentences):
  with open(path, "w") as f:
    for words, labels in sentences:
      f.write("".join("%s %s\n" % wl for wl in zip(words, labels)) + "\n")


def make_ner_task(folder, seed=1, sizes=(240, 40, 40)):
  """A learnable invented CoNLL task in `folder` (a few long sentences need windows)."""
  rng = random.Random(seed)
  for split, size in zip(tasks.SPLITS, sizes):
    sentences = [invented_ner_sentence(rng) for _ in range(size)]
    sentences += [invented_ner_sentence(rng, 30, 40) for _ in range(3)]  # > max_seq_length pieces
    write_conll_split(os.path.join(folder, split + ".tsv"), sentences)
  return FILLER + TREATMENTS + PROBLEMS + TESTS + ["drip", "scan"]


def make_nli_task(folder, seed=2, sizes=(240, 45, 45)):
  """A learnable invented MedNLI-format task: the hypothesis' cue word (twice) decides the label."""
  rng = random.Random(seed)
  for split, size in zip(tasks.SPLITS, sizes):
    with open(os.path.join(folder, "mli_%s_v1.jsonl" % split), "w") as f:
      for i in range(size):
        label = ["entailment", "contradiction", "neutral"][i % 3]
        premise = " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 8)))
        hypothesis = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
        for _ in range(2):
          hypothesis.insert(rng.randint(0, len(hypothesis)), NLI_WORDS[label])
        f.write(json.dumps({"sentence1": premise, "sentence2": " ".join(hypothesis),
                            "gold_label": label, "pairID": "%s-%d" % (split, i)}) + "\n")
  return FILLER + list(NLI_WORDS.values())


class FakeTokenizer(object):
  """Splits words of more than 4 characters into 4-character pieces (to make words multi-piece)."""

  def tokenize(self, text):
    pieces = []
    for word in text.split():
      chunks = [word[i:i + 4] for i in range(0, len(word), 4)]
      pieces.extend([chunks[0]] + ["##" + c for c in chunks[1:]])
    return pieces

  def convert_tokens_to_ids(self, tokens):
    return [len(t) for t in tokens]


class WindowTest(testutil.TestCase):

  def test_plan_windows_partitions_words(self):
    rng = random.Random(0)
    for _ in range(300):
      max_pieces = rng.randint(1, 20)
      counts = [rng.randint(1, max_pieces) for _ in range(rng.randint(1, 60))]
      windows = data_lib.plan_word_windows(counts, max_pieces)
      cores = [w for s, e, cs, ce in windows for w in range(cs, ce)]
      self.assertEqual(cores, list(range(len(counts))))
      for start, end, core_start, core_end in windows:
        self.assertLessEqual(start, core_start)
        self.assertLess(core_start, core_end)
        self.assertLessEqual(core_end, end)
        self.assertLessEqual(sum(counts[start:end]), max_pieces)

  def test_plan_windows_with_context(self):
    # `context=c`: cores of at most max_pieces - 2c pieces, and every core sees at least c pieces
    # (whole words: as many as fit) on each side wherever the sentence has them.
    rng = random.Random(1)
    for _ in range(300):
      max_pieces = rng.randint(3, 40)
      context = rng.randint(0, (max_pieces - 1) // 2)
      counts = [rng.randint(1, max(1, max_pieces // 4)) for _ in range(rng.randint(1, 80))]
      windows = data_lib.plan_word_windows(counts, max_pieces, context)
      cores = [w for s, e, cs, ce in windows for w in range(cs, ce)]
      self.assertEqual(cores, list(range(len(counts))))
      if sum(counts) <= max_pieces:
        self.assertEqual(windows, [(0, len(counts), 0, len(counts))])
        continue
      for start, end, core_start, core_end in windows:
        self.assertLessEqual(sum(counts[start:end]), max_pieces)
        core = sum(counts[core_start:core_end])
        self.assertTrue(core <= max_pieces - 2 * context or core_end == core_start + 1)
        # The window is full, or it reaches both ends of the sentence... or the next word out
        # on either side does not fit.
        left, right = sum(counts[start:core_start]), sum(counts[core_end:end])
        total = sum(counts[start:end])
        if start > 0 and left < context:
          self.assertGreater(total + counts[start - 1], max_pieces)
        if end < len(counts) and right < context:
          self.assertGreater(total + counts[end], max_pieces)

  def test_plan_windows_context_trades_windows_for_context(self):
    counts = [1] * 1000  # a one-line note of 1,000 one-piece words, windows of 126 pieces
    default = data_lib.plan_word_windows(counts, 126)
    self.assertEqual(default, data_lib.plan_word_windows(counts, 126, None))
    self.assertEqual(max(ce - cs for _, _, cs, ce in default), 63)  # half a window
    self.assertLen(default, 16)  # ceil(1000 / 63): each word runs through the model twice
    narrow = data_lib.plan_word_windows(counts, 126, 16)
    self.assertEqual(max(ce - cs for _, _, cs, ce in narrow), 94)  # 126 - 2 * 16
    self.assertLen(narrow, 11)  # ceil(1000 / 94)
    self.assertLen(data_lib.plan_word_windows(counts, 126, 0), 8)  # ceil(1000 / 126)
    for start, end, core_start, core_end in narrow[1:-1]:
      self.assertEqual((core_start - start, end - core_end), (16, 16))

  def test_long_sentence_gets_one_prediction_per_word(self):
    max_seq_length = 16
    rng = random.Random(5)
    words = [rng.choice(["a", "bb", "ccccc", "dddddddddd"]) for _ in range(3 * max_seq_length)]
    labels = [rng.choice(["O", "B-x"]) for _ in words]
    example = tasks.TaggedSentence("s", words, labels)
    label_list = ["O", "B-x", "I-x"]
    features, cut = data_lib.convert_tagged_sentence(
        0, example, {l: i for i, l in enumerate(label_list)}, max_seq_length, FakeTokenizer())
    self.assertEqual(cut, 0)
    self.assertGreater(len(features), 3)  # 3x max_seq_length words, several pieces each
    predicted_words = []
    for f in features:
      self.assertLen(f.input_ids, max_seq_length)
      self.assertEqual(sum(f.input_mask), sum(1 for i in f.input_ids if i))
      positions = [i for i, m in enumerate(f.label_mask) if m]
      self.assertLen(positions, len(f.word_indexes))
      for word, position in zip(f.word_indexes, positions):
        self.assertEqual(f.label_ids[position], label_list.index(labels[word]))
      predicted_words.extend(f.word_indexes)
    self.assertEqual(predicted_words, list(range(len(words))))
    # Reassembly: "predict" each window's gold label ids; every word gets exactly its label.
    predicted = heads.TokenClassificationHead(label_list).assemble_predictions(
        [example], features, [{"label_ids": f.label_ids} for f in features])
    self.assertEqual(predicted, [labels])

  def test_label_on_first_piece_only(self):
    example = tasks.TaggedSentence("s", ["abcdefghij", "ab"], ["B-x", "O"])
    features, _ = data_lib.convert_tagged_sentence(0, example, {"O": 0, "B-x": 1}, 10,
                                                   FakeTokenizer())
    self.assertLen(features, 1)
    # [CLS] abcd ##efgh ##ij ab [SEP]
    self.assertEqual(features[0].label_mask[:6], [0, 1, 0, 0, 1, 0])
    self.assertEqual(features[0].label_ids[:6], [0, 1, 0, 0, 0, 0])
    self.assertEqual(features[0].input_mask, [1] * 6 + [0] * 4)

  def test_pair_conversion_and_truncation(self):
    pair = tasks.SentencePair("p", "aaaa bbbb cccc dddd eeee", "ffff", "neutral")
    feature, truncated = data_lib.convert_sentence_pair(0, pair, {"neutral": 2}, 7,
                                                        FakeTokenizer())
    self.assertTrue(truncated)  # [CLS] aaaa bbbb cccc [SEP] ffff [SEP]
    self.assertEqual(feature.segment_ids, [0, 0, 0, 0, 0, 1, 1])
    self.assertEqual(feature.label_id, 2)


class LossAndHeadTest(testutil.TestCase):

  def test_loss_is_the_mean_over_labelled_positions_only(self):
    rng = np.random.RandomState(0)
    logits = rng.randn(2, 5, 3).astype(np.float32)
    label_ids = rng.randint(0, 3, size=[2, 5]).astype(np.int32)
    mask = np.array([[0, 1, 0, 1, 0], [0, 1, 1, 0, 0]], dtype=np.int32)
    with tf.Graph().as_default(), tf.Session() as sess:
      loss, per_token = heads.masked_token_loss(tf.constant(logits), tf.constant(label_ids),
                                                tf.constant(mask))
      other_labels = np.where(mask == 1, label_ids, (label_ids + 1) % 3)
      loss2, _ = heads.masked_token_loss(tf.constant(logits), tf.constant(other_labels),
                                         tf.constant(mask))
      empty, _ = heads.masked_token_loss(tf.constant(logits), tf.constant(label_ids),
                                         tf.constant(np.zeros_like(mask)))
      loss_v, per_token_v, loss2_v, empty_v = sess.run([loss, per_token, loss2, empty])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, label_ids[..., None], -1)[..., 0]
    self.assertAllClose(loss_v, (nll * mask).sum() / mask.sum(), rtol=1e-5)
    self.assertAllClose(per_token_v, nll * mask, rtol=1e-5)
    self.assertAllClose(loss2_v, loss_v)  # labels at unlabelled positions do not matter
    self.assertEqual(empty_v, 0.0)  # no labelled position: 0, not NaN

  def _config(self):
    return modeling.BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=16)

  def _features(self, ids, label_ids):
    return {"input_ids": ids, "input_mask": tf.ones_like(ids), "segment_ids": ids,
            "label_ids": label_ids, "label_mask": ids, "is_real_example": tf.ones([2], tf.int32)}

  def test_heads_have_googles_variable_names(self):
    with tf.Graph().as_default():
      ids = tf.zeros([2, 8], tf.int32)
      heads.TokenClassificationHead(["l%d" % i for i in range(5)]).create_model(
          self._config(), True, self._features(ids, ids), tf.ones([2]), False)
      shapes = {v.name: v.shape.as_list() for v in tf.global_variables()}
      self.assertEqual(shapes["output_weights:0"], [5, 16])
      self.assertEqual(shapes["output_bias:0"], [5])
      self.assertIn("bert/encoder/layer_0/output/LayerNorm/gamma:0", shapes)
    with tf.Graph().as_default():
      ids = tf.zeros([2, 8], tf.int32)
      outputs = heads.SequenceClassificationHead(["a", "b", "c"]).create_model(
          self._config(), False, self._features(ids, tf.zeros([2], tf.int32)), tf.ones([2]),
          False)
      per_example, probabilities = outputs["per_example_loss"], outputs["probabilities"]
      shapes = {v.name: v.shape.as_list() for v in tf.global_variables()}
      self.assertEqual(shapes["output_weights:0"], [3, 16])
      self.assertEqual(shapes["output_bias:0"], [3])
      self.assertEqual(probabilities.shape.as_list(), [2, 3])
      self.assertEqual(per_example.shape.as_list(), [2])


class MetricsTest(testutil.TestCase):

  def test_strict_span_metrics(self):
    gold = [["B-a", "I-a", "O", "B-b"], ["O", "B-a"]]
    predicted = [["B-a", "I-a", "O", "I-b"], ["O", "B-a"]]  # I-b without B-b: no entity (strict)
    m = metrics.ner_metrics(gold, predicted)
    self.assertAlmostEqual(m["precision"], 1.0)
    self.assertAlmostEqual(m["recall"], 2 / 3)
    self.assertAlmostEqual(m["f1"], 0.8)
    self.assertEqual(m["per_type"]["a"], {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                          "support": 2})
    self.assertEqual(m["per_type"]["b"]["recall"], 0.0)
    partial = metrics.ner_metrics([["B-a", "I-a"]], [["B-a", "O"]])
    self.assertEqual(partial["f1"], 0.0)  # exact spans only

  def test_classification_metrics_and_result_lines(self):
    m = metrics.classification_metrics(["x", "y", "y"], ["x", "x", "y"], ["x", "y"])
    self.assertAlmostEqual(m["accuracy"], 2 / 3)
    self.assertEqual(m["confusion_matrix"]["rows_gold_columns_predicted"], [[1, 0], [1, 1]])
    text = metrics.format_results(dict(m, global_step=7))
    self.assertIn("accuracy = 0.6666", text)
    self.assertIn("confusion_y_as_x = 1\n", text)
    self.assertIn("global_step = 7\n", text)
    lines = metrics.format_results({"f1": 0.5, "per_type": {"a": {"f1": 0.25}}})
    self.assertEqual(lines, "a_f1 = 0.25\nf1 = 0.5\n")


class EndToEndTest(testutil.TestCase):
  """Tiny models (2 layers, hidden 32, random init) on learnable invented tasks."""

  def _setup(self, make_task, dropout=0.1):
    root = self.temp_dir()
    data = os.path.join(root, "data")
    os.makedirs(data)
    words = make_task(data)
    vocab = os.path.join(root, "vocab.txt")
    write_vocab(vocab, words)
    config = os.path.join(root, "bert_config.json")
    write_bert_config(config, len(SPECIAL) + len(set(words)), dropout=dropout)
    return root, data, vocab, config

  def _config(self, task_name, root, data, vocab, bert_config, output="out", **kwargs):
    values = dict(task_name=task_name, data_dir=data, output_dir=os.path.join(root, output),
                  bert_config_file=bert_config, vocab_file=vocab, max_seq_length=24,
                  train_batch_size=16, eval_batch_size=32, predict_batch_size=32,
                  learning_rate=3e-3, num_train_epochs=5, warmup_proportion=0.1,
                  save_checkpoints_steps=10000, log_every_n_steps=20, seed=7)
    values.update(kwargs)
    return runner.FinetuneConfig(**values)

  def test_ner_learns_an_invented_task(self):
    root, data, vocab, bert_config = self._setup(make_ner_task)
    config = self._config("conll", root, data, vocab, bert_config, do_train=True, do_eval=True,
                          do_predict=True)
    outcome = runner.run(config)
    task = tasks.get_task("conll")
    baseline = heads.TokenClassificationHead(task.get_labels(data)).majority_baseline(
        task.get_examples(data, "train"), task.get_examples(data, "test"))
    self.assertEqual(baseline, 0.0)  # the majority label is O: no entity found
    self.assertGreater(outcome["eval"]["f1"], 0.8)
    self.assertGreater(outcome["test"]["f1"], 0.8)
    self.assertEqual(set(outcome["test"]["per_type"]), {"problem", "treatment", "test"})
    out = config.output_dir
    with open(os.path.join(out, "test_results.txt")) as f:
      lines = f.read().splitlines()
    self.assertTrue(all(" = " in line for line in lines))
    self.assertIn("f1 = %s" % outcome["test"]["f1"], lines)
    with open(os.path.join(out, "test_results.json")) as f:
      self.assertEqual(set(json.load(f)) >= {"precision", "recall", "f1", "per_type"}, True)
    # Predictions: one `word gold predicted` line per word, sentences as in the test file.
    test = task.get_examples(data, "test")
    with open(os.path.join(out, "test_predictions.txt")) as f:
      blocks = [b for b in f.read().split("\n\n") if b.strip()]
    self.assertLen(blocks, len(test))
    for block, sentence in zip(blocks, test):
      rows = [line.split(" ") for line in block.splitlines()]
      self.assertEqual([r[0] for r in rows], sentence.words)
      self.assertEqual([r[1] for r in rows], sentence.labels)
    # The head record export_hf.py reads: head type and the label order of the output layer.
    with open(os.path.join(out, checkpoints.HEAD_RECORD_FILE)) as f:
      record = json.load(f)
    self.assertEqual(record["head"], "token_classification")
    self.assertEqual(record["labels"], task.get_labels(data))

  def test_nli_learns_an_invented_task_and_is_deterministic(self):
    # Without dropout the tiny pooled-[CLS] model finds the cue word reliably within 120 steps.
    root, data, vocab, bert_config = self._setup(make_nli_task, dropout=0.0)
    config = self._config("mednli", root, data, vocab, bert_config, do_train=True, do_eval=True,
                          num_train_epochs=8, learning_rate=2e-3)
    outcome = runner.run(config)
    task = tasks.get_task("mednli")
    baseline = heads.SequenceClassificationHead(task.get_labels(data)).majority_baseline(
        task.get_examples(data, "train"), task.get_examples(data, "dev"))
    self.assertLess(baseline, 0.4)
    self.assertGreater(outcome["eval"]["accuracy"], 0.8)
    self.assertEqual(sum(map(sum, outcome["eval"]["confusion_matrix"][
        "rows_gold_columns_predicted"])), 45)
    with open(os.path.join(config.output_dir, "eval_predictions.tsv")) as f:
      self.assertLen(f.read().splitlines(), 46)
    # Same seed, same results.
    again = runner.run(self._config("mednli", root, data, vocab, bert_config,
                                    output="again", do_train=True, do_eval=True,
                                    num_train_epochs=8, learning_rate=2e-3))
    self.assertEqual(again["eval"]["loss"], outcome["eval"]["loss"])

  def test_evaluating_without_a_checkpoint_is_an_input_error(self):
    root, data, vocab, bert_config = self._setup(
        lambda folder: make_ner_task(folder, sizes=(4, 4, 4)))
    config = self._config("conll", root, data, vocab, bert_config, do_eval=True)
    with self.assertRaisesRegex(fileio.InputError, "no checkpoint in .*out to evaluate"):
      runner.run(config)
    config = self._config("conll", root, data, vocab, bert_config, do_train=True,
                          max_seq_length=200)
    with self.assertRaisesRegex(fileio.InputError, "max_seq_length=200 is longer than the "
                                "model's max_position_embeddings \\(64\\)"):
      runner.run(config)

  def test_grid_on_a_tiny_run(self):
    root, data, vocab, bert_config = self._setup(
        lambda folder: make_ner_task(folder, sizes=(64, 20, 20)))
    config = self._config("conll", root, data, vocab, bert_config, grid=True,
                          grid_learning_rates=[1e-4, 3e-3], grid_batch_sizes=[16],
                          grid_num_train_epochs=[2])
    summary = runner.run(config)["grid"]
    self.assertEqual([p["setting"] for p in summary["points"]],
                     ["lr0.0001_bs16_ep2", "lr0.003_bs16_ep2"])
    best = max(summary["points"], key=lambda p: p["dev_f1"])
    self.assertEqual(summary["best"]["setting"], best["setting"])
    self.assertEqual(summary["best"]["setting"], "lr0.003_bs16_ep2")  # 1e-4 barely moves
    out = config.output_dir
    for name in ("grid_summary.md", "grid_summary.json", "test_results.txt", "test_results.json",
                 "test_predictions.txt"):
      self.assertTrue(os.path.exists(os.path.join(out, name)), name)
    with open(os.path.join(out, "grid_summary.md")) as f:
      markdown = f.read()
    self.assertIn("| lr0.003_bs16_ep2 | 0.003 | 16 | 2 |", markdown)
    self.assertIn("**selected**", markdown)
    # Only the selected setting keeps its checkpoint.
    self.assertIsNotNone(tf.train.latest_checkpoint(os.path.join(out, "grid", "lr0.003_bs16_ep2")))
    self.assertIsNone(tf.train.latest_checkpoint(os.path.join(out, "grid", "lr0.0001_bs16_ep2")))
    for setting in ("lr0.003_bs16_ep2", "lr0.0001_bs16_ep2"):
      self.assertTrue(os.path.exists(os.path.join(out, "grid", setting, "eval_results.txt")))


class ConfigFromFlagsTest(testutil.TestCase):

  def _flag_values(self, *args):
    flag_values = flags.FlagValues()
    for name in ("task_name", "data_dir", "output_dir", "grid_learning_rates",
                 "grid_batch_sizes", "grid_num_train_epochs"):
      flags.DEFINE_string(name, None, "", flag_values=flag_values)
    flags.DEFINE_integer("train_batch_size", 32, "", flag_values=flag_values)
    flag_values(["prog", "--task_name=MRPC", "--data_dir=d"] + list(args))
    return flag_values

  def test_same_names_grid_lists_and_overrides(self):
    config = runner.config_from_flags(
        self._flag_values("--grid_learning_rates=2e-5,3e-5", "--grid_batch_sizes=16,32",
                          "--train_batch_size=4"),
        task_name="mrpc", google_outputs=True)
    self.assertEqual((config.task_name, config.data_dir, config.output_dir), ("mrpc", "d", None))
    self.assertEqual((config.train_batch_size, config.google_outputs), (4, True))
    self.assertEqual(config.grid_learning_rates, [2e-5, 3e-5])
    self.assertEqual(config.grid_batch_sizes, [16, 32])
    self.assertIsNone(config.grid_num_train_epochs)
    self.assertEqual(config.eval_batch_size, 8)  # no such flag: the field's default

  def test_bad_grid_list_is_named(self):
    with self.assertRaisesRegex(fileio.InputError,
                                r"^--grid_batch_sizes=16,x: expected a comma list of numbers$"):
      runner.config_from_flags(self._flag_values("--grid_batch_sizes=16,x"))


class ScriptTest(testutil.TestCase):

  def _run(self, *args):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=here, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(here, "run_finetune.py")] + list(args),
                          capture_output=True, text=True, env=env, cwd=here, check=False)

  def test_convert_only_and_errors(self):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = self.temp_dir()
    result = self._run("--task_name=i2b2_2010",
                       "--data_dir=" + os.path.join(here, "testdata", "i2b2_2010"),
                       "--iob_output_dir=" + out)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertEqual(sorted(os.listdir(out)), ["dev.tsv", "dev.tsv.json", "test.tsv",
                                               "test.tsv.json", "train.tsv", "train.tsv.json"])
    result = self._run("--task_name=mednli", "--data_dir=" + out, "--iob_output_dir=" + out)
    self.assertEqual(result.returncode, 1)
    self.assertIn("run_finetune.py: error: --iob_output_dir: task mednli is not a tagging task",
                  result.stderr)
    result = self._run("--task_name=i2b2_2011", "--data_dir=" + out)
    self.assertEqual(result.returncode, 1)
    self.assertIn("is not a known task", result.stderr)


if __name__ == "__main__":
  absltest.main()
