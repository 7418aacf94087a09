"""Fine-tuning data: one reader module per data family behind one small interface.

Two kinds of example:
  * `TaggedSentence` (NER / de-identification): words and one IOB2 label per word;
  * `SentencePair` (NLI): two texts and a label.

A task (`Task` subclass, one per module in this package) reads its data family from `data_dir` and
answers `get_labels(data_dir)` and `get_examples(data_dir, split)` for split in `train`, `dev`, `test`.
NER tasks also write the IOB files the ClinicalBERT authors trained on (`convert_to_iob`).

Adding a dataset is adding one module with a `make_task(options)` function and one line in `_REGISTRY`
(`module:function` when one module makes several tasks, as `glue.py` does for Google's layouts).
Modules are imported on demand, so reading MedNLI does not import the XML readers.

Labels are IOB2 (`B-type` starts an entity, `I-type` continues it, `O` is outside). Spans are
`(start, end, type)` over word indexes with `end` exclusive.
"""

import collections
import dataclasses
import importlib
import os
import re
from typing import List, Optional, Tuple

from clinicalbert_tf import fileio

SPLITS = ("train", "dev", "test")

# name -> module (imported on demand; each module has make_task(options)).
_REGISTRY = collections.OrderedDict([
    ("i2b2_2006", "clinicalbert_tf.tasks.i2b2_2006"),
    ("i2b2_2010", "clinicalbert_tf.tasks.i2b2_2010"),
    ("i2b2_2012", "clinicalbert_tf.tasks.i2b2_2012"),
    ("i2b2_2014", "clinicalbert_tf.tasks.i2b2_2014"),
    ("mednli", "clinicalbert_tf.tasks.mednli"),
    ("conll", "clinicalbert_tf.tasks.conll"),
    # Google's run_classifier layouts.
    ("cola", "clinicalbert_tf.tasks.glue:make_cola_task"),
    ("mnli", "clinicalbert_tf.tasks.glue:make_mnli_task"),
    ("mrpc", "clinicalbert_tf.tasks.glue:make_mrpc_task"),
    ("xnli", "clinicalbert_tf.tasks.glue:make_xnli_task"),
])

TASK_NAMES = tuple(_REGISTRY)


@dataclasses.dataclass
class TaggedSentence:
  """One NER example: words with one IOB2 label each.

  Attributes:
    guid: a unique id such as `train-12` (never clinical text).
    words: the words (no whitespace inside a word).
    labels: one IOB2 label per word (None: unlabelled, as a raw note at prediction time).
    doc_id: the note the sentence comes from, where known (used to write per-note predictions).
    positions: per word, where it sits in the native file (e.g. `(line, token)` for i2b2 2010).
  """
  guid: str
  words: List[str]
  labels: Optional[List[str]]
  doc_id: Optional[str] = None
  positions: Optional[List[Tuple[int, int]]] = None


@dataclasses.dataclass
class SentencePair:
  """One NLI example (premise, hypothesis, label); `text_b` None for a single sentence (CoLA)."""
  guid: str
  text_a: str
  text_b: Optional[str]
  label: Optional[str]  # None: unlabelled (prediction)


@dataclasses.dataclass
class ReaderOptions:
  """Options that change how native files are read.

  Attributes:
    check_text: compare each annotation's own text with the text at its offsets and stop with an
      error on a mismatch (False: count mismatches and warn instead).
    include_timex3: i2b2 2012 only: tag TIMEX3 expressions as well as EVENTs.
  """
  check_text: bool = True
  include_timex3: bool = False


class Task(object):
  """What every task answers. Subclasses set `name` and `kind` (`ner` or `nli`).

  `word_rules` names how the task's training files split text into words (`finetuning/
  word_rules.py`); None: the head's default. It is recorded with the fine-tuned model so raw notes
  are split the same way at prediction time.
  """

  name = None
  kind = None
  word_rules = None

  def __init__(self, options=None):
    self.options = options or ReaderOptions()

  def get_labels(self, data_dir):
    """The label list (index = label id)."""
    raise NotImplementedError()

  def get_examples(self, data_dir, split):
    """The examples of `split` (`train`, `dev` or `test`)."""
    raise NotImplementedError()

  def write_native_predictions(self, examples, predicted_labels, output_dir):  # pylint: disable=unused-argument
    """Writes predictions in the task's native format, if it has one. Returns the paths written."""
    return []


def get_task(name, options=None):
  """Returns the task called `name` (one of TASK_NAMES).

  Raises:
    fileio.InputError: naming the known tasks if `name` is not one of them.
  """
  key = (name or "").lower()
  if key not in _REGISTRY:
    raise fileio.InputError("--task_name=%r is not a known task: expected one of %s" %
                            (name, ", ".join(TASK_NAMES)))
  module_name, _, function = _REGISTRY[key].partition(":")
  module = importlib.import_module(module_name)
  return getattr(module, function or "make_task")(options or ReaderOptions())


