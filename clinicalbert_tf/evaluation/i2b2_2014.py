"""The i2b2/n2c2 2014 de-identification scorer: the official `evaluate.py phi` definitions, reimplemented.

The official script (kotfic/i2b2_evaluation_scripts, Apache-2.0, Python 2) compares per note the set
of gold items with the set of system items, and reports 46 evaluations in this order:

  Token, Strict, Relaxed, HIPPA Token, HIPAA Strict, HIPAA Relaxed, Binary Token, Binary Strict,
  Binary HIPPA Token, Binary HIPAA Strict, then for each XML tag (CONTACT, NAME, DATE, AGE,
  PROFESSION, ID, OTHER, LOCATION: Python 2's order of its tag dictionary) `<tag> Token`,
  `<tag> Strict`, `<tag> HIPPA Token`, `<tag> Binary HIPAA Strict` (labels spelt as it prints them).

Items (per note, as sets: a duplicate counts once):
  * Strict: a tag is (element, start, end, TYPE), compared case-insensitively.
  * Relaxed: the same, but two tags are equal when the ends differ by at most 2 characters. The set
    operations then follow Python's: duplicates within 2 characters collapse (the first is kept),
    true positives are counted over the smaller of the two sets (`gold & system` iterates the
    smaller one), false positives are system tags equal to no gold tag, false negatives the reverse.
  * Token: each tag's text (`text[start:end]` of the note) split into runs of `[a-zA-Z0-9]`, each
    run an item (element, TYPE, run start, run end), compared as written (case-sensitive); a tag
    without such a run gives one empty item at its end.
  * Binary: the same with (start, end) only (no element, no TYPE).
  * HIPAA: only items whose element and TYPE match (Python's `re.match`, a prefix match,
    case-sensitive) one of `HIPAA_PATTERNS`, on each side separately. The official list spells
    `"IDNUM "` with a trailing space, so ID/IDNUM never counts as HIPAA.
  * `<tag> ...`: only items of that element; `<tag> Binary HIPAA Strict` is the typed strict
    comparison of the HIPAA items of that element (the label says Binary; the code is not).
Per note: precision = tp / (tp + fp), recall = tp / (tp + fn), each 0.0 when undefined (a note with no
gold and no system items scores 0 and 0). Macro: numpy's mean and (population) standard deviation of
the per-note values over the notes present on both sides; macro F1 = F1(macro P, macro R). Micro: from
the summed counts. Numbers are printed as Python's `"{:.4}"` (SD `"{:.2}"`).

`official=False` corrects the surprises (see the README's Differences): IDNUM is HIPAA, TYPE and
element compare case-insensitively everywhere, Relaxed pairs tags one to one, a note without gold
(system) items is left out of the macro recall (precision), and the per-tag label says HIPAA Strict.
"""

import re

import numpy as np

from clinicalbert_tf.evaluation import report

# (element, TYPE) patterns of the HIPAA categories, as the official PHITrackEvaluation lists them.
HIPAA_PATTERNS = (("NAME", "PATIENT"), ("LOCATION", "CITY"), ("LOCATION", "STREET"),
                  ("LOCATION", "ZIP"), ("LOCATION", "ORGANIZATION"), ("DATE", ".*"),
                  ("CONTACT", "PHONE"), ("CONTACT", "FAX"), ("CONTACT", "EMAIL"), ("ID", "SSN"),
                  ("ID", "MEDICALRECORD"), ("ID", "HEALTHPLAN"), ("ID", "ACCOUNT"),
                  ("ID", "LICENSE"), ("ID", "VEHICLE"), ("ID", "DEVICE"), ("ID", "BIOID"),
                  ("ID", "IDNUM "), ("AGE", ".*"))
_HIPAA_RES = [(re.compile(n), re.compile(t)) for n, t in HIPAA_PATTERNS]
_HIPAA_RES_CORRECTED = [(re.compile(n), re.compile(t.strip() + "$")) for n, t in HIPAA_PATTERNS]

