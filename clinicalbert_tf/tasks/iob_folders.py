"""An i2b2 task read from the IOB files the ClinicalBERT authors trained on, not the native files.

ClinicalBERT's `run_ner.py` reads a folder of `word label` files: `train.tsv`, `dev.tsv`,
`test.tsv` (i2b2 2010, 2012, 2014), or `train.conll`, `dev.conll`, `test.conll` (i2b2 2006), as
their notebooks and `run_finetune.py --iob_output_dir` write them (`devel.*`, BioBERT's name for
the dev file, is read as dev too: `conll.find_split_file`). Such a folder is told apart
from the native layout by its file names: `train.<suffix>` directly in data_dir and no `train/`
folder. The label set is the task's own (the same label ids as on the native files); a label
outside it is an error naming the file and line. A task whose types come from the data (i2b2
2014) takes them from all three files, as its native reader takes them from train and test.
"""

import os

from clinicalbert_tf import tasks
from clinicalbert_tf.tasks import conll

# The tasks whose authors' IOB folders this reads.
IOB_TASKS = ("i2b2_2006", "i2b2_2010", "i2b2_2012", "i2b2_2014")


def holds_iob_files(task, data_dir):
  """True when `task` is an i2b2 task and `data_dir` has IOB split files, not native folders."""
  if task.name not in IOB_TASKS or not data_dir:
    return False
  if os.path.isdir(os.path.join(data_dir, "train")):
    return False
  return any(os.path.isfile(os.path.join(data_dir, "train" + s)) for s in conll.SUFFIXES)


class IobFolderTask(tasks.Task):
  """`native_task` (an i2b2 task) over a folder of IOB files; same name, labels and guids."""

  kind = "ner"

  def __init__(self, native_task):
    super().__init__(native_task.options)
    self.name = native_task.name
    self.entity_types = native_task.entity_types
    self._labels = {}

  def get_labels(self, data_dir):
    key = os.path.abspath(data_dir)
    if key not in self._labels:
      types = self.entity_types
      if types is None:
        types = {tasks.label_type(l)
                 for split in tasks.SPLITS
                 for s in conll.read_conll(conll.find_split_file(data_dir, split), split)
                 for l in s.labels if l != "O"}
      self._labels[key] = tasks.ner_label_list(types)
    return self._labels[key]

  def get_examples(self, data_dir, split):
    tasks.check_split(split)
    labels = set(self.get_labels(data_dir))
    return conll.read_conll(conll.find_split_file(data_dir, split), split, labels,
                            "the %s task's types" % self.name)
