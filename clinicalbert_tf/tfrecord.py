"""tf.train.Example protobuf bytes and TFRecord framing, written without TensorFlow.

Every record writer of the package goes through this module; its output is byte-identical to
`tf.io.TFRecordWriter` writing `tf.train.Example(...).SerializeToString()` (protobuf 4.25, upb).

The format:
  * an Example is the protobuf message `Example{Features features = 1}`,
    `Features{map<string, Feature> feature = 1}`, `Feature{oneof {BytesList = 1, FloatList = 2,
    Int64List = 3}}`, each list one packed `repeated value = 1` (int64 as varints, a negative one
    as its 10-byte two's complement; float as 4 little-endian bytes). A map entry is a nested
    message `{key = 1, value = 2}`; an empty list is an empty list message without `value`;
  * protobuf writes the map entries in the order of its hash table, which depends on the keys and on
    the order they were inserted, not on the values: `serialized_feature_order` reads that order off
    one small Example serialized by protobuf itself, once per set of names;
  * a TFRecord file is a sequence of records, each: the data's length (uint64 little-endian), the
    masked CRC-32C of those 8 bytes (uint32 LE), the data, the masked CRC-32C of the data (uint32
    LE); masking is `((crc >> 15) | (crc << 17)) + 0xa282ead8` mod 2**32.

Why by hand: speed, bounded memory and no TensorFlow import. `encode_examples` and
`frame_tfrecords` work on batches of thousands of records at once with numpy, where protobuf objects
and one writer call per record dominate Google's create_pretraining_data run; memory stays bounded
by the batch; and a writer that needs nothing else from TensorFlow does not import it
(create_pretraining_data.py never does).
"""

import collections
import operator

import numpy as np

from clinicalbert_tf import fileio

# Serialized records per write when framing a stream of records (bounded working memory).
_FRAME_BATCH = 4096

_INT64_MIN = -(1 << 63)
_UINT64_MASK = (1 << 64) - 1


def _varint_bytes(n):
  """The protobuf varint of the non-negative integer `n`."""
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _varint_len(values):
  """Varint byte counts (int64 array) of non-negative integers below 2**35 (numpy, any shape)."""
  v = np.asarray(values)
  if v.size and int(v.max()) < 1 << 16:
    return np.take(_VARINT_LEN, v).astype(np.int64)
  n = np.ones(v.shape, np.int64)
  for bits in (7, 14, 21, 28):
    n += v >= (1 << bits)
  return n


def _varint_tables():
  v = np.arange(1 << 16, dtype=np.int64)
  lengths = 1 + (v >= 1 << 7) + (v >= 1 << 14)
  slots = np.empty((1 << 16, 3), np.uint8)
  for s in range(3):
    slots[:, s] = ((v >> (7 * s)) & 0x7F) | ((lengths > s + 1) << 7)
  mask = np.arange(3)[None, :] < lengths[:, None]
  # Contiguous tables per slot count (np.take on a column slice would copy the table every call).
  return ({w: np.ascontiguousarray(slots[:, :w]) for w in (2, 3)},
          {w: np.ascontiguousarray(mask[:, :w]) for w in (2, 3)}, lengths.astype(np.uint8))


# Varint bytes and their validity (2 or 3 slots) and byte count, for every value below 2**16.
_VARINT_SLOTS, _VARINT_MASK, _VARINT_LEN = _varint_tables()


class _Pieces(object):
  """Builds many records at once as rows of byte slots plus a validity mask per slot.

  Each appended piece is a block of columns; a record's bytes are its valid slots read left to
  right, so `join` extracts every record, in order, with one boolean selection.
  """

  def __init__(self, num_records):
    self.n = num_records
    self.bytes = []
    self.masks = []

  def const(self, data):
    row = np.frombuffer(data, np.uint8)
    self.bytes.append(np.broadcast_to(row, (self.n, len(row))))
    self.masks.append(np.broadcast_to(True, (self.n, len(row))))

  def raw(self, matrix):
    """Appends fixed-width bytes ([n, w] uint8)."""
    self.bytes.append(matrix)
    self.masks.append(np.broadcast_to(True, matrix.shape))

  def varints(self, values, lengths=None):
    """Appends the varints of `values` ([n, k] non-negative integers below 2**35)."""
    v = np.asarray(values)
    if lengths is None:
      lengths = _varint_len(v)
    width = int(lengths.max()) if lengths.size else 1
    if width == 1:
      self.raw(v.astype(np.uint8))
      return
    if width <= 3 and int(v.max()) < 1 << 16:
      # Values below 65,536 (word-piece ids of most vocabularies): look the bytes up.
      slots = np.take(_VARINT_SLOTS[width], v, axis=0)
      mask = np.take(_VARINT_MASK[width], v, axis=0)
    else:
      v = v.astype(np.int64)
      slots = np.empty(v.shape + (width,), np.uint8)
      for s in range(width):
        slots[..., s] = ((v >> (7 * s)) & 0x7F) | ((lengths > s + 1) << 7)
      mask = np.arange(width)[None, None, :] < lengths[..., None]
    self.bytes.append(slots.reshape(self.n, -1))
    self.masks.append(mask.reshape(self.n, -1))

  def join(self, lengths=None):
    """Returns (flat uint8 data of all records in order, per-record lengths as int64).

    `lengths`, when the caller knows them, saves counting the valid slots.
    """
    data = np.concatenate(self.bytes, axis=1)
    mask = np.concatenate(self.masks, axis=1)
    if lengths is None:
      lengths = mask.sum(axis=1).astype(np.int64)
    return data[mask], lengths