def check_split(split):
  if split not in SPLITS:
    raise ValueError("split must be one of %s, got %r" % (SPLITS, split))


# ---------------------------------------------------------------------------------------------------
# IOB2 <-> spans.

_LABEL_RE = re.compile(r"^(B|I)-(\S+)$")


def is_valid_label(label):
  """True for `O`, `B-type` and `I-type`."""
  return label == "O" or bool(_LABEL_RE.match(label))


def label_type(label):
  """`B-problem` -> `problem`; `O` -> None."""
  return None if label == "O" else label[2:]


def ner_label_list(types):
  """The label list for entity `types`: `O` first, then `B-t`, `I-t` for each type in sorted order."""
  labels = ["O"]
  for t in sorted(set(types)):
    labels.extend(["B-" + t, "I-" + t])
  return labels


def spans_to_iob(num_words, spans):
  """IOB2 labels for `num_words` words with entity `spans` [(start, end, type)], end exclusive.

  Raises:
    ValueError: if a span is empty, falls outside the sentence, or overlaps another span.
  """
  labels = ["O"] * num_words
  for start, end, typ in sorted(spans):
    if not 0 <= start < end <= num_words:
      raise ValueError("span (%d, %d) outside a sentence of %d words" % (start, end, num_words))
    if any(label != "O" for label in labels[start:end]):
      raise ValueError("span (%d, %d, %s) overlaps another span" % (start, end, typ))
    labels[start] = "B-" + typ
    for i in range(start + 1, end):
      labels[i] = "I-" + typ
  return labels


def iob_to_spans(labels, strict=True):
  """Entity spans [(start, end, type)] from IOB2 `labels`.

  With `strict` (seqeval's strict IOB2 mode): an entity starts at `B-t` and continues over `I-t`; an
  `I-t` that does not continue a `t` entity belongs to no entity. Without `strict`, such an `I-t`
  starts a new entity (IOB1 reading).
  """
  spans = []
  start, typ = None, None
  for i, label in enumerate(list(labels) + ["O"]):
    tag, t = (label[0], label[2:]) if label != "O" else ("O", None)
    if start is not None and (tag != "I" or t != typ):
      spans.append((start, i, typ))
      start, typ = None, None
    if tag == "B" or (tag == "I" and start is None and not strict):
      start, typ = i, t
  return spans


def repair_iob2(labels):
  """Rewrites each `I-t` that does not continue a `t` entity as `B-t`. Returns (labels, count)."""
  fixed = list(labels)
  count = 0
  previous = "O"
  for i, label in enumerate(fixed):
    if label.startswith("I-") and (previous == "O" or previous[2:] != label[2:]):
      fixed[i] = "B-" + label[2:]
      count += 1
    previous = fixed[i]
  return fixed, count


# ---------------------------------------------------------------------------------------------------
# CoNLL ("word label" per line, blank line between sentences), as the ClinicalBERT authors wrote it.

def format_conll(sentences, columns=None):
  """Text of CoNLL lines for `sentences` (TaggedSentence). `columns`: extra label lists per sentence."""
  lines = []
  for n, sentence in enumerate(sentences):
    extra = columns[n] if columns is not None else []
    for i, word in enumerate(sentence.words):
      fields = [word, sentence.labels[i]] + [column[i] for column in extra]
      lines.append(" ".join(fields))
    lines.append("")
  return "\n".join(lines)


def write_conll(path, sentences):
  """Writes `sentences` as `word label` lines (atomically)."""
  fileio.write_text_atomic(path, format_conll(sentences))


def convert_to_iob(task, data_dir, output_dir):
  """Writes `train.tsv`, `dev.tsv`, `test.tsv` (IOB2, `word label` per line) for a NER `task`.

  These are the files the ClinicalBERT authors trained on (same splits and tags); they can be read back
  with `--task_name=conll`. Each file gets a sidecar JSON record (task, source, sentence counts).

  Every split is read before the first file is written, so an input error in any split leaves
  `output_dir` as it was (no train.tsv next to a missing test.tsv).

  Returns:
    {split: path}.
  """
  if task.kind != "ner":
    raise fileio.InputError("--iob_output_dir: task %s is not a tagging task; only NER tasks convert "
                            "to IOB" % task.name)
  examples = {split: task.get_examples(data_dir, split) for split in SPLITS}
  labels = task.get_labels(data_dir)
  paths = {}
  for split in SPLITS:
    sentences = examples[split]
    path = os.path.join(output_dir, split + ".tsv")
    write_conll(path, sentences)
    fileio.write_sidecar(path, {
        "task": task.name,
        "data_dir": os.path.abspath(data_dir),
        "split": split,
        "sentences": len(sentences),
        "words": sum(len(s.words) for s in sentences),
        "entities": sum(len(iob_to_spans(s.labels)) for s in sentences),
        "labels": labels,
    })
    paths[split] = path
  return paths
