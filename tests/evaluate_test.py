"""evaluate.py: the i2b2 2014 scorer against hand-computed numbers, i2b2 2010 measures, bad input.

The expected counts below were worked out by hand from the official script's definitions (the
comments show the items); the metrics are then plain arithmetic over those counts, written here.
"""

import collections
import json
import os
import random
import statistics
import stat

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf.evaluation import html
from clinicalbert_tf.evaluation import i2b2_2014
from clinicalbert_tf.evaluation import readers
from clinicalbert_tf.evaluation import scoring
from clinicalbert_tf.tasks import i2b2_2014 as i2b2_2014_task
from tests import testutil

XmlSpan = collections.namedtuple("XmlSpan", ["start", "end", "label"])

def place(words):
  """Text of `words` joined by single spaces and [(start, end)] of each word."""
  offsets, position = [], 0
  for w in words:
    offsets.append((position, position + len(w)))
    position += len(w) + 1
  return " ".join(words), offsets


def write_xml(path, text, tags):
  """An i2b2 2014 XML file (predict.py's writer); tags are (element, TYPE, start, end), each
  element the one the guidelines put its TYPE under."""
  for element, typ, _, _ in tags:
    assert i2b2_2014_task.i2b2_2014_tag(typ) == element, (element, typ)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(i2b2_2014_task.format_i2b2_2014(
        text, [XmlSpan(start, end, typ) for _, typ, start, end in tags]))


# Note 100-01:  Dr John Smith saw 12/01/2090 at Mercy ; MRN 12345 age 91 .
WORDS_A = "Dr John Smith saw 12/01/2090 at Mercy ; MRN 12345 age 91 .".split()
# Note 100-02:  Seen 01/02/2091 by nurse Kim , IDNUM 9988 .
WORDS_B = "Seen 01/02/2091 by nurse Kim , IDNUM 9988 .".split()


def write_hand_set(root):
  """The three notes of the hand-computed case under root/gold and root/system."""
  text, w = place(WORDS_A)
  gold = [("NAME", "DOCTOR", w[1][0], w[2][1]),      # John Smith
          ("DATE", "DATE", w[4][0], w[4][1]),        # 12/01/2090
          ("LOCATION", "HOSPITAL", w[6][0], w[6][1]),  # Mercy
          ("ID", "MEDICALRECORD", w[9][0], w[9][1]),  # 12345
          ("AGE", "AGE", w[11][0], w[11][1])]        # 91
  system = [("NAME", "DOCTOR", w[1][0], w[2][1]),    # exact
            ("DATE", "DATE", w[4][0], w[4][1] - 1),  # 12/01/209: end off by 1
            ("LOCATION", "CITY", w[6][0], w[6][1]),  # type confusion
            # 12345 missing
            ("AGE", "AGE", w[11][0], w[11][1]),      # exact
            ("NAME", "PATIENT", w[0][0], w[0][1])]   # extra: Dr
  write_xml(os.path.join(root, "gold", "100-01.xml"), text, gold)
  write_xml(os.path.join(root, "system", "100-01.xml"), text, system)

  text, w = place(WORDS_B)
  gold = [("DATE", "DATE", w[1][0], w[1][1]),        # 01/02/2091
          ("PROFESSION", "PROFESSION", w[3][0], w[3][1]),  # nurse
          ("NAME", "DOCTOR", w[4][0], w[4][1]),      # Kim
          ("ID", "IDNUM", w[7][0], w[7][1])]         # 9988
  system = [("DATE", "DATE", w[1][0], w[1][1] + 3),  # "01/02/2091 by": end off by 3
            ("PROFESSION", "PROFESSION", w[3][0], w[3][1]),
            ("NAME", "DOCTOR", w[4][0], w[4][1]),
            ("NAME", "DOCTOR", w[4][0], w[4][1]),    # a duplicate: one item in a set
            ("ID", "IDNUM", w[7][0], w[7][1])]
  write_xml(os.path.join(root, "gold", "100-02.xml"), text, gold)
  write_xml(os.path.join(root, "system", "100-02.xml"), text, system)

  # Note 100-03: no PHI on either side.
  write_xml(os.path.join(root, "gold", "100-03.xml"), "No PHI here .", [])
  write_xml(os.path.join(root, "system", "100-03.xml"), "No PHI here .", [])


