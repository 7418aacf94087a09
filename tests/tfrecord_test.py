"""tfrecord: Example bytes and TFRecord framing checked with protobuf and TensorFlow."""

import collections
import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import tfrecord
from tests import testutil

# The fine-tuning features, in the order the fine-tuning writer builds them.
NER_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids", "label_mask", "is_real_example")
CLASSIFIER_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example")

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _tf_example(record):
  feature = collections.OrderedDict(
      (name, tf.train.Feature(int64_list=tf.train.Int64List(value=values)))
      for name, values in record.items())
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_with_tf(path, records):
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(_tf_example(record))


def _random_values(rng, n):
  """n int64 values mixing 0, small, multi-byte, large, negative and the int64 extremes."""
  kind = rng.integers(0, 6, n)
  values = rng.integers(0, 128, n).astype(object)
  values[kind == 1] = 0
  values[kind == 2] = rng.integers(128, 1 << 20, int((kind == 2).sum()))
  values[kind == 3] = rng.integers(1 << 40, 1 << 62, int((kind == 3).sum()))
  values[kind == 4] = -rng.integers(1, 1 << 62, int((kind == 4).sum()))
  values[kind == 5] = rng.choice([INT64_MAX, INT64_MIN, -1, 127, 128, 16383, 16384], int(
      (kind == 5).sum()))
  return [int(v) for v in values]


def _records(rng, names, count, seq_length, label_length):
  records = []
  for _ in range(count):
    record = collections.OrderedDict()
    for name in names:
      if name == "is_real_example":
        record[name] = [int(rng.integers(0, 2))]
      elif name == "label_ids":
        record[name] = _random_values(rng, label_length)
      else:
        record[name] = _random_values(rng, seq_length)
    records.append(record)
  return records


class Int64ExamplesTest(testutil.TestCase):
  """write_int64_examples writes the bytes of tf.io.TFRecordWriter + tf.train.Example."""

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()

  def assert_same_file(self, records, name):
    ours = os.path.join(self.dir, name + "_ours.tfrecord")
    theirs = os.path.join(self.dir, name + "_tf.tfrecord")
    self.assertEqual(tfrecord.write_int64_examples(ours, iter(records)), len(records))
    _write_with_tf(theirs, records)
    self.assertEqual(_read(ours), _read(theirs), name)
    for record in records:
      self.assertEqual(tfrecord.encode_int64_example(record), _tf_example(record))
    return ours

  def test_token_labelling_features(self):
    rng = np.random.default_rng(0)
    self.assert_same_file(_records(rng, NER_NAMES, 50, 128, 128), "ner")

  def test_sequence_classification_features(self):
    rng = np.random.default_rng(1)
    # label_ids of length 1, no label_mask.
    self.assert_same_file(_records(rng, CLASSIFIER_NAMES, 50, 64, 1), "classifier")

  def test_small_values_long_records_and_empty_lists(self):
    rng = np.random.default_rng(2)
    records = []
    for seq_length in (0, 1, 3, 200, 3000):
      record = collections.OrderedDict()
      record["input_ids"] = [int(v) for v in rng.integers(0, 128, seq_length)]
      record["input_mask"] = [1] * seq_length
      record["segment_ids"] = [0] * seq_length
      record["label_ids"] = [int(v) for v in rng.integers(0, 30000, seq_length)]
      record["label_mask"] = [True] * seq_length
      record["is_real_example"] = [np.int64(1)]
      records.append(record)
    self.assert_same_file(records, "edges")

  def test_more_records_than_one_batch(self):
    rng = np.random.default_rng(3)
    self.assert_same_file(_records(rng, CLASSIFIER_NAMES, tfrecord._FRAME_BATCH + 3, 4, 1), "many")

  def test_map_order_is_protobufs(self):
    # Not insertion order: the hash table's, which depends on the names and their insertion order.
    order = tfrecord.serialized_feature_order(NER_NAMES)
    self.assertCountEqual(order, NER_NAMES)
    self.assertNotEqual(order, NER_NAMES)
    record = collections.OrderedDict((name, [i]) for i, name in enumerate(NER_NAMES))
    data = _tf_example(record)
    positions = [data.index(name.encode()) for name in order]
    self.assertEqual(positions, sorted(positions))
    reversed_record = collections.OrderedDict(reversed(record.items()))
    self.assertEqual(tfrecord.encode_int64_example(reversed_record), _tf_example(reversed_record))

  def test_tf_reads_back_what_is_written(self):
    rng = np.random.default_rng(4)
    records = _records(rng, NER_NAMES, 20, 16, 16)
    path = os.path.join(self.dir, "read_back.tfrecord")
    tfrecord.write_int64_examples(path, records)
    spec = {name: tf.io.VarLenFeature(tf.int64) for name in NER_NAMES}
    with tf.Graph().as_default():
      dataset = tf.data.TFRecordDataset(path).map(lambda x: tf.io.parse_single_example(x, spec))
      element = tf.data.make_one_shot_iterator(dataset).get_next()
      with tf.Session() as sess:
        for record in records:
          got = sess.run(element)
          for name in NER_NAMES:
            self.assertEqual(got[name].values.tolist(), record[name], name)
        with self.assertRaises(tf.errors.OutOfRangeError):
          sess.run(element)

  def test_bad_values_raise_and_leave_no_file(self):
    path = os.path.join(self.dir, "bad.tfrecord")

    def records(bad):
      yield collections.OrderedDict([("input_ids", [1, 2])])
      yield collections.OrderedDict([("input_ids", [bad])])
    with self.assertRaises(TypeError):
      tfrecord.write_int64_examples(path, records(1.5))
    with self.assertRaisesRegex(ValueError, "input_ids"):
      tfrecord.write_int64_examples(path, records(INT64_MAX + 1))
    self.assertEqual(os.listdir(self.dir), [])


