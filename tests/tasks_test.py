"""Tests for the fine-tuning readers (clinicalbert_tf/tasks): samples, error cases, IOB round trips."""

import os
import random
import re
import shutil

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.tasks import documents
from tests import testutil


def testdata(*parts):
  """A path under testdata/ (source tree or Bazel runfiles)."""
  here = os.path.dirname(os.path.abspath(__file__))
  return os.path.join(os.path.dirname(here), "testdata", *parts)


def spans_of(sentence):
  return [(" ".join(sentence.words[s:e]), t) for s, e, t in tasks.iob_to_spans(sentence.labels)]


class TempDataTest(testutil.TestCase):
  """Copies a sample into a temporary folder so that a test can break it."""

  def copy_sample(self, name):
    root = self.temp_dir()
    target = os.path.join(root, name)
    shutil.copytree(testdata(name), target)
    return target

  def edit(self, path, old, new, count=1):
    with open(path, encoding="utf-8") as f:
      text = f.read()
    self.assertIn(old, text)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text.replace(old, new, count))

  def assert_input_error(self, regex, fn, *args):
    with self.assertRaises(fileio.InputError) as cm:
      fn(*args)
    self.assertRegex(str(cm.exception), regex)
    return str(cm.exception)


class IobTest(testutil.TestCase):

  def test_spans_to_iob_and_back(self):
    labels = tasks.spans_to_iob(7, [(0, 2, "problem"), (2, 3, "test"), (5, 7, "problem")])
    self.assertEqual(labels, ["B-problem", "I-problem", "B-test", "O", "O", "B-problem",
                              "I-problem"])
    self.assertEqual(tasks.iob_to_spans(labels),
                     [(0, 2, "problem"), (2, 3, "test"), (5, 7, "problem")])

  def test_random_round_trips_are_exact(self):
    rng = random.Random(7)
    for _ in range(500):
      n = rng.randint(0, 30)
      spans, i = [], 0
      while i < n:
        if rng.random() < 0.3:
          end = min(n, i + rng.randint(1, 4))
          spans.append((i, end, rng.choice(["A", "B", "LOCATION-OTHER"])))
          i = end
        else:
          i += 1
      self.assertEqual(tasks.iob_to_spans(tasks.spans_to_iob(n, spans)), spans)

  def test_strict_reading_drops_stray_inside_tags(self):
    labels = ["O", "I-a", "I-a", "B-b", "I-a", "B-a", "I-a"]
    self.assertEqual(tasks.iob_to_spans(labels), [(3, 4, "b"), (5, 7, "a")])
    self.assertEqual(tasks.iob_to_spans(labels, strict=False),
                     [(1, 3, "a"), (3, 4, "b"), (4, 5, "a"), (5, 7, "a")])
    self.assertEqual(tasks.repair_iob2(labels),
                     (["O", "B-a", "I-a", "B-b", "B-a", "B-a", "I-a"], 2))

  def test_overlapping_spans_are_refused(self):
    with self.assertRaisesRegex(ValueError, "overlaps"):
      tasks.spans_to_iob(5, [(0, 3, "a"), (2, 4, "b")])
    with self.assertRaisesRegex(ValueError, "outside"):
      tasks.spans_to_iob(3, [(2, 4, "a")])

  def test_label_list(self):
    self.assertEqual(tasks.ner_label_list({"test", "problem"}),
                     ["O", "B-problem", "I-problem", "B-test", "I-test"])

  def test_unknown_task(self):
    with self.assertRaisesRegex(fileio.InputError, "i2b2_2010"):
      tasks.get_task("i2b2_2011")


