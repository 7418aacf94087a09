"""predict.py / deidentify.py with `--engine=spark`: the local job's outputs, made on Spark.

  counts = spark_job.run_job(job.JobOptions(input_file="notes/*.txt", output_file="spans.jsonl"),
                             "finetune/i2b2_2010", master="local[4]")

Notes are read on executors by the local engine's readers (one task per file; a Parquet dataset by
Spark), spread over tasks, and sent through the per-note step by a model loaded once per Python
worker (`spark.worker_model`). Outputs: a Parquet dataset written by Spark (an output path ending in
`.parquet`), or, for every other format, the rows brought back to the driver in input order and
written by the local job's writers, so the bytes are `--engine=local`'s. The bad-note policy is the
local one (`job.good_notes`) on the driver, and an accumulator's total for a Parquet output; no
output gets its final name unless the job succeeded.
"""

import collections
import functools
import os
import re
import time
import uuid

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf.engines import spark as engine

# The job's rows: each note (or bad note) with its place in the input and everything the writers
# of the local engine need. `first`/`last`: the (line, token) of a span's words (the .con format).
_JOB_SPAN_TYPE = ("array<struct<%s,first_line:int,first_token:int,last_line:int,"
                  "last_token:int>>" % engine.ENTITY_FIELDS)
_NOTE_SCHEMA = ("file_index long, note_index long, id string, text string, text_b string, "
                "patient string, source string, `where` string, bad string")
_JOB_SCHEMA = ("file_index long, note_index long, id string, text string, text_b string, "
               "patient string, source string, `where` string, bad string, entities %s, "
               "label string, probabilities map<string,double>, deid_text string, items %s, "
               "words long" % (_JOB_SPAN_TYPE, engine.ITEM_TYPE))


# ---------------------------------------------------------------------------------------------
# predict.py / deidentify.py --engine=spark.

def _read_file(fmt_and_options, fault_dir):
  """flatMap function: an (index, path) -> the note rows of that file, read by its reader."""
  input_format, options = fmt_and_options

  def read(indexed):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    index, path = indexed
    reader = readers.reader_for(path, input_format)
    for number, note in enumerate(reader.read(path, options)):
      if isinstance(note, readers.BadNote):
        logging.warning("unreadable note: %s: %s", note.where, note.reason)  # never its text
        yield (index, number, None, None, None, None, note.source, note.where, note.reason)
      else:
        yield (index, number, note.id, note.text, note.text_b, note.patient, note.source,
               note.where, None)
    engine.fail_once(fault_dir, "read")
  return read


def split_inputs(input_file):
  """(Parquet datasets, other files) of a comma list of files and globs (Parquet: `*.parquet`)."""
  import glob  # pylint: disable=g-import-not-at-top
  parquet, other = [], []
  for pattern in fileio.split_comma_list(input_file):
    if pattern.rstrip("/").endswith(engine.PARQUET_SUFFIX):
      if re.match(r"^[a-z][a-z0-9+.-]*:", pattern):  # hdfs:, s3a:, dbfs:, ...: Spark's to read
        parquet.append(pattern)
        continue
      found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
      if not found or not all(os.path.exists(p) for p in found):
        raise fileio.InputError("--input_file=%s: no such Parquet file or directory" % pattern)
      parquet.extend(found)
    else:
      other.append(pattern)
  files = fileio.expand_file_patterns(other) if other else []
  return parquet, files


