"""Any span task: SemEval-2013 Task 9's four schemes, F2, and binary token recall.

Per note, spans (start, end, type) are sorted by (start, end, type) and each system span is compared
with the gold spans not yet matched, in order (the greedy pairing `nervaluate` uses, so that the
counts agree with it on any input):

  * strict:  correct = same boundaries and type; else incorrect if it overlaps an unmatched gold
             span (the first such); else spurious.
  * exact:   correct = same boundaries (any type); else incorrect if it overlaps; else spurious.
  * partial: correct = same boundaries (any type); else partial if it overlaps; else spurious.
  * type:    correct = overlaps a gold span of the same type (the one with the closest boundaries);
             else incorrect if it overlaps one of another type; else spurious.
Gold spans left unmatched are missed. Over all notes: possible = correct + incorrect + partial +
missed, actual = correct + incorrect + partial + spurious, precision = (correct + 0.5 partial) /
actual, recall = (correct + 0.5 partial) / possible (partial is 0 outside the partial scheme), F1 and
F2 (recall weighted 4x: the de-identification view). Overlap: at least one shared character.

Binary token recall: the share of gold tokens (runs of `[a-zA-Z0-9]`, the i2b2 2014 scorer's tokens,
inside gold spans) that lie wholly inside some system span of any type: the "leak" view of a
de-identification run (a token it misses is PHI left in the text).
"""

from clinicalbert_tf.evaluation import i2b2_2014
from clinicalbert_tf.evaluation import report

SCHEMES = ("strict", "exact", "partial", "type")


def _overlaps(a, b):
  return a[0] < b[1] and b[0] < a[1]


def match_note(gold, system, scheme):
  """{"correct", "incorrect", "partial", "missed", "spurious"} of one note's spans.

  Args:
    gold, system: lists of (start, end, type), in the order to pair them (see the module doc).
    scheme: one of SCHEMES.
  """
  counts = dict(correct=0, incorrect=0, partial=0, missed=0, spurious=0)
  matched = set()
  for s in system:
    outcome, chosen = "spurious", None
    if scheme == "type":
      best = None
      for j, g in enumerate(gold):
        if j in matched or not _overlaps(s, g):
          continue
        if g[2] == s[2]:
          distance = abs(s[0] - g[0]) + abs(s[1] - g[1])
          if best is None or distance < best:
            best, outcome, chosen = distance, "correct", j
        elif outcome == "spurious":
          outcome, chosen = "incorrect", j
    else:
      for j, g in enumerate(gold):
        if j in matched:
          continue
        same_boundaries = (s[0], s[1]) == (g[0], g[1])
        if same_boundaries and (scheme != "strict" or s[2] == g[2]):
          outcome, chosen = "correct", j
          break
        if _overlaps(s, g) and outcome == "spurious":
          outcome, chosen = ("partial" if scheme == "partial" else "incorrect"), j
    counts[outcome] += 1
    if chosen is not None:
      matched.add(chosen)
  counts["missed"] = len(gold) - len(matched)
  return counts


def scheme_metrics(counts):
  """Precision, recall, F1, F2 (and `possible`, `actual`) from summed counts."""
  c = counts
  possible = c["correct"] + c["incorrect"] + c["partial"] + c["missed"]
  actual = c["correct"] + c["incorrect"] + c["partial"] + c["spurious"]
  hits = c["correct"] + 0.5 * c["partial"]
  p = hits / actual if actual else 0.0
  r = hits / possible if possible else 0.0
  return dict(counts, possible=possible, actual=actual, precision=p, recall=r,
              f1=report.f_score(p, r), f2=report.f_score(p, r, 2.0))


def note_spans(note):
  """A Note's spans as sorted (start, end, type) tuples."""
  return sorted((s.start, s.end, s.type) for s in (note.spans if note else []))