class CharacterOffsetTest(TempDataTest):

  def test_entity_boundaries_are_word_boundaries(self):
    text = "Seen 01/01/1995 by DrSmith.\nNext line"
    entities = [documents.Entity(5, 10, "DATE", "a"), documents.Entity(21, 26, "DOCTOR", "b")]
    sentences = documents.tokenize_document(text, entities, "doc")
    self.assertEqual([s.words for s in sentences],
                     [["Seen", "01/01", "/1995", "by", "Dr", "Smith", "."], ["Next", "line"]])
    self.assertEqual(sentences[0].labels, ["O", "B-DATE", "O", "O", "O", "B-DOCTOR", "O"])
    # "DrSmith" is one word: 'Smith' starts inside it, so the word splits at the entity start.
    entities = [documents.Entity(21, 26, "DOCTOR", "b")]
    sentences = documents.tokenize_document(text, entities, "doc")
    self.assertEqual(sentences[0].words, ["Seen", "01/01/1995", "by", "Dr", "Smith", "."])
    self.assertEqual(sentences[0].labels, ["O", "O", "O", "O", "B-DOCTOR", "O"])

  def test_character_round_trip_is_exact(self):
    rng = random.Random(3)
    alphabet = "ab c.\n/-"
    for _ in range(300):
      text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
      entities, i = [], 0
      while i < len(text):
        end = min(len(text), i + rng.randint(1, 8))
        piece = text[i:end]
        if rng.random() < 0.3 and piece.strip() == piece and piece:
          entities.append(documents.Entity(i, end, rng.choice("XY"), "e%d" % i))
          i = end
        i += 1
      sentences = documents.tokenize_document(text, entities, "doc")
      got = [span for s in sentences for span in documents.sentence_char_spans(s)]
      self.assertEqual(got, [(e.start, e.end, e.type) for e in entities], text)
      for s in sentences:
        for word, (start, end) in zip(s.words, s.positions):
          self.assertEqual(text[start:end], word)

  def test_entity_across_a_line_break_keeps_one_sentence(self):
    text = "at MEMORIAL\nHOSPITAL today\nnext"
    sentences = documents.tokenize_document(
        text, [documents.Entity(3, 20, "HOSPITAL", "e")], "doc")
    self.assertEqual([s.words for s in sentences],
                     [["at", "MEMORIAL", "HOSPITAL", "today"], ["next"]])

  def test_offsets_outside_the_text(self):
    self.assert_input_error(r"note.xml: e7 has offsets 3-99 outside the text \(5 characters\)",
                            documents.tokenize_document, "a b c",
                            [documents.Entity(3, 99, "X", "e7")], "doc", "", "note.xml")

  def test_overlaps_keep_the_first(self):
    sentences = documents.tokenize_document(
        "a b c d", [documents.Entity(0, 3, "X", "e1"), documents.Entity(2, 5, "Y", "e2")], "doc")
    self.assertEqual(sentences[0].labels, ["B-X", "I-X", "O", "O"])

  def test_bare_ampersands_outside_cdata(self):
    text, n = documents.escape_bare_ampersands(
        '<a t="x & y &amp; &#38; &lt;"><![CDATA[p & q]]>r & s</a>')
    self.assertEqual(text, '<a t="x &amp; y &amp; &#38; &lt;"><![CDATA[p & q]]>r &amp; s</a>')
    self.assertEqual(n, 2)

  def test_xml_bombs_and_external_entities_are_refused(self):
    folder = self.temp_dir()
    bomb = os.path.join(folder, "bomb.xml")
    with open(bomb, "w") as f:
      f.write('<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>\n'
              "<r>&b;</r>\n")
    self.assert_input_error("bomb.xml: refused", documents.parse_xml, bomb)
    external = os.path.join(folder, "external.xml")
    with open(external, "w") as f:
      f.write('<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
              "<r>&x;</r>\n")
    self.assert_input_error("external.xml: refused", documents.parse_xml, external)