def read_notes(spark, input_file, input_format, read_options, counters):
  """The notes of `input_file` as a DataFrame (_NOTE_SCHEMA), in input order by (file, note).

  Files are read by the local engine's readers (`inference.readers`), one task per file, so ids,
  patients and bad notes are the local run's; a Parquet dataset is read by Spark, its columns
  named by `read_options.id_field`/`text_field`/`patient_field`.
  """
  from pyspark.sql import functions as F  # pylint: disable=g-import-not-at-top
  parquet, files = split_inputs(input_file)
  frames = []
  if files:
    rdd = spark.sparkContext.parallelize(list(enumerate(files)), len(files)).flatMap(
        _read_file((input_format, read_options), engine.fault_hook_dir()))
    frames.append(spark.createDataFrame(rdd, _NOTE_SCHEMA))
  for k, path in enumerate(parquet):
    df = spark.read.parquet(path)
    o = read_options
    # As the JSON-lines reader: a sentence-pair model reads MedNLI's sentence1 and sentence2.
    texts = ("sentence1", "sentence2") if o.pairs else (o.text_field,)
    needed = (o.id_field,) + texts + ((o.patient_field,) if o.patient_field else ())
    for name in needed:
      if name not in df.columns:
        raise fileio.InputError("%s: no column %r (has %s)" % (path, name, ", ".join(df.columns)))
    df = df.withColumn("note_index", F.monotonically_increasing_id())  # the file's order
    missing = None  # a row with a null id, text or patient is a bad note, as in the readers
    for name in reversed(needed):
      missing = F.when(df[name].isNull(), F.lit("missing %r" % name)).otherwise(missing)
    frames.append(df.select(
        F.lit(len(files) + k).cast("long").alias("file_index"),
        df["note_index"], df[o.id_field].cast("string").alias("id"), df[texts[0]].cast("string").alias("text"),
        (df[texts[1]] if o.pairs else F.lit(None)).cast("string").alias("text_b"),
        (df[o.patient_field] if o.patient_field else F.lit(None)).cast("string").alias("patient"),
        F.lit(path).alias("source"),
        F.concat(F.lit(path + " row "), df["note_index"].cast("string")).alias("where"),
        missing.cast("string").alias("bad")))
  result = frames[0]
  for frame in frames[1:]:
    result = result.unionByName(frame)
  return result, files + parquet


class _JobStep(object):
  """mapInPandas function of the script job: the per-note step for every good note of a task."""

  def __init__(self, model_args, options, pairs, counters, fault_dir, make_anonymizer_fn):
    self.model_args, self.options, self.pairs = model_args, options, pairs
    self.loads, self.words, self.bad = counters.loads, counters.words, counters.bad
    self.fault_dir, self.make_anonymizer_fn = fault_dir, make_anonymizer_fn
    self.key = uuid.uuid4().hex

  def __call__(self, frames):
    from clinicalbert_tf.inference import deid  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
    o = self.options
    model = engine.worker_model(*self.model_args, loads=self.loads)
    anonymizer = (engine.worker_anonymizer(self.key, lambda: self.make_anonymizer_fn(o))
                  if o.deidentify else None)
    bad_rows = []

    def notes():
      for row in engine.rows_of(frames):
        if row["bad"] is not None:
          self.bad.add(1)  # counted here, once per note: a failed attempt's counts are dropped
          bad_rows.append(row)  # passed through to the driver, which applies --max_bad_notes
          continue
        note = readers.Note(row["id"], row["text"], row["source"], row["where"],
                            text_b=engine.text_or_none(row["text_b"]),
                            patient=engine.text_or_none(row["patient"]))
        note.position = (row["file_index"], row["note_index"])
        yield note

    def base(note):
      return {"file_index": note.position[0], "note_index": note.position[1], "id": note.id,
              "text": note.text, "text_b": note.text_b, "patient": note.patient,
              "source": note.source, "where": note.where, "bad": None}

    def records():
      if self.pairs:
        for pair, label, probs in predictor_lib.predict_pairs(model, notes(), o.batch_size):
          record = dict(base(pair), label=label, probabilities=probs, words=0)
          yield record
      else:
        predictor = predictor_lib.Predictor(model, o.batch_size, o.min_probability,
                                            window_context=o.window_context)
        done = 0
        # deidentify.py: the model's spans merged with the pattern recognizers' (`deid.py`).
        found = (deid.note_spans(notes(), o, predictor) if o.deidentify
                 else predictor.predict(notes()))
        for note, spans in found:
          outputs = step.note_outputs(note, spans, anonymizer)
          record = base(note)
          record["entities"] = [dict(engine.entity_record(s), first_line=s.first and s.first[0],
                                     first_token=s.first and s.first[1],
                                     last_line=s.last and s.last[0],
                                     last_token=s.last and s.last[1]) for s in outputs.spans]
          if outputs.deidentified is not None:
            record["deid_text"] = outputs.deidentified.text
            record["items"] = [engine.item_record(i) for i in outputs.deidentified.items]
          record["words"] = predictor.words_done - done
          done = predictor.words_done
          yield record
        self.words.add(predictor.words_done)
      for row in bad_rows:
        yield dict(row, words=0)

    yield from engine.frames_of(records(), _job_columns())
    engine.fail_once(self.fault_dir, "predict")


def _job_columns():
  return ("file_index", "note_index", "id", "text", "text_b", "patient", "source", "where", "bad",
          "entities", "label", "probabilities", "deid_text", "items", "words")