def token_recall_counts(text, gold, system):
  """(gold tokens covered by a system span, gold tokens) of one note."""
  covered = total = 0
  for start, end, _ in gold:
    for t_start, t_end in i2b2_2014.phi_tokens(text, start, end):
      if t_start == t_end:
        continue  # a span without letters or digits has no token to leak
      total += 1
      covered += any(s[0] <= t_start and t_end <= s[1] for s in system)
  return covered, total


def score(pairs):
  """Scores (gold Note, system Note) pairs: every scheme overall and per type, binary token recall.

  Returns:
    {"overall": {scheme: metrics}, "per_type": {type: {scheme: metrics}}, "binary_token_recall",
    "binary_tokens": [covered, total], "documents": n, "per_note": [{"id", scheme: counts}]}.
  """
  totals = {scheme: dict(correct=0, incorrect=0, partial=0, missed=0, spurious=0)
            for scheme in SCHEMES}
  per_type = {}
  per_note = []
  covered = total = 0
  for g_note, s_note in pairs:
    gold, system = note_spans(g_note), note_spans(s_note)
    text = (g_note or s_note).text
    entry = {"id": (g_note or s_note).note_id}
    for scheme in SCHEMES:
      counts = match_note(gold, system, scheme)
      entry[scheme] = counts
      for k, v in counts.items():
        totals[scheme][k] += v
      for typ in sorted({x[2] for x in gold} | {x[2] for x in system}):
        typed = match_note([x for x in gold if x[2] == typ], [x for x in system if x[2] == typ],
                           scheme)
        slot = per_type.setdefault(typ, {}).setdefault(
            scheme, dict(correct=0, incorrect=0, partial=0, missed=0, spurious=0))
        for k, v in typed.items():
          slot[k] += v
    if text is not None:
      c, t = token_recall_counts(text, gold, system)
      covered += c
      total += t
    per_note.append(entry)
  return {
      "overall": {scheme: scheme_metrics(totals[scheme]) for scheme in SCHEMES},
      "per_type": {typ: {scheme: scheme_metrics(c) for scheme, c in schemes.items()}
                   for typ, schemes in sorted(per_type.items())},
      "binary_token_recall": covered / float(total) if total else 0.0,
      "binary_tokens": [covered, total],
      "documents": len(pairs),
      "per_note": per_note,
  }


def format_report(result):
  """A plain-text table: each scheme's counts and P/R/F1/F2, per type strict F1, token recall."""
  row = "{:<10}{:>9}{:>10}{:>9}{:>8}{:>10}{:>11}{:>9}{:>8}{:>8}"
  lines = ["Spans (%d notes): SemEval-2013 schemes, micro over notes" % result["documents"], "",
           row.format("Scheme", "Correct", "Incorrect", "Partial", "Missed", "Spurious",
                      "Precision", "Recall", "F1", "F2"), "-" * 92]
  for scheme in SCHEMES:
    m = result["overall"][scheme]
    lines.append(row.format(scheme, m["correct"], m["incorrect"], m["partial"], m["missed"],
                            m["spurious"], "%.4f" % m["precision"], "%.4f" % m["recall"],
                            "%.4f" % m["f1"], "%.4f" % m["f2"]))
  covered, total = result["binary_tokens"]
  lines += ["", "Binary token recall: %.4f (%d of %d gold tokens inside a system span)" % (
      result["binary_token_recall"], covered, total), "", "Per type (strict):",
            row.format("Type", "Correct", "Incorrect", "Partial", "Missed", "Spurious",
                       "Precision", "Recall", "F1", "F2"), "-" * 92]
  for typ, schemes in result["per_type"].items():
    m = schemes["strict"]
    lines.append(row.format(typ[:10], m["correct"], m["incorrect"], m["partial"], m["missed"],
                            m["spurious"], "%.4f" % m["precision"], "%.4f" % m["recall"],
                            "%.4f" % m["f1"], "%.4f" % m["f2"]))
  return "\n".join(lines) + "\n"
