"""The inference/ package: notes -> words -> windows -> spans; note readers and output formats."""

import json
import os
import re
import stat

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import anonymize
from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import inference
from clinicalbert_tf import tasks
from clinicalbert_tf.finetuning import word_rules
from clinicalbert_tf.inference import model as model_lib
from clinicalbert_tf.inference import outputs
from clinicalbert_tf.inference import readers
from clinicalbert_tf.inference import step
from clinicalbert_tf.inference import text as text_lib
from tests import testutil

NER_LABELS = testutil.NER_LABELS
NOTES = testutil.NOTES
write_model_dir = testutil.write_model_dir


WHITESPACE = word_rules.get("lines_whitespace")


def notes(texts=NOTES):
  return [readers.Note("n%d" % i, t, "x", "x") for i, t in enumerate(texts)]


class InferenceTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = write_model_dir(os.path.join(cls.class_temp_dir(), "model"))
    cls.model = inference.load_model(cls.model_dir)

  @classmethod
  def tearDownClass(cls):
    cls.model.close()
    super().tearDownClass()

  def predict(self, texts=NOTES, **kwargs):
    return [(n.id, spans) for n, spans in
            inference.Predictor(self.model, **kwargs).predict(notes(texts))]

  def test_spans_cut_out_exactly_their_words(self):
    results = self.predict()
    self.assertEqual([i for i, _ in results], ["n0", "n1", "n2", "n3", "n4"])
    self.assertEqual(results[1][1], [])  # an empty note: no entity
    self.assertEqual(results[2][1], [])  # whitespace only
    total = 0
    for (note_id, spans), text in zip(results, NOTES):
      words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\S+", text)]
      starts = {a for a, _ in words}
      ends = {b for _, b in words}
      for s in spans:
        total += 1
        self.assertIn(s.start, starts, note_id)
        self.assertIn(s.end, ends, note_id)
        self.assertNotIn("\n", text[s.start:s.end])
        self.assertGreater(s.score, 0.0)
        self.assertLessEqual(s.score, 1.0)
        line = text.count("\n", 0, s.start) + 1
        self.assertEqual(s.first[0], line)
        self.assertEqual(text.split("\n")[line - 1].split()[s.first[1]],
                         text[s.start:s.end].split()[0])
      self.assertEqual(spans, sorted(spans, key=lambda s: s.start))
    self.assertGreater(total, 3)  # random weights still tag something

  def test_same_labels_as_the_heads_own_fixed_length_pipeline(self):
    # The words are the readers' words, every word of a long line gets one prediction, and
    # length-sorted, trimmed batches across notes give the labels of full-length windows.
    head, tokenizer = self.model.head, self.model.tokenizer
    sentences = [s for text in NOTES for block in text_lib.note_sentences(text, WHITESPACE)
                 for s in block]
    examples = [tasks.TaggedSentence("s%d" % i, s.words, ["O"] * len(s.words))
                for i, s in enumerate(sentences)]
    features = head.convert_examples(examples, 16, tokenizer)
    self.assertGreater(len(features), len(examples))  # some lines are split into windows
    session, inputs = self.model.session, self.model.inputs
    outputs = []
    for f in features:  # one window at a time, padded to max_seq_length
      feed = {inputs[k]: [getattr(f, k)] for k in model_lib.SERVING_INPUTS}
      outputs.append({"label_ids": session.run(self.model.outputs["label_ids"], feed)[0]})
    expected = head.assemble_predictions(examples, features, outputs)
    got_spans = [s for _, spans in self.predict(batch_size=5, buffer_words=30) for s in spans]
    want_spans = []
    for sentence, labels in zip(sentences, expected):
      repaired, _ = tasks.repair_iob2(labels)
      want_spans += [(sentence.offsets[a][0], sentence.offsets[b - 1][1], t)
                     for a, b, t in tasks.iob_to_spans(repaired)]
    self.assertEqual([(s.start, s.end, s.label) for s in got_spans], want_spans)

  def test_window_context(self):
    # The default is training's windows; a context changes only lines longer than a window, and
    # every word still gets one prediction (spans cut out whole words, in order).
    default = self.predict()
    self.assertEqual(self.predict(window_context=None), default)
    wide = self.predict(window_context=0)
    tokenize = self.model.tokenizer.tokenize
    long_lines = [any(len(tokenize(line)) > 14 for line in text.split("\n")) for text in NOTES]
    self.assertTrue(any(long_lines))
    examples = self.model.head.prediction_examples(
        [s for text in NOTES for block in text_lib.note_sentences(text, WHITESPACE) for s in block])
    count = lambda c: len(self.model.head.convert_examples(examples, 16, self.model.tokenizer,
                                                           window_context=c))
    self.assertLess(count(0), count(None))  # cores of 14 pieces, not 7: fewer windows
    for (_, a), (_, b), is_long in zip(default, wide, long_lines):
      if not is_long:
        self.assertEqual(a, b)
      self.assertEqual(b, sorted(b, key=lambda s: s.start))
    for bad in (-1, 7):  # max_seq_length 16: cores of at least one piece need context <= 6
      with self.assertRaisesRegex(fileio.InputError, "--window_context=%d: expected 0 to 6" % bad):
        inference.Predictor(self.model, window_context=bad)

  def test_probabilities_at_label_positions_equal_the_full_graph(self):
    # The predictor's graph computes the last layer only where a window is read (its label
    # positions); there it equals the full graph (the served one) to float rounding.
    self.assertIsNotNone(self.model.output_positions)
    sentences = [s for text in NOTES for block in text_lib.note_sentences(text, WHITESPACE)
                 for s in block]
    examples = self.model.head.prediction_examples(sentences)
    features = self.model.head.convert_examples(examples, 16, self.model.tokenizer)
    got = self.model.probabilities(features, batch_size=4)
    inputs = self.model.inputs
    checked = 0
    for f, g in zip(features, got):
      feed = {inputs[k]: [getattr(f, k)] for k in model_lib.SERVING_INPUTS}
      want = self.model.session.run(self.model.outputs["probabilities"], feed)[0]
      at = np.flatnonzero(f.label_mask)
      self.assertAllClose(g[at], want[at], atol=1e-5)
      self.assertAllClose(np.sum(g[at], axis=-1), np.ones(len(at)), atol=1e-5)
      checked += len(at)
    self.assertGreater(checked, 20)

  def test_bf16_session_is_close_to_float32(self):
    # bfloat16 mixed precision (oneDNN's rewrite) keeps ~3 significant digits: probabilities stay
    # close to float32's. (On a CPU without native bfloat16 the rewrite may be skipped.)
    bf16 = inference.load_model(self.model_dir, use_bf16=True)
    try:
      sentences = [s for text in NOTES for block in text_lib.note_sentences(text, WHITESPACE)
                   for s in block]
      examples = self.model.head.prediction_examples(sentences)
      features = self.model.head.convert_examples(examples, 16, self.model.tokenizer)
      want = self.model.probabilities(features)
      got = bf16.probabilities(features)
      self.assertLen(got, len(want))
      for g, w in zip(got, want):
        self.assertAllClose(g, w, atol=0.05)
      if checkpoints.cpu_has_bf16():  # the rewrite ran: not float32's numbers
        self.assertGreater(max(float(np.max(np.abs(g - w))) for g, w in zip(got, want)), 1e-6)
      spans = [(i, s.start, s.end) for i, sp in
               [(n.id, sp) for n, sp in inference.Predictor(bf16).predict(notes())] for s in sp]
      self.assertGreater(len(spans), 3)
    finally:
      bf16.close()

  def test_batching_and_blocks_do_not_change_predictions(self):
    def flat(results):
      return [(i, s.start, s.end, s.label, s.first, s.last) for i, spans in results for s in spans]
    reference = self.predict(batch_size=64)
    again = self.predict(batch_size=1, buffer_words=1)
    self.assertEqual(flat(again), flat(reference))
    self.assertAllClose([s.score for _, spans in again for s in spans],
                        [s.score for _, spans in reference for s in spans], atol=1e-5)
    old = text_lib.BLOCK_CHARS
    try:
      text_lib.BLOCK_CHARS = 20  # every line its own block
      blocks = list(text_lib.note_blocks(NOTES[0], 20))
      self.assertGreater(len(blocks), 2)
      self.assertEqual("".join(NOTES[0][a:b] for a, b in blocks), NOTES[0])
    finally:
      text_lib.BLOCK_CHARS = old
    sentences = [s for block in text_lib.note_sentences(NOTES[0], WHITESPACE, 20) for s in block]
    whole = WHITESPACE.sentences(NOTES[0], 0, len(NOTES[0]), 1)
    self.assertEqual([(s.words, s.offsets, s.line) for s in sentences],
                     [(s.words, s.offsets, s.line) for s in whole])
    self.assertEqual([s.line for s in whole], [1, 3, 4])

  def test_streams_notes_and_cuts_a_long_note_into_buffers(self):
    # Notes are read lazily: the first result comes before the last note is read.
    read = []

    def stream():
      for note in notes(NOTES * 20):
        read.append(note.id)
        yield note
    predictor = inference.Predictor(self.model, batch_size=4, buffer_words=50)
    first = next(iter(predictor.predict(stream())))
    self.assertEqual(first[0].id, "n0")
    self.assertLess(len(read), 20)
    # One long note (many lines) goes through several buffers, with the same spans.
    long_note = "\n".join(NOTES * 30)
    calls = []
    cut = inference.Predictor(self.model, buffer_words=40, after_batch=lambda: calls.append(1))
    old = text_lib.BLOCK_CHARS
    try:
      text_lib.BLOCK_CHARS = 200
      (_, spans), = list(cut.predict(notes([long_note])))
    finally:
      text_lib.BLOCK_CHARS = old
    (_, whole), = self.predict([long_note])
    self.assertGreater(len(calls), 5)
    self.assertEqual([(s.start, s.end, s.label, s.first) for s in spans],
                     [(s.start, s.end, s.label, s.first) for s in whole])

  def test_min_probability_trades_precision_for_recall(self):
    probabilities = np.array([[0.6, 0.3, 0.1, 0.0, 0.0], [0.9, 0.02, 0.03, 0.05, 0.0]], np.float32)
    head = self.model.head
    labels, _ = head.decode(probabilities)
    self.assertEqual(labels, ["O", "O"])
    labels, _ = head.decode(probabilities, min_probability=0.35)
    self.assertEqual(labels, ["B-problem", "O"])
    labels, _ = head.decode(probabilities, min_probability=0.1)
    self.assertEqual(labels, ["B-problem", "B-test"])
    low = sum(len(s) for _, s in self.predict(min_probability=0.01))
    words = sum(len(t.split()) for t in NOTES)
    self.assertGreater(low, 0)
    self.assertLessEqual(low, words)
    # Every word is PHI at a threshold below any P(not O): spans cover all words.
    covered = sum(len(NOTES[int(i[1:])][s.start:s.end].split())
                  for i, spans in self.predict(min_probability=1e-9) for s in spans)
    self.assertEqual(covered, words)

  def test_lenient_repair_of_iob_runs(self):
    sentence = word_rules.Sentence(["a", "b", "c", "d"], [(0, 1), (2, 3), (4, 5), (6, 7)], 1)
    probabilities = np.full([4, 5], 0.2, np.float32)
    spans = text_lib.sentence_spans(sentence, ["I-test", "I-test", "I-problem", "O"],
                                    [4, 4, 2, 0], probabilities)
    self.assertEqual([(s.start, s.end, s.label) for s in spans], [(0, 3, "test"),
                                                                  (4, 5, "problem")])

  def test_sentence_pair_model_is_refused_for_spans(self):
    directory = write_model_dir(os.path.join(self.temp_dir(), "nli"),
                                labels=["contradiction", "entailment", "neutral"],
                                head="sequence_classification")
    model = inference.load_model(directory)
    try:
      with self.assertRaisesRegex(Exception, "sequence_classification head"):
        inference.Predictor(model)
      pairs = [readers.Note("p0", "patient denies chest pain", "x", "x", text_b="no pain"),
               readers.Note("p1", "fever", "x", "x", text_b="")]
      results = list(inference.predict_pairs(model, pairs))
      self.assertEqual([p.id for p, _, _ in results], ["p0", "p1"])
      for _, label, probs in results:
        self.assertEqual(label, max(probs, key=probs.get))
        self.assertAlmostEqual(sum(probs.values()), 1.0, places=4)
    finally:
      model.close()


