"""The review page in a real browser: Debian's chromium, headless, loads what evaluate.py wrote.

Checks the DOM after the page's script ran (`--dump-dom`): one <mark> per span with the type and
outcome the definitions give, the counts shown equal the report's, and navigation (a note named in
the address is shown; the list's click handler shows the clicked note). Writes a screenshot under the
test's temporary folder.

`make test` installs chromium when it is missing; without it the test is skipped, except under CI
(the `CI` environment variable set), where a missing browser is a failure.
"""

import collections
import json
import os
import re
import shutil
import subprocess
from xml.sax import saxutils

from absl.testing import absltest

from clinicalbert_tf.evaluation import scoring
from clinicalbert_tf.tasks import i2b2_2014 as i2b2_2014_task
from tests import testutil

XmlSpan = collections.namedtuple("XmlSpan", ["start", "end", "label"])

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-crash-reporter", "--disable-dev-shm-usage")

TEXT_A = "Dr John Smith saw 12/01/2090 at Mercy ; MRN 12345 age 91 ."
TEXT_B = "Seen 01/02/2091 by nurse Kim ."
TEXT_C = "No PHI here ."


def span(text, word, typ, tag, end_delta=0):
  start = text.index(word)
  return (tag, typ, start, start + len(word) + end_delta)


NOTES = {
    "100-01": (TEXT_A,
               [span(TEXT_A, "John Smith", "DOCTOR", "NAME"),
                span(TEXT_A, "12/01/2090", "DATE", "DATE"),
                span(TEXT_A, "Mercy", "HOSPITAL", "LOCATION"),
                span(TEXT_A, "12345", "MEDICALRECORD", "ID"),
                span(TEXT_A, "91", "AGE", "AGE")],
               [span(TEXT_A, "Dr", "PATIENT", "NAME"),
                span(TEXT_A, "John Smith", "DOCTOR", "NAME"),
                span(TEXT_A, "12/01/2090", "DATE", "DATE", -1),
                span(TEXT_A, "Mercy", "CITY", "LOCATION"),
                span(TEXT_A, "91", "AGE", "AGE")]),
    "100-02": (TEXT_B,
               [span(TEXT_B, "01/02/2091", "DATE", "DATE"), span(TEXT_B, "Kim", "DOCTOR", "NAME")],
               [span(TEXT_B, "01/02/2091", "DATE", "DATE"), span(TEXT_B, "Kim", "DOCTOR", "NAME")]),
    "100-03": (TEXT_C, [], []),
}

# (type, outcome) of each mark in order, per note and side: worked out from the definitions.
EXPECTED_MARKS = {
    "100-01": {
        "gold": [("DOCTOR", "tp"), ("DATE", "boundary"), ("HOSPITAL", "type"),
                 ("MEDICALRECORD", "fn"), ("AGE", "tp")],
        "system": [("PATIENT", "fp"), ("DOCTOR", "tp"), ("DATE", "boundary"), ("CITY", "type"),
                   ("AGE", "tp")],
    },
    "100-02": {"gold": [("DATE", "tp"), ("DOCTOR", "tp")],
               "system": [("DATE", "tp"), ("DOCTOR", "tp")]},
    "100-03": {"gold": [], "system": []},
}


def write_xml(path, text, tags):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(i2b2_2014_task.format_i2b2_2014(
        text, [XmlSpan(start, end, typ) for _, typ, start, end in tags]))


def find_browser():
  for name in BROWSERS:
    path = shutil.which(name)
    if path:
      return path
  return None


def section(dom, element_id):
  m = re.search(r'<pre id="%s">(.*?)</pre>' % element_id, dom, re.S)
  return m.group(1) if m else None


def marks(fragment):
  """(type, outcome, class list) of each <mark> in a DOM fragment, in document order."""
  result = []
  for tag in re.findall(r"<mark [^>]*>", fragment or ""):
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
    result.append((saxutils.unescape(attrs["data-type"]), attrs["data-outcome"],
                   attrs["class"].split()))
  return result


class ReviewPageBrowserTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.browser = find_browser()
    if cls.browser is None:
      return
    root = cls.class_temp_dir()
    cls.root = root
    for note_id, (text, gold, system) in NOTES.items():
      write_xml(os.path.join(root, "gold", note_id + ".xml"), text, gold)
      write_xml(os.path.join(root, "system", note_id + ".xml"), text, system)
    cls.page = os.path.join(root, "review.html")
    text, result, pairs = scoring.evaluate(os.path.join(root, "gold"),
                                           os.path.join(root, "system"), "i2b2_2014")
    scoring.write_outputs(text, result, pairs, "i2b2_2014", os.path.join(root, "report.txt"),
                          cls.page)
    with open(os.path.join(root, "report.json"), encoding="utf-8") as f:
      cls.report = json.load(f)

  def setUp(self):
    super().setUp()
    if self.browser is None:
      if os.environ.get("CI"):
        self.fail("chromium is not installed, and CI is set: `make test` installs it "
                  "(apt-get install -y chromium)")
      self.skipTest("chromium is not installed (apt-get install -y chromium; `make test` does)")

  def chromium(self, *args):
    profile = self.temp_dir()
    env = dict(os.environ, HOME=profile)
    proc = subprocess.run([self.browser] + list(FLAGS) + ["--user-data-dir=" + profile] +
                          list(args), capture_output=True, text=True, timeout=120, env=env)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    return proc.stdout

  def dump(self, fragment):
    return self.chromium("--dump-dom", "file://%s#%s" % (self.page, fragment))

  def test_one_mark_per_span_with_its_outcome(self):
    for note_id, expected in EXPECTED_MARKS.items():
      dom = self.dump("note=" + note_id)
      self.assertIn('data-current="%s"' % note_id, dom)
      for side in ("gold", "system"):
        got = marks(section(dom, side + "-text"))
        self.assertEqual([(t, o) for t, o, _ in got], expected[side], "%s %s" % (note_id, side))
        for _, outcome, classes in got:
          self.assertIn("span", classes)
          self.assertIn(outcome, classes)
          self.assertTrue(any(re.match(r"^t\d+$", c) for c in classes), classes)
      # The text itself is there, unchanged, around the marks.
      shown = re.sub(r"<[^>]+>", "", section(dom, "system-text"))
      self.assertEqual(saxutils.unescape(shown), NOTES[note_id][0])

  def test_counts_shown_equal_the_report(self):
    dom = self.dump("")
    strict = [s for s in self.report["system_ids"][0]["evaluations"] if s["label"] == "Strict"][0]
    # The metric table's Strict row.
    row = re.search(r"<tr><td[^>]*>Strict</td>(.*?)</tr>", dom).group(1)
    cells = re.findall(r'data-column="(\w+)">([^<]*)<', row)
    values = dict(cells)
    self.assertEqual((int(values["TP"]), int(values["FP"]), int(values["FN"])),
                     (strict["tp"], strict["fp"], strict["fn"]))
    self.assertEqual(values["F1"], "%.4f" % strict["micro_f1"])
    # The note list: per note exact matches / FP / FN; summed, the report's Strict counts.
    items = re.findall(r'<li data-id="([^"]+)" data-tp="(\d+)" data-fp="(\d+)" data-fn="(\d+)"',
                       dom)
    self.assertLen(items, len(NOTES))
    self.assertEqual([sum(int(i[k]) for i in items) for k in (1, 2, 3)],
                     [strict["tp"], strict["fp"], strict["fn"]])
    per_note = {n["id"]: n["counts"] for n in strict["per_note"]}
    for note_id, tp, fp, fn in items:
      self.assertEqual([int(tp), int(fp), int(fn)], per_note[note_id])
    # Worst first: 100-01 has the most errors.
    self.assertEqual(items[0][0], "100-01")
    self.assertIn("protected health information", dom)

  def test_clicking_a_note_shows_it(self):
    # With no note named, the worst note is shown; a click on 100-02 in the list shows 100-02.
    dom = self.dump("")
    self.assertIn('data-current="100-01"', dom)
    dom = self.dump("click=100-02")
    self.assertIn('data-current="100-02"', dom)
    self.assertIn('<h2 id="note-title">100-02</h2>', dom)
    self.assertIn('<li data-id="100-02" data-tp="2" data-fp="0" data-fn="0" class="current">', dom)
    self.assertEqual(saxutils.unescape(re.sub(r"<[^>]+>", "", section(dom, "gold-text"))),
                     TEXT_B)

  def test_screenshot(self):
    shot = os.path.join(self.temp_dir(), "review.png")
    self.chromium("--window-size=1400,1000", "--screenshot=" + shot,
                  "file://%s#note=100-01" % self.page)
    with open(shot, "rb") as f:
      data = f.read()
    self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"))
    self.assertGreater(len(data), 20000)  # a rendered page, not a blank one


if __name__ == "__main__":
  absltest.main()
