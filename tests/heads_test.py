"""Tests for clinicalbert_tf/finetuning/heads.py: the API a prediction module builds on.

`serving_outputs` must give what the training PREDICT model_fn gives for the same checkpoint, the
head record must round-trip, and every word must get exactly one prediction.
"""

import json
import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf import tokenization
from clinicalbert_tf.finetuning import head_record
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import runner
from tests import testutil

tf.disable_v2_behavior()

NER_LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test"]
NLI_LABELS = ["contradiction", "entailment", "neutral"]
SEQ = 12


def _batch(head, num_examples=3, seed=4):
  """Random records for `head` ({field: int32 array [B, ...]})."""
  rng = np.random.RandomState(seed)
  ids, mask, types = testutil.random_ids(num_examples, SEQ, len(testutil.vocab_tokens()))
  batch = {"input_ids": ids, "input_mask": mask, "segment_ids": types,
           "is_real_example": np.ones([num_examples], np.int32)}
  spec = head.record_spec(SEQ)
  batch["label_ids"] = rng.randint(0, head.num_labels, size=[num_examples] + spec[
      "label_ids"].shape).astype(np.int32)
  if "label_mask" in spec:
    batch["label_mask"] = mask.astype(np.int32)
  return {k: np.asarray(v, np.int32) for k, v in batch.items()}


def _predict_with_model_fn(head, config, ckpt, batch):
  with tf.Graph().as_default():
    model_fn = runner.model_fn_builder(config, head, ckpt, 0.0, None, None, use_tpu=False,
                                       use_one_hot_embeddings=False)
    spec = model_fn({k: tf.constant(v) for k, v in batch.items()}, None,
                    tf.estimator.ModeKeys.PREDICT, {})
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return sess.run(spec.predictions)


def _serve(head, config, ckpt, batch):
  with tf.Graph().as_default():
    outputs = head.serving_outputs(config, tf.constant(batch["input_ids"]),
                                   tf.constant(batch["input_mask"]),
                                   tf.constant(batch["segment_ids"]))
    checkpoints.init_from_checkpoint(ckpt)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return sess.run(outputs)


class ServingOutputsTest(testutil.TestCase):

  def test_serving_outputs_match_the_predict_model_fn(self):
    config = testutil.tiny_config()
    for head, shape in ((heads.TokenClassificationHead(NER_LABELS), [3, SEQ, 5]),
                        (heads.SequenceClassificationHead(NLI_LABELS), [3, 3])):
      d = self.temp_dir()
      ckpt = testutil.write_checkpoint(os.path.join(d, "model.ckpt-1"), config, heads=head.name,
                                       num_labels=head.num_labels)
      batch = _batch(head)
      predicted = _predict_with_model_fn(head, config, ckpt, batch)
      served = _serve(head, config, ckpt, batch)
      self.assertEqual(sorted(served), ["label_ids", "probabilities"])
      self.assertEqual(list(served["probabilities"].shape), shape)
      self.assertEqual(served["probabilities"].dtype, np.float32)
      self.assertEqual(served["label_ids"].dtype, np.int32)
      self.assertEqual(list(served["label_ids"].shape), shape[:-1])
      self.assertAllClose(served["probabilities"], predicted["probabilities"], atol=1e-6)
      self.assertAllEqual(served["label_ids"], predicted["label_ids"])
      self.assertAllEqual(served["label_ids"], np.argmax(served["probabilities"], -1))
      self.assertAllClose(served["probabilities"].sum(-1), np.ones(shape[:-1]), atol=1e-5)
      # The comparison can fail: another checkpoint gives other probabilities.
      other = testutil.write_checkpoint(os.path.join(d, "model.ckpt-2"), config, heads=head.name,
                                        num_labels=head.num_labels, seed=9)
      self.assertGreater(np.max(np.abs(_serve(head, config, other, batch)["probabilities"] -
                                       served["probabilities"])), 1e-3)

  def test_serving_uses_the_training_variable_names(self):
    config = testutil.tiny_config()
    for head in (heads.TokenClassificationHead(NER_LABELS),
                 heads.SequenceClassificationHead(NLI_LABELS)):
      with tf.Graph().as_default():
        ids = tf.zeros([2, SEQ], tf.int32)
        head.serving_outputs(config, ids, tf.ones_like(ids), ids)
        serving = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
      with tf.Graph().as_default():
        features = {k: tf.constant(v) for k, v in _batch(head, 2).items()}
        head.create_model(config, True, features, tf.ones([2]), False)
        training = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
      self.assertEqual(serving, training)
      self.assertEqual(serving["output_weights"], [head.num_labels, config.hidden_size])