class I2b2_2010Test(TempDataTest):  # pylint: disable=invalid-name

  def setUp(self):
    super().setUp()
    self.task = tasks.get_task("i2b2_2010")

  def test_sample(self):
    data = testdata("i2b2_2010")
    self.assertEqual(self.task.get_labels(data),
                     ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment",
                      "I-treatment"])
    train = self.task.get_examples(data, "train")
    dev = self.task.get_examples(data, "dev")
    test = self.task.get_examples(data, "test")
    # 5 training notes (one per patient): int(5 * 0.9) = 4 train, 1 dev; the dev note is fixed.
    self.assertEqual(len({s.doc_id for s in train}), 4)
    self.assertEqual(len({s.doc_id for s in dev}), 1)
    self.assertEqual({s.doc_id for s in train} & {s.doc_id for s in dev}, set())
    self.assertEqual(len({s.doc_id for s in tasks.get_task("i2b2_2010").get_examples(data, "dev")}
                         ^ {s.doc_id for s in dev}), 0)
    self.assertEqual([spans_of(s) for s in test],
                     [[("a headache", "problem")], [("A head CT", "test")],
                      [("fluids", "treatment"), ("ondansetron", "treatment")]])
    # The concept 5:0-6:0 spans a line break: lines 5 and 6 form one sentence.
    all_train = train + dev
    joined = [s for s in all_train if s.words[:2] == ["Her", "blood"]]
    self.assertLen(joined, 1)
    self.assertEqual(joined[0].words, ["Her", "blood", "pressure", "was", "normal", "."])
    self.assertEqual(joined[0].positions[:3], [(5, 0), (5, 1), (6, 0)])
    self.assertEqual(spans_of(joined[0]), [("Her blood pressure", "test")])

  def test_con_predictions_round_trip(self):
    data = testdata("i2b2_2010")
    test = self.task.get_examples(data, "test")
    out = self.temp_dir()
    paths = self.task.write_native_predictions(test, [s.labels for s in test], out)
    self.assertEqual([os.path.basename(p) for p in paths], ["note-201.con"])
    with open(paths[0]) as f:
      written = sorted(f.read().splitlines())
    with open(testdata("i2b2_2010", "test", "reference_standard", "concepts", "note-201.con")) as f:
      self.assertEqual(written, sorted(f.read().splitlines()))
    # And for a note whose concept spans two lines.
    train = [s for s in self.task.get_examples(data, "train") + self.task.get_examples(data, "dev")
             if s.doc_id == "note-101"]
    paths = self.task.write_native_predictions(train, [s.labels for s in train], out)
    with open(paths[0]) as f, open(testdata("i2b2_2010", "train", "concept", "note-101.con")) as g:
      self.assertEqual(sorted(f.read().splitlines()), sorted(g.read().splitlines()))

  def test_concept_text_mismatch(self):
    data = self.copy_sample("i2b2_2010")
    con = os.path.join(data, "test", "reference_standard", "concepts", "note-201.con")
    self.edit(con, 'c="a headache"', 'c="a migraine"')
    message = self.assert_input_error(r"note-201.con:1: concept at 1:3-1:4 .*text does not match",
                                      self.task.get_examples, data, "test")
    self.assertNotIn("migraine", message)  # no clinical text in messages
    lenient = tasks.get_task("i2b2_2010", tasks.ReaderOptions(check_text=False))
    self.assertLen(lenient.get_examples(data, "test"), 3)

  def test_position_outside_the_text(self):
    data = self.copy_sample("i2b2_2010")
    con = os.path.join(data, "test", "reference_standard", "concepts", "note-201.con")
    self.edit(con, "1:3 1:4", "1:3 1:9")
    self.assert_input_error(r"note-201.con:1: position 1:9 is outside .*note-201.txt.*has 6 tokens",
                            self.task.get_examples, data, "test")
    self.edit(con, "1:3 1:9", "9:0 9:1")
    self.assert_input_error(r"note-201.con:1: position 9:0 is outside .*\(3 lines\)",
                            self.task.get_examples, data, "test")

  def test_unknown_type_and_bad_line(self):
    data = self.copy_sample("i2b2_2010")
    con = os.path.join(data, "test", "reference_standard", "concepts", "note-201.con")
    self.edit(con, 't="problem"', 't="disease"')
    self.assert_input_error(r"note-201.con:1: unknown type 'disease'", self.task.get_examples,
                            data, "test")
    self.edit(con, 't="disease"', "t=problem")
    self.assert_input_error(r"note-201.con:1: expected c=", self.task.get_examples, data, "test")

  def test_missing_folders_and_files(self):
    data = self.copy_sample("i2b2_2010")
    shutil.rmtree(os.path.join(data, "test", "reference_standard"))
    self.assert_input_error(r"no \*.con files", self.task.get_examples, data, "test")
    shutil.rmtree(os.path.join(data, "test"))
    self.assert_input_error(r"has no test/ folder", self.task.get_examples, data, "test")

  def test_conversion_writes_what_conll_reads_back(self):
    data = testdata("i2b2_2010")
    out = self.temp_dir()
    paths = tasks.convert_to_iob(self.task, data, out)
    self.assertEqual(sorted(os.path.basename(p) for p in paths.values()),
                     ["dev.tsv", "test.tsv", "train.tsv"])
    reader = tasks.get_task("conll")
    for split in tasks.SPLITS:
      native = self.task.get_examples(data, split)
      back = reader.get_examples(out, split)
      self.assertEqual([(s.words, s.labels) for s in back], [(s.words, s.labels) for s in native])
      self.assertTrue(os.path.exists(paths[split] + ".json"))
    self.assertEqual(reader.get_labels(out), self.task.get_labels(data))
    self.assert_input_error(r"has no train/ folder.*read those with --task_name=conll",
                            tasks.get_task("i2b2_2010").get_examples, out, "train")