class NoteInputsTest(testutil.TestCase):

  def test_text_jsonl_and_bad_notes(self):
    d = self.temp_dir()
    with open(os.path.join(d, "note-1.txt"), "w", encoding="utf-8") as f:
      f.write("Seen by Dr. X .\n")
    with open(os.path.join(d, "bad.txt"), "wb") as f:
      f.write(b"caf\xe9\n")
    with open(os.path.join(d, "notes.jsonl"), "wb") as f:
      f.write(b'{"id": 7, "text": "a"}\n\n{"text": "b"}\n[1]\n{"id": "x"}\nnot json\n'
              b'{"id": "u", "text": "\xff"}\n')
    read = list(readers.read_notes([os.path.join(d, n) for n in
                                        ("note-1.txt", "bad.txt", "notes.jsonl")]))
    kinds = [(type(n).__name__, getattr(n, "id", None)) for _, n in read]
    self.assertEqual(kinds, [("Note", "note-1"), ("BadNote", None), ("Note", "7"),
                             ("Note", "notes-3"), ("BadNote", None), ("BadNote", None),
                             ("BadNote", None), ("BadNote", None)])
    bad = [n for _, n in read if isinstance(n, readers.BadNote)]
    self.assertIn("not UTF-8", bad[0].reason)
    self.assertEqual(bad[1].where, os.path.join(d, "notes.jsonl") + ":4")
    self.assertIn("missing or non-text 'text'", bad[2].reason)
    self.assertIn("not JSON", bad[3].reason)
    self.assertIn("not UTF-8", bad[4].reason)
    for b in bad:
      self.assertNotIn("caf", b.reason)
    self.assertEqual(read[0][1].text, "Seen by Dr. X .\n")

  def test_noteevents(self):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(here, "testdata", "NOTEEVENTS_sample.csv")
    read = [n for _, n in readers.read_notes([path])]
    self.assertGreater(len(read), 3)
    self.assertEqual(read[0].id, "101")
    self.assertTrue(read[0].text.startswith("Admission Date:"))


