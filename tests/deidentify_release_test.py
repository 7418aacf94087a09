"""deidentify.py for a release: spans files, patterns alone, patients and secrets, bad input.

The job runs in this process (`job.run_job`, no model where the spans come from a file or the
patterns); one child run checks the script's one-line error and exit code, and one runs
format_notes with a secret. Everything is invented (the demo's i2b2 2014 set, hand-written notes).
"""

import datetime
import json
import os
import re

from absl.testing import absltest

from clinicalbert_tf import anonymize
from clinicalbert_tf import fileio
from clinicalbert_tf.inference import deid
from clinicalbert_tf.inference import job
from clinicalbert_tf.inference import outputs
from clinicalbert_tf.inference import text as text_lib
from clinicalbert_tf.notes import pipeline
from tests import testutil

SECRET = "a canary secret 7f3e9c1d for these tests"
NOTE_1 = ("Name: Zorvak Quilbrex  MRN: 4455123\n"
          "Seen on 03/04/2019 by Dr. Wythgral. Call 617-555-0100 or mail z.quil@example.org.\n"
          "Follow up 03/18/2019 (Monday).\n")
NOTE_2 = ("Mr. Quilbrex returned on 04/01/2019; Zorvak reports no pain.\n"
          "Discharged 04/05/2019 to home, ZIP 02139.\n")
GOLD_1 = [("Zorvak Quilbrex", "PATIENT"), ("4455123", "MEDICALRECORD"), ("03/04/2019", "DATE"),
          ("Wythgral", "DOCTOR"), ("617-555-0100", "PHONE"), ("z.quil@example.org", "EMAIL"),
          ("03/18/2019", "DATE"), ("Monday", "DATE")]
GOLD_2 = [("Quilbrex", "PATIENT"), ("04/01/2019", "DATE"), ("Zorvak", "PATIENT"),
          ("04/05/2019", "DATE"), ("02139", "ZIP")]


def spans_of(text, gold):
  spans, position = [], 0
  for phrase, label in gold:
    start = text.index(phrase, position)
    spans.append(text_lib.Span(start, start + len(phrase), label, 0.9))
    position = start + len(phrase)
  return spans


class ReleaseTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.temp_dir()
    self.notes = os.path.join(self.dir, "notes")
    os.makedirs(self.notes)
    for name, text in (("n1", NOTE_1), ("n2", NOTE_2)):
      with open(os.path.join(self.notes, name + ".txt"), "w", encoding="utf-8") as f:
        f.write(text)
    self.spans = os.path.join(self.dir, "spans.jsonl")
    with open(self.spans, "w", encoding="utf-8") as f:
      for name, text, gold in (("n1", NOTE_1, GOLD_1), ("n2", NOTE_2, GOLD_2)):
        f.write(json.dumps(outputs.jsonl_record(name, spans_of(text, gold))) + "\n")
    self.secret_file = os.path.join(self.dir, "key")
    with open(self.secret_file, "w") as f:
      f.write(SECRET + "\n")
    self.map = os.path.join(self.dir, "patients.tsv")
    with open(self.map, "w") as f:
      f.write("n1\t77\nn2\t77\n")

  def run_job(self, name, **kwargs):
    out = os.path.join(self.dir, name)
    options = job.JobOptions(input_file=self.notes + "/*.txt", output_dir=out,
                             replace=kwargs.pop("replace", "placeholder"), **kwargs)
    counts = job.run_job(None, options)
    texts = {}
    for note in ("n1", "n2"):
      with open(os.path.join(out, note + ".txt"), encoding="utf-8") as f:
        texts[note] = f.read()
    return texts, counts, out

  def test_one_patient_one_identity_across_notes(self):
    texts, counts, out = self.run_job(
        "keyed", replace="DATE:shift,default:surrogate", spans_file=self.spans,
        recognizers="model", secret_file=self.secret_file, patient_map=self.map)
    with open(os.path.join(out, deid.ITEMS_FILE)) as f:
      items = {r["id"]: r["items"] for r in map(json.loads, f)}
    cut = {n: [texts[n][i["start"]:i["end"]] for i in items[n]] for n in texts}
    first, last = cut["n1"][0].split()
    self.assertEqual(cut["n2"][0], last)  # `Mr. Quilbrex` -> `Mr. <last>`
    self.assertEqual(cut["n2"][2], first)  # `Zorvak` alone
    # Dates: one offset across both notes, the format kept; the weekday follows.
    dates = [datetime.datetime.strptime(v, "%m/%d/%Y").date()
             for v in (cut["n1"][2], cut["n1"][6], cut["n2"][1], cut["n2"][3])]
    self.assertEqual([(d - dates[0]).days for d in dates], [0, 14, 28, 32])
    self.assertEqual(cut["n1"][7], dates[1].strftime("%A"))
    for note, gold in (("n1", GOLD_1), ("n2", GOLD_2)):
      for phrase, _ in gold:
        self.assertNotIn(phrase.lower(), texts[note].lower())
    # Summary: counts, two notes, one patient; never the secret anywhere.
    with open(os.path.join(out, deid.SUMMARY_FILE)) as f:
      summary = json.load(f)
    self.assertEqual((summary["notes"], summary["patients"], summary["items"]), (2, 1, 13))
    self.assertEqual(summary["counts"]["DATE"], {"shift": 5})
    self.assertEqual(counts["summary"]["patients"], 1)
    for name in os.listdir(out):
      with open(os.path.join(out, name), encoding="utf-8") as f:
        self.assertNotIn(SECRET, f.read())

  def shifted_days(self, input_file, **kwargs):
    """{note id: days its first date moved} of a patterns-only run with the secret."""
    out = os.path.join(self.dir, "shift")
    job.run_job(None, job.JobOptions(input_file=input_file, output_dir=out, replace="DATE:shift",
                                     recognizers="patterns", secret_file=self.secret_file,
                                     **kwargs))
    days = {}
    with open(os.path.join(out, deid.ITEMS_FILE)) as f:
      for record in map(json.loads, f):
        with open(os.path.join(out, record["id"] + ".txt"), encoding="utf-8") as g:
          text = g.read()
        item = record["items"][0]
        days[record["id"]] = (datetime.datetime.strptime(text[item["start"]:item["end"]],
                                                         "%m/%d/%Y") -
                              datetime.datetime(2019, 3, 4)).days
    return days

  def test_patients_from_json_lines_and_noteevents(self):
    text = "Seen on 03/04/2019.\n"
    jsonl = os.path.join(self.dir, "notes.jsonl")
    with open(jsonl, "w") as f:
      for note_id, patient in (("a", 5), ("b", 5), ("c", 6)):
        f.write(json.dumps({"id": note_id, "text": text, "subject": patient}) + "\n")
    days = self.shifted_days(jsonl, patient_field="subject")
    self.assertEqual(days["a"], days["b"])  # one patient, one offset
    self.assertNotEqual(days["a"], days["c"])
    csv = testutil.write_noteevents_csv(os.path.join(self.dir, "NOTEEVENTS.csv"), [
        testutil.noteevents_row(11, "Nursing", text, subject_id="5"),
        testutil.noteevents_row(12, "Nursing", text, subject_id="5"),
        testutil.noteevents_row(13, "Nursing", text, subject_id="6")])
    days = self.shifted_days(csv)
    self.assertEqual(days["11"], days["12"])
    self.assertNotEqual(days["11"], days["13"])

  def test_without_a_secret_each_note_its_own(self):
    with self.assertLogs(level="WARNING") as logs:
      texts, counts, _ = self.run_job("plain", replace="surrogate", spans_file=self.spans,
                                      recognizers="model", patient_map=self.map)
    self.assertTrue(any("consistency across notes needs a secret" in m for m in logs.output))
    self.assertEqual(counts["summary"]["patients"], 2)
    self.assertNotIn("Zorvak", texts["n1"] + texts["n2"])

  def test_patterns_alone_need_no_model(self):
    texts, counts, _ = self.run_job("patterns", recognizers="patterns")
    self.assertEqual(texts["n1"], "Name: Zorvak Quilbrex  MRN: [**MEDICALRECORD**]\n"
                     "Seen on [**DATE**] by Dr. Wythgral. Call [**PHONE**] or mail [**EMAIL**].\n"
                     "Follow up [**DATE**] ([**DATE**]).\n")
    self.assertEqual(texts["n2"], "Mr. Quilbrex returned on [**DATE**]; Zorvak reports no pain.\n"
                     "Discharged [**DATE**] to home, ZIP [**ZIP**].\n")
    self.assertEqual(counts["notes"], 2)

  def test_spans_file_equals_its_spans_given_directly(self):
    texts, _, _ = self.run_job("file", replace="mask", spans_file=self.spans, recognizers="model")
    for note, text, gold in (("n1", NOTE_1, GOLD_1), ("n2", NOTE_2, GOLD_2)):
      direct = anonymize.Anonymizer("mask").anonymize(text, spans_of(text, gold), note).text
      self.assertEqual(texts[note], direct)

  def test_i2b2_gold_xml_removes_every_gold_string(self):
    notes = testutil.deid_demo_notes(os.path.join(self.dir, "demo"))  # all 65 notes
    texts, xmls = os.path.join(self.dir, "demo_texts"), os.path.join(self.dir, "demo_xml")
    os.makedirs(texts)
    os.makedirs(xmls)
    for note_id, text, gold in notes:
      with open(os.path.join(texts, note_id + ".txt"), "w", encoding="utf-8") as f:
        f.write(text)
      with open(os.path.join(xmls, note_id + ".xml"), "w", encoding="utf-8") as f:
        f.write(outputs.format_i2b2_2014(text, [text_lib.Span(*g, 1.0) for g in gold]))
    out = os.path.join(self.dir, "demo_out")
    job.run_job(None, job.JobOptions(input_file=texts + "/*.txt", output_dir=out,
                                     replace="placeholder", spans_file=xmls + "/*.xml",
                                     spans_format="i2b2_2014"))
    for note_id, text, gold in notes:
      with open(os.path.join(out, note_id + ".txt"), encoding="utf-8") as f:
        result = f.read()
      for start, end, label in gold:
        self.assertNotRegex(result, r"(?<!\w)%s(?!\w)" % re.escape(text[start:end]), label)

  def assert_refused(self, name, message, **kwargs):
    out = os.path.join(self.dir, name)
    options = job.JobOptions(input_file=self.notes + "/*.txt", output_dir=out,
                             replace=kwargs.pop("replace", "placeholder"), **kwargs)
    with self.assertRaises(fileio.InputError) as e:
      job.run_job(None, options)
    self.assertIn(message, str(e.exception))
    self.assertNotIn("\n", str(e.exception))
    self.assertFalse(os.path.exists(out) and os.listdir(out), os.listdir(out) if
                     os.path.exists(out) else None)

  def test_bad_input_is_one_line_and_writes_nothing(self):
    self.assert_refused("op", "'blur'", replace="DATE:blur", recognizers="patterns")
    self.assert_refused("label", "'DTAE'", replace="DTAE:mask", recognizers="patterns")
    self.assert_refused("nosecret", "no such file", recognizers="patterns",
                        secret_file=os.path.join(self.dir, "missing"))
    empty = os.path.join(self.dir, "empty")
    open(empty, "w").close()
    self.assert_refused("emptysecret", "empty", recognizers="patterns", secret_file=empty)
    short_map = os.path.join(self.dir, "short.tsv")
    with open(short_map, "w") as f:
      f.write("n1\t77\n")
    self.assert_refused("map", "note n2 is not in --patient_map", recognizers="patterns",
                        patient_map=short_map)
    outside = os.path.join(self.dir, "outside.jsonl")
    with open(outside, "w") as f:
      f.write(json.dumps({"id": "n1", "entities": [{"start": 5, "end": 500, "label": "DATE"}]}))
      f.write("\n" + json.dumps({"id": "n2", "entities": []}) + "\n")
    self.assert_refused("outside", "note n1: span 5-500 (DATE) does not fit", spans_file=outside,
                        recognizers="model")
    missing = os.path.join(self.dir, "missing.jsonl")
    with open(missing, "w") as f:
      f.write(json.dumps({"id": "n1", "entities": []}) + "\n")
    self.assert_refused("missing", "note n2 has no entry in --spans_file", spans_file=missing,
                        recognizers="model")

  def test_the_script(self):
    out = os.path.join(self.dir, "script")
    proc = testutil.run_module("deidentify", [
        "--input_file=%s/*.txt" % self.notes, "--output_dir=" + out, "--recognizers=patterns",
        "--replace=DATE:shift,default:hash", "--secret_file=" + self.secret_file,
        "--patient_map=" + self.map, "--verbosity=1"], check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn("de-identified 2 notes", proc.stdout)
    self.assertNotIn(SECRET, proc.stdout + proc.stderr)
    proc = testutil.run_module("deidentify", [
        "--input_file=%s/*.txt" % self.notes, "--output_dir=" + out + "2",
        "--recognizers=patterns", "--replace=DATE:blur"], check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertRegex(proc.stderr.strip().splitlines()[-1],
                     r"^deidentify\.py: error: --replace=DATE:blur: unknown operator 'blur'")
    self.assertFalse(os.path.exists(out + "2"))


class WithAModelTest(testutil.TestCase):
  """A tiny PHI model (random weights): predict.py's spans as --spans_file give the same outputs as
  the model; the release check reads the recorded dev recall."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
    d = cls.class_temp_dir()
    cls.model_dir = testutil.write_model_dir(
        os.path.join(d, "model"), labels=["O", "B-DATE", "I-DATE", "B-PATIENT", "I-PATIENT"])
    cls.notes = os.path.join(d, "notes")
    os.makedirs(cls.notes)
    for n, text in enumerate(testutil.NOTES + [NOTE_1, NOTE_2]):
      with open(os.path.join(cls.notes, "note%d.txt" % n), "w", encoding="utf-8") as f:
        f.write(text)
    cls.model = model_lib.load_model(cls.model_dir)

  @classmethod
  def tearDownClass(cls):
    cls.model.close()
    super().tearDownClass()

  def test_spans_file_from_predict_equals_the_model(self):
    d = self.temp_dir()
    spans = os.path.join(d, "spans.jsonl")
    job.run_job(self.model, job.JobOptions(input_file=self.notes + "/*.txt", output_file=spans,
                                           min_probability=0.2))
    with open(spans) as f:
      self.assertGreater(sum(len(json.loads(line)["entities"]) for line in f), 3)
    replace = "DATE:shift,default:surrogate"
    job.run_job(self.model, job.JobOptions(input_file=self.notes + "/*.txt", min_probability=0.2,
                                           output_dir=os.path.join(d, "model"), replace=replace))
    job.run_job(None, job.JobOptions(input_file=self.notes + "/*.txt", spans_file=spans,
                                     output_dir=os.path.join(d, "file"), replace=replace))
    names = sorted(os.listdir(os.path.join(d, "model")))
    self.assertEqual(names, sorted(os.listdir(os.path.join(d, "file"))))
    self.assertIn(deid.ITEMS_FILE, names)
    for name in names:
      with open(os.path.join(d, "model", name), "rb") as a, open(os.path.join(d, "file", name),
                                                                 "rb") as b:
        self.assertEqual(a.read(), b.read(), name)

  def test_release_check(self):
    types = deid.model_types(self.model.label_list)
    self.assertEqual(types, ["DATE", "PATIENT"])
    with self.assertLogs(level="WARNING") as logs:
      self.assertEqual(deid.release_check(self.model_dir, types, 0.8), ["DATE", "PATIENT"])
    self.assertTrue(any("dev recall is unknown" in m or "recall unknown" in m
                        for m in logs.output))
    d = self.temp_dir()
    with open(os.path.join(d, deid.DEV_RESULTS_FILE), "w") as f:
      json.dump({"per_type": {"DATE": {"recall": 0.93}, "PATIENT": {"recall": 0.41}}}, f)
    with self.assertLogs(level="INFO") as logs:
      self.assertEqual(deid.release_check(d, types, 0.8), ["PATIENT"])
    self.assertTrue(any("PATIENT: dev recall 0.410 is under --min_label_recall=0.80" in m
                        for m in logs.output))
    self.assertTrue(any("DATE: dev recall 0.930" in m for m in logs.output))


class FormatNotesSecretTest(testutil.TestCase):

  def test_one_patient_one_set_of_surrogates(self):
    d = self.temp_dir()
    text_a = "Seen [**2101-10-20**] by Dr. [**Doctor Last Name 2**] with [**Known lastname 1**].\n"
    text_b = "[**Known lastname 1**] called Dr. [**Doctor Last Name 2**] on [**2101-11-20**].\n"
    path = testutil.write_noteevents_csv(os.path.join(d, "notes.csv"), [
        testutil.noteevents_row(1, "Nursing", text_a, subject_id="77"),
        testutil.noteevents_row(2, "Nursing", text_b, subject_id="77"),
        testutil.noteevents_row(3, "Nursing", text_a, subject_id="78")])
    out = os.path.join(d, "out")
    pipeline.format_notes_file(path, output_dir=out, phi="surrogate", secret=SECRET.encode())
    with open(os.path.join(out, "nursing.txt"), encoding="utf-8") as f:
      written = f.read()
    a, b, c = [s for s in written.split("\n\n") if s.strip()]
    doctor_a = re.search(r"Dr\. (\w+) with (\w+)", a).groups()
    last_b, doctor_b = re.search(r"^(\w+) called Dr\. (\w+)", b).groups()
    self.assertEqual((doctor_b, last_b), doctor_a)
    self.assertNotEqual(re.search(r"Dr\. (\w+) with (\w+)", c).groups(), doctor_a)
    with open(os.path.join(out, "nursing.txt.json"), encoding="utf-8") as f:
      sidecar = f.read()
    self.assertIn('"keyed_by_patient": true', sidecar)
    self.assertNotIn(SECRET, sidecar)


if __name__ == "__main__":
  absltest.main()