def parquet_output(options):
  """The Parquet dataset the job writes (an output path ending in .parquet), or None."""
  path = options.output_dir if options.deidentify else (options.output_file or options.output_dir)
  return path if path and path.rstrip("/").endswith(engine.PARQUET_SUFFIX) else None


def run_job(options, model_dir, model_flags=(None, None, None), master=engine.DEFAULT_MASTER,
            partitions=0, num_threads=1, make_anonymizer_fn=None, use_bf16=False):
  """predict.py / deidentify.py with `--engine=spark`: the local job's outputs, made on Spark.

  Notes are read on executors by the local readers, spread over `partitions` tasks (0: Spark's
  default parallelism), predicted (and de-identified) by the per-note step, then either written
  by Spark as a Parquet dataset (an output path ending in `.parquet`: `id, entities` or `id, text,
  items`) or brought back in input order to the local engine's writers (every other format, the
  same bytes as `--engine=local`). Either way no output has its final name unless the whole job
  succeeded and the bad notes of all executors stay within `max_bad_notes`.

  Args:
    options: the `job.JobOptions` of the flags.
    model_dir, model_flags: the model (model_flags: bert_config_file, vocab_file, init_checkpoint).
    master: the Spark master (`--spark_master`; spark-submit's wins).
    partitions: tasks over the notes (`--spark_partitions`; 0: Spark's default parallelism).
    num_threads: TensorFlow threads per task.
    make_anonymizer_fn: options -> Anonymizer (default: `deid.make_anonymizer` with the model's
      PHI types).
    use_bf16: bfloat16 mixed precision (`checkpoints.new_session`).

  Returns:
    Counts, as `job.run_job`'s.
  """
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import deid  # pylint: disable=g-import-not-at-top
  o = options
  if o.deidentify and (o.patient_map or not model_dir):
    raise fileio.InputError("--engine=spark de-identifies with a model and patients from the notes "
                            "(--patient_field, SUBJECT_ID); --patient_map, --spans_file and the "
                            "patterns alone run with --engine=local")
  started = time.time()
  from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
  record = model_lib.locate_model(model_dir, *model_flags).record
  make_anonymizer_fn = make_anonymizer_fn or functools.partial(
      deid.make_anonymizer, labels=deid.model_types(list(record.labels)))
  head = record.make_head()
  if o.deidentify:
    predictor_lib.check_output(collections.namedtuple("M", "head")(head), heads.WORD_LABELS,
                               "deidentify.py (a PHI model)")
  pairs = head.output == heads.PAIR_LABEL
  if o.skip_existing:
    raise fileio.InputError("--skip_existing works with --engine=local only (a Spark job's "
                            "outputs are committed together)")
  parquet = parquet_output(o)
  if parquet:
    if o.deidentify and o.output_file:
      raise fileio.InputError("--output_file: with a Parquet --output_dir the spans are not "
                              "written separately (annotate them with predict.py)")
    plan = None
  else:
    job.check_options(o, pairs)
    plan = job.output_plan(o, pairs)
  # A bad operator or locale: an error before Spark starts. The driver's anonymizer only counts
  # the items its workers made (the run summary).
  summary = make_anonymizer_fn(o) if o.deidentify else None
  read_options = readers.ReadOptions(id_field=o.id_field, text_field=o.text_field,
                                     patient_field=getattr(o, "patient_field", None), pairs=pairs)
  spark = engine.get_session(master)
  counters = engine.Counters(spark)
  notes, input_files = read_notes(spark, o.input_file, o.input_format, read_options, counters)
  notes = notes.repartition(partitions or spark.sparkContext.defaultParallelism)
  results = notes.mapInPandas(
      _JobStep((model_dir, tuple(model_flags), num_threads, use_bf16), o, pairs, counters,
               engine.fault_hook_dir(), make_anonymizer_fn), _JOB_SCHEMA)
  counts = collections.Counter(notes=0, words=0, entities=0, bad=0, skipped=0)
  if parquet:
    _write_parquet(results, parquet, o, pairs, counters, counts)
  else:
    _write_files(results, plan, input_files, o, pairs, counts, list(record.labels), summary)
  counts["words"] = counters.words.value
  counts["seconds"] = time.time() - started
  logging.info("spark: %d notes, %d words, %d entities, %d unreadable notes skipped; model loaded "
               "%d time(s) across the Python workers", counts["notes"], counts["words"],
               counts["entities"], counts["bad"], counters.loads.value)
  return dict(counts)


def _too_many_bad(bad, max_bad_notes):
  return fileio.InputError("%d unreadable notes across the executors, more than --max_bad_notes=%d "
                           "(they are logged by file and line on the executors); nothing written"
                           % (bad, max_bad_notes))


