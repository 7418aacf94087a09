"""Plain CoNLL/TSV tagging data: bring any IOB data set.

Files `train`, `dev` (or `devel`, BioBERT's name and most biomedical NER corpora's) and `test` in
`data_dir`, each named `.tsv` (as ClinicalBERT's), `.txt` or `.conll` (as the authors' 2006
files): one word per line as `word label` (space or tab; with more columns the first is the word
and the last the label, as in CoNLL-2003), a blank line between sentences, `-DOCSTART-` lines
ignored. The label set is read from the training file; a label in dev/test that training lacks is
an error naming file and line. IOB1-style tags (an `I-t` starting an entity) are read as IOB2
(`B-t`) with a warning.
"""

import os

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.tasks import documents

SUFFIXES = (".tsv", ".txt", ".conll")
# The file names of each split: the dev split is also `devel` (BioBERT's layout: train.tsv,
# devel.tsv, test.tsv).
SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "devel"), "test": ("test",)}


def find_split_file(data_dir, split):
  """`<data_dir>/<split>.tsv`, `.txt` or `.conll` (dev: also `devel.*`).

  Raises InputError if none (or several) exists.
  """
  names = [name + s for name in SPLIT_NAMES.get(split, (split,)) for s in SUFFIXES]
  found = [os.path.join(data_dir, n) for n in names if os.path.isfile(os.path.join(data_dir, n))]
  if not found:
    raise fileio.InputError("--data_dir=%s: no %s or %s (expected `word label` lines)"
                            % (data_dir, ", ".join(names[:-1]), names[-1]))
  if len(found) > 1:
    raise fileio.InputError("--data_dir=%s: both %s and %s exist; keep one" %
                            (data_dir, os.path.basename(found[0]), os.path.basename(found[1])))
  return found[0]


def read_conll(path, split, known_labels=None, known_from=None):
  """Reads a CoNLL file into TaggedSentences.

  Args:
    path: the file.
    split: used in guids.
    known_labels: if given, every label must be in this set (else InputError naming file and line).
    known_from: the file `known_labels` came from, for the message.

  Returns:
    A list of TaggedSentence (labels repaired to IOB2).
  """
  sentences = []
  words, labels = [], []
  repaired = 0

  def flush():
    nonlocal words, labels, repaired
    if words:
      fixed, count = tasks.repair_iob2(labels)
      repaired += count
      sentences.append(tasks.TaggedSentence(guid="%s-%d" % (split, len(sentences)), words=words,
                                            labels=fixed))
    words, labels = [], []

  for number, line in enumerate(documents.read_text_file(path).split("\n"), 1):
    fields = line.split()
    if not fields:
      flush()
      continue
    if fields[0] == "-DOCSTART-":
      flush()
      continue
    if len(fields) < 2:
      raise fileio.InputError("%s:%d: expected `word label`, found one field" % (path, number))
    label = fields[-1]
    if not tasks.is_valid_label(label):
      raise fileio.InputError("%s:%d: label %r is not IOB (O, B-type or I-type)" %
                              (path, number, label))
    if known_labels is not None and label != "O" and "B-" + label[2:] not in known_labels:
      raise fileio.InputError("%s:%d: unknown label %r: the label set read from %s is %s" %
                              (path, number, label, known_from, ", ".join(sorted(known_labels))))
    words.append(fields[0])
    labels.append(label)
  flush()
  if repaired:
    logging.warning("%s: read %d IOB1-style I- tags as B- (IOB2)", path, repaired)
  return sentences


class ConllTask(tasks.Task):
  """Any `word label` data in train/dev/test files."""

  name = "conll"
  kind = "ner"
  # CoNLL-style files are pre-split: punctuation stands apart from the words.
  word_rules = "lines_punctuation"

  def __init__(self, options=None):
    super().__init__(options)
    self._labels = {}

  def get_labels(self, data_dir):
    key = os.path.abspath(data_dir)
    if key not in self._labels:
      train = read_conll(find_split_file(data_dir, "train"), "train")
      self._labels[key] = tasks.ner_label_list(
          {tasks.label_type(l) for s in train for l in s.labels if l != "O"})
    return self._labels[key]

  def get_examples(self, data_dir, split):
    tasks.check_split(split)
    path = find_split_file(data_dir, split)
    if split == "train":
      return read_conll(path, split)
    return read_conll(path, split, set(self.get_labels(data_dir)),
                      find_split_file(data_dir, "train"))


def make_task(options):
  return ConllTask(options)