class FramingTest(testutil.TestCase):
  """CRC-32C and the TFRecord framing."""

  def test_crc32c_check_value(self):
    data = b"123456789"
    crc = tfrecord.crc32c_batch(data, np.array([0]), np.array([9]))
    self.assertEqual(int(crc[0]), 0xE3069283)
    self.assertEqual(tfrecord.crc32c(data), 0xE3069283)
    self.assertEqual(tfrecord.crc32c(b""), 0)
    self.assertEqual(tfrecord.crc32c(b"\x00" * 32), 0x8A9136AA)  # RFC 3720, B.4

  def test_tfrecord_framing_matches_tf_writer(self):
    rng = np.random.default_rng(1)
    records = [rng.integers(0, 256, size).astype(np.uint8).tobytes()
               for size in [0, 1, 3, 4, 5, 127, 128, 700, 20000]]
    path = os.path.join(self.temp_dir(), "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      for record in records:
        writer.write(record)
    data = np.frombuffer(b"".join(records), np.uint8)
    lengths = np.array([len(r) for r in records], np.int64)
    self.assertEqual(tfrecord.frame_tfrecords(data, lengths), _read(path))
    self.assertEqual(tfrecord.frame_records(records), _read(path))

  def test_tf_reader_accepts_the_checksums(self):
    rng = np.random.default_rng(5)
    records = [rng.integers(0, 256, size).astype(np.uint8).tobytes() for size in [0, 9, 1000]]
    path = os.path.join(self.temp_dir(), "y.tfrecord")
    with open(path, "wb") as f:
      f.write(tfrecord.frame_records(records))
    with tf.Graph().as_default():
      element = tf.data.make_one_shot_iterator(tf.data.TFRecordDataset(path)).get_next()
      with tf.Session() as sess:
        self.assertEqual([sess.run(element) for _ in records], records)
    # A flipped byte in the data fails TensorFlow's check of the masked CRC.
    with open(path, "r+b") as f:
      f.seek(16 + 12 + 5)  # record 0 is empty: 16 bytes of framing
      f.write(bytes([records[1][5] ^ 1]))
    with tf.Graph().as_default():
      element = tf.data.make_one_shot_iterator(tf.data.TFRecordDataset(path)).get_next()
      with tf.Session() as sess:
        sess.run(element)
        with self.assertRaises(tf.errors.DataLossError):
          sess.run(element)


if __name__ == "__main__":
  absltest.main()