# Per note (100-01, 100-02, 100-03) the (tp, fp, fn) of each evaluation, counted by hand.
HAND_COUNTS = {
    # Tags. 100-01: John Smith and 91 match; 12/01/209, Mercy/CITY, Dr are FP; 2090, Mercy/HOSPITAL,
    # 12345 FN. 100-02: the date's end is 3 off (FP + FN); the duplicate Kim counts once.
    "Strict": [(2, 3, 3), (3, 1, 1), (0, 0, 0)],
    # The end 1 off matches within 2; 3 off does not.
    "Relaxed": [(3, 2, 2), (3, 1, 1), (0, 0, 0)],
    # Tokens. 100-01 gold: John Smith 12 01 2090 Mercy 12345 91; system: John Smith 12 01 209
    # Mercy(CITY) 91 Dr. 100-02 gold: 01 02 2091 nurse Kim 9988; system adds "by".
    "Token": [(5, 3, 3), (6, 1, 0), (0, 0, 0)],
    # HIPAA: DATE, AGE, ID/MEDICALRECORD, NAME/PATIENT, LOCATION/CITY count; DOCTOR, HOSPITAL,
    # PROFESSION do not, nor IDNUM (the official list has "IDNUM " with a space).
    "HIPPA Token": [(3, 3, 2), (3, 1, 0), (0, 0, 0)],
    "HIPAA Strict": [(1, 3, 2), (0, 1, 1), (0, 0, 0)],
    # 100-01: 4 system items > 3 gold, so true positives are counted over gold: 12/01/2090, 91.
    "HIPAA Relaxed": [(2, 2, 1), (0, 1, 1), (0, 0, 0)],
    # Binary: positions only (Mercy matches whatever its type).
    "Binary Token": [(6, 2, 2), (6, 1, 0), (0, 0, 0)],
    "Binary Strict": [(3, 2, 2), (3, 1, 1), (0, 0, 0)],
    "Binary HIPPA Token": [(3, 3, 2), (3, 1, 0), (0, 0, 0)],
    "Binary HIPAA Strict": [(1, 3, 2), (0, 1, 1), (0, 0, 0)],
    # Per element. NAME: John Smith TP, Dr FP; Kim TP.
    "NAME Strict": [(1, 1, 0), (1, 0, 0), (0, 0, 0)],
    "NAME Token": [(2, 1, 0), (1, 0, 0), (0, 0, 0)],
    "NAME HIPPA Token": [(0, 1, 0), (0, 0, 0), (0, 0, 0)],   # only Dr/PATIENT is HIPAA
    "NAME Binary HIPAA Strict": [(0, 1, 0), (0, 0, 0), (0, 0, 0)],
    "DATE Strict": [(0, 1, 1), (0, 1, 1), (0, 0, 0)],
    "DATE Token": [(2, 1, 1), (3, 1, 0), (0, 0, 0)],
    "LOCATION Strict": [(0, 1, 1), (0, 0, 0), (0, 0, 0)],
    "LOCATION HIPPA Token": [(0, 1, 0), (0, 0, 0), (0, 0, 0)],  # Mercy/CITY only
    "ID Strict": [(0, 0, 1), (1, 0, 0), (0, 0, 0)],
    "ID HIPPA Token": [(0, 0, 1), (0, 0, 0), (0, 0, 0)],
    "AGE Strict": [(1, 0, 0), (0, 0, 0), (0, 0, 0)],
    "PROFESSION Token": [(0, 0, 0), (1, 0, 0), (0, 0, 0)],
    "CONTACT Strict": [(0, 0, 0), (0, 0, 0), (0, 0, 0)],
}


def expected_summary(counts):
  """The official summary arithmetic over per-note counts, written out independently."""
  precisions = [tp / (tp + fp) if tp + fp else 0.0 for tp, fp, _ in counts]
  recalls = [tp / (tp + fn) if tp + fn else 0.0 for tp, _, fn in counts]
  tp = sum(c[0] for c in counts)
  fp = sum(c[1] for c in counts)
  fn = sum(c[2] for c in counts)
  micro_p = tp / (tp + fp) if tp + fp else 0.0
  micro_r = tp / (tp + fn) if tp + fn else 0.0
  macro_p, macro_r = statistics.fmean(precisions), statistics.fmean(recalls)
  f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0
  return {"tp": tp, "fp": fp, "fn": fn, "micro_precision": micro_p, "micro_recall": micro_r,
          "micro_f1": f1(micro_p, micro_r), "macro_precision": macro_p,
          "macro_precision_sd": statistics.pstdev(precisions), "macro_recall": macro_r,
          "macro_recall_sd": statistics.pstdev(recalls), "macro_f1": f1(macro_p, macro_r)}