class I2b2_2012Test(TempDataTest):  # pylint: disable=invalid-name

  def test_sample(self):
    task = tasks.get_task("i2b2_2012")
    data = testdata("i2b2_2012")
    test = task.get_examples(data, "test")
    self.assertEqual([spans_of(s) for s in test if spans_of(s)],
                     [[("presented", "EVIDENTIAL"), ("headache", "PROBLEM"), ("nausea", "PROBLEM")],
                      [("head CT", "TEST"), ("received", "OCCURRENCE"), ("fluids", "TREATMENT")]])
    # The CDATA text starts with a newline; the first sentence is the first real line.
    self.assertEqual(test[0].words, ["Admission", "Date", ":"])
    train = task.get_examples(data, "train")
    dev = task.get_examples(data, "dev")
    self.assertEqual(len({s.doc_id for s in train}), 3)
    self.assertEqual(len({s.doc_id for s in dev}), 1)
    # 102.xml has a bare '&' in an attribute and is read.
    self.assertIn("102", {s.doc_id for s in train + dev})
    self.assertNotIn("B-DATE", task.get_labels(data))

  def test_timex3_optional(self):
    task = tasks.get_task("i2b2_2012", tasks.ReaderOptions(include_timex3=True))
    data = testdata("i2b2_2012")
    self.assertIn("B-DATE", task.get_labels(data))
    test = task.get_examples(data, "test")
    self.assertEqual(spans_of(test[1]), [("05/05/2093", "DATE")])

  def test_malformed_xml(self):
    data = self.copy_sample("i2b2_2012")
    self.edit(os.path.join(data, "test", "201.xml"), "</TAGS>", "</TAG>")
    self.assert_input_error(r"201.xml: malformed XML at line \d+, column \d+: mismatched tag",
                            tasks.get_task("i2b2_2012").get_examples, data, "test")

  def test_offset_outside_and_text_mismatch_and_unknown_type(self):
    data = self.copy_sample("i2b2_2012")
    path = os.path.join(data, "test", "201.xml")
    with open(path) as f:
      original = f.read()
    start = re.search(r'<EVENT id="E1" start="(\d+)" end="(\d+)"', original)
    self.edit(path, 'end="%s" text="headache"' % start.group(2), 'end="9999" text="headache"')
    self.assert_input_error(r"201.xml: <EVENT id=E1> has offsets \d+-9999 outside the text",
                            tasks.get_task("i2b2_2012").get_examples, data, "test")
    with open(path, "w") as f:
      f.write(original.replace('text="headache"', 'text="backache"'))
    self.assert_input_error(r"201.xml: <EVENT id=E1> at offsets \d+-\d+: text does not match",
                            tasks.get_task("i2b2_2012").get_examples, data, "test")
    with open(path, "w") as f:
      f.write(original.replace('type="PROBLEM"', 'type="SYMPTOM"', 1))
    self.assert_input_error(r"201.xml: <EVENT id=E1>: unknown type 'SYMPTOM'",
                            tasks.get_task("i2b2_2012").get_examples, data, "test")


