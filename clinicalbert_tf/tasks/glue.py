"""Google's GLUE / XNLI layouts, as `run_classifier.py` reads them: CoLA, MNLI, MRPC, XNLI.

Each task reads tab-separated files with Python's csv reader and no quote character (a `"` is an
ordinary character), and makes the same examples as Google's processors: the same guids, texts,
labels and order. Test files carry no labels; as Google's, their examples get the first label
(`0`, or `contradiction` for MNLI), so the test split is for prediction, not for scores.

  cola  train.tsv, dev.tsv (no header: source, label, original label, sentence); test.tsv (a
        header, then index, sentence). One sentence per example (`text_b` None).
  mnli  train.tsv, dev_matched.tsv, test_matched.tsv (a header; columns 8 and 9 are the pair, the
        last column the label; the guid is `<split>-<pairID column>`, dev as `dev_matched-...`).
  mrpc  train.tsv, dev.tsv, test.tsv (a header: label, #1 ID, #2 ID, #1 string, #2 string; the
        test file's first column is its index).
  xnli  train: multinli/multinli.train.zh.tsv (premise, hypothesis, label; `contradictory` read
        as `contradiction`); dev: xnli.dev.tsv, the `zh` rows (language, label, ..., sentence1 in
        column 6, sentence2 in column 7). Google's layout has no XNLI test split.

A row with too few columns is an error naming the file and line (Google's processors would stop
with an IndexError).
"""

import csv
import os

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks

NLI_LABELS = ("contradiction", "entailment", "neutral")
BINARY_LABELS = ("0", "1")
# Google's XnliProcessor reads one language, Chinese.
XNLI_LANGUAGE = "zh"


def read_tsv(path):
  """The rows of a tab-separated file, as Google's `_read_tsv` (csv, tab, no quote character).

  Returns:
    A list of (line number, list of fields).
  """
  try:
    with open(path, encoding="utf-8", newline="") as f:
      reader = csv.reader(f, delimiter="\t", quotechar=None)
      return [(reader.line_num, row) for row in reader]
  except OSError as e:
    raise fileio.InputError("%s cannot be read: %s" % (path, e)) from None
  except UnicodeDecodeError as e:
    raise fileio.InputError("%s is not UTF-8 text (byte %d)" % (path, e.start)) from None


def _field(path, number, row, index):
  if index >= len(row) or -index > len(row):
    raise fileio.InputError("%s:%d: expected at least %d tab-separated columns, found %d" %
                            (path, number, (index + 1) if index >= 0 else -index, len(row)))
  return row[index]


class GlueTask(tasks.Task):
  """A sentence-pair (or single-sentence) task in one of Google's layouts (see the subclasses).

  Subclasses set `name`, `labels`, `files` ({split: file name under data_dir}) and implement
  `make_example(split, index, path, number, row)` -> SentencePair or None (a row to skip).
  """

  kind = "nli"
  labels = ()
  files = {}

  def get_labels(self, data_dir):
    return list(self.labels)

  def split_file(self, data_dir, split):
    tasks.check_split(split)
    if split not in self.files:
      raise fileio.InputError("--task_name=%s: Google's layout has no %s split" %
                              (self.name, split))
    path = os.path.join(data_dir, self.files[split])
    if not os.path.isfile(path):
      raise fileio.InputError("--data_dir=%s: no %s (the %s %s file in Google's layout)" %
                              (data_dir, self.files[split], self.name, split))
    return path

  def get_examples(self, data_dir, split):
    path = self.split_file(data_dir, split)
    examples = []
    for index, (number, row) in enumerate(read_tsv(path)):
      example = self.make_example(split, index, path, number, row)
      if example is not None:
        examples.append(example)
    return examples

  def make_example(self, split, index, path, number, row):
    raise NotImplementedError()

  @staticmethod
  def pair(guid, text_a, text_b, label):
    # Google's converter treats an empty second text as none: one sentence, `[CLS] a [SEP]`.
    return tasks.SentencePair(guid=guid, text_a=text_a, text_b=text_b or None, label=label)


class ColaTask(GlueTask):
  """CoLA: is the sentence grammatical (1) or not (0)."""

  name = "cola"
  labels = BINARY_LABELS
  files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}

  def make_example(self, split, index, path, number, row):
    if split == "test":
      if index == 0:
        return None  # only the test file has a header
      return self.pair("test-%d" % index, _field(path, number, row, 1), None, "0")
    return self.pair("%s-%d" % (split, index), _field(path, number, row, 3), None,
                     _field(path, number, row, 1))


class MrpcTask(GlueTask):
  """MRPC: are the two sentences paraphrases (1) or not (0)."""

  name = "mrpc"
  labels = BINARY_LABELS
  files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}

  def make_example(self, split, index, path, number, row):
    if index == 0:
      return None  # the header
    label = "0" if split == "test" else _field(path, number, row, 0)
    return self.pair("%s-%d" % (split, index), _field(path, number, row, 3),
                     _field(path, number, row, 4), label)


class MnliTask(GlueTask):
  """MultiNLI (GLUE's version), matched dev and test sets."""

  name = "mnli"
  labels = NLI_LABELS
  files = {"train": "train.tsv", "dev": "dev_matched.tsv", "test": "test_matched.tsv"}
  # Google's guid prefixes.
  _guid_prefix = {"train": "train", "dev": "dev_matched", "test": "test"}

  def make_example(self, split, index, path, number, row):
    if index == 0:
      return None  # the header
    label = "contradiction" if split == "test" else _field(path, number, row, -1)
    return self.pair("%s-%s" % (self._guid_prefix[split], _field(path, number, row, 0)),
                     _field(path, number, row, 8), _field(path, number, row, 9), label)


class XnliTask(GlueTask):
  """XNLI in Google's layout: MultiNLI's machine-translated training set, XNLI's dev rows."""

  name = "xnli"
  labels = NLI_LABELS
  files = {"train": os.path.join("multinli", "multinli.train.%s.tsv" % XNLI_LANGUAGE),
           "dev": "xnli.dev.tsv"}

  def make_example(self, split, index, path, number, row):
    if index == 0:
      return None  # the header
    if split == "train":
      label = _field(path, number, row, 2)
      if label == "contradictory":
        label = "contradiction"
      return self.pair("train-%d" % index, _field(path, number, row, 0),
                       _field(path, number, row, 1), label)
    if _field(path, number, row, 0) != XNLI_LANGUAGE:
      return None
    return self.pair("dev-%d" % index, _field(path, number, row, 6),
                     _field(path, number, row, 7), _field(path, number, row, 1))


def make_cola_task(options):
  return ColaTask(options)


def make_mnli_task(options):
  return MnliTask(options)


def make_mrpc_task(options):
  return MrpcTask(options)


def make_xnli_task(options):
  return XnliTask(options)