def encode_examples(columns):
  """Serializes a batch of tf.train.Examples exactly as protobuf's `SerializeToString()` does.

  Args:
    columns: a sequence of (feature name, [n, k] array) in the order protobuf writes the map entries
      (`serialized_feature_order`); an array of non-negative integers below 2**35 is an Int64List
      feature, a float32 array a FloatList feature. Every record has k values of each feature.

  Returns:
    (data, lengths): the concatenated serialized records (uint8 array) and each one's length.
  """
  n = columns[0][1].shape[0] if columns else 0
  # First the length of every nested message, per record (they prefix the messages).
  parts = []
  features_len = np.zeros(n, np.int64)
  for name, values in columns:
    key = name.encode("utf-8")
    count = values.shape[1]
    is_float = values.dtype.kind == "f"
    if is_float:
      payload_lens = None
      packed_len = np.full(n, 4 * count, np.int64)
      list_tag = b"\x12"  # Feature.float_list
    else:
      if count and int(values.max()) < 128:
        payload_lens = None  # one byte per value
        packed_len = np.full(n, count, np.int64)
      else:
        payload_lens = _varint_len(values)
        packed_len = payload_lens.sum(axis=1)
      list_tag = b"\x1a"  # Feature.int64_list
    if count:  # a packed field with no values is not written at all
      list_len = 1 + _varint_len(packed_len) + packed_len
    else:
      list_len = np.zeros(n, np.int64)
    feature_len = 1 + _varint_len(list_len) + list_len
    entry_len = len(_entry_key(key)) + _varint_len(feature_len) + feature_len
    features_len += 1 + _varint_len(entry_len) + entry_len
    parts.append((key, values, is_float, payload_lens, packed_len, list_tag, count, list_len,
                  feature_len, entry_len))

  pieces = _Pieces(n)
  pieces.const(b"\x0a")  # Example.features
  pieces.varints(features_len[:, None])
  for (key, values, is_float, payload_lens, packed_len, list_tag, count, list_len, feature_len,
       entry_len) in parts:
    pieces.const(b"\x0a")  # an entry of the Features.feature map
    pieces.varints(entry_len[:, None])
    pieces.const(_entry_key(key))  # key, then the value's tag
    pieces.varints(feature_len[:, None])
    pieces.const(list_tag)
    pieces.varints(list_len[:, None])
    if count:
      pieces.const(b"\x0a")  # the packed `value` field
      pieces.varints(packed_len[:, None])
      if is_float:
        pieces.raw(np.ascontiguousarray(values, dtype="<f4").view(np.uint8).reshape(n, -1))
      elif payload_lens is None:
        pieces.raw(values.astype(np.uint8))
      else:
        pieces.varints(values, payload_lens)
  return pieces.join(1 + _varint_len(features_len) + features_len)


def _entry_key(key):
  """The bytes of a map entry from its key field to the tag of its value (a Feature message)."""
  return b"\x0a" + _varint_bytes(len(key)) + key + b"\x12"


_CRC32C_POLY = 0x82F63B78


def _crc_tables():
  """Tables for CRC-32C four bytes at a time, and the usual one-byte table."""
  def shift(values, nbits):
    r = values.copy()
    for _ in range(nbits):
      r = np.where(r & 1, (r >> 1) ^ np.uint32(_CRC32C_POLY), r >> 1).astype(np.uint32)
    return r
  # The register shift is linear: a 16-bit table is the XOR of two 256-entry ones (fast to build).
  b = np.arange(256, dtype=np.uint32)
  x = np.arange(1 << 16, dtype=np.uint32)

  def table(bits_at):
    low, high = shift(b << np.uint32(bits_at), 32), shift(b << np.uint32(bits_at + 8), 32)
    return (low[x & 0xFF] ^ high[x >> 8]).astype("<u4")
  # register' = LO[v & 0xFFFF] ^ HI[v >> 16] where v = register ^ (next 4 bytes, little-endian).
  return table(0), table(16), [int(v) for v in shift(b, 8)]