class I2b2_2006Test(TempDataTest):  # pylint: disable=invalid-name

  def test_sample_and_70_30_split(self):
    task = tasks.get_task("i2b2_2006")
    data = testdata("i2b2_2006")
    train, dev = task.get_examples(data, "train"), task.get_examples(data, "dev")
    self.assertEqual((len(train), len(dev)), (9, 4))  # 13 training sentences: int(0.7 * 13) = 9
    self.assertEqual(spans_of(train[3]), [("02/11", "DATE"), ("02/14/1997", "DATE")])
    self.assertEqual(train[3].words[:4], ["Admitted", "on", "02/11", "/1997"])
    self.assertEqual(spans_of(train[2]), [("MARLOWE , JUNE", "PATIENT")])
    test = task.get_examples(data, "test")
    self.assertEqual(spans_of(test[4]), [("ROSS KELLER", "DOCTOR")])

  def test_malformed_tag_names_its_position(self):
    data = self.copy_sample("i2b2_2006")
    path = os.path.join(data, "train", "deid_train.xml")
    self.edit(path, '<PHI TYPE="AGE">64</PHI>', '<PHI TYPE="AGE">64</PHI')
    self.assert_input_error(r"deid_train.xml: malformed XML at line 9, column \d+",
                            tasks.get_task("i2b2_2006").get_examples, data, "train")

  def test_unknown_type(self):
    data = self.copy_sample("i2b2_2006")
    self.edit(os.path.join(data, "test", "deid_test.xml"), 'TYPE="AGE"', 'TYPE="AGES"')
    self.assert_input_error(r"deid_test.xml: RECORD ID=601: PHI #5 \(character \d+\): unknown "
                            r"type 'AGES'", tasks.get_task("i2b2_2006").get_examples, data, "test")


class I2b2_2014Test(TempDataTest):  # pylint: disable=invalid-name

  def test_sample(self):
    task = tasks.get_task("i2b2_2014")
    data = testdata("i2b2_2014")
    labels = task.get_labels(data)
    self.assertIn("B-ROOM", labels)  # only in the test note: the label set comes from the data
    self.assertIn("B-MEDICALRECORD", labels)
    train, dev = task.get_examples(data, "train"), task.get_examples(data, "dev")
    # Notes 110-01 and 110-02 are one patient: never split across train and dev.
    self.assertEqual(len({s.doc_id.split("-")[0] for s in train} &
                         {s.doc_id.split("-")[0] for s in dev}), 0)
    self.assertEqual(len({s.doc_id for s in train + dev}), 5)
    follow_up = [s for s in train + dev if s.words[0] == "Follow-up"][0]
    self.assertEqual(spans_of(follow_up),
                     [("Orla Fenwick", "PATIENT"), ("HILLCREST MEMORIAL HOSPITAL", "HOSPITAL")])

  def test_errors(self):
    data = self.copy_sample("i2b2_2014")
    path = os.path.join(data, "test", "210-01.xml")
    self.edit(path, 'text="Edda Morrow"', 'text="Edda Marrow"')
    self.assert_input_error(r"210-01.xml: <NAME id=P1> at offsets \d+-\d+: text does not match: "
                            r".*first differ at character 7", tasks.get_task("i2b2_2014").get_examples,
                            data, "test")
    self.edit(path, "<TAGS>", "<TAGS>&bogus;")
    self.assert_input_error(r"210-01.xml: malformed XML at line \d+, column \d+: undefined entity",
                            tasks.get_task("i2b2_2014").get_examples, data, "test")