class HeadRecordTest(testutil.TestCase):

  def test_round_trip(self):
    for head, task in ((heads.TokenClassificationHead(NER_LABELS), tasks.get_task("conll")),
                       (heads.SequenceClassificationHead(NLI_LABELS), tasks.get_task("mednli"))):
      d = self.temp_dir()
      path = head_record.write(d, head, task, False, 24)
      self.assertEqual(path, os.path.join(d, checkpoints.HEAD_RECORD_FILE))
      record = head_record.read(d)
      rules = {"conll": "lines_punctuation", "mednli": "sentence_pairs"}[task.name]
      self.assertEqual(record.to_dict(), {"head": head.name, "labels": head.label_list,
                                          "task_name": task.name, "do_lower_case": False,
                                          "max_seq_length": 24, "word_rules": rules})
      self.assertEqual((record.head, record.labels, record.word_rules, record.max_seq_length),
                       (head.name, head.label_list, rules, 24))
      again = record.make_head()
      self.assertIs(type(again), type(head))
      self.assertEqual(again.name, head.name)
      self.assertEqual(again.label_list, head.label_list)

  def test_word_rules_of_the_task(self):
    head = heads.TokenClassificationHead(NER_LABELS)
    for name, rules in (("conll", "lines_punctuation"), ("i2b2_2010", "lines_punctuation"),
                        ("i2b2_2014", "lines_whitespace"), ("i2b2_2006", "lines_whitespace")):
      d = self.temp_dir()
      head_record.write(d, head, tasks.get_task(name), False, 24)
      self.assertEqual(head_record.read(d).word_rules, rules, name)

  def test_older_records_get_the_heads_default_word_rules(self):
    d = self.temp_dir()
    with open(os.path.join(d, checkpoints.HEAD_RECORD_FILE), "w") as f:
      json.dump({"head": "token_classification", "labels": NER_LABELS}, f)
    record = head_record.read(d)
    self.assertEqual(record.word_rules, "lines_whitespace")
    # A copy (a SavedModel's asset) keeps the keys in their order and fills the word rules in.
    self.assertEqual(list(record.to_dict()), ["head", "labels", "word_rules"])
    self.assertIsNone(head_record.read(self.temp_dir(), required=False))

  def test_model_directory_is_self_contained(self):
    source = self.temp_dir()
    vocab_file = testutil.write_vocab(source)
    config_file = testutil.write_config(source, testutil.tiny_config())
    model_dir = self.temp_dir()
    task = tasks.get_task("i2b2_2014")
    head_record.write(model_dir, heads.TokenClassificationHead(NER_LABELS), task, False, 24,
                      bert_config_file=config_file, vocab_file=vocab_file)
    for name, original in ((checkpoints.BERT_CONFIG_FILE, config_file),
                           (checkpoints.VOCAB_FILE, vocab_file)):
      with open(os.path.join(model_dir, name), "rb") as copy, open(original, "rb") as f:
        self.assertEqual(copy.read(), f.read())
    self.assertEqual(head_record.read(model_dir).word_rules, "lines_whitespace")
    # Writing into the directory the files already come from leaves them alone.
    head_record.write(source, heads.TokenClassificationHead(NER_LABELS), task, False, 24,
                      bert_config_file=config_file, vocab_file=vocab_file)
    self.assertEqual(sorted(os.listdir(source)),
                     sorted([checkpoints.BERT_CONFIG_FILE, checkpoints.VOCAB_FILE,
                             checkpoints.HEAD_RECORD_FILE]))

  def test_missing_or_malformed_records_name_the_file(self):
    d = self.temp_dir()
    path = os.path.join(d, checkpoints.HEAD_RECORD_FILE)
    with self.assertRaisesRegex(fileio.InputError, "finetune_head.json cannot be read"):
      head_record.read(d)
    for text, message in (("{", "is not valid JSON"), ("[1]", "expected a JSON object"),
                          (json.dumps({"head": "pretraining", "labels": ["a"]}),
                           "\"head\" is 'pretraining'"),
                          (json.dumps({"head": "token_classification"}), "\"labels\" must be"),
                          (json.dumps({"head": "token_classification", "labels": ["O"],
                                       "word_rules": "sentence_pairs"}),
                           "word_rules 'sentence_pairs' do not fit a token_classification head"),
                          (json.dumps({"head": "token_classification", "labels": ["O"],
                                       "word_rules": "by_magic"}),
                           "word_rules 'by_magic' is not one of")):
      with open(path, "w") as f:
        f.write(text)
      with self.assertRaisesRegex(fileio.InputError, "%s.*%s" % (path, message)):
        head_record.read(d)
    with self.assertRaisesRegex(fileio.InputError, "finetune_head.json: \"head\" is None"):
      head_record.HeadRecord.from_dict({"labels": ["O"]})

  def test_head_for_task(self):
    self.assertIsInstance(heads.head_for_task(tasks.get_task("conll"), ["O"]),
                          heads.TokenClassificationHead)
    self.assertIsInstance(heads.head_for_task(tasks.get_task("mednli"), NLI_LABELS),
                          heads.SequenceClassificationHead)
    self.assertEqual(heads.head_for_task(tasks.get_task("mednli"), NLI_LABELS).metric,
                     "accuracy")
    self.assertIsInstance(heads.head_for_task(tasks.get_task("conll"), ["O"],
                                              "token_classification"),
                          heads.TokenClassificationHead)
    with self.assertRaisesRegex(fileio.InputError, "--head=sequence_classification does not fit "
                                "task conll"):
      heads.head_for_task(tasks.get_task("conll"), ["O"], "sequence_classification")
    with self.assertRaisesRegex(fileio.InputError, "'crf' is not a head"):
      heads.head_for_task(tasks.get_task("conll"), ["O"], "crf")