class SpanOutputsTest(testutil.TestCase):

  def test_formats_and_replacement(self):
    text = "Seen by Dr. Ines Aldana on 8/7/73 ]]> ok."
    spans = [text_lib.Span(12, 23, "DOCTOR", 0.9, (1, 3), (1, 4)),
             text_lib.Span(27, 33, "DATE", 0.8, (1, 6), (1, 6))]
    self.assertEqual(outputs.format_brat(text, spans),
                     "T1\tDOCTOR 12 23\tInes Aldana\nT2\tDATE 27 33\t8/7/73\n")
    xml = outputs.format_i2b2_2014(text, spans)
    self.assertIn('<NAME id="P0" start="12" end="23" text="Ines Aldana" TYPE="DOCTOR"', xml)
    self.assertIn('<DATE id="P1" start="27" end="33" text="8/7/73" TYPE="DATE"', xml)
    # The XML reads back with the project's i2b2 2014 reader: same text, same offsets.
    from clinicalbert_tf.tasks import i2b2_2012  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.temp_dir(), "n.xml")
    with open(path, "w", encoding="utf-8") as f:
      f.write(xml)
    read_text, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", ("NAME", "DATE"), "TYPE",
                                                       lambda *a: None)
    self.assertEqual(read_text, text)
    self.assertEqual([(e.start, e.end, e.type) for e in entities],
                     [(12, 23, "DOCTOR"), (27, 33, "DATE")])
    self.assertEqual(outputs.format_con(text, spans),
                     'c="ines aldana" 1:3 1:4||t="DOCTOR"\nc="8/7/73" 1:6 1:6||t="DATE"\n')
    def replace(operator, mask_char="*"):
      return anonymize.Anonymizer(operator, mask_char=mask_char).anonymize(text, spans, "n")
    self.assertEqual(replace("placeholder").text, "Seen by Dr. [**DOCTOR**] on [**DATE**] ]]> ok.")
    self.assertEqual(replace("tag").text, "Seen by Dr. <DOCTOR> on <DATE> ]]> ok.")
    masked = replace("mask", "#").text
    self.assertEqual(masked, "Seen by Dr. ########### on ###### ]]> ok.")
    self.assertLen(masked, len(text))
    # Items cut exactly the replacements, in the output's offsets and the input's.
    result = replace("placeholder")
    self.assertEqual([(result.text[i.start:i.end], text[i.input_start:i.input_end], i.label)
                      for i in result.items],
                     [("[**DOCTOR**]", "Ines Aldana", "DOCTOR"), ("[**DATE**]", "8/7/73", "DATE")])
    self.assertEqual(outputs.jsonl_record("a", spans[:1]),
                     {"id": "a", "entities": [{"start": 12, "end": 23, "label": "DOCTOR",
                                               "score": 0.9}]})