# The per-element evaluations' order: the official script loops over its tag dictionary's keys, whose
# order under Python 2.7 (64-bit string hashes, a 16-slot table) is this one.
TAG_ORDER = ("CONTACT", "NAME", "DATE", "AGE", "PROFESSION", "ID", "OTHER", "LOCATION")

RELAXED_END_DISTANCE = 2

_TOKEN_RE = re.compile(r"[a-zA-Z0-9]+")


def phi_tokens(text, start, end):
  """The official tokenisation of a PHI tag over text[start:end]: [(start, end)] of each
  `[a-zA-Z0-9]+` run, or one empty token at `end` if there is none."""
  runs = [(start + m.start(), start + m.end()) for m in _TOKEN_RE.finditer(text[start:end])]
  return runs or [(end, end)]


def is_hipaa(tag, typ, official=True):
  """Whether an item of XML element `tag` and TYPE `typ` is in the official HIPAA categories."""
  if official:
    return any(n.match(tag) and t.match(typ) for n, t in _HIPAA_RES)
  return any(n.match(tag.upper()) and t.match(typ.upper()) for n, t in _HIPAA_RES_CORRECTED)


class _Evaluation(object):
  """One of the official evaluations: how items are made from a note, which count, how they match."""

  def __init__(self, label, kind, binary=False, hipaa=False, tag=None, relaxed=False):
    self.label = label
    self.kind = kind  # "token" or "tag"
    self.binary = binary
    self.hipaa = hipaa
    self.tag = tag
    self.relaxed = relaxed


def evaluations(official=True):
  """The evaluations in the official report's order."""
  result = [
      _Evaluation("Token", "token"),
      _Evaluation("Strict", "tag"),
      _Evaluation("Relaxed", "tag", relaxed=True),
      _Evaluation("HIPPA Token", "token", hipaa=True),
      _Evaluation("HIPAA Strict", "tag", hipaa=True),
      _Evaluation("HIPAA Relaxed", "tag", hipaa=True, relaxed=True),
      _Evaluation("Binary Token", "token", binary=True),
      _Evaluation("Binary Strict", "tag", binary=True),
      _Evaluation("Binary HIPPA Token", "token", binary=True, hipaa=True),
      _Evaluation("Binary HIPAA Strict", "tag", binary=True, hipaa=True),
  ]
  for tag in TAG_ORDER:
    result += [
        _Evaluation("%s Token" % tag, "token", tag=tag),
        _Evaluation("%s Strict" % tag, "tag", tag=tag),
        _Evaluation("%s HIPPA Token" % tag, "token", tag=tag, hipaa=True),
        _Evaluation("%s %s" % (tag, "Binary HIPAA Strict" if official else "HIPAA Strict"), "tag",
                    tag=tag, hipaa=True),
    ]
  return result


def _items(evaluation, text, spans, official):
  """The note's items for `evaluation`, in order (duplicates kept; the caller makes the set)."""
  items = []
  for s in spans:
    tag, typ = s.tag, s.type
    if evaluation.tag is not None and (tag.upper() if not official else tag) != evaluation.tag:
      continue
    if evaluation.hipaa and not is_hipaa(tag, typ, official):
      continue
    if evaluation.kind == "token":
      for start, end in phi_tokens(text, s.start, s.end):
        if evaluation.binary:
          items.append((start, end))
        elif official:
          items.append((tag, typ, start, end))  # the official token key is case-sensitive
        else:
          items.append((tag.upper(), typ.upper(), start, end))
    elif evaluation.binary:
      items.append((s.start, s.end))
    else:
      items.append((tag.upper(), s.start, s.end, typ.upper()))
  return items


def _relaxed_equal(a, b):
  return (a[0], a[1], a[3]) == (b[0], b[1], b[3]) and abs(a[2] - b[2]) <= RELAXED_END_DISTANCE


def _relaxed_set(items):
  """Python's set() of tags whose equality forgives 2 characters at the end: the first of a group
  of equal tags is kept (a later tag equal to a kept one is dropped)."""
  kept = []
  for item in items:
    if not any(_relaxed_equal(item, k) for k in kept):
      kept.append(item)
  return kept