class HeadRegistryTest(testutil.TestCase):
  """A new head is one class and one `register_head` line, and the application side follows."""

  def test_a_registered_head_is_chosen_by_name_and_read_from_its_record(self):

    class CrfLikeHead(heads.TokenClassificationHead):
      name = "crf_test"
      hf_architecture = None

    heads.register_head(CrfLikeHead)
    try:
      self.assertEqual(heads.heads_for_task(tasks.get_task("conll")),
                       ["token_classification", "crf_test"])
      head = heads.head_for_task(tasks.get_task("conll"), NER_LABELS, "crf_test")
      self.assertIsInstance(head, CrfLikeHead)
      d = self.temp_dir()
      head_record.write(d, head, tasks.get_task("conll"), False, 24)
      self.assertIsInstance(head_record.read(d).make_head(), CrfLikeHead)
      self.assertNotIn("crf_test", heads.hf_architectures())
    finally:
      heads._HEADS.pop("crf_test")  # pylint: disable=protected-access

  def test_hf_architectures_come_from_the_heads(self):
    self.assertEqual(heads.hf_architectures(),
                     {"token_classification": "BertForTokenClassification",
                      "sequence_classification": "BertForSequenceClassification"})
    self.assertEqual(heads.head_of_hf_architectures(["BertForTokenClassification"]),
                     "token_classification")
    self.assertEqual(heads.head_of_hf_architectures(["Other"], "x"), "x")

  def test_decoding_is_the_heads(self):
    head = heads.TokenClassificationHead(["O", "B-x", "I-x"])
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7], [0.9, 0.05, 0.05]], np.float32)
    self.assertEqual(head.decode(probabilities)[0], ["O", "I-x", "O"])
    # P(not O) = 0.4 >= 0.35: the most probable entity label instead of O.
    self.assertEqual(head.decode(probabilities, 0.35)[0], ["B-x", "I-x", "O"])
    pair = heads.SequenceClassificationHead(NLI_LABELS)
    self.assertEqual(pair.decode(np.array([0.1, 0.7, 0.2])),
                     ("entailment", {"contradiction": 0.1, "entailment": 0.7, "neutral": 0.2}))
    self.assertEqual((head.output, pair.output), (heads.WORD_LABELS, heads.PAIR_LABEL))