class I2b2_2014Test(testutil.TestCase):  # pylint: disable=invalid-name

  def score(self, root, official=True, allow_missing=False):
    text, result, _ = scoring.evaluate(os.path.join(root, "gold"), os.path.join(root, "system"),
                                       "i2b2_2014", allow_missing=allow_missing,
                                       official=official)
    return text, {s["label"]: s for s in result["system_ids"][0]["evaluations"]}

  def test_hand_computed_counts_and_metrics(self):
    root = self.temp_dir()
    write_hand_set(root)
    _, by_label = self.score(root)
    self.assertLen(by_label, 10 + 4 * 8)
    for label, counts in HAND_COUNTS.items():
      got = by_label[label]
      self.assertEqual([n["counts"] for n in got["per_note"]], [list(c) for c in counts], label)
      self.assertEqual(got["documents"], 3)
      for key, value in expected_summary(counts).items():
        self.assertAlmostEqual(got[key], value, places=12, msg="%s %s" % (label, key))

  def test_report_layout(self):
    root = self.temp_dir()
    write_hand_set(root)
    text, _ = self.score(root)
    # Strict: micro 5/9; macro P and R = (2/5 + 3/4 + 0) / 3 = 0.38333, SD 0.3064.
    strict = (
        "Strict (3)               Measure        Macro (SD)     Micro (Primary)     \n"
        "---------------------------------------------------------------------------\n"
        "Total                    Precision      0.3833 (0.31)  0.5556              \n"
        "                         Recall         0.3833 (0.31)  0.5556              \n"
        "                         F1             0.3833         0.5556              \n\n\n")
    self.assertIn(strict, text)
    # Token: micro P 11/15, R 11/14, F1 22/29; macro P (5/8 + 6/7 + 0) / 3 = 0.49405 ("0.494"),
    # macro R (5/8 + 1 + 0) / 3 = 0.54167, macro F1 0.51676.
    self.assertIn("Total                    Precision      0.494 (0.36)   0.7333              \n"
                  "                         Recall         0.5417 (0.41)  0.7857              \n"
                  "                         F1             0.5168         0.7586              \n",
                  text)
    # A label longer than its 25-character column runs into the next one, as the official prints it.
    self.assertIn("CONTACT Binary HIPAA Strict (3)Measure", text)
    labels = [line.split(" (3)")[0] for line in text.splitlines() if " (3)" in line]
    self.assertEqual(labels[:10], ["Token", "Strict", "Relaxed", "HIPPA Token", "HIPAA Strict",
                                   "HIPAA Relaxed", "Binary Token", "Binary Strict",
                                   "Binary HIPPA Token", "Binary HIPAA Strict"])
    self.assertEqual(labels[10:14], ["CONTACT Token", "CONTACT Strict", "CONTACT HIPPA Token",
                                     "CONTACT Binary HIPAA Strict"])
    self.assertEqual([labels[i].split()[0] for i in range(10, 42, 4)],
                     ["CONTACT", "NAME", "DATE", "AGE", "PROFESSION", "ID", "OTHER", "LOCATION"])

  def test_single_files_get_the_per_note_layout(self):
    root = self.temp_dir()
    write_hand_set(root)
    text, _, _ = scoring.evaluate(os.path.join(root, "gold", "100-01.xml"),
                                  os.path.join(root, "system", "100-01.xml"), "i2b2_2014")
    # Token of 100-01: 8 gold, 5 matched, 8 system: P = R = F1 = 5/8.
    self.assertTrue(text.startswith(
        "Report for Token:\n"
        "                         Measure                       Micro (Primary)     \n"
        "---------------------------------------------------------------------------\n"
        "100-01                   Precision                     0.625               \n"
        "[8(5)8]                  Recall                        0.625               \n"
        "                         F1                            0.625               \n"
        "---------------------------------------------------------------------------\n"
        "Report for Strict:\n"), text[:800])

  def test_corrected_behaviour(self):
    root = self.temp_dir()
    write_hand_set(root)
    _, by_label = self.score(root, official=False)
    # IDNUM is HIPAA now: 100-02 gold DATE + IDNUM, system DATE(+3) + IDNUM -> (1, 1, 1).
    self.assertEqual(by_label["HIPAA Strict"]["per_note"][1]["counts"], [1, 1, 1])
    # The empty note is left out of the macro averages: (2/5 + 3/4) / 2.
    self.assertAlmostEqual(by_label["Strict"]["macro_precision"], 0.575)
    self.assertIn("NAME HIPAA Strict", by_label)

  def test_relaxed_quirks(self):
    root = self.temp_dir()
    text, w = place("on 12/01/2090 and later".split())
    start, end = w[1]
    write_xml(os.path.join(root, "gold", "200-01.xml"), text, [("DATE", "DATE", start, end)])
    # Two system dates, ends 2 short and 2 long: each within 2 of the gold end, 4 apart.
    write_xml(os.path.join(root, "system", "200-01.xml"), text,
              [("DATE", "DATE", start, end - 2), ("DATE", "DATE", start, end + 2)])
    _, by_label = self.score(root)
    # Official: 2 system > 1 gold, so TP counts gold items (1); no system tag is unmatched.
    self.assertEqual(by_label["Relaxed"]["per_note"][0]["counts"], [1, 0, 0])
    _, by_label = self.score(root, official=False)
    self.assertEqual(by_label["Relaxed"]["per_note"][0]["counts"], [1, 1, 0])
    # Within 2 of each other, two system tags are one item.
    write_xml(os.path.join(root, "system", "200-01.xml"), text,
              [("DATE", "DATE", start, end + 1), ("DATE", "DATE", start, end + 2)])
    _, by_label = self.score(root)
    self.assertEqual(by_label["Relaxed"]["per_note"][0]["counts"], [1, 0, 0])
    self.assertEqual(by_label["Strict"]["per_note"][0]["counts"], [0, 2, 1])

  def test_every_type_and_punctuation_only_phi(self):
    root = self.temp_dir()
    types = [(tag, typ) for tag, typs in sorted(i2b2_2014_types().items()) for typ in typs]
    words = ["w%d" % i for i in range(len(types))] + ["--"]
    text, w = place(words)
    gold = [(tag, typ, w[i][0], w[i][1]) for i, (tag, typ) in enumerate(types)]
    gold.append(("DATE", "DATE", w[-1][0], w[-1][1]))  # "--": one empty token at its end
    write_xml(os.path.join(root, "gold", "300-01.xml"), text, gold)
    write_xml(os.path.join(root, "system", "300-01.xml"), text, gold[:-1])
    _, by_label = self.score(root)
    self.assertEqual(by_label["Strict"]["per_note"][0]["counts"], [len(types), 0, 1])
    self.assertEqual(by_label["Token"]["per_note"][0]["counts"], [len(types), 0, 1])
    # HIPAA items: PATIENT, CITY, STREET, ZIP, ORGANIZATION, PHONE, FAX, EMAIL, SSN,
    # MEDICALRECORD, HEALTHPLAN, ACCOUNT, LICENSE, VEHICLE, DEVICE, BIOID, AGE, DATE (+ the
    # gold-only "--" DATE): 18 matched, 1 missed.
    self.assertEqual(by_label["HIPAA Strict"]["per_note"][0]["counts"], [18, 0, 1])

  def test_missing_counterpart(self):
    root = self.temp_dir()
    write_hand_set(root)
    os.remove(os.path.join(root, "system", "100-02.xml"))
    with self.assertRaisesRegex(fileio.InputError, r"100-02\.xml: no system note 100-02"):
      self.score(root)
    _, by_label = self.score(root, allow_missing=True)
    # 100-02 counts with no system spans: its 4 gold tags are false negatives.
    self.assertEqual(by_label["Strict"]["per_note"][1]["counts"], [0, 0, 4])
    self.assertEqual(by_label["Strict"]["documents"], 3)