class MednliTest(TempDataTest):

  def test_sample(self):
    task = tasks.get_task("mednli")
    self.assertEqual(task.kind, "nli")
    train = task.get_examples(testdata("mednli"), "train")
    self.assertLen(train, 4)
    self.assertEqual(train[1].label, "contradiction")
    self.assertEqual(train[1].guid, "train-1")
    self.assertEqual(task.get_labels(testdata("mednli")),
                     ["contradiction", "entailment", "neutral"])

  def test_errors(self):
    data = self.copy_sample("mednli")
    path = os.path.join(data, "mli_dev_v1.jsonl")
    self.edit(path, '"gold_label": "neutral"', '"gold_label": "unsure"')
    task = tasks.get_task("mednli")
    self.assert_input_error(r"mli_dev_v1.jsonl:2: unknown gold_label 'unsure'", task.get_examples,
                            data, "dev")
    self.edit(path, '"gold_label": "unsure"', '"gold_label": "neutral"')
    self.edit(path, '"sentence2"', '"sentenceB"')
    self.assert_input_error(r"mli_dev_v1.jsonl:1: missing or non-text 'sentence2'",
                            task.get_examples, data, "dev")
    self.edit(path, '"sentenceB"', '"sentence2"')
    with open(path, "a") as f:
      f.write("{not json\n")
    self.assert_input_error(r"mli_dev_v1.jsonl:3: not JSON", task.get_examples, data, "dev")
    os.remove(os.path.join(data, "mli_test_v1.jsonl"))
    self.assert_input_error(r"no mli_test_v1.jsonl", task.get_examples, data, "test")


class ConllTest(TempDataTest):

  def test_sample(self):
    task = tasks.get_task("conll")
    data = testdata("conll")
    self.assertEqual(task.get_labels(data),
                     ["O", "B-problem", "I-problem", "B-treatment", "I-treatment"])
    train = task.get_examples(data, "train")
    self.assertEqual([s.words for s in train],
                     [["The", "patient", "has", "chest", "pain", "."], ["Give", "aspirin", "daily"]])
    # test.txt has three columns (word, tag, label) and an IOB1-style I- that is read as B-.
    test = task.get_examples(data, "test")
    self.assertEqual([s.labels for s in test], [["O", "B-problem", "I-problem"], ["O", "B-treatment"]])

  def test_errors(self):
    data = self.copy_sample("conll")
    task = tasks.get_task("conll")
    dev = os.path.join(data, "dev.tsv")
    self.edit(dev, "fever B-problem", "fever B-symptom")
    self.assert_input_error(r"dev.tsv:2: unknown label 'B-symptom': the label set read from "
                            r".*train.tsv", task.get_examples, data, "dev")
    self.edit(dev, "fever B-symptom", "fever")
    self.assert_input_error(r"dev.tsv:2: expected `word label`", task.get_examples, data, "dev")
    self.edit(dev, "fever\n", "fever problem\n")
    self.assert_input_error(r"dev.tsv:2: label 'problem' is not IOB", task.get_examples, data, "dev")
    shutil.copy(dev, os.path.join(data, "dev.txt"))
    self.assert_input_error(r"both dev.tsv and dev.txt", task.get_examples, data, "dev")
    os.remove(os.path.join(data, "train.tsv"))
    self.assert_input_error(r"no train.tsv, train.txt or train.conll", tasks.get_task("conll").get_labels, data)

  def test_devel_is_the_dev_split(self):
    # BioBERT's layout: train.tsv, devel.tsv, test.tsv.
    data = self.copy_sample("conll")
    os.rename(os.path.join(data, "dev.tsv"), os.path.join(data, "devel.tsv"))
    dev = tasks.get_task("conll").get_examples(data, "dev")
    self.assertEqual([(s.guid, s.words, s.labels) for s in dev],
                     [("dev-0", ["No", "fever", "."], ["O", "B-problem", "O"])])
    shutil.copy(os.path.join(data, "devel.tsv"), os.path.join(data, "dev.tsv"))
    self.assert_input_error(r"both dev.tsv and devel.tsv", tasks.get_task("conll").get_examples,
                            data, "dev")
    os.remove(os.path.join(data, "dev.tsv"))
    os.remove(os.path.join(data, "devel.tsv"))
    self.assert_input_error(r"no dev.tsv, dev.txt, dev.conll, devel.tsv, devel.txt or devel.conll",
                            tasks.get_task("conll").get_examples, data, "dev")
    self.assert_input_error(r"no test.tsv, test.txt or test.conll \(expected",
                            tasks.get_task("conll").get_examples, self.temp_dir(), "test")


if __name__ == "__main__":
  absltest.main()
