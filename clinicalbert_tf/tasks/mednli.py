"""MedNLI: sentence pairs with entailment / contradiction / neutral labels.

Files in `data_dir`: `mli_train_v1.jsonl`, `mli_dev_v1.jsonl`, `mli_test_v1.jsonl` (as released; also
accepted: `train.jsonl`, `dev.jsonl`, `test.jsonl`). One JSON object per line with `sentence1`,
`sentence2`, `gold_label` and optionally `pairID`; other fields (parses) are ignored.
"""

import json
import os

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.tasks import documents

LABELS = ("contradiction", "entailment", "neutral")


def find_split_file(data_dir, split):
  for name in ("mli_%s_v1.jsonl" % split, "%s.jsonl" % split):
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  raise fileio.InputError("--data_dir=%s: no mli_%s_v1.jsonl (or %s.jsonl)" %
                          (data_dir, split, split))


def read_jsonl(path, split):
  """SentencePairs of a MedNLI jsonl file; InputError naming file and line on any bad line."""
  examples = []
  for where, line in documents.nonblank_lines(path):
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise fileio.InputError("%s: not JSON (%s at column %d)" % (where, e.msg, e.colno)) from None
    if not isinstance(record, dict):
      raise fileio.InputError("%s: expected a JSON object" % where)
    for key in ("sentence1", "sentence2", "gold_label"):
      if not isinstance(record.get(key), str):
        raise fileio.InputError("%s: missing or non-text %r" % (where, key))
    label = record["gold_label"]
    if label not in LABELS:
      raise fileio.InputError("%s: unknown gold_label %r: expected one of %s" %
                              (where, label, ", ".join(LABELS)))
    guid = str(record.get("pairID") or "%s-%d" % (split, len(examples)))
    examples.append(tasks.SentencePair(guid=guid, text_a=record["sentence1"],
                                       text_b=record["sentence2"], label=label))
  if not examples:
    raise fileio.InputError("%s: no examples" % path)
  return examples


class MednliTask(tasks.Task):
  """Sentence-pair classification on MedNLI."""

  name = "mednli"
  kind = "nli"

  def get_labels(self, data_dir):
    return list(LABELS)

  def get_examples(self, data_dir, split):
    tasks.check_split(split)
    return read_jsonl(find_split_file(data_dir, split), split)


def make_task(options):
  return MednliTask(options)