class WordRulesTest(testutil.TestCase):
  """The head record's word rules decide how a raw note is split, offsets kept."""

  def test_punctuation_apart_as_pre_split_training_files_have_it(self):
    text = "Seen at Eastchester, N.Y. on 3/4.\n\n  x--y (BP 120/80)\r\nend"
    rules = word_rules.get("lines_punctuation")
    sentences = rules.sentences(text, 0, len(text), 1)
    self.assertEqual([s.words for s in sentences],
                     [["Seen", "at", "Eastchester", ",", "N", ".", "Y", ".", "on", "3", "/", "4",
                       "."], ["x", "-", "-", "y", "(", "BP", "120", "/", "80", ")"], ["end"]])
    self.assertEqual([s.line for s in sentences], [1, 3, 4])
    for sentence in sentences:
      self.assertEqual([text[a:b] for a, b in sentence.offsets], sentence.words)
    # The whitespace rules keep "Eastchester," whole (the word the i2b2 2014 readers make).
    whitespace = WHITESPACE.sentences(text, 0, len(text), 1)
    self.assertEqual(whitespace[0].words[2], "Eastchester,")
    with self.assertRaisesRegex(Exception, "word_rules 'nope' is not one of"):
      word_rules.get("nope")

  def test_a_model_splits_notes_by_its_records_rules(self):
    d = write_model_dir(os.path.join(self.temp_dir(), "punct"))
    path = os.path.join(d, checkpoints.HEAD_RECORD_FILE)
    with open(path) as f:
      record = json.load(f)
    record["word_rules"] = "lines_punctuation"
    with open(path, "w") as f:
      json.dump(record, f)
    model = inference.load_model(d)
    try:
      self.assertEqual(model.word_rules.name, "lines_punctuation")
      text = "Eastchester, hypertension."
      (block,) = list(text_lib.note_sentences(text, model.word_rules))
      self.assertEqual(block[0].words, ["Eastchester", ",", "hypertension", "."])
      (_, spans), = list(inference.Predictor(model, min_probability=1e-9).predict(
          notes([text])))
      # Every word is an entity at this threshold; spans start and end on the words' edges.
      self.assertTrue(spans)
      self.assertLessEqual({s.start for s in spans}, {0, 11, 13, 25})
      self.assertLessEqual({s.end for s in spans}, {11, 12, 25, 26})
    finally:
      model.close()