class WordPredictionTest(testutil.TestCase):

  def _windows(self):
    d = self.temp_dir()
    tokenizer = tokenization.FullTokenizer(testutil.write_vocab(d), do_lower_case=False)
    words = ("patient denies chest pain and shortness of breath with fever cough history of "
             "hypertension diabetes kidney disease").split()
    # Labels are all "O" at prediction time; the windows do not depend on them.
    examples = [tasks.TaggedSentence("s0", words, ["O"] * len(words)),
                tasks.TaggedSentence("s1", words[:3], ["O"] * 3)]
    head = heads.TokenClassificationHead(NER_LABELS)
    features = head.convert_examples(examples, 10, tokenizer, "test")
    self.assertGreater(len(features), 3)  # the long sentence needs several windows
    return head, examples, features

  def test_each_word_from_its_own_window_and_first_piece(self):
    head, examples, features = self._windows()
    # Window k's probabilities at position p: [k, p, 0, 0, 0] (not probabilities, but traceable).
    probabilities = [np.stack([np.array([k, p, 0, 0, 0], np.float32) for p in range(10)])
                     for k in range(len(features))]
    rows = head.word_probabilities(examples, features, probabilities)
    self.assertEqual([r.shape for r in rows], [(len(e.words), 5) for e in examples])
    self.assertEqual(rows[0].dtype, np.float32)
    for example_index, (example, row) in enumerate(zip(examples, rows)):
      for word in range(len(example.words)):
        k, p = int(row[word][0]), int(row[word][1])
        feature = features[k]
        self.assertEqual(feature.example_index, example_index)
        self.assertEqual(feature.label_mask[p], 1)
        self.assertEqual(feature.word_indexes[sum(feature.label_mask[:p])], word)
    # assemble_predictions: the label of each word's position, from "label_ids".
    outputs = [{"label_ids": np.full([10], k % 5)} for k in range(len(features))]
    predicted = head.assemble_predictions(examples, features, outputs)
    for example, labels, row in zip(examples, predicted, rows):
      self.assertEqual(labels, [NER_LABELS[int(k) % 5] for k in row[:, 0]])

  def test_a_word_predicted_twice_or_never_is_an_error(self):
    head, examples, features = self._windows()
    outputs = [{"label_ids": np.zeros([10], np.int32)} for _ in features]
    self.assertLen(head.assemble_predictions(examples, features, outputs), 2)
    twice = features + [features[0]]
    with self.assertRaisesRegex(RuntimeError, "predicted twice"):
      head.assemble_predictions(examples, twice, outputs + outputs[:1])
    never = features[1:]
    with self.assertRaisesRegex(RuntimeError, "a word got no prediction"):
      head.assemble_predictions(examples, never, outputs[1:])
    # Padding windows are skipped, so they may come with no output.
    padded = features + [head.padding_feature(10)]
    self.assertLen(head.assemble_predictions(examples, padded, outputs), 2)


if __name__ == "__main__":
  absltest.main()
