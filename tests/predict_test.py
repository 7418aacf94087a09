"""predict.py and deidentify.py end to end: the same labels as run_finetune --do_predict, formats,
bad input (one line, non-zero exit, no partial output), --skip_existing, replacement."""

import json
import os
import re
import shutil

from absl.testing import absltest
import tensorflow.compat.v1 as tf

from clinicalbert_tf import tasks
from clinicalbert_tf.finetuning import runner
from tests import testutil

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(HERE, "testdata")


def finetune(root, task_name, head, num_labels, max_seq_length=24, **kwargs):
  """A tiny model fine-tuned for a step or two on the task's invented sample; returns output_dir.

  It starts from random weights with a random output layer (N(0, 0.2)), so its predictions are
  varied (a few steps from a fresh head would predict only O).
  """
  config = testutil.tiny_config(dropout=0.0)
  testutil.write_config(root, config)
  vocab = testutil.write_vocab(root)
  init = testutil.write_checkpoint(os.path.join(root, "init", "bert_model.ckpt"), config,
                                   heads=head, num_labels=num_labels)
  out = os.path.join(root, task_name)
  values = dict(task_name=task_name, data_dir=os.path.join(TESTDATA, task_name), output_dir=out,
                bert_config_file=os.path.join(root, "bert_config.json"), vocab_file=vocab,
                init_checkpoint=init, do_lower_case=True, max_seq_length=max_seq_length,
                do_train=True, do_predict=True, train_batch_size=4, predict_batch_size=3,
                learning_rate=1e-5, num_train_epochs=0.2, save_checkpoints_steps=10000, seed=3)
  values.update(kwargs)
  runner.run(runner.FinetuneConfig(**values))
  return out, os.path.join(root, "bert_config.json"), vocab


def read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


class PredictTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tf.disable_v2_behavior()
    cls.root = cls.class_temp_dir()
    # Short windows: the tiny vocabulary spells most words letter by letter, so lines are split.
    cls.ner_dir, cls.config_file, cls.vocab = finetune(cls.root, "i2b2_2010",
                                                       "token_classification", 7, max_seq_length=24)
    cls.model_flags = ["--model_dir=" + cls.ner_dir, "--bert_config_file=" + cls.config_file,
                       "--vocab_file=" + cls.vocab]
    cls.notes = os.path.join(TESTDATA, "i2b2_2010", "test", "test_data", "*.txt")

  def predict(self, *args, check=True, module="predict"):
    return testutil.run_module(module, list(self.model_flags) + list(args), check=check)

  def test_same_labels_as_run_finetune_do_predict(self):
    out = os.path.join(self.temp_dir(), "spans.jsonl")
    self.predict("--input_file=" + self.notes, "--output_file=" + out, "--predict_batch_size=5")
    records = read_jsonl(out)
    task = tasks.get_task("i2b2_2010")
    test = task.get_examples(os.path.join(TESTDATA, "i2b2_2010"), "test")
    with open(os.path.join(self.ner_dir, "test_predictions.txt"), encoding="utf-8") as f:
      blocks = [b for b in f.read().split("\n\n") if b.strip()]
    self.assertLen(blocks, len(test))
    by_note = {}
    for sentence, block in zip(test, blocks):
      by_note.setdefault(sentence.doc_id, []).append(
          (sentence, [line.split(" ")[2] for line in block.splitlines()]))
    self.assertEqual(sorted(r["id"] for r in records), sorted(by_note))
    entities = 0
    for record in records:
      with open(os.path.join(TESTDATA, "i2b2_2010", "test", "test_data", record["id"] + ".txt"),
                encoding="utf-8") as f:
        text = f.read()
      lines = text.split("\n")
      line_starts = [m.start() for m in re.finditer(r"(?m)^", text)]
      want = []
      for sentence, predicted in by_note[record["id"]]:
        repaired, _ = tasks.repair_iob2(predicted)
        for s, e, typ in tasks.iob_to_spans(repaired):
          (l1, t1), (l2, t2) = sentence.positions[s], sentence.positions[e - 1]
          self.assertEqual(l1, l2)  # no concept of the sample spans lines
          words = [m.span() for m in re.finditer(r"\S+", lines[l1 - 1])]
          want.append((line_starts[l1 - 1] + words[t1][0], line_starts[l1 - 1] + words[t2][1],
                       typ))
      got = [(e["start"], e["end"], e["label"]) for e in record["entities"]]
      self.assertEqual(got, want)
      for e in record["entities"]:  # the offsets cut out exactly the entity's words
        self.assertEqual(text[e["start"]:e["end"]], text[e["start"]:e["end"]].strip())
        self.assertNotIn("\n", text[e["start"]:e["end"]])
      entities += len(got)
      self.assertNotIn("text", record)
    self.assertGreater(entities, 0)
    # The .con output is run_finetune's wherever no I- run needed repairing.
    con_dir = os.path.join(self.temp_dir(), "con")
    self.predict("--input_file=" + self.notes, "--output_dir=" + con_dir, "--output_format=con")
    for name in os.listdir(os.path.join(self.ner_dir, "test_con")):
      with open(os.path.join(self.ner_dir, "test_con", name)) as f:
        theirs = f.read().splitlines()
      with open(os.path.join(con_dir, name)) as f:
        ours = f.read().splitlines()
      self.assertContainsSubset(theirs, ours)

  def test_same_labels_as_run_finetune_for_mednli(self):
    root = self.temp_dir()
    nli_dir, _, _ = finetune(root, "mednli", "sequence_classification", 3, max_seq_length=48)
    with open(os.path.join(nli_dir, "test_predictions.tsv")) as f:
      rows = [line.split("\t") for line in f.read().splitlines()]
    out = os.path.join(root, "labels.jsonl")
    testutil.run_module("predict", ["--model_dir=" + nli_dir,
                                    "--bert_config_file=" + os.path.join(root, "bert_config.json"),
                                    "--vocab_file=" + os.path.join(root, "vocab.txt"),
                                    "--input_file=" + os.path.join(TESTDATA, "mednli",
                                                                   "mli_test_v1.jsonl"),
                                    "--output_file=" + out])
    records = read_jsonl(out)
    header = rows[0]
    self.assertEqual([r["id"] for r in records], [row[0] for row in rows[1:]])
    for record, row in zip(records, rows[1:]):
      self.assertEqual(record["label"], row[2])
      for name, value in zip(header[3:], row[3:]):
        self.assertAlmostEqual(record["probabilities"][name[2:]], float(value), delta=2e-6)

  def test_window_context_flag(self):
    out = os.path.join(self.temp_dir(), "spans.jsonl")
    self.predict("--input_file=" + self.notes, "--output_file=" + out, "--window_context=2")
    default = os.path.join(self.temp_dir(), "default.jsonl")
    self.predict("--input_file=" + self.notes, "--output_file=" + default)
    self.assertEqual([r["id"] for r in read_jsonl(out)], [r["id"] for r in read_jsonl(default)])
    self.predict("--input_file=" + self.notes, "--output_file=" + out, "--use_bf16")
    self.assertEqual([r["id"] for r in read_jsonl(out)], [r["id"] for r in read_jsonl(default)])
    proc = self.predict("--input_file=" + self.notes, "--output_file=" + out,
                        "--window_context=-1", check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("--window_context=-1: expected pieces of context >= 0", proc.stderr)
    proc = self.predict("--input_file=" + self.notes, "--output_file=" + out,
                        "--window_context=11", check=False)  # max_seq_length 24: at most 10
    self.assertEqual(proc.returncode, 1)
    self.assertIn("--window_context=11: expected 0 to 10 pieces of context", proc.stderr)

  def test_formats_bad_notes_and_skip_existing(self):
    d = self.temp_dir()
    notes = os.path.join(d, "notes")
    os.makedirs(notes)
    shutil.copy(os.path.join(TESTDATA, "i2b2_2010", "test", "test_data", "note-201.txt"), notes)
    with open(os.path.join(notes, "empty.txt"), "w") as f:
      pass
    with open(os.path.join(notes, "zz-bad.txt"), "wb") as f:
      f.write(b"The patient\xff is well .\n")
    # A bad note: one line naming the file, exit status 1, no output.
    out = os.path.join(d, "spans.jsonl")
    proc = self.predict("--input_file=%s/*.txt" % notes, "--output_file=" + out, check=False)
    self.assertEqual(proc.returncode, 1)
    last = proc.stderr.strip().splitlines()[-1]
    self.assertRegex(last, r"^predict\.py: error: .*zz-bad\.txt: not UTF-8 text \(byte 11")
    self.assertNotIn("patient", proc.stderr)
    self.assertFalse(os.path.exists(out))
    self.assertEqual([n for n in os.listdir(d) if n.startswith(".")], [])
    # --max_bad_notes: counted and skipped; an empty note has no entities; --include_text.
    proc = self.predict("--input_file=%s/*.txt" % notes, "--output_file=" + out,
                        "--max_bad_notes=1", "--include_text")
    records = {r["id"]: r for r in read_jsonl(out)}
    self.assertEqual(sorted(records), ["empty", "note-201"])
    self.assertEqual(records["empty"]["entities"], [])
    self.assertEqual(records["empty"]["text"], "")
    self.assertIn("1 unreadable", proc.stdout)
    # brat and i2b2_2014 per note; a rerun with --skip_existing leaves finished notes alone.
    for fmt, suffix in (("brat", ".ann"), ("i2b2_2014", ".xml")):
      out_dir = os.path.join(d, fmt)
      self.predict("--input_file=%s/*.txt" % notes, "--output_dir=" + out_dir,
                   "--output_format=" + fmt, "--max_bad_notes=1")
      self.assertEqual(sorted(os.listdir(out_dir)), ["empty" + suffix, "note-201" + suffix])
    with open(os.path.join(d, "brat", "note-201.ann")) as f:
      ann = f.read().splitlines()
    with open(os.path.join(notes, "note-201.txt")) as f:
      text = f.read()
    for line in ann:
      tid, middle, words = line.split("\t")
      _, start, end = middle.split(" ")
      self.assertEqual(text[int(start):int(end)], words)
    os.remove(os.path.join(d, "brat", "empty.ann"))
    stamp = os.path.getmtime(os.path.join(d, "brat", "note-201.ann"))
    proc = self.predict("--input_file=%s/*.txt" % notes, "--output_dir=" + d + "/brat",
                        "--output_format=brat", "--max_bad_notes=1", "--skip_existing")
    self.assertIn("1 already done", proc.stdout)
    self.assertTrue(os.path.exists(os.path.join(d, "brat", "empty.ann")))
    self.assertEqual(os.path.getmtime(os.path.join(d, "brat", "note-201.ann")), stamp)
    # Flags that cannot work together: one line.
    proc = self.predict("--input_file=%s/*.txt" % notes, "--output_format=brat",
                        "--output_file=" + out, check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("predict.py: error: --output_dir is required", proc.stderr)

  def test_deidentify(self):
    d = self.temp_dir()
    out_dir = os.path.join(d, "deid")
    spans = os.path.join(d, "phi.jsonl")
    self.predict("--input_file=" + self.notes, "--output_dir=" + out_dir, "--output_file=" + spans,
                 "--replace=mask", "--mask_char=#", "--min_phi_probability=0.01",
                 module="deidentify")
    with open(os.path.join(TESTDATA, "i2b2_2010", "test", "test_data", "note-201.txt")) as f:
      text = f.read()
    with open(os.path.join(out_dir, "note-201.txt")) as f:
      masked = f.read()
    self.assertLen(masked, len(text))
    (record,) = read_jsonl(spans)
    self.assertGreater(len(record["entities"]), 0)
    for e in record["entities"]:
      self.assertEqual(masked[e["start"]:e["end"]], "#" * (e["end"] - e["start"]))
    outside = [c for i, c in enumerate(text)
               if not any(e["start"] <= i < e["end"] for e in record["entities"])]
    self.assertEqual("".join(outside), "".join(
        c for i, c in enumerate(masked)
        if not any(e["start"] <= i < e["end"] for e in record["entities"])))

  def test_deidentify_surrogate(self):
    d = self.temp_dir()
    notes = os.path.join(d, "notes")
    os.makedirs(notes)
    # The same text under two ids: each note's surrogates come from the seed and its id. (The tiny
    # model tags every word, so a span is a line's words: the text outside is the lines' margins.)
    text = ("Seen by Dr. Ines Aldana at Pinecrest Clinic on 8/7/73 .\n\n"
            "  Edda Morrow , 71 , MRN 4455123 , phone 617-555-0100 .  \n"
            "\tAldana called Morrow on 8/9/73 .\n")
    for name in ("a.txt", "b.txt"):
      with open(os.path.join(notes, name), "w", encoding="utf-8") as f:
        f.write(text)

    def deidentify(name, *args, check=True):
      out_dir, spans = os.path.join(d, name), os.path.join(d, name + ".jsonl")
      proc = self.predict("--input_file=%s/*.txt" % notes, "--output_dir=" + out_dir,
                          "--output_file=" + spans, "--replace=surrogate", *args,
                          module="deidentify", check=check)
      if not check:
        return proc, out_dir, spans
      outputs = {}
      for note in ("a", "b"):
        with open(os.path.join(out_dir, note + ".txt"), "rb") as f:
          outputs[note] = f.read()
      with open(spans, "rb") as f:
        return outputs, f.read()

    first, first_spans = deidentify("one")
    again, again_spans = deidentify("two")
    other, other_spans = deidentify("seed", "--random_seed=7")
    self.assertEqual(first, again)
    self.assertEqual(first_spans, again_spans)
    self.assertNotEqual(first["a"], other["a"])
    self.assertNotEqual(first["a"], first["b"])
    # The spans file holds the original offsets: the same spans under any seed, cutting out words.
    self.assertEqual(first_spans, other_spans)
    records = [json.loads(line) for line in first_spans.decode("utf-8").splitlines()]
    self.assertEqual([r["id"] for r in records], ["a", "b"])
    entities = records[0]["entities"]
    self.assertEqual(records[1]["entities"], entities)
    self.assertGreater(len(entities), 0)
    for e in entities:
      self.assertEqual(text[e["start"]:e["end"]], text[e["start"]:e["end"]].strip())
    # Outside the spans the text is unchanged and in order; each span has its surrogate.
    cuts = [0] + [x for e in entities for x in (e["start"], e["end"])] + [len(text)]
    outside = [text[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]
    self.assertIn("  ", "".join(outside))
    pattern = re.compile("(.+?)".join(re.escape(part) for part in outside), re.DOTALL)
    # No word (2+ letters) or number (3+ digits) of the PHI is in the output, unless the model
    # left it outside every span too.
    masked = list(text)
    for e in entities:
      masked[e["start"]:e["end"]] = "\0" * (e["end"] - e["start"])
    masked = "".join(masked)
    phi_words = {w for e in entities
                 for w in re.findall(r"[^\W\d_]{2,}|\d{3,}", text[e["start"]:e["end"]])}
    self.assertContainsSubset({"Aldana", "Morrow", "4455123", "617"}, phi_words)
    for outputs in (first, other):
      for output in outputs.values():
        output = output.decode("utf-8")
        self.assertIsNotNone(pattern.fullmatch(output))
        for w in phi_words:
          word = re.compile(r"(?<!\w)%s(?!\w)" % re.escape(w))
          self.assertLessEqual(len(word.findall(output)), len(word.findall(masked)), w)
    # An unknown locale: one line, exit 1, no output.
    proc, out_dir, spans = deidentify("bad", "--surrogate_locale=xx_YY", check=False)
    self.assertEqual(proc.returncode, 1)
    self.assertRegex(proc.stderr.strip().splitlines()[-1],
                     r"^deidentify\.py: error: --surrogate_locale=xx_YY: not a Faker locale")
    self.assertFalse(os.path.exists(spans))
    self.assertFalse(os.path.exists(out_dir) and os.listdir(out_dir))


if __name__ == "__main__":
  absltest.main()
