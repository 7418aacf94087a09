"""inference.py, note_inputs.py and span_outputs.py: notes -> words -> windows -> spans."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow.compat.v1 as tf

from clinicalbert_tf import inference
from clinicalbert_tf import note_inputs
from clinicalbert_tf import span_outputs
from clinicalbert_tf import tasks
from tests import testutil

NER_LABELS = testutil.NER_LABELS
NOTES = testutil.NOTES
write_model_dir = testutil.write_model_dir


def notes(texts=NOTES):
  return [note_inputs.Note("n%d" % i, t, "x", "x") for i, t in enumerate(texts)]


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
    sentences = [s for text in NOTES for start, end in inference.note_blocks(text)
                 for s in inference.block_sentences(text, start, end, 1)]
    examples = [tasks.TaggedSentence("s%d" % i, s.words, ["O"] * len(s.words))
                for i, s in enumerate(sentences)]
    features = head.convert_examples(examples, 16, tokenizer)
    self.assertGreater(len(features), len(examples))  # some lines are split into windows
    session, inputs = self.model.session, self.model.inputs
    outputs = []
    for f in features:  # one window at a time, padded to max_seq_length
      feed = {inputs[k]: [getattr(f, k)] for k in inference.SERVING_INPUTS}
      outputs.append({"label_ids": session.run(self.model.outputs["label_ids"], feed)[0]})
    expected = head.assemble_predictions(examples, features, outputs)
    got_spans = [s for _, spans in self.predict(batch_size=5, buffer_words=30) for s in spans]
    want_spans = []
    for sentence, labels in zip(sentences, expected):
      repaired, _ = tasks.repair_iob2(labels)
      want_spans += [(sentence.offsets[a][0], sentence.offsets[b - 1][1], t)
                     for a, b, t in tasks.iob_to_spans(repaired)]
    self.assertEqual([(s.start, s.end, s.label) for s in got_spans], want_spans)

  def test_batching_and_blocks_do_not_change_predictions(self):
    def flat(results):
      return [(i, s.start, s.end, s.label, s.first, s.last) for i, spans in results for s in spans]
    reference = self.predict(batch_size=64)
    again = self.predict(batch_size=1, buffer_words=1)
    self.assertEqual(flat(again), flat(reference))
    self.assertAllClose([s.score for _, spans in again for s in spans],
                        [s.score for _, spans in reference for s in spans], atol=1e-5)
    old = inference.BLOCK_CHARS
    try:
      inference.BLOCK_CHARS = 20  # every line its own block
      blocks = list(inference.note_blocks(NOTES[0], 20))
      self.assertGreater(len(blocks), 2)
      self.assertEqual("".join(NOTES[0][a:b] for a, b in blocks), NOTES[0])
    finally:
      inference.BLOCK_CHARS = old
    sentences = [s for a, b in inference.note_blocks(NOTES[0], 20)
                 for s in inference.block_sentences(NOTES[0], a, b, NOTES[0].count("\n", 0, a) + 1)]
    whole = inference.block_sentences(NOTES[0], 0, len(NOTES[0]), 1)
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
    old = inference.BLOCK_CHARS
    try:
      inference.BLOCK_CHARS = 200
      (_, spans), = list(cut.predict(notes([long_note])))
    finally:
      inference.BLOCK_CHARS = old
    (_, whole), = self.predict([long_note])
    self.assertGreater(len(calls), 5)
    self.assertEqual([(s.start, s.end, s.label, s.first) for s in spans],
                     [(s.start, s.end, s.label, s.first) for s in whole])

  def test_min_probability_trades_precision_for_recall(self):
    probabilities = np.array([[0.6, 0.3, 0.1, 0.0, 0.0], [0.9, 0.02, 0.03, 0.05, 0.0]], np.float32)
    labels, _ = inference.word_labels(probabilities, NER_LABELS)
    self.assertEqual(labels, ["O", "O"])
    labels, _ = inference.word_labels(probabilities, NER_LABELS, min_probability=0.35)
    self.assertEqual(labels, ["B-problem", "O"])
    labels, _ = inference.word_labels(probabilities, NER_LABELS, min_probability=0.1)
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
    sentence = inference.Sentence(["a", "b", "c", "d"], [(0, 1), (2, 3), (4, 5), (6, 7)], 1)
    probabilities = np.full([4, 5], 0.2, np.float32)
    spans = inference.sentence_spans(sentence, ["I-test", "I-test", "I-problem", "O"],
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
      pairs = [note_inputs.Note("p0", "patient denies chest pain", "x", "x", text_b="no pain"),
               note_inputs.Note("p1", "fever", "x", "x", text_b="")]
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
    read = list(note_inputs.read_notes([os.path.join(d, n) for n in
                                        ("note-1.txt", "bad.txt", "notes.jsonl")]))
    kinds = [(type(n).__name__, getattr(n, "id", None)) for _, n in read]
    self.assertEqual(kinds, [("Note", "note-1"), ("BadNote", None), ("Note", "7"),
                             ("Note", "notes-3"), ("BadNote", None), ("BadNote", None),
                             ("BadNote", None), ("BadNote", None)])
    bad = [n for _, n in read if isinstance(n, note_inputs.BadNote)]
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
    read = [n for _, n in note_inputs.read_notes([path])]
    self.assertGreater(len(read), 3)
    self.assertEqual(read[0].id, "101")
    self.assertTrue(read[0].text.startswith("Admission Date:"))


class SpanOutputsTest(testutil.TestCase):

  def test_formats_and_replacement(self):
    text = "Seen by Dr. Ines Aldana on 8/7/73 ]]> ok."
    spans = [span_outputs.Span(12, 23, "DOCTOR", 0.9, (1, 3), (1, 4)),
             span_outputs.Span(27, 33, "DATE", 0.8, (1, 6), (1, 6))]
    self.assertEqual(span_outputs.format_brat(text, spans),
                     "T1\tDOCTOR 12 23\tInes Aldana\nT2\tDATE 27 33\t8/7/73\n")
    xml = span_outputs.format_i2b2_2014(text, spans)
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
    self.assertEqual(span_outputs.format_con(text, spans),
                     'c="ines aldana" 1:3 1:4||t="DOCTOR"\nc="8/7/73" 1:6 1:6||t="DATE"\n')
    self.assertEqual(span_outputs.replace_spans(text, spans),
                     "Seen by Dr. [**DOCTOR**] on [**DATE**] ]]> ok.")
    self.assertEqual(span_outputs.replace_spans(text, spans, "tag"),
                     "Seen by Dr. <DOCTOR> on <DATE> ]]> ok.")
    masked = span_outputs.replace_spans(text, spans, "mask", "#")
    self.assertEqual(masked, "Seen by Dr. ########### on ###### ]]> ok.")
    self.assertLen(masked, len(text))
    self.assertEqual(span_outputs.jsonl_record("a", spans[:1]),
                     {"id": "a", "entities": [{"start": 12, "end": 23, "label": "DOCTOR",
                                               "score": 0.9}]})


if __name__ == "__main__":
  tf.disable_v2_behavior()
  absltest.main()
