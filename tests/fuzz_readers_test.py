"""Fuzzed readers: every mutated or truncated input is read or refused with `fileio.InputError`.

Each test takes a valid invented input (from `testdata/`, or written by `testutil`), applies a few
random mutations -- byte flips, truncation at a random point, inserted quotes / `<` / `&` / NUL /
invalid UTF-8 / line breaks, deleted or repeated lines -- and runs one reader on the result. The
property: the run either succeeds or raises `fileio.InputError` (the one-line error every script
prints), never any other exception; where the reader is part of a writer (IOB conversion,
format_notes), a refused run leaves no file under a final name in its output folder.

Profiles (Hypothesis settings, `HYPOTHESIS_PROFILE` picks one):
  ci        (default) a few seconds per reader, derandomized: every run tries the same inputs;
  thorough  many more examples, random seeds, for a manual run:
            HYPOTHESIS_PROFILE=thorough PYTHONSAFEPATH=1 PYTHONPATH=. \
                .venv/bin/python tests/fuzz_readers_test.py

A failing example is printed by Hypothesis (the mutations applied); the ci profile reproduces it.
Everything read here is invented, never real clinical data.
"""

import gzip
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st

from clinicalbert_tf import fileio
from tests import testutil

hypothesis.settings.register_profile(
    "ci", max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "thorough", max_examples=3000, deadline=None, database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(fraction):
  """Settings with `fraction` of the profile's examples (for readers that cost more per example)."""
  return hypothesis.settings(max_examples=max(5, int(hypothesis.settings.default.max_examples *
                                                     fraction)))

TESTDATA = os.path.join(testutil.REPO, "testdata")

# Bytes that break parsers: quotes, markup, NUL, bytes that are not UTF-8 (a lone continuation byte,
# a cut multi-byte sequence, a byte-order mark), line breaks, separators.
_INSERTS = (b'"', b"'", b"<", b">", b"&", b"&#0;", b"]]>", b"<!--", b"\x00", b"\xff", b"\x80",
            b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf", b"\n", b"\r", b"\r\n", b"\t", b",", b" ", b"{",
            b"}", b"[", b"||", b"\\", b"-DOCSTART-", b"B-", b"I-x", b"0", b"99999999999999999999")

_MUTATION = st.tuples(
    st.sampled_from(("flip", "truncate", "insert", "delete_line", "repeat_line", "delete")),
    st.integers(min_value=0, max_value=1 << 30),   # where (taken modulo the length)
    st.integers(min_value=1, max_value=255),       # the xor mask of a flip / bytes deleted
    st.sampled_from(_INSERTS))
MUTATIONS = st.lists(_MUTATION, min_size=1, max_size=4)


def mutate(data, mutations):
  """`data` (bytes) with `mutations` (drawn from MUTATIONS) applied in order."""
  for kind, where, value, insert in mutations:
    if kind == "flip" and data:
      i = where % len(data)
      data = data[:i] + bytes([data[i] ^ value]) + data[i + 1:]
    elif kind == "truncate":
      data = data[:where % (len(data) + 1)]
    elif kind == "insert":
      i = where % (len(data) + 1)
      data = data[:i] + insert + data[i:]
    elif kind == "delete":
      i = where % (len(data) + 1)
      data = data[:i] + data[i + value:]
    elif kind in ("delete_line", "repeat_line"):
      lines = data.split(b"\n")
      i = where % len(lines)
      lines[i:i + 1] = [] if kind == "delete_line" else [lines[i], lines[i]]
      data = b"\n".join(lines)
  return data


def read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def write_bytes(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def files_under(root):
  """Relative paths of the files under `root`, sorted."""
  found = []
  for folder, _, names in os.walk(root):
    for name in names:
      found.append(os.path.relpath(os.path.join(folder, name), root))
  return sorted(found)


class FuzzCase(testutil.TestCase):
  """Runs a reader on mutated inputs in a fresh folder per example."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = cls.class_temp_dir()

  def example_dir(self):
    # Hypothesis runs many examples inside one test: each gets its own folder, removed after it.
    path = tempfile.mkdtemp(dir=self.root)
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def assert_reads_or_refuses(self, read, what):
    """Calls `read()`; True if it succeeded, False on InputError; fails on any other exception."""
    try:
      read()
      return True
    except fileio.InputError as e:
      message = str(e)
      self.assertTrue(message.strip(), "%s: an empty InputError" % what)
      self.assertNotIn("\n", message.strip(), "%s: the error is not one line: %r" % (what, message))
      return False
    except Exception as e:  # pylint: disable=broad-except
      raise AssertionError("%s: %s: %s (expected success or fileio.InputError)" %
                           (what, type(e).__name__, e)) from e

  def copy_tree_mutated(self, source, mutations, choice):
    """A copy of folder `source` with one of its files (picked by `choice`) mutated."""
    target = os.path.join(self.example_dir(), os.path.basename(source))
    shutil.copytree(source, target)
    names = files_under(target)
    name = names[choice % len(names)]
    path = os.path.join(target, name)
    write_bytes(path, mutate(read_bytes(path), mutations))
    return target, name


class TaskReadersTest(FuzzCase):
  """The fine-tuning readers (tasks/) on mutated native files."""

  def check_task(self, task_name, source, mutations, choice, convert=False):
    from clinicalbert_tf import tasks  # pylint: disable=g-import-not-at-top
    data_dir, name = self.copy_tree_mutated(source, mutations, choice)
    what = "%s with %s mutated by %r" % (task_name, name, mutations)
    task = tasks.get_task(task_name)
    ok = self.assert_reads_or_refuses(lambda: task.get_labels(data_dir), what)
    for split in tasks.SPLITS:
      ok = self.assert_reads_or_refuses(
          lambda split=split: task.get_examples(data_dir, split), what) and ok
    if convert:
      output_dir = os.path.join(self.example_dir(), "iob")
      os.makedirs(output_dir)
      converted = self.assert_reads_or_refuses(
          lambda: tasks.convert_to_iob(tasks.get_task(task_name), data_dir, output_dir), what)
      if converted:
        self.assertLen([n for n in os.listdir(output_dir) if n.endswith(".tsv")], 3, what)
      else:
        # Refused: nothing under a final name (no split written before a later one failed).
        self.assertEqual(os.listdir(output_dir), [], what)
      self.assertEqual(converted, ok, what)

  @examples(0.6)
  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_i2b2_2006(self, mutations, choice):
    self.check_task("i2b2_2006", os.path.join(TESTDATA, "i2b2_2006"), mutations, choice,
                    convert=True)

  @examples(0.6)
  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_i2b2_2010(self, mutations, choice):
    self.check_task("i2b2_2010", os.path.join(TESTDATA, "i2b2_2010"), mutations, choice,
                    convert=True)

  @examples(0.6)
  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_i2b2_2012(self, mutations, choice):
    self.check_task("i2b2_2012", os.path.join(TESTDATA, "i2b2_2012"), mutations, choice,
                    convert=True)

  @examples(0.6)
  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_i2b2_2014(self, mutations, choice):
    self.check_task("i2b2_2014", os.path.join(TESTDATA, "i2b2_2014"), mutations, choice,
                    convert=True)

  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_mednli(self, mutations, choice):
    self.check_task("mednli", os.path.join(TESTDATA, "mednli"), mutations, choice)

  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_conll(self, mutations, choice):
    self.check_task("conll", os.path.join(TESTDATA, "conll"), mutations, choice)

  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_glue_mrpc(self, mutations, choice):
    self.check_task("mrpc", os.path.join(TESTDATA, "glue", "MRPC"), mutations, choice)

  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_glue_cola(self, mutations, choice):
    self.check_task("cola", os.path.join(TESTDATA, "glue", "CoLA"), mutations, choice)


class IobFoldersTest(FuzzCase):
  """The authors' IOB folders (tasks/iob_folders.py), written from the i2b2 2010 sample."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from clinicalbert_tf import tasks  # pylint: disable=g-import-not-at-top
    cls.iob_dir = os.path.join(cls.root, "iob_2010")
    os.makedirs(cls.iob_dir)
    tasks.convert_to_iob(tasks.get_task("i2b2_2010"), os.path.join(TESTDATA, "i2b2_2010"),
                         cls.iob_dir)
    for name in os.listdir(cls.iob_dir):
      if not name.endswith(".tsv"):
        os.remove(os.path.join(cls.iob_dir, name))  # sidecars

  @hypothesis.given(MUTATIONS, st.integers(min_value=0, max_value=100))
  def test_iob_folder(self, mutations, choice):
    from clinicalbert_tf import tasks  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.tasks import iob_folders  # pylint: disable=g-import-not-at-top
    data_dir, name = self.copy_tree_mutated(self.iob_dir, mutations, choice)
    what = "IOB folder with %s mutated by %r" % (name, mutations)
    native = tasks.get_task("i2b2_2010")
    self.assertTrue(iob_folders.holds_iob_files(native, data_dir), what)
    task = iob_folders.IobFolderTask(native)
    for split in tasks.SPLITS:
      self.assert_reads_or_refuses(lambda split=split: task.get_examples(data_dir, split), what)


class NoteEventsTest(FuzzCase):
  """The NOTEEVENTS reader (plain and gzip) and format_notes over it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.csv = read_bytes(os.path.join(TESTDATA, "NOTEEVENTS_sample.csv"))

  def read_all(self, path):
    from clinicalbert_tf.notes import noteevents  # pylint: disable=g-import-not-at-top
    with noteevents.NoteEventsReader(path) as reader:
      for row in reader:
        if isinstance(row, noteevents.NoteRow):
          row.get("SUBJECT_ID")

  @hypothesis.given(MUTATIONS)
  def test_csv(self, mutations):
    path = os.path.join(self.example_dir(), "NOTEEVENTS.csv")
    write_bytes(path, mutate(self.csv, mutations))
    self.assert_reads_or_refuses(lambda: self.read_all(path), "NOTEEVENTS %r" % mutations)

  @hypothesis.given(MUTATIONS, st.booleans())
  def test_gzip(self, mutations, mutate_compressed):
    # Either the text is mutated and then compressed, or the compressed bytes are (a gzip file cut
    # short, a flipped byte in the deflate stream or its CRC).
    data = self.csv
    if mutate_compressed:
      data = mutate(gzip.compress(data, mtime=0), mutations)
    else:
      data = gzip.compress(mutate(data, mutations), mtime=0)
    path = os.path.join(self.example_dir(), "NOTEEVENTS.csv.gz")
    write_bytes(path, data)
    self.assert_reads_or_refuses(lambda: self.read_all(path), "NOTEEVENTS.csv.gz %r" % mutations)

  @examples(1 / 12)  # about 1.5 s an example: the sentence splitter and five output files
  @hypothesis.given(MUTATIONS, st.booleans())
  def test_format_notes(self, mutations, compress):
    from clinicalbert_tf.notes import pipeline  # pylint: disable=g-import-not-at-top
    folder = self.example_dir()
    data = mutate(self.csv, mutations)
    path = os.path.join(folder, "NOTEEVENTS.csv" + (".gz" if compress else ""))
    write_bytes(path, gzip.compress(data, mtime=0) if compress else data)
    output_dir = os.path.join(folder, "out")
    os.makedirs(output_dir)
    all_notes = os.path.join(folder, "all.txt")
    ok = self.assert_reads_or_refuses(
        lambda: pipeline.format_notes_file(path, output_dir=output_dir, all_notes_file=all_notes,
                                           max_bad_rows=2, progress_every_s=1e9),
        "format_notes %r" % mutations)
    if not ok:
      self.assertEqual(os.listdir(output_dir), [], mutations)
      self.assertFalse(os.path.exists(all_notes), mutations)


class NoteInputsTest(FuzzCase):
  """predict.py's note readers (inference/readers.py): text files, JSON lines, NOTEEVENTS."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    notes = [{"id": "n%d" % i, "text": "Invented note %d: pt denies chest pain." % i}
             for i in range(5)]
    cls.jsonl = "".join(json.dumps(n) + "\n" for n in notes).encode("utf-8")
    cls.pairs = read_bytes(os.path.join(TESTDATA, "mednli", "mli_dev_v1.jsonl"))
    cls.csv = read_bytes(os.path.join(TESTDATA, "NOTEEVENTS_sample.csv"))

  def read_all(self, path, pairs=False):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    options = readers.ReadOptions(pairs=pairs)
    for _, note in readers.read_notes([path], options=options):
      if isinstance(note, readers.Note):
        note.text.encode("utf-8")
    readers.count_notes([path], "auto", options)

  @hypothesis.given(MUTATIONS, st.sampled_from(("notes.jsonl", "pairs.jsonl", "note.txt",
                                                "NOTEEVENTS.csv")))
  def test_note_inputs(self, mutations, kind):
    source = {"notes.jsonl": self.jsonl, "pairs.jsonl": self.pairs, "NOTEEVENTS.csv": self.csv,
              "note.txt": self.jsonl}[kind]
    path = os.path.join(self.example_dir(), kind)
    write_bytes(path, mutate(source, mutations))
    self.assert_reads_or_refuses(lambda: self.read_all(path, pairs=kind == "pairs.jsonl"),
                                 "%s %r" % (kind, mutations))


class TextAndVocabTest(FuzzCase):
  """Pretraining text (pretraining_text.py), sentence files for build_vocab, vocabulary files."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.vocab_file = testutil.write_vocab(cls.root)
    cls.vocab = read_bytes(cls.vocab_file)
    cls.text = ("Invented patient admitted with chest pain.\nDenies fever.\n\n"
                "Second note: stable , discharged home.\n").encode("utf-8")

  @hypothesis.given(MUTATIONS)
  def test_pretraining_text(self, mutations):
    from clinicalbert_tf import pretraining_text  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.example_dir(), "sentences.txt")
    write_bytes(path, mutate(self.text, mutations))

    def read():
      vocab = pretraining_text.load_vocab_without_tensorflow(self.vocab_file)
      encoder = pretraining_text.LineEncoder(vocab, do_lower_case=True, vocab_file=self.vocab_file)
      corpus = pretraining_text.Corpus("i")
      corpus.read([path], encoder)

    self.assert_reads_or_refuses(read, "pretraining text %r" % mutations)

  @hypothesis.given(MUTATIONS)
  def test_vocab_sentence_files(self, mutations):
    from clinicalbert_tf import vocab  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.example_dir(), "sentences.txt")
    write_bytes(path, mutate(self.text, mutations))
    self.assert_reads_or_refuses(lambda: vocab.count_words([path]),
                                 "build_vocab input %r" % mutations)

  @hypothesis.given(MUTATIONS)
  def test_vocab_file(self, mutations):
    from clinicalbert_tf import pretraining_text  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf import tokenization  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.example_dir(), "vocab.txt")
    write_bytes(path, mutate(self.vocab, mutations))

    def read():
      pretraining_text.Vocab(pretraining_text.load_vocab_without_tensorflow(path), path)

    self.assert_reads_or_refuses(read, "vocab (create_pretraining_data) %r" % mutations)
    self.assert_reads_or_refuses(
        lambda: tokenization.FullTokenizer(path, do_lower_case=True).tokenize("chest pain"),
        "vocab (FullTokenizer) %r" % mutations)


class ConfigAndRecordsTest(FuzzCase):
  """bert_config.json (checkpoints.load_bert_config) and TFRecords (pretraining.check_records)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = read_bytes(testutil.write_config(cls.root, testutil.tiny_config()))
    records = testutil.write_pretraining_records(os.path.join(cls.root, "r.tfrecord"), 3, 16, 3,
                                                 testutil.tiny_config().vocab_size)
    cls.records = read_bytes(records)

  @hypothesis.given(MUTATIONS)
  def test_bert_config(self, mutations):
    from clinicalbert_tf import checkpoints  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.example_dir(), "bert_config.json")
    write_bytes(path, mutate(self.config, mutations))
    self.assert_reads_or_refuses(lambda: checkpoints.load_bert_config(path, max_seq_length=16),
                                 "bert_config %r" % mutations)

  @hypothesis.given(MUTATIONS)
  def test_records(self, mutations):
    from clinicalbert_tf import pretraining  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.example_dir(), "r.tfrecord")
    write_bytes(path, mutate(self.records, mutations))
    self.assert_reads_or_refuses(lambda: pretraining.check_records([path], 16, 3),
                                 "records %r" % mutations)


if __name__ == "__main__":
  absltest.main()