_CRC_LO, _CRC_HI, _CRC_BYTE = _crc_tables()
# _INIT_EFFECT[k]: what the initial register value 0xFFFFFFFF has become after k bytes, all else 0.
_INIT_EFFECT = [0xFFFFFFFF]


def _init_effects(lengths):
  """The linear contribution of the initial register to the CRC of each length in `lengths`."""
  top = int(lengths.max())
  table = _INIT_EFFECT
  while len(table) <= top:
    r = table[-1]
    table.append(_CRC_BYTE[r & 0xFF] ^ (r >> 8))
  return np.array(table, np.uint32)[lengths]


def _right_aligned(data, lengths):
  """Strings stored back to back in `data`, as the rows of a zero-padded [n, width] uint8 matrix.

  Returns (matrix, mask of the bytes that are the strings'): each row is a string right-aligned,
  width a multiple of 4; one masked assignment fills every row in order.
  """
  n = len(lengths)
  width = (int(lengths.max()) + 3) // 4 * 4
  mat = np.zeros((n, width), np.uint8)
  right = np.arange(width)[None, :] >= (width - lengths)[:, None]
  mat[right] = np.frombuffer(data, np.uint8, count=int(lengths.sum()))
  return mat, right


def _crc32c_rows(mat, lengths):
  """CRC-32C of the right-aligned strings of `mat` (`_right_aligned`), of lengths `lengths`.

  The rows run through the CRC register starting from 0 four bytes at a time; leading zeros then
  change nothing (the CRC is linear), and the standard initial value's contribution, which depends
  only on the length, is added at the end.
  """
  n, width = mat.shape
  # [word, half, record]: register' = LO[low half of v] ^ HI[high half], v = register ^ word.
  halves = np.ascontiguousarray(mat.view("<u2").reshape(n, width // 4, 2).transpose(1, 2, 0))
  reg = np.zeros(n, "<u4")
  lo, hi = _CRC_LO, _CRC_HI
  for word in halves:
    reg16 = reg.view("<u2").reshape(n, 2)
    reg = lo.take(reg16[:, 0] ^ word[0]) ^ hi.take(reg16[:, 1] ^ word[1])
  return reg ^ _init_effects(lengths) ^ np.uint32(0xFFFFFFFF)


def crc32c_batch(data, starts, lengths):
  """CRC-32C (Castagnoli) of many byte strings at once.

  Args:
    data: bytes-like holding the strings.
    starts, lengths: int64 arrays locating each string in `data`.
  """
  n = len(lengths)
  if n == 0:
    return np.zeros(0, np.uint32)
  starts = np.asarray(starts, np.int64)
  lengths = np.asarray(lengths, np.int64)
  if int(starts[0]) == 0 and np.array_equal(starts[1:], np.cumsum(lengths)[:-1]):
    return _crc32c_rows(_right_aligned(data, lengths)[0], lengths)
  view = memoryview(data)
  joined = b"".join(view[s:s + k] for s, k in zip(starts.tolist(), lengths.tolist()))
  return _crc32c_rows(_right_aligned(joined, lengths)[0], lengths)


def masked_crc32c_batch(data, starts, lengths):
  """TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8, mod 2**32."""
  return _mask_crc(crc32c_batch(data, starts, lengths))


def _mask_crc(crc):
  crc = crc.astype(np.uint64)
  return ((((crc >> np.uint64(15)) | (crc << np.uint64(17))) + np.uint64(0xA282EAD8)) &
          np.uint64(0xFFFFFFFF)).astype(np.uint32)


def frame_tfrecords(data, lengths):
  """TFRecord framing of serialized records: returns the bytes to append to a .tfrecord file.

  Each record is: its length (uint64 LE), the masked CRC-32C of those 8 bytes (uint32 LE), the data,
  the masked CRC-32C of the data (uint32 LE).
  """
  n = len(lengths)
  if n == 0:
    return b""
  lengths = np.asarray(lengths, np.int64)
  header = lengths.astype("<u8").view(np.uint8).reshape(n, 8)
  rows, right = _right_aligned(data, lengths)
  crcs = np.empty((n, 2), "<u4")  # [header CRC, data CRC], masked
  crcs[:, 0] = _mask_crc(_crc32c_rows(header, np.full(n, 8, np.int64)))
  crcs[:, 1] = _mask_crc(_crc32c_rows(rows, lengths))
  crc_bytes = crcs.view(np.uint8)
  # One row per record: header, its CRC, the right-aligned data, the data's CRC; then the valid
  # bytes in order.
  table = np.concatenate([header, crc_bytes[:, :4], rows, crc_bytes[:, 4:]], axis=1)
  keep = np.concatenate([np.ones((n, 12), bool), right, np.ones((n, 4), bool)], axis=1)
  return table[keep].tobytes()


def crc32c(data):
  """CRC-32C (Castagnoli) of one byte string, as an int."""
  return int(crc32c_batch(data, np.array([0], np.int64), np.array([len(data)], np.int64))[0])


# --------------------------------------------------------------------------------------------------
# Records of int64 features, one at a time (the fine-tuning features)

# Protobuf's serialized map order per tuple of feature names (in insertion order).
_ORDER_CACHE = {}


def serialized_feature_order(names):
  """The order in which protobuf serializes the entries of a Features map built in `names` order.

  The order is that of upb's hash table (fixed for a given sequence of keys, the same in every
  process), so it is read off one Example with one value per feature, serialized by protobuf
  itself, and remembered. This imports TensorFlow the first time a set of names is seen.
  """
  names = tuple(names)
  order = _ORDER_CACHE.get(names)
  if order is None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    feature = collections.OrderedDict(
        (name, tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))) for name in names)
    data = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    order = _ORDER_CACHE[names] = tuple(_entry_keys(data))
  return order


