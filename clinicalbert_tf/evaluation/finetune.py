"""run_finetune.py's official scores: its i2b2 2006 / 2014 test predictions through the 2014 scorer.

The predicted IOB labels of each sentence become character spans of its note (the words' offsets),
and each note is written twice as i2b2 2014 XML, `<output_dir>/<prefix>_i2b2_2014/gold/<note>.xml`
(the note's gold annotations as read) and `.../system/<note>.xml` (the predictions), which the
official script and `evaluate.py --scorer=i2b2_2014` both read. The report and its JSON twin go to
`<prefix>_i2b2_2014_report.txt` / `.json`; the headline numbers are returned for the results file
(`i2b2_2014_strict_micro_f1`, ...), next to seqeval's.
"""

import collections
import os

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.evaluation import i2b2_2014
from clinicalbert_tf.evaluation import readers
from clinicalbert_tf.evaluation import report
from clinicalbert_tf.tasks import i2b2_2014 as i2b2_2014_task

_XmlSpan = collections.namedtuple("_XmlSpan", ["start", "end", "label"])


def predicted_char_spans(examples, predicted_labels):
  """{note id: [(start, end, type)]} of the predicted entities (sentences' word offsets)."""
  spans = collections.OrderedDict()
  for example, labels in zip(examples, predicted_labels):
    found = spans.setdefault(example.doc_id, [])
    for start, end, typ in tasks.iob_to_spans(labels):
      found.append((example.positions[start][0], example.positions[end - 1][1], typ))
  return spans


def _xml(text, spans):
  return i2b2_2014_task.format_i2b2_2014(text, [_XmlSpan(*s) for s in sorted(spans)])


def official_scores(task, examples, predicted_labels, output_dir, prefix):
  """Writes gold and system XML and the official i2b2 2014 report; returns headline metrics.

  Returns {} (and writes nothing) when the task has no official scorer, for splits other than
  `test`, or when its examples do not come from whole notes with text (e.g. IOB files).
  """
  if getattr(task, "official_scorer", None) != "i2b2_2014" or prefix != "test":
    return {}
  if not examples or any(e.doc_id is None or e.positions is None for e in examples):
    return {}
  notes = task.documents_by_id("test")
  predicted = predicted_char_spans(examples, predicted_labels)
  if any(notes.get(doc_id) is None or notes[doc_id].text is None for doc_id in predicted):
    return {}
  folder = os.path.join(output_dir, prefix + "_i2b2_2014")
  pairs = []
  for doc_id, spans in predicted.items():
    note = notes[doc_id]
    gold = [(e.start, e.end, e.type) for e in note.entities or []]
    name = doc_id + ".xml"
    gold_path = os.path.join(folder, "gold", name)
    system_path = os.path.join(folder, "system", name)
    fileio.write_text_atomic(gold_path, _xml(note.text, gold))
    fileio.write_text_atomic(system_path, _xml(note.text, spans))
    pairs.append((readers.read_i2b2_2014(gold_path), readers.read_i2b2_2014(system_path)))
  result = i2b2_2014.score(pairs)
  report_path = os.path.join(output_dir, prefix + "_i2b2_2014_report.txt")
  report.write_report(report_path, i2b2_2014.format_report(result), result)
  headline = {"i2b2_2014_" + k: v for k, v in i2b2_2014.headline(result).items()}
  logging.info("official i2b2 2014 scorer on %d notes: %s (report: %s)", len(pairs),
               ", ".join("%s = %.4f" % kv for kv in sorted(headline.items())), report_path)
  return headline
