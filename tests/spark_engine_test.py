"""The Spark engine gives the local engine's outputs for any partitioning, and survives faults.

One local Spark session (local[2], UI off, bound to 127.0.0.1) is shared by every test of this
file; the tiny model is loaded once per Python worker. Oracles: the local engine (`job.run_job`,
`pipeline.format_notes_file`, `pretraining_data` in sharded mode), never the Spark code.
"""

import filecmp
import json
import os
import socket

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import pretraining_data
from clinicalbert_tf.engines import spark as engine
from clinicalbert_tf.engines import spark_job
from clinicalbert_tf.inference import job
from clinicalbert_tf.inference import model as model_lib
from clinicalbert_tf.notes import pipeline
from tests import testutil

# Notes with a patient each, over the tiny vocabulary (the shared fixtures plus a few more).
NOTES = testutil.NOTES + ["Heart failure admitted ; kidney disease stable .", "no fever",
                          "Chest pain with cough and fever .\nDischarged home ."]


def _write_jsonl(path, records, bad_lines=()):
  with open(path, "w", encoding="utf-8") as f:
    for i, record in enumerate(records):
      if i in bad_lines:
        f.write("{not json\n")
      f.write(json.dumps(record) + "\n")
  return path


def _tree(directory):
  """{relative path: bytes} of every file under `directory`."""
  found = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, directory)] = f.read()
  return found


class SparkEngineTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = cls.class_temp_dir()
    cls.model_dir = testutil.write_model_dir(os.path.join(cls.dir, "model"))
    cls.spark = engine.get_session("local[2]")
    cls.inputs = os.path.join(cls.dir, "in")
    os.makedirs(cls.inputs)
    records = [{"id": "n%d" % i, "text": t, "patient": "p%d" % (i % 3)}
               for i, t in enumerate(NOTES)]
    cls.jsonl = _write_jsonl(os.path.join(cls.inputs, "a.jsonl"), records[:5])
    cls.jsonl2 = _write_jsonl(os.path.join(cls.inputs, "b.jsonl"), records[5:])
    cls.text = os.path.join(cls.inputs, "note-9.txt")
    with open(cls.text, "w", encoding="utf-8") as f:
      f.write(NOTES[0])
    cls.input_file = ",".join([cls.jsonl, cls.jsonl2, cls.text])
    cls.model = model_lib.load_model(cls.model_dir)  # the local engine's

  @classmethod
  def tearDownClass(cls):
    cls.model.close()
    super().tearDownClass()

  def _local(self, **kwargs):
    return job.run_job(self.model, job.JobOptions(input_file=self.input_file, **kwargs))

  def _spark(self, partitions, **kwargs):
    return spark_job.run_job(job.JobOptions(input_file=self.input_file, **kwargs), self.model_dir,
                          master="local[2]", partitions=partitions)

  def test_annotate_gives_the_local_spans_for_any_partitioning(self):
    out = self.temp_dir()
    self._local(output_file=os.path.join(out, "local.jsonl"))
    with open(os.path.join(out, "local.jsonl")) as f:
      expected = {r["id"]: r["entities"] for r in map(json.loads, f)}
    df = self.spark.read.json(self.jsonl).unionByName(self.spark.read.json(self.jsonl2))
    self.assertGreater(sum(len(e) for e in expected.values()), 0)
    for partitions in (1, 3):
      rows = engine.annotate(df.repartition(partitions), self.model_dir).collect()
      got = {r.id: [{"start": e.start, "end": e.end, "label": e.label,
                     "score": round(e.score, 6)} for e in r.entities] for r in rows}
      self.assertEqual(len(rows), len(NOTES), partitions)
      self.assertEqual(got, {k: v for k, v in expected.items() if k != "note-9"}, partitions)

  def test_script_job_gives_the_local_bytes(self):
    out = self.temp_dir()
    local = os.path.join(out, "local")
    self._local(output_dir=local + "/deid", output_file=local + "/spans.jsonl",
                replace="surrogate")
    self._local(output_file=local + "/predict.jsonl", include_text=True)
    # One de-identified text per note (NOTES and note-9), the items and the run summary.
    self.assertLen(os.listdir(local + "/deid"), len(NOTES) + 1 + 2)
    for partitions in (1, 3):
      ours = os.path.join(out, "spark%d" % partitions)
      counts = self._spark(partitions, output_dir=ours + "/deid",
                           output_file=ours + "/spans.jsonl", replace="surrogate")
      self.assertEqual(counts["notes"], len(NOTES) + 1)
      expected = _tree(local)
      if partitions == 3:  # predict.py's JSON lines with the text, at one partitioning (time)
        self._spark(partitions, output_file=ours + "/predict.jsonl", include_text=True)
      else:
        del expected["predict.jsonl"]
      self.assertEqual(_tree(ours), expected, partitions)

  def test_faults_tasks_fail_once_and_bad_notes_are_counted_across_executors(self):
    out = self.temp_dir()
    faults = self.temp_dir()
    records = [{"id": "x%d" % i, "text": t} for i, t in enumerate(NOTES)]
    first = _write_jsonl(os.path.join(out, "c.jsonl"), records[:4], bad_lines=(1,))
    second = _write_jsonl(os.path.join(out, "d.jsonl"), records[4:], bad_lines=(2,))
    inputs = dict(input_file=first + "," + second)
    local = job.run_job(self.model, job.JobOptions(
        output_file=os.path.join(out, "local.jsonl"), max_bad_notes=2, **inputs))
    self.assertEqual(local["bad"], 2)
    with open(os.path.join(out, "local.jsonl")) as f:
      expected = {r["id"]: r["entities"] for r in map(json.loads, f)}
    parquet = os.path.join(out, "spans.parquet")
    os.environ[engine.FAIL_ONCE_ENV] = faults  # every task's first attempt fails, once
    try:
      counts = spark_job.run_job(job.JobOptions(output_file=parquet, max_bad_notes=2, **inputs),
                              self.model_dir, partitions=2)
    finally:
      del os.environ[engine.FAIL_ONCE_ENV]
    self.assertCountEqual(os.listdir(faults), ["read-0", "read-1", "predict-0", "predict-1"])
    # Failed attempts counted nothing twice, and wrote nothing twice.
    self.assertEqual((counts["bad"], counts["notes"]), (2, len(NOTES)))
    rows = self.spark.read.parquet(parquet).collect()
    self.assertEqual({r.id: [{"start": e.start, "end": e.end, "label": e.label,
                              "score": round(e.score, 6)} for e in r.entities] for r in rows},
                     expected)
    self.assertLen(rows, len(NOTES))
    # One more bad note than allowed, over the two files (each executor sees one): no output.
    for output in ("again.jsonl", "again.parquet"):
      path = os.path.join(out, output)
      with self.assertRaisesRegex(fileio.InputError, "more than --max_bad_notes=1"):
        spark_job.run_job(job.JobOptions(output_file=path, max_bad_notes=1, **inputs),
                       self.model_dir, partitions=2)
      self.assertFalse(os.path.exists(path))
    self.assertEqual([n for n in os.listdir(out) if "tmp" in n], [])

  def test_parquet_in_and_out(self):
    out = self.temp_dir()
    notes = os.path.join(out, "notes.parquet")
    self.spark.createDataFrame([(i, t) for i, t in enumerate(NOTES)] + [(99, None)],
                               "note_id long, body string").write.parquet(notes)
    local_in = _write_jsonl(os.path.join(out, "notes.jsonl"),
                            [{"note_id": i, "body": t} for i, t in enumerate(NOTES)])
    self.assertEqual(job.run_job(self.model, job.JobOptions(
        input_file=local_in, output_file=os.path.join(out, "local.jsonl"), id_field="note_id",
        text_field="body"))["notes"], len(NOTES))
    with self.assertRaisesRegex(fileio.InputError, "notes.parquet row .*: missing 'body'"):
      spark_job.run_job(job.JobOptions(input_file=notes, output_file=os.path.join(out, "s.jsonl"),
                                       id_field="note_id", text_field="body"), self.model_dir)
    counts = spark_job.run_job(job.JobOptions(
        input_file=notes, output_file=os.path.join(out, "s.jsonl"), id_field="note_id",
        text_field="body", max_bad_notes=1), self.model_dir)
    self.assertEqual((counts["notes"], counts["bad"]), (len(NOTES), 1))
    self.assertTrue(filecmp.cmp(os.path.join(out, "local.jsonl"), os.path.join(out, "s.jsonl"),
                                shallow=False))

  def test_sentence_pairs_and_given_spans(self):
    out = self.temp_dir()
    nli = testutil.write_model_dir(os.path.join(out, "nli"), head="sequence_classification",
                                   labels=["contradiction", "entailment", "neutral"])
    pairs = _write_jsonl(os.path.join(out, "pairs.jsonl"), [
        {"pairID": "p%d" % i, "sentence1": a, "sentence2": b}
        for i, (a, b) in enumerate(zip(NOTES[3:], NOTES[:4]))])
    model = model_lib.load_model(nli)
    try:
      job.run_job(model, job.JobOptions(input_file=pairs, output_file=out + "/local.jsonl"))
    finally:
      model.close()
    spark_job.run_job(job.JobOptions(input_file=pairs, output_file=out + "/spark.jsonl"), nli,
                      partitions=2)
    self.assertTrue(filecmp.cmp(out + "/local.jsonl", out + "/spark.jsonl", shallow=False))
    with open(out + "/local.jsonl") as f:
      expected = {r["id"]: r["label"] for r in map(json.loads, f)}
    rows = engine.annotate(self.spark.read.json(pairs), nli, id_col="pairID",
                           text_col="sentence1", text_b_col="sentence2").collect()
    self.assertEqual({r.id: r.label for r in rows}, expected)
    # De-identifying from given spans (annotate's, joined back) equals running the model.
    notes = self.spark.read.json(self.jsonl2).repartition(2)
    spans = engine.annotate(notes, self.model_dir)
    given = engine.deidentify(notes.join(spans, "id"), spans_col="entities").collect()
    predicted = engine.deidentify(notes, self.model_dir).collect()
    self.assertEqual({r.id: (r.text, r["items"]) for r in given},
                     {r.id: (r.text, r["items"]) for r in predicted})
    self.assertTrue(any(r["items"] for r in predicted))

  def test_model_loaded_once_per_python_worker(self):
    counters = engine.Counters(self.spark)
    df = self.spark.read.json(self.jsonl).repartition(6)
    # num_threads=2: a model no worker holds yet.
    self.assertLen(engine.annotate(df, self.model_dir, num_threads=2,
                                   counters=counters).collect(), 5)
    self.assertBetween(counters.loads.value, 1, 2)  # local[2]: at most two workers, not 6 tasks

  def test_format_notes_gives_the_local_bytes(self):
    out = self.temp_dir()
    local = pipeline.format_notes_file(testutil.NOTEEVENTS_SAMPLE, output_dir=out + "/local")
    runner = engine.format_notes_runner(self.spark)
    ours = pipeline.format_notes_file(testutil.NOTEEVENTS_SAMPLE, output_dir=out + "/spark",
                                      runner_factory=runner)
    self.assertEqual(ours["outputs"].keys().__len__(), local["outputs"].keys().__len__())
    files = [n for n in os.listdir(out + "/local") if n.endswith(".txt")]
    self.assertGreater(len(files), 5)
    for name in files:
      self.assertTrue(filecmp.cmp(os.path.join(out, "local", name),
                                  os.path.join(out, "spark", name), shallow=False), name)
    # The DataFrame API, 1 and 3 partitions: each category's notes in `position` order.
    df = engine.read_noteevents(self.spark, testutil.NOTEEVENTS_SAMPLE)
    for partitions in (1, 3):
      rows = engine.format_notes(df.repartition(partitions)).collect()
      by_file = {}
      for row in sorted(rows, key=lambda r: r.position):
        self.assertIsNone(row.error)
        by_file[row.file] = by_file.get(row.file, "") + row.text
      self.assertEqual(sorted(by_file), sorted(files))
      for name in files:
        with open(os.path.join(out, "local", name), encoding="utf-8") as f:
          self.assertEqual(by_file[name], f.read(), name)

  def test_pretraining_shards_are_byte_identical(self):
    out = self.temp_dir()
    vocab = testutil.write_vocab(out)
    inputs = []
    for k in range(3):
      path = os.path.join(out, "corpus%d.txt" % k)
      with open(path, "w") as f:
        for d in range(4):
          for s in range(3):
            f.write(" ".join(testutil.WORDS[(k + d + s + i) % len(testutil.WORDS)]
                             for i in range(5 + s)) + "\n")
          f.write("\n")
      inputs.append(path)
    options = pretraining_data.Options(max_seq_length=32, max_predictions_per_seq=5,
                                       dupe_factor=2)
    pretraining_data.create_pretraining_data(inputs, [out + "/local/x.tfrecord"], vocab, options,
                                             shard_per_file=True)
    pretraining_data.create_pretraining_data(inputs, [out + "/spark/x.tfrecord"], vocab, options,
                                             map_shards=engine.map_shards(self.spark))
    local, ours = _tree(out + "/local"), _tree(out + "/spark")
    self.assertLen([n for n in local if n.endswith("-of-00003")], 3)
    self.assertEqual({n: v for n, v in ours.items() if not n.endswith(".json")},
                     {n: v for n, v in local.items() if not n.endswith(".json")})

  def test_missing_java_and_unreachable_master_are_one_line_errors(self):
    saved = {k: os.environ.get(k) for k in ("PATH", "JAVA_HOME")}
    os.environ["PATH"] = self.temp_dir()
    os.environ.pop("JAVA_HOME", None)
    try:
      with self.assertRaisesRegex(fileio.InputError, "apt-get install -y openjdk-17-jre-headless"):
        engine.check_java()
    finally:
      for k, v in saved.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v
    with socket.socket() as s:  # a port nothing listens on
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    with self.assertRaisesRegex(fileio.InputError, "no Spark master answers"):
      engine.check_master("spark://127.0.0.1:%d" % port, timeout_s=1.0)
    self.assertEqual(engine.local_master("local[2]"), "local[2,%d]" % engine.TASK_MAX_FAILURES)


if __name__ == "__main__":
  absltest.main()
