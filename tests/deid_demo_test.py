"""Tests for deid_demo.py and tools/make_deid_demo_data.py: the invented i2b2 2014 set."""

import filecmp
import os
import subprocess
import sys

from absl.testing import absltest

from clinicalbert_tf import deid_demo
from clinicalbert_tf import surrogates
from clinicalbert_tf import tasks
from clinicalbert_tf.notes import sentences
from clinicalbert_tf.tasks import i2b2_2012
from tests import testutil

SCRIPT = os.path.join(testutil.REPO, "tools", "make_deid_demo_data.py")


class DeidDemoTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = os.path.join(cls.class_temp_dir(), "deid_2014")
    cls.counts = deid_demo.write_dataset(cls.data, seed=5)

  def test_templates_cover_every_category(self):
    templates = deid_demo._PHI_SENTENCES + (deid_demo._HEADER,)  # pylint: disable=protected-access
    categories = set(surrogates.classify(p[3:-3])[0]
                     for t in templates for p in sentences.PLACEHOLDER_RE.findall(t))
    self.assertEqual(categories, set(surrogates.CATEGORIES) - {"unrecognized"})

  def test_the_i2b2_2014_reader_reads_it_and_offsets_match(self):
    self.assertEqual({split: c[0] for split, c in self.counts.items()},
                     {"train": 40, "dev": 10, "test": 15})
    self.assertGreater(sum(c[1] for c in self.counts.values()), 500)  # a few hundred sentences
    task = tasks.get_task("i2b2_2014")
    labels = task.get_labels(self.data)
    for label in ("PATIENT", "DOCTOR", "HOSPITAL", "DEPARTMENT", "ORGANIZATION", "STREET", "CITY",
                  "STATE", "ZIP", "COUNTRY", "PHONE", "FAX", "EMAIL", "URL", "MEDICALRECORD",
                  "SSN", "IDNUM", "DEVICE", "AGE", "DATE", "PROFESSION", "LOCATION-OTHER",
                  "USERNAME", "IPADDR"):
      self.assertIn("B-" + label, labels)
    num_spans = 0
    for split in ("train", "dev", "test"):
      examples = task.get_examples(self.data, split)  # checks each tag's text against its offsets
      self.assertEqual(len({s.doc_id for s in examples}), self.counts[split][0])
      num_spans += sum(1 for s in examples for l in s.labels if l.startswith("B-"))
    # The reader found every gold span; each tag's text is the note's text at its offsets.
    self.assertEqual(num_spans, sum(c[2] for c in self.counts.values()))
    for split in ("train", "test"):
      for name in sorted(os.listdir(os.path.join(self.data, split)))[:5]:
        path = os.path.join(self.data, split, name)
        text, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", None, "TYPE",
                                                      lambda typ, where: None)
        self.assertNotIn("[**", text)
        self.assertTrue(entities)
        for e in entities:
          self.assertEqual(text[e.start:e.end], e.text)
          self.assertEqual(text[e.start:e.end], text[e.start:e.end].strip())

  def test_same_seed_same_bytes(self):
    other = os.path.join(self.temp_dir(), "again")
    done = subprocess.run([sys.executable, SCRIPT, "--output_dir=" + other, "--random_seed=5"],
                          env=testutil.script_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn("wrote train: 40 notes", done.stderr)
    for split in ("train", "dev", "test"):
      names = sorted(os.listdir(os.path.join(self.data, split)))
      self.assertEqual(sorted(os.listdir(os.path.join(other, split))), names)
      _, mismatch, errors = filecmp.cmpfiles(os.path.join(self.data, split),
                                             os.path.join(other, split), names, shallow=False)
      self.assertEqual((mismatch, errors), ([], []))
    different = os.path.join(self.temp_dir(), "seed6")
    deid_demo.write_dataset(different, seed=6)
    with open(os.path.join(self.data, "train", "100-01.xml")) as a, \
         open(os.path.join(different, "train", "100-01.xml")) as b:
      self.assertNotEqual(a.read(), b.read())


if __name__ == "__main__":
  absltest.main()