class _HadoopPath(object):
  """A path on any file system Spark writes to (local, HDFS, S3, DBFS), through Hadoop's API."""

  def __init__(self, spark, path):
    jvm = spark.sparkContext._jvm  # pylint: disable=protected-access
    self.path = jvm.org.apache.hadoop.fs.Path(path)
    self.fs = self.path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # pylint: disable=protected-access

  def exists(self):
    return self.fs.exists(self.path)

  def rename_to(self, other):
    if not self.fs.rename(self.path, other.path):
      raise fileio.InputError("could not rename %s to %s" % (self.path, other.path))

  def delete(self):
    if self.fs.exists(self.path):
      self.fs.delete(self.path, True)


def _write_parquet(results, path, o, pairs, counters, counts):
  """Spark writes the dataset under a temporary name; renamed only after the checks pass."""
  from pyspark.sql import functions as F  # pylint: disable=g-import-not-at-top
  spark = results.sparkSession
  good = results.where(F.col("bad").isNull())
  if o.deidentify:
    good = good.select("id", F.col("deid_text").alias("text"), "items")
  elif pairs:
    good = good.select("id", "label", "probabilities")
  else:
    good = good.select("id", F.expr("transform(entities, e -> named_struct('start', e.start, "
                                    "'end', e.end, 'label', e.label, 'score', e.score))"
                                    ).alias("entities"))
  final = _HadoopPath(spark, path.rstrip("/"))
  if final.exists():
    raise fileio.InputError("%s exists: a Parquet output is written only where nothing is" % path)
  temp_name = "%s.tmp-%s" % (path.rstrip("/"), uuid.uuid4().hex[:8])
  temp = _HadoopPath(spark, temp_name)
  try:
    good.write.parquet(temp_name)
    counts["bad"] = counters.bad.value
    if counts["bad"] > o.max_bad_notes:
      raise _too_many_bad(counts["bad"], o.max_bad_notes)
    summary = spark.read.parquet(temp_name)
    counts["notes"] = summary.count()
    if not o.deidentify and not pairs:
      counts["entities"] = summary.select(F.sum(F.size("entities"))).first()[0] or 0
    elif o.deidentify:
      counts["entities"] = summary.select(F.sum(F.size("items"))).first()[0] or 0
    temp.rename_to(final)
  finally:
    temp.delete()


def _write_files(results, plan, input_files, o, pairs, counts, labels, summary=None):
  """Results back in input order through the local engine's writers and bad-note policy."""
  import contextlib  # pylint: disable=g-import-not-at-top
  from pyspark import StorageLevel  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import anonymize  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import deid  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
  # Computed once (sorting samples its input first): the model runs once per note.
  results = results.persist(StorageLevel.MEMORY_AND_DISK)
  try:
    ordered = results.orderBy("file_index", "note_index")

    def stream():
      for row in ordered.toLocalIterator(prefetchPartitions=True):
        if row["bad"] is not None:
          yield row["source"], readers.BadNote(row["source"], row["where"], row["bad"])
        else:
          yield row["source"], row

    with contextlib.ExitStack() as stack:
      writers = [stack.enter_context(job._writer(fmt, scope, path, input_files))  # pylint: disable=protected-access
                 for fmt, scope, path in plan]
      for row in job.good_notes(stream(), o.max_bad_notes, counts):
        note = readers.Note(row["id"], row["text"], row["source"], row["where"],
                            text_b=row["text_b"], patient=row["patient"])
        if pairs:
          probabilities = dict(row["probabilities"])  # a Spark map keeps no order: the model's
          outputs = step.pair_outputs(note, row["label"], {
              label: probabilities[label] for label in labels if label in probabilities})
        else:
          outputs = step.note_outputs(note, engine.spans_of(row["entities"]), None,
                                      o.include_text)
          if o.deidentify:
            outputs.deidentified = anonymize.Result(row["deid_text"], [
                anonymize.Item(**i.asDict()) for i in row["items"] or ()])
          if summary is not None:
            summary.count(outputs.deidentified.items, note.id, note.patient)
        for writer in writers:
          writer.write(outputs)
        counts["entities"] += len(outputs.spans)
        counts["notes"] += 1
      if summary is not None:  # the run's counts, as the local engine writes them
        counts["summary"] = summary.summary()
        fileio.write_json_atomic(os.path.join(o.output_dir, deid.SUMMARY_FILE), counts["summary"])
  finally:
    results.unpersist()