def _read_varint(data, pos):
  """(value, next position) of the varint at data[pos]."""
  value = shift = 0
  while True:
    b = data[pos]
    pos += 1
    value |= (b & 0x7F) << shift
    shift += 7
    if b < 0x80:
      return value, pos


def _entry_keys(example):
  """Yields the feature names of a serialized Example, in the order of their map entries."""
  _, pos = _read_varint(example, 1)  # Example.features: tag 0x0a, then the length
  while pos < len(example):
    entry_len, pos = _read_varint(example, pos + 1)  # tag 0x0a: one map entry
    key_len, key_pos = _read_varint(example, pos + 1)  # the entry's key field, tag 0x0a
    yield example[key_pos:key_pos + key_len].decode("utf-8")
    pos += entry_len


def _packed_int64(values, name):
  """The packed varints of int64 `values` (ints, bools or numpy integers; not floats)."""
  values = [operator.index(v) for v in values]
  if not values:
    return b""
  low, high = min(values), max(values)
  if low >= 0 and high < 128:
    return bytes(values)
  if low < _INT64_MIN or high > -_INT64_MIN - 1:
    raise ValueError("feature %s: value out of the int64 range" % name)
  return b"".join(_varint_bytes(v & _UINT64_MASK) for v in values)


def encode_int64_example(record, order=None):
  """Serializes one Example of Int64List features exactly as protobuf does.

  Args:
    record: a mapping (in insertion order, as the Example would be built) of feature name -> list of
      integers.
    order: `serialized_feature_order(record)`, if the caller has it already.

  Returns:
    bytes: `tf.train.Example(features=tf.train.Features(feature={name: Feature(int64_list=
    Int64List(value=values))})).SerializeToString()`.
  """
  if order is None:
    order = serialized_feature_order(record)
  entries = []
  for name in order:
    packed = _packed_int64(record[name], name)
    int64_list = b"\x0a" + _varint_bytes(len(packed)) + packed if packed else b""
    feature = b"\x1a" + _varint_bytes(len(int64_list)) + int64_list  # Feature.int64_list
    entry = _entry_key(name.encode("utf-8")) + _varint_bytes(len(feature)) + feature
    entries.append(b"\x0a" + _varint_bytes(len(entry)) + entry)
  features = b"".join(entries)
  return b"\x0a" + _varint_bytes(len(features)) + features


def write_int64_examples(path, records):
  """Writes one tf.train.Example per record to the TFRecord file `path` (atomically).

  The bytes are those of `tf.io.TFRecordWriter` writing
  `tf.train.Example(features=tf.train.Features(feature=...)).SerializeToString()` of each record
  as Int64List features.

  Args:
    path: the output file; it appears only once every record is written.
    records: an iterable of `collections.OrderedDict` feature name -> list of integers.

  Returns:
    the number of records written.
  """
  count = 0
  with fileio.atomic_open(path, "wb") as f:
    batch = []
    for record in records:
      batch.append(encode_int64_example(record, serialized_feature_order(record)))
      if len(batch) >= _FRAME_BATCH:
        f.write(frame_records(batch))
        count += len(batch)
        batch = []
    if batch:
      f.write(frame_records(batch))
      count += len(batch)
  return count


def frame_records(records):
  """TFRecord framing of a list of serialized records (bytes): the bytes to append to a file."""
  return frame_tfrecords(b"".join(records), np.array([len(r) for r in records], np.int64))