def i2b2_2014_types():
  return i2b2_2014_task.I2B2_2014_TAGS


class CommandLineTest(testutil.TestCase):

  def run_evaluate(self, *args, check=True):
    return testutil.run_module("evaluate", list(args), check=check, timeout=120)

  def test_report_json_twin_and_page(self):
    root = self.temp_dir()
    write_hand_set(root)
    out = os.path.join(root, "out", "report.txt")
    page = os.path.join(root, "out", "review.html")
    proc = self.run_evaluate("--gold=%s/gold" % root, "--system=%s/system" % root,
                             "--output_file=" + out, "--html_file=" + page)
    with open(out, encoding="utf-8") as f:
      self.assertEqual(f.read(), proc.stdout)
    with open(os.path.join(root, "out", "report.json"), encoding="utf-8") as f:
      result = json.load(f)
    strict = [s for s in result["system_ids"][0]["evaluations"] if s["label"] == "Strict"][0]
    self.assertEqual((strict["tp"], strict["fp"], strict["fn"]), (5, 4, 4))
    self.assertEqual(stat.S_IMODE(os.stat(page).st_mode), 0o600)
    with open(page, encoding="utf-8") as f:
      content = f.read()
    self.assertIn("protected health information", content)
    self.assertNotRegex(content, r"(src|href)=\"?(https?:)?//")

  def test_bad_input_is_one_line_naming_the_file(self):
    root = self.temp_dir()
    write_hand_set(root)
    gold, system = os.path.join(root, "gold"), os.path.join(root, "system")
    bad = os.path.join(system, "100-01.xml")
    cases = []
    # A system text that differs from the gold text.
    with open(bad, encoding="utf-8") as f:
      original = f.read()
    cases.append((original.replace("Dr John", "Dr Joan"), r"100-01\.xml: its text differs"))
    # Malformed XML.
    cases.append((original.replace("</TAGS>", "</TAG>"), r"100-01\.xml: malformed XML at line"))
    # An offset outside the text.
    cases.append((original.replace('end="13"', 'end="913"'),
                  r"100-01\.xml: <NAME id=P0> has offsets 3-913 outside the text"))
    for content, pattern in cases:
      with open(bad, "w", encoding="utf-8") as f:
        f.write(content)
      proc = self.run_evaluate("--gold=" + gold, "--system=" + system, check=False)
      self.assertEqual(proc.returncode, 1, proc.stderr)
      last = proc.stderr.strip().splitlines()[-1]
      self.assertRegex(last, r"^evaluate\.py: error: .*" + pattern)
    with open(bad, "w", encoding="utf-8") as f:
      f.write(original)
    os.remove(os.path.join(gold, "100-03.xml"))
    proc = self.run_evaluate("--gold=" + gold, "--system=" + system, check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertRegex(proc.stderr.strip().splitlines()[-1], r"100-03\.xml: no gold note 100-03")
    proc = self.run_evaluate("--gold=" + gold, "--system=" + system, "--allow_missing")
    self.assertIn("Strict (3)", proc.stdout)


  def test_spans_scorer_on_brat_gold_and_json_lines(self):
    root = self.temp_dir()
    os.makedirs(os.path.join(root, "gold"))
    text = "Jane Roe seen 01/02/2090"
    with open(os.path.join(root, "gold", "n1.txt"), "w", encoding="utf-8") as f:
      f.write(text)
    with open(os.path.join(root, "gold", "n1.ann"), "w", encoding="utf-8") as f:
      f.write("T1\tPATIENT 0 8\tJane Roe\nT2\tDATE 14 24\t01/02/2090\n")
    with open(os.path.join(root, "system.jsonl"), "w", encoding="utf-8") as f:
      f.write(json.dumps({"id": "n1", "entities": [
          {"start": 0, "end": 4, "label": "PATIENT", "score": 0.9},
          {"start": 14, "end": 24, "label": "DATE", "score": 0.8}]}) + "\n")
    out = os.path.join(root, "report.txt")
    self.run_evaluate("--gold=%s/gold" % root, "--system=%s/system.jsonl" % root,
                      "--scorer=spans", "--output_file=" + out,
                      "--html_file=%s/review.html" % root)
    with open(os.path.join(root, "report.json"), encoding="utf-8") as f:
      result = json.load(f)
    # Strict: DATE correct, Jane incorrect (overlaps Jane Roe); partial: (1 + 0.5) / 2.
    self.assertEqual(result["overall"]["strict"]["correct"], 1)
    self.assertEqual(result["overall"]["strict"]["incorrect"], 1)
    self.assertAlmostEqual(result["overall"]["partial"]["recall"], 0.75)
    # Tokens Jane, Roe, 01, 02, 2090: all but Roe inside a system span.
    self.assertEqual(result["binary_tokens"], [4, 5])
    self.assertTrue(os.path.isfile(os.path.join(root, "review.html")))


class I2b2_2010Test(testutil.TestCase):  # pylint: disable=invalid-name

  def test_exact_and_inexact_with_and_without_class(self):
    root = self.temp_dir()
    os.makedirs(os.path.join(root, "gold"))
    os.makedirs(os.path.join(root, "system"))
    with open(os.path.join(root, "gold", "n1.txt"), "w") as f:
      f.write("he has chest pain and a fever\nstarted aspirin today\n")
    with open(os.path.join(root, "gold", "n1.con"), "w") as f:
      f.write('c="chest pain" 1:2 1:3||t="problem"\n'
              'c="a fever" 1:5 1:6||t="problem"\n'
              'c="aspirin" 2:1 2:1||t="treatment"\n')
    with open(os.path.join(root, "system", "n1.con"), "w") as f:
      f.write('c="chest pain" 1:2 1:3||t="problem"\n'     # exact, same class
              'c="fever" 1:6 1:6||t="problem"\n'          # overlaps, same class
              'c="aspirin" 2:1 2:1||t="test"\n'           # exact span, other class
              'c="today" 2:2 2:2||t="test"\n')            # nothing
    _, result, _ = scoring.evaluate(os.path.join(root, "gold"), os.path.join(root, "system"),
                                    "i2b2_2010")
    overall = result["overall"]
    # Exact class: 1 of 3 gold recalled, 1 of 4 system right.
    self.assertEqual((overall["Exact Class"]["gold_matched"],
                      overall["Exact Class"]["system_matched"]), (1, 1))
    # Exact span: chest pain and aspirin.
    self.assertEqual((overall["Exact Span"]["gold_matched"],
                      overall["Exact Span"]["system_matched"]), (2, 2))
    # Inexact class: chest pain, fever.
    self.assertEqual((overall["Inexact Class"]["gold_matched"],
                      overall["Inexact Class"]["system_matched"]), (2, 2))
    # Inexact span: all three gold; system: all but "today".
    self.assertAlmostEqual(overall["Inexact Span"]["recall"], 1.0)
    self.assertAlmostEqual(overall["Inexact Span"]["precision"], 0.75)
    self.assertAlmostEqual(overall["Inexact Span"]["f1"], 2 * 0.75 / 1.75)


class PageTest(testutil.TestCase):

  def test_outcomes(self):
    gold = [(0, 4, "NAME"), (10, 14, "DATE"), (20, 24, "CITY"), (30, 34, "AGE")]
    system = [(0, 4, "NAME"), (10, 13, "DATE"), (20, 24, "STATE"), (40, 44, "AGE")]
    self.assertEqual(html.classify(gold, system),
                     (["tp", "boundary", "type", "fn"], ["tp", "boundary", "type", "fp"]))

  def test_outcomes_equal_their_definition(self):
    rng = random.Random(7)

    def definition(spans, others, missing):
      result = []
      for s in spans:
        touching = [o for o in others if s[0] < o[1] and o[0] < s[1]]
        if s in others:
          result.append("tp")
        elif any(o[2] == s[2] for o in touching):
          result.append("boundary")
        else:
          result.append("type" if touching else missing)
      return result

    for _ in range(200):
      def draw():
        starts = [rng.randrange(50) for _ in range(rng.randrange(8))]
        return [(a, a + rng.randrange(1, 9), rng.choice("AB")) for a in starts]
      gold, system = draw(), draw()
      self.assertEqual(html.classify(gold, system),
                       (definition(gold, system, "fn"), definition(system, gold, "fp")))

  def test_script_cannot_be_closed_by_note_text(self):
    page = html.render_page([("n1", "a </script><script>alert(1)</script>", None,
                              [(0, 1, "X")])])
    self.assertEqual(page.count("</script>"), 2)  # the data block's and the script's own

  def test_reader_ids(self):
    self.assertEqual(readers.i2b2_2014_ids("/x/220-01.xml"), ("220-01", ""))
    self.assertEqual(readers.i2b2_2014_ids("/x/220-01sys1.xml"), ("220-01", "sys1"))
    self.assertEqual(readers.i2b2_2014_ids("/x/note.xml"), ("note-", ""))


if __name__ == "__main__":
  absltest.main()