class ReadersTest(testutil.TestCase):

  def test_registry_auto_detection_and_patients(self):
    d = self.temp_dir()
    path = os.path.join(d, "p.jsonl")
    with open(path, "w") as f:
      f.write(json.dumps({"id": "a", "text": "x", "mrn": 17}) + "\n")
      f.write(json.dumps({"id": "b", "text": "y"}) + "\n")
    self.assertEqual(readers.input_format_of(path), "jsonl")
    self.assertEqual(readers.input_format_of("N.csv.gz"), "noteevents")
    self.assertEqual(readers.input_format_of("note.txt"), "text")
    read = [n for _, n in readers.read_notes([path], options=readers.ReadOptions(
        patient_field="mrn"))]
    self.assertEqual((read[0].id, read[0].patient), ("a", "17"))
    self.assertIsInstance(read[1], readers.BadNote)
    self.assertIn("patient field 'mrn'", read[1].reason)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    csv = os.path.join(here, "testdata", "NOTEEVENTS_sample.csv")
    first = next(n for _, n in readers.read_notes([csv]))
    self.assertTrue(first.patient and first.patient.isdigit())
    with self.assertRaisesRegex(Exception, "--input_format=xml: expected one of"):
      readers.reader_for(path, "xml")


class StepAndJobTest(testutil.TestCase):

  def test_the_per_note_step_is_pure(self):
    note = readers.Note("n1", "Seen by Dr. Ines Aldana today.", "x", "x", patient="p")
    spans = [text_lib.Span(12, 23, "DOCTOR", 0.9)]
    anonymizer = anonymize.Anonymizer("tag")
    first = step.note_outputs(note, spans, anonymizer)
    again = step.note_outputs(note, spans, anonymizer)
    self.assertEqual(first.record, {"id": "n1", "entities": [
        {"start": 12, "end": 23, "label": "DOCTOR", "score": 0.9}]})
    self.assertEqual(first.deidentified.text, "Seen by Dr. <DOCTOR> today.")
    self.assertEqual((again.record, again.deidentified.text),
                     (first.record, first.deidentified.text))
    self.assertIsNone(step.note_outputs(note, spans).deidentified)
    self.assertEqual(step.note_outputs(note, spans, include_text=True).record["text"], note.text)
    # Each format renders the step's outputs; its scope decides where it goes.
    self.assertEqual(outputs.get("brat").render(first), "T1\tDOCTOR 12 23\tInes Aldana\n")
    self.assertEqual(outputs.get("deidentified").render(first), "Seen by Dr. <DOCTOR> today.")
    self.assertEqual(outputs.get("brat").scopes, (outputs.PER_NOTE,))
    self.assertEqual(outputs.get("jsonl").scopes, (outputs.ONE_FILE, outputs.PER_INPUT))

  def test_a_failed_run_leaves_no_output_under_its_final_name(self):
    d = self.temp_dir()
    model = inference.load_model(write_model_dir(os.path.join(d, "m")))
    note_dir = os.path.join(d, "notes")
    os.makedirs(note_dir)
    for i, text in enumerate(["fever and cough", "chest pain"]):
      with open(os.path.join(note_dir, "n%d.txt" % i), "w") as f:
        f.write(text)
    with open(os.path.join(note_dir, "n2.txt"), "wb") as f:
      f.write(b"caf\xe9")  # not UTF-8: stops the run after two good notes
    try:
      for options in (inference.JobOptions(input_file=note_dir + "/*.txt",
                                           output_file=os.path.join(d, "out.jsonl")),
                      inference.JobOptions(input_file=note_dir + "/*.txt",
                                           output_dir=os.path.join(d, "per_input"))):
        with self.assertRaisesRegex(Exception, "not UTF-8"):
          inference.run_job(model, options)
      self.assertFalse(os.path.exists(os.path.join(d, "out.jsonl")))
      per_input = os.path.join(d, "per_input")
      self.assertEqual(os.listdir(per_input) if os.path.isdir(per_input) else [], [])
      counts = inference.run_job(model, inference.JobOptions(
          input_file=note_dir + "/*.txt", output_file=os.path.join(d, "out.jsonl"),
          max_bad_notes=1))
      self.assertEqual((counts["notes"], counts["bad"]), (2, 1))
      with open(os.path.join(d, "out.jsonl")) as f:
        self.assertEqual([json.loads(line)["id"] for line in f], ["n0", "n1"])
    finally:
      model.close()

  def test_html_page_holds_the_json_lines_spans(self):
    d = self.temp_dir()
    model = inference.load_model(write_model_dir(os.path.join(d, "m")))
    note_dir = os.path.join(d, "notes")
    os.makedirs(note_dir)
    for i, text in enumerate(NOTES[:3]):
      with open(os.path.join(note_dir, "n%d.txt" % i), "w") as f:
        f.write(text)
    try:
      page = os.path.join(d, "review.html")
      for path, fmt in ((os.path.join(d, "out.jsonl"), "jsonl"), (page, "html")):
        inference.run_job(model, inference.JobOptions(
            input_file=note_dir + "/*.txt", output_file=path, output_format=fmt))
      with self.assertRaisesRegex(fileio.InputError, "html writes one file for the run"):
        inference.run_job(model, inference.JobOptions(
            input_file=note_dir + "/*.txt", output_dir=os.path.join(d, "x"), output_format="html"))
    finally:
      model.close()
    self.assertEqual(stat.S_IMODE(os.stat(page).st_mode), 0o600)
    with open(page, encoding="utf-8") as f:
      content = f.read()
    data = json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)</script>',
                                content, re.S).group(1))
    self.assertFalse(data["has_gold"])
    with open(os.path.join(d, "out.jsonl"), encoding="utf-8") as f:
      expected = {r["id"]: [(e["start"], e["end"], e["label"]) for e in r["entities"]]
                  for r in map(json.loads, f)}
    got = {n["id"]: [(s[0], s[1], data["types"][s[2]]) for s in n["system"]]
           for n in data["notes"]}
    self.assertEqual(got, expected)
    self.assertTrue(any(expected.values()))


if __name__ == "__main__":
  tf.disable_v2_behavior()
  absltest.main()