def _relaxed_counts(gold, system, official):
  """(tp, fp, fn) of the relaxed comparison of two lists of tags."""
  if official:
    gold, system = _relaxed_set(gold), _relaxed_set(system)
    # Python's `gold & system` iterates over the smaller set (system on a tie) and keeps those
    # elements found in the other; with a non-transitive equality the count depends on which.
    if len(system) > len(gold):
      tp = sum(any(_relaxed_equal(g, s) for s in system) for g in gold)
    else:
      tp = sum(any(_relaxed_equal(s, g) for g in gold) for s in system)
    fp = sum(not any(_relaxed_equal(s, g) for g in gold) for s in system)
    fn = sum(not any(_relaxed_equal(g, s) for s in system) for g in gold)
    return tp, fp, fn
  # Corrected: distinct tags, each gold tag paired with at most one system tag (exact ends first).
  gold, system = sorted(set(gold)), sorted(set(system))
  used = set()
  tp = 0
  for exact_first in (True, False):
    for g in gold:
      if ("g", g) in used:
        continue
      for j, s in enumerate(system):
        if ("s", j) in used:
          continue
        if (s == g) if exact_first else _relaxed_equal(g, s):
          used.update([("g", g), ("s", j)])
          tp += 1
          break
  return tp, len(system) - tp, len(gold) - tp


def note_counts(evaluation, gold_note, system_note, official=True):
  """(tp, fp, fn) of one note pair under `evaluation` (a missing side has no spans)."""
  text = (gold_note or system_note).text
  gold = _items(evaluation, text, gold_note.spans if gold_note else [], official)
  system = _items(evaluation, text, system_note.spans if system_note else [], official)
  if evaluation.relaxed:
    return _relaxed_counts(gold, system, official)
  gold, system = set(gold), set(system)
  tp = len(gold & system)
  return tp, len(system) - tp, len(gold) - tp


def _safe_div(a, b):
  return a / float(b) if b else 0.0


def f_beta(p, r, beta=1):
  """The official F: (1 + beta^2) * p * r / (p + r), 0.0 when p + r is 0."""
  return (1 + beta ** 2) * (p * r) / (p + r) if p + r else 0.0


def summarise(label, counts, official=True, note_ids=None):
  """The official summary of one evaluation from per-note (tp, fp, fn) counts."""
  tp = sum(c[0] for c in counts)
  fp = sum(c[1] for c in counts)
  fn = sum(c[2] for c in counts)
  if official:
    precisions = [_safe_div(c[0], c[0] + c[1]) for c in counts]
    recalls = [_safe_div(c[0], c[0] + c[2]) for c in counts]
  else:
    precisions = [c[0] / float(c[0] + c[1]) for c in counts if c[0] + c[1]]
    recalls = [c[0] / float(c[0] + c[2]) for c in counts if c[0] + c[2]]

  def mean_sd(values):
    if not values:
      return float("nan"), float("nan")
    array = np.array(values, dtype=np.float64)
    return float(array.mean()), float(array.std())

  macro_p, macro_p_sd = mean_sd(precisions)
  macro_r, macro_r_sd = mean_sd(recalls)
  micro_p, micro_r = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
  return {
      "label": label, "documents": len(counts), "tp": tp, "fp": fp, "fn": fn,
      "macro_precision": macro_p, "macro_precision_sd": macro_p_sd,
      "macro_recall": macro_r, "macro_recall_sd": macro_r_sd,
      "macro_f1": f_beta(macro_p, macro_r),
      "micro_precision": micro_p, "micro_recall": micro_r, "micro_f1": f_beta(micro_r, micro_p),
      "micro_f2": report.f_score(micro_p, micro_r, beta=2),
      "per_note": [{"id": i, "counts": list(c)} for i, c in zip(note_ids or [], counts)],
  }


