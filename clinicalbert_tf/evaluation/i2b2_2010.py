"""The i2b2/VA 2010 concept scorer's measures: exact and inexact matching, with and without the class.

The challenge's evaluation (the i2b2va-eval.jar, described in Uzuner et al., JAMIA 2011) compares
concepts as token spans, `line:token` to `line:token` (end inclusive), over each note's `.con` files.
The jar itself was not available to compare with; these are the measures as the challenge defines them,
and the per-side counting below is this reimplementation's reading of them:

  * exact:   the system concept has the gold concept's first and last token;
  * inexact: the two spans share at least one token;
  * class:   the concept type (problem, test, treatment) must also agree; no class: it is ignored.
Recall = gold concepts matched by some system concept / gold concepts; precision = system concepts
matching some gold concept / system concepts (each side counted on its own, so one long system
concept overlapping two gold concepts makes both recalled under inexact matching); F1 = 2PR/(P+R).
Micro-averaged over all concepts of all notes, overall and per class.
"""

from clinicalbert_tf import fileio
from clinicalbert_tf.evaluation import report

MEASURES = (("exact", True), ("exact", False), ("inexact", True), ("inexact", False))


def _positions(note):
  """(first, last, type) of each concept; first and last are (line, token)."""
  result = []
  for n, span in enumerate(note.spans if note else []):
    if span.first is None:
      raise fileio.InputError("%s: span %d has no line:token positions (the i2b2_2010 scorer reads "
                              ".con files)" % (note.path, n + 1))
    result.append((span.first, span.last, span.type))
  return result


def _match(a, b, exact, with_class):
  if with_class and a[2] != b[2]:
    return False
  if exact:
    return (a[0], a[1]) == (b[0], b[1])
  return a[0] <= b[1] and b[0] <= a[1]


def measure_name(exact, with_class):
  return "%s %s" % ("Exact" if exact == "exact" else "Inexact", "Class" if with_class else
                    "Span")


def score(pairs):
  """Every measure overall and per class over (gold Note, system Note) pairs of `.con` notes."""
  overall = {}
  per_class = {}
  for kind, with_class in MEASURES:
    name = measure_name(kind, with_class)
    counts = {}  # class -> [system matched, system, gold matched, gold]
    for g_note, s_note in pairs:
      gold, system = _positions(g_note), _positions(s_note)
      for classes, items, others, offset in ((None, system, gold, 0), (None, gold, system, 2)):
        for item in items:
          hit = any(_match(item, other, kind == "exact", with_class) for other in others)
          for key in ("all", item[2]):
            c = counts.setdefault(key, [0, 0, 0, 0])
            c[offset] += hit
            c[offset + 1] += 1
    for key, (s_hit, s_all, g_hit, g_all) in sorted(counts.items()):
      p = s_hit / float(s_all) if s_all else 0.0
      r = g_hit / float(g_all) if g_all else 0.0
      entry = {"precision": p, "recall": r, "f1": report.f_score(p, r),
               "system_matched": s_hit, "system": s_all, "gold_matched": g_hit, "gold": g_all}
      if key == "all":
        overall[name] = entry
      else:
        per_class.setdefault(key, {})[name] = entry
  return {"overall": overall, "per_class": per_class, "documents": len(pairs)}


def format_report(result):
  """A plain-text table: each measure's recall, precision and F1, overall and per class."""
  row = "{:<16}{:<16}{:>10}{:>11}{:>10}{:>10}{:>10}"
  lines = ["i2b2 2010 concepts (%d notes)" % result["documents"], "",
           row.format("Class", "Measure", "Recall", "Precision", "F1", "Gold", "System"),
           "-" * 83]
  for group, entries in [("all", result["overall"])] + sorted(result["per_class"].items()):
    for kind, with_class in MEASURES:
      name = measure_name(kind, with_class)
      if name not in entries:
        continue
      e = entries[name]
      lines.append(row.format(group, name, "%.4f" % e["recall"], "%.4f" % e["precision"],
                              "%.4f" % e["f1"], e["gold"], e["system"]))
  return "\n".join(lines) + "\n"
