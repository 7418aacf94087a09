"""The head record kept next to a fine-tuned checkpoint: `finetune_head.json`, written and read here only.

  {"head": "token_classification", "labels": ["O", "B-problem", ...], "task_name": "i2b2_2010",
   "do_lower_case": false, "max_seq_length": 128, "word_rules": "lines_punctuation"}

`run_finetune.py` writes it (`write`); `predict.py`, `deidentify.py`, `export_savedmodel.py`,
`export_hf.py` and the service read it (`read`), through `HeadRecord`, which checks it once and
fills what older records lack (the word rules: the head's default). A record may name only "head"
and "labels" (what `import_hf.py` writes); the rest then comes from flags or defaults.
"""

import dataclasses
import json
import os
import shutil
from typing import List, Optional

from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import word_rules as word_rules_lib


@dataclasses.dataclass
class HeadRecord:
  """A checked head record.

  Attributes:
    head: the head's name (a registered head).
    labels: the label order (index = label id).
    word_rules: how raw text is split into words for this model (`word_rules.NAMES`).
    task_name, do_lower_case, max_seq_length: as fine-tuned, None where the record lacks them.
    raw: the record as written (key order kept, so copies of it keep their bytes).
  """
  head: str
  labels: List[str]
  word_rules: str
  task_name: Optional[str] = None
  do_lower_case: Optional[bool] = None
  max_seq_length: Optional[int] = None
  raw: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def from_dict(cls, record, where=checkpoints.HEAD_RECORD_FILE):
    """Checks a record dict. Raises InputError naming `where` for a record that is not one."""
    if not isinstance(record, dict):
      raise fileio.InputError("%s: expected a JSON object with \"head\" and \"labels\"" % where)
    if record.get("head") not in heads.head_names():
      raise fileio.InputError("%s: \"head\" is %r, expected one of %s" %
                              (where, record.get("head"), ", ".join(heads.head_names())))
    labels = record.get("labels")
    if (not isinstance(labels, list) or not labels or
        not all(isinstance(l, str) for l in labels)):
      raise fileio.InputError("%s: \"labels\" must be a non-empty list of strings" % where)
    head_class = heads.head_class(record["head"], where)
    rules = record.get("word_rules") or head_class.word_rules[0]
    word_rules_lib.get(rules, where)
    if rules not in head_class.word_rules:
      raise fileio.InputError("%s: word_rules %r do not fit a %s head (expected one of %s)" %
                              (where, rules, record["head"], ", ".join(head_class.word_rules)))
    return cls(head=record["head"], labels=list(labels), word_rules=rules,
               task_name=record.get("task_name"), do_lower_case=record.get("do_lower_case"),
               max_seq_length=record.get("max_seq_length"), raw=dict(record))

  def to_dict(self):
    """The record as written, with the word rules filled in where an older record lacked them."""
    record = dict(self.raw) if self.raw else {"head": self.head, "labels": list(self.labels)}
    record.setdefault("word_rules", self.word_rules)
    return record

  def make_head(self):
    """The Head this record describes (labels in the record's order)."""
    return heads.head_class(self.head)(self.labels)


def write(model_dir, head, task, do_lower_case, max_seq_length, bert_config_file=None,
          vocab_file=None, task_name=None):
  """Makes `model_dir` self-contained: the head record, and copies of the config and vocabulary.

  The record holds the head, the label order, the casing, `max_seq_length` and the task's word
  rules. `bert_config_file` and `vocab_file`, when given, are copied to
  `<model_dir>/bert_config.json` and `vocab.txt`.

  Args:
    model_dir: the fine-tuned model directory.
    head: the Head that was fine-tuned.
    task: the `tasks.Task` it was fine-tuned on.
    do_lower_case, max_seq_length: as fine-tuned.
    bert_config_file, vocab_file: files to copy in (None: leave as is).
    task_name: the task's name as the user gave it (default: the task's own).

  Returns:
    The path written (`<model_dir>/finetune_head.json`).
  """
  for source, name in ((bert_config_file, checkpoints.BERT_CONFIG_FILE),
                       (vocab_file, checkpoints.VOCAB_FILE)):
    target = os.path.join(model_dir, name)
    if source and os.path.abspath(source) != os.path.abspath(target):
      with fileio.atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)
  path = os.path.join(model_dir, checkpoints.HEAD_RECORD_FILE)
  fileio.write_json_atomic(path, {
      "head": head.name,
      "labels": list(head.label_list),
      "task_name": task_name or task.name,
      "do_lower_case": do_lower_case,
      "max_seq_length": max_seq_length,
      "word_rules": head.word_rules_for(task),
  })
  return path


def write_labels_only(model_dir, head_name, labels):
  """The minimal record (head and labels) of a converted checkpoint (`import_hf.py`)."""
  path = os.path.join(model_dir, checkpoints.HEAD_RECORD_FILE)
  fileio.write_json_atomic(path, {"head": head_name, "labels": list(labels)})
  return path


def write_copy(directory, record):
  """Writes `record` (a HeadRecord) into `directory` (a SavedModel's assets), word rules filled in."""
  path = os.path.join(directory, checkpoints.HEAD_RECORD_FILE)
  fileio.write_json_atomic(path, record.to_dict())
  return path


def read(model_dir, required=True):
  """The checked HeadRecord in `model_dir` (a local or `tf.io.gfile` path).

  Args:
    model_dir: the directory holding `finetune_head.json`.
    required: False: None when the file is absent (a checkpoint that was never fine-tuned).

  Raises:
    InputError: naming the file when it is missing (and required), not JSON, or not a record.
  """
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, checkpoints.HEAD_RECORD_FILE)
  if not required and not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      record = json.loads(f.read().decode("utf-8"))
  except (OSError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError) as e:
    raise fileio.InputError("%s cannot be read (is %s a fine-tuned model directory?): %s" %
                            (path, model_dir, getattr(e, "message", None) or e)) from None
  except ValueError as e:
    raise fileio.InputError("%s is not valid JSON: %s" % (path, e)) from None
  return HeadRecord.from_dict(record, path)