def score(pairs, official=True):
  """Scores (gold Note, system Note) pairs (either may be None: counted as a note without spans).

  Returns:
    {"system_ids": [{"sys_id", "evaluations": [summary dicts in report order, each with its
    "per_note" [tp, fp, fn] counts]}], "official": official}. Notes are grouped by system id (the
    file name's tail) as the official script does.
  """
  groups = {}
  for g, s in pairs:
    if s is not None:
      groups.setdefault(s.sys_id, []).append((g, s))
  # A gold note no system file has (--allow_missing) is missing from every system's run.
  for g, s in pairs:
    if s is None:
      for group in (groups.values() if groups else [groups.setdefault("", [])]):
        group.append((g, s))
  result = []
  for sys_id in sorted(groups):
    group = sorted(groups[sys_id], key=lambda p: (p[0] or p[1]).note_id)
    note_ids = [(g or s).note_id for g, s in group]
    summaries = []
    for evaluation in evaluations(official):
      counts = [note_counts(evaluation, g, s, official) for g, s in group]
      label = ("%s %s" % (sys_id, evaluation.label)) if sys_id else evaluation.label
      summaries.append(summarise(label, counts, official, note_ids))
    result.append({"sys_id": sys_id, "evaluations": summaries})
  return {"system_ids": result, "official": official}


_ROW = "{:<25}{:<15}{:<15}{:<20}"
_RULE = "{:-<25}{:-<15}{:-<15}{:-<20}".format("", "", "", "")


def format_summary(summary):
  """One evaluation as the official script prints it (three rows under a header, two blank lines)."""
  s = summary
  lines = [
      _ROW.format(s["label"] + " ({})".format(s["documents"]), "Measure", "Macro (SD)",
                  "Micro (Primary)"),
      _RULE,
      _ROW.format("Total", "Precision", "{:.4} ({:.2})".format(s["macro_precision"],
                                                            s["macro_precision_sd"]),
                  "{:.4}".format(s["micro_precision"])),
      _ROW.format("", "Recall", "{:.4} ({:.2})".format(s["macro_recall"], s["macro_recall_sd"]),
                  "{:.4}".format(s["micro_recall"])),
      _ROW.format("", "F1", "{:.4}".format(s["macro_f1"]), "{:.4}".format(s["micro_f1"])),
  ]
  return "\n".join(lines) + "\n\n\n"


def format_report(result):
  """The official report: every evaluation's summary, for each system id."""
  return "".join(format_summary(s) for group in result["system_ids"] for s in group["evaluations"])


def headline(result):
  """A few numbers for logs and tables: micro F1 of Token, Strict, Relaxed and binary token recall."""
  by_label = {s["label"]: s for s in result["system_ids"][0]["evaluations"]} if \
      result["system_ids"] else {}
  out = {}
  for label, key in (("Token", "token"), ("Strict", "strict"), ("Relaxed", "relaxed"),
                     ("HIPAA Strict", "hipaa_strict")):
    if label in by_label:
      out[key + "_micro_f1"] = by_label[label]["micro_f1"]
  if "Binary Token" in by_label:
    out["binary_token_recall"] = by_label["Binary Token"]["micro_recall"]
  return out


def format_documents(result):
  """The official per-note layout (what it prints when SYSTEM and GOLD are single files): per
  evaluation `Report for <label>:` and each note's precision, recall and F1 under
  `[gold (tp) system]` counts."""
  out = []
  for group in result["system_ids"]:
    for s in group["evaluations"]:
      out.append("Report for {}:".format(s["label"]))
      out.append(_ROW.format("", "Measure", "", "Micro (Primary)"))
      out.append(_RULE)
      for doc in s["per_note"]:
        tp, fp, fn = doc["counts"]
        p, r = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
        out.append(_ROW.format(doc["id"], "Precision", "", "{:.4}".format(p)))
        out.append(_ROW.format("[{}({}){}]".format(tp + fn, tp, tp + fp), "Recall", "",
                               "{:.4}".format(r)))
        out.append(_ROW.format("", "F1", "", "{:.4}".format(f_beta(p, r))))
        out.append(_RULE)
  return "\n".join(out) + "\n"
