"""What `evaluate.py` does: read gold and system, pair the notes, score, write the report and page."""

import os

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf.evaluation import html
from clinicalbert_tf.evaluation import i2b2_2010
from clinicalbert_tf.evaluation import i2b2_2014
from clinicalbert_tf.evaluation import readers
from clinicalbert_tf.evaluation import report
from clinicalbert_tf.evaluation import spans

SCORERS = ("i2b2_2014", "i2b2_2010", "spans")


def _texts(notes):
  return {n.note_id: n.text for n in notes.values() if n.text is not None}


def read_pairs(gold_path, system_path, scorer, allow_missing=False):
  """(gold Note or None, system Note or None) pairs for `scorer`.

  i2b2 2014 reads XML on both sides; i2b2 2010 `.con` (with the gold `.txt`); spans any format.
  Two single files are paired whatever their names (as the official 2014 script does).
  """
  fixed = {"i2b2_2014": "i2b2_2014", "i2b2_2010": "con"}.get(scorer)
  gold = readers.load(gold_path, fixed)
  system = readers.load(system_path, fixed, texts=_texts(gold))
  if os.path.isfile(gold_path) and os.path.isfile(system_path) and len(gold) == len(system) == 1:
    g, s = list(gold.values())[0], list(system.values())[0]
    s.note_id, s.sys_id = g.note_id, ""
    system = {("", g.note_id): s}
  pairs = readers.pair_notes(gold, system, allow_missing)
  missing = sum(g is None or s is None for g, s in pairs)
  if missing:
    logging.warning("%d notes have no counterpart on the other side: counted as notes without "
                    "spans there (--allow_missing)", missing)
  return pairs


def evaluate(gold_path, system_path, scorer, allow_missing=False, official=True):
  """Scores a system against gold. Returns (plain-text report, result dict, pairs)."""
  if scorer not in SCORERS:
    raise fileio.InputError("--scorer=%s: expected one of %s" % (scorer, ", ".join(SCORERS)))
  pairs = read_pairs(gold_path, system_path, scorer, allow_missing)
  if scorer == "i2b2_2014":
    result = i2b2_2014.score(pairs, official=official)
    single = os.path.isfile(gold_path) and os.path.isfile(system_path)
    text = (i2b2_2014.format_documents if single else i2b2_2014.format_report)(result)
  elif scorer == "i2b2_2010":
    result = i2b2_2010.score(pairs)
    text = i2b2_2010.format_report(result)
  else:
    result = spans.score(pairs)
    text = spans.format_report(result)
  result = dict(result, scorer=scorer, gold=gold_path, system=system_path,
                missing=sum(g is None or s is None for g, s in pairs))
  return text, result, pairs


def metric_tables(scorer, result):
  """The review page's tables: [(title, header, rows)] with the report's numbers."""
  if scorer == "i2b2_2014":
    wanted = ("Token", "Strict", "Relaxed", "HIPAA Strict", "Binary Token")
    tables = []
    for group in result["system_ids"]:
      rows = []
      for s in group["evaluations"]:
        label = s["label"][len(group["sys_id"]) + 1:] if group["sys_id"] else s["label"]
        if label in wanted:
          rows.append([s["label"], s["tp"], s["fp"], s["fn"], "%.4f" % s["micro_precision"],
                       "%.4f" % s["micro_recall"], "%.4f" % s["micro_f1"]])
      tables.append(("i2b2 2014 (official definitions), micro", ["Evaluation", "TP", "FP", "FN",
                                                                  "Precision", "Recall", "F1"],
                     rows))
    return tables
  if scorer == "i2b2_2010":
    rows = [[name, e["gold"], e["system"], "%.4f" % e["recall"], "%.4f" % e["precision"],
             "%.4f" % e["f1"]] for name, e in result["overall"].items()]
    return [("i2b2 2010 concepts", ["Measure", "Gold", "System", "Recall", "Precision", "F1"],
             rows)]
  rows = [[scheme, m["correct"], m["incorrect"], m["partial"], m["missed"], m["spurious"],
           "%.4f" % m["precision"], "%.4f" % m["recall"], "%.4f" % m["f1"], "%.4f" % m["f2"]]
          for scheme, m in result["overall"].items()]
  rows.append(["binary token recall", "", "", "", "", "", "", "%.4f" % result[
      "binary_token_recall"], "", ""])
  return [("Spans (SemEval-2013 schemes)", ["Scheme", "Correct", "Incorrect", "Partial", "Missed",
                                            "Spurious", "Precision", "Recall", "F1", "F2"], rows)]


def write_outputs(text, result, pairs, scorer, output_file=None, html_file=None):
  """Writes the report and its JSON twin (`output_file`) and the review page (`html_file`)."""
  if output_file:
    report.write_report(output_file, text, result)
  if html_file:
    notes = []
    for g, s in pairs:
      note = g or s
      if note.text is None:
        raise fileio.InputError("%s: no text for note %s: the review page needs the notes' text" %
                                (note.path, note.note_id))
      notes.append((note.note_id, note.text, html.page_spans(g) if g else [],
                    html.page_spans(s) if s else []))
    html.write_page(html_file, html.render_page(notes, metric_tables(scorer, result)))
