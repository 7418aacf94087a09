"""The Apache Spark engine: the application's per-note steps over DataFrames, on any cluster.

In a notebook (Databricks 15.4 LTS: Spark 3.5, Python 3.11):

  from clinicalbert_tf.engines import spark as engine
  notes = spark.read.parquet("/data/notes")                     # id, text, patient, ...
  spans = engine.annotate(notes, "/dbfs/models/i2b2_2010", id_col="note_id", text_col="text")
  deid = engine.deidentify(notes, "/dbfs/models/i2b2_2014", operators="placeholder",
                           patient_col="patient")               # id, text, items
  sentences = engine.format_notes(engine.read_noteevents(spark, "/data/NOTEEVENTS.csv.gz"))

and from the command line `predict.py`, `deidentify.py` and `format_notes.py --engine=spark`,
`create_pretraining_data.py --engine=spark` (see `run_job`, `format_notes_runner`, `map_shards`).

What the engine owns, and what it does not:
  * no per-note logic: every note goes through `inference.step.note_outputs` (spans, the JSON
    record, the de-identified text and items), `notes.pipeline.process_chunk` (sentences) or
    `pretraining_data`'s shard worker, exactly as in the local engine, so the outputs are the
    local engine's for any partitioning;
  * the model is loaded once per Python worker (a module-level cache keyed by the model
    directory; Spark reuses its Python workers across tasks), never per batch or row; notes reach
    it in Arrow batches (`mapInPandas`) and are predicted in the Predictor's own batches across
    the notes of a task;
  * the model directory is read with `tf.io.gfile`: a path every executor sees (a shared file
    system, `/dbfs/...`, a bucket TensorFlow reads), or a directory shipped with the job
    (`spark-submit --archives model.tar.gz#model` and `model_dir="model"`; a name that is not a
    directory on the executor is looked up with `SparkFiles.get`);
  * each executor runs TensorFlow with `num_threads` (default 1) threads: Spark's parallelism is
    one task per core (`spark.task.cpus` more cores per task);
  * faults: a failed task is retried (`spark.task.maxFailures`, and `local[N,4]` for a local
    master) and, since a task's output only counts once it succeeds, no note is lost or doubled;
    bad notes are counted across executors in an accumulator (a failed attempt's counts are
    dropped by Spark), and `--max_bad_notes` is checked on the total before any output gets its
    final name;
  * a missing Java or an unreachable master is one line saying what to install or check.

Nothing here logs note text, PHI or a secret (a secret travels to the executors inside the task
closure, as Spark ships every closure: keep the cluster's event log and task dumps private).
"""

import collections
import os
import re
import shutil
import socket
import sys
import time
import uuid

from absl import logging

from clinicalbert_tf import fileio

DEFAULT_MASTER = "local[*]"
# Attempts per task (Spark's default on a cluster; a local master gets it as `local[N,4]`).
TASK_MAX_FAILURES = 4
# Test hook: with this set (to a directory) when a job is planned, the first attempt of every
# task fails after producing its output, and is retried (one marker file per stage and partition).
FAIL_ONCE_ENV = "CLINICALBERT_SPARK_FAIL_ONCE_DIR"
JAVA_PACKAGE = "openjdk-17-jre-headless"
PARQUET_SUFFIX = ".parquet"

ENTITY_FIELDS = "start:int,end:int,label:string,score:double"
ENTITY_TYPE = "array<struct<%s>>" % ENTITY_FIELDS
ITEM_TYPE = ("array<struct<start:int,end:int,label:string,operator:string,input_start:int,"
             "input_end:int>>")
ITEM_FIELDS = ("start", "end", "label", "operator", "input_start", "input_end")
ANNOTATE_SCHEMA = "id string, entities %s" % ENTITY_TYPE
PAIRS_SCHEMA = "id string, label string, probabilities map<string,double>"
DEIDENTIFY_SCHEMA = "id string, text string, items %s" % ITEM_TYPE
FORMAT_SCHEMA = ("row_id string, position long, category string, file string, text string, "
                 "sentences int, error string")
# The job's rows: each note (or bad note) with its place in the input and everything the writers
# of the local engine need. `first`/`last` are the (line, token) of a span's words (the .con format).
_JOB_SPAN_TYPE = ("array<struct<%s,first_line:int,first_token:int,last_line:int,"
                  "last_token:int>>" % ENTITY_FIELDS)
_NOTE_SCHEMA = ("file_index long, note_index long, id string, text string, text_b string, "
                "patient string, source string, `where` string, bad string")
_JOB_SCHEMA = ("file_index long, note_index long, id string, text string, text_b string, "
               "patient string, source string, `where` string, bad string, entities %s, "
               "label string, probabilities map<string,double>, deid_text string, items %s, "
               "words long" % (_JOB_SPAN_TYPE, ITEM_TYPE))


# ---------------------------------------------------------------------------------------------
# The session.

def check_java():
  """Raises InputError (one line) when no Java runtime is there to start Spark's JVM."""
  java_home = os.environ.get("JAVA_HOME")
  java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
  if not java or not os.access(java, os.X_OK):
    raise fileio.InputError(
        "--engine=spark needs Java 17 and %s: install Debian's %s (apt-get install -y %s) or set "
        "JAVA_HOME to a Java 17 runtime" % (
            "JAVA_HOME=%s has no bin/java" % java_home if java_home else "no `java` is on PATH",
            JAVA_PACKAGE, JAVA_PACKAGE))


def _is_local(master):
  return master == "local" or master.startswith("local[")


def local_master(master):
  """`local[N]` -> `local[N,4]`: a local master retries a failed task only when told how often."""
  match = re.fullmatch(r"local(?:\[(\*|\d+)\])?", master)
  if match:
    return "local[%s,%d]" % (match.group(1) or "1", TASK_MAX_FAILURES)
  return master


def check_master(master, timeout_s=3.0):
  """Raises InputError (one line) for a malformed master or a standalone master not listening."""
  if _is_local(master) or master.startswith(("yarn", "k8s://", "mesos://")):
    return
  if not master.startswith("spark://"):
    raise fileio.InputError("--spark_master=%s: expected local[N], spark://HOST:PORT, yarn or "
                            "k8s://..." % master)
  for address in master[len("spark://"):].split(","):
    host, _, port = address.rpartition(":")
    try:
      socket.create_connection((host, int(port)), timeout=timeout_s).close()
      return
    except (OSError, ValueError):
      continue
  raise fileio.InputError("--spark_master=%s: no Spark master answers there (check the host and "
                          "port, that the master runs, and the network between)" % master)


def get_session(master=DEFAULT_MASTER, app_name="clinicalbert_tf"):
  """The active SparkSession, or a new one on `master` (UI off; a local one bound to 127.0.0.1).

  Under `spark-submit` (or in a notebook) the session already made is used as it is: the master
  given to spark-submit wins over `master`.

  Raises:
    InputError: pyspark or Java missing, or the master unreachable (one line each).
  """
  try:
    from pyspark.sql import SparkSession  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise fileio.InputError("--engine=spark needs pyspark (pip install -r requirements.txt)"
                            ) from None
  active = SparkSession.getActiveSession()
  if active is not None:
    return active
  submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM for us
  if not submitted:
    check_java()
    check_master(master)
  builder = SparkSession.builder.appName(app_name)
  if not submitted:
    builder = builder.master(local_master(master))
  builder = (builder.config("spark.ui.enabled", "false")
             .config("spark.task.maxFailures", str(TASK_MAX_FAILURES))
             .config("spark.python.worker.reuse", "true")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
  if _is_local(master) and not submitted:
    # Nothing listens beyond this machine; the Python workers run this interpreter and import
    # this checkout (they inherit the environment of the JVM, which inherits ours).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if not os.environ.get("PYSPARK_PYTHON"):
      os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the workers' TensorFlow start-up noise
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH", "")
    if root not in path.split(os.pathsep):
      os.environ["PYTHONPATH"] = os.pathsep.join([root] + ([path] if path else []))
    builder = (builder.config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "4"))
  try:
    return builder.getOrCreate()
  except Exception as e:  # pylint: disable=broad-except  (py4j and JVM start-up errors)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise fileio.InputError("could not start Spark on --spark_master=%s (%s): check that Java 17 "
                            "(%s) is installed and the master is reachable" % (
                                master, first[:200], JAVA_PACKAGE)) from None


# ---------------------------------------------------------------------------------------------
# On the executors: one model per Python worker, the fault hook.

_MODELS = {}  # (model_dir, model_flags, num_threads) -> LoadedModel, per Python worker
_ANONYMIZERS = {}  # id of the options -> Anonymizer, per Python worker
_SPLITTERS = {}  # (spacy_model, phi) -> (SentenceSplitter, Surrogates), per Python worker


def resolve_model_dir(model_dir):
  """`model_dir` when it is a directory here, else the one shipped with the job (SparkFiles)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.io.gfile.isdir(model_dir):
    return model_dir
  try:
    from pyspark import SparkFiles  # pylint: disable=g-import-not-at-top
    shipped = SparkFiles.get(os.path.basename(model_dir.rstrip("/")))
    if os.path.isdir(shipped):
      return shipped
  except Exception:  # pylint: disable=broad-except  (no SparkContext: not on an executor)
    pass
  return model_dir


def worker_model(model_dir, model_flags=(None, None, None), num_threads=1, loads=None):
  """The LoadedModel of `model_dir`, loaded once per Python worker (`loads`: an accumulator)."""
  key = (model_dir, tuple(model_flags), num_threads)
  model = _MODELS.get(key)
  if model is None:
    from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
    model = model_lib.load_model(resolve_model_dir(model_dir), *model_flags,
                                 num_threads=num_threads)
    _MODELS[key] = model
    if loads is not None:
      loads.add(1)
  return model


def _fail_once(fault_dir, stage):
  """The test hook of FAIL_ONCE_ENV: raises on this task's first attempt (after its work)."""
  if not fault_dir:
    return
  from pyspark import TaskContext  # pylint: disable=g-import-not-at-top
  marker = os.path.join(fault_dir, "%s-%d" % (stage, TaskContext.get().partitionId()))
  if not os.path.exists(marker):
    with open(marker, "w") as f:
      f.write("failed once\n")
    raise RuntimeError("injected task failure (%s): this attempt is retried" % FAIL_ONCE_ENV)


def _fault_dir():
  return os.environ.get(FAIL_ONCE_ENV) or None


def _rows(frames):
  """The rows of pandas batches as dicts (the Arrow batches of mapInPandas), streamed."""
  for frame in frames:
    yield from frame.to_dict("records")


def _frames(records, columns, size=256):
  """pandas DataFrames of `size` records (dicts) each, for mapInPandas to send back."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  chunk = []
  for record in records:
    # Every column given (None where absent): pandas would make a missing one NaN, which Arrow
    # cannot turn into a map or array.
    chunk.append({column: record.get(column) for column in columns})
    if len(chunk) >= size:
      yield pd.DataFrame(chunk, columns=columns)
      chunk = []
  if chunk:
    yield pd.DataFrame(chunk, columns=columns)


def _text(value):
  """A cell as text, or None for a missing one (pandas gives NaN/None for SQL NULL)."""
  return value if isinstance(value, str) else None


def _id(value):
  if value is None or (isinstance(value, float) and value != value):
    return None
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  return str(value)


def _entity(span):
  return {"start": int(span.start), "end": int(span.end), "label": span.label,
          "score": float(span.score)}


def _item(item):
  return {name: getattr(item, name, None) for name in ITEM_FIELDS}


def _spans_of(entities):
  """text.Span objects from rows' entity structs (given spans: `deidentify(spans_col=...)`)."""
  from clinicalbert_tf.inference import text as text_lib  # pylint: disable=g-import-not-at-top
  spans = []
  for e in entities if entities is not None else ():
    e = e.asDict() if hasattr(e, "asDict") else dict(e)  # a Row on the driver, a dict in pandas
    first = last = None
    if e.get("first_line") is not None:
      first, last = (e["first_line"], e["first_token"]), (e["last_line"], e["last_token"])
    score = e.get("score")
    spans.append(text_lib.Span(int(e["start"]), int(e["end"]), e["label"],
                               1.0 if score is None else float(score), first, last))
  return sorted(spans, key=lambda s: s.start)


# ---------------------------------------------------------------------------------------------
# The DataFrame API.

def _head(model_dir, model_flags):
  """The head of `model_dir` (read on the driver, without loading the model)."""
  from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
  return model_lib.locate_model(model_dir, *model_flags).record.make_head()


def _pairs(model_dir, model_flags):
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  return _head(model_dir, model_flags).output == heads.PAIR_LABEL


class _Annotate(object):
  """mapInPandas function of `annotate` (a module-level class: pickled by reference)."""

  def __init__(self, model_dir, model_flags, num_threads, batch_size, min_probability, pairs,
               loads, bad, fault_dir):
    self.args = (model_dir, model_flags, num_threads)
    self.batch_size, self.min_probability, self.pairs = batch_size, min_probability, pairs
    self.loads, self.bad, self.fault_dir = loads, bad, fault_dir

  def _notes(self, frames):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    for row in _rows(frames):
      note_id, text, text_b = _id(row["id"]), _text(row["text"]), _text(row.get("text_b"))
      if note_id is None or text is None or (self.pairs and text_b is None):
        if self.bad is not None:
          self.bad.add(1)
        continue
      yield readers.Note(note_id, text, "", "", text_b=text_b)

  def __call__(self, frames):
    from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
    model = worker_model(*self.args, loads=self.loads)
    notes = self._notes(frames)
    if self.pairs:
      for pair, label, probs in predictor_lib.predict_pairs(model, notes, self.batch_size):
        record = step.pair_outputs(pair, label, probs).record
        yield from _frames([record], ("id", "label", "probabilities"), 1)
    else:
      predictor = predictor_lib.Predictor(model, self.batch_size, self.min_probability)
      yield from _frames(({"id": note.id, "entities": [
          _entity(s) for s in step.note_outputs(note, spans).spans]}
                          for note, spans in predictor.predict(notes)), ("id", "entities"))
    _fail_once(self.fault_dir, "annotate")


def annotate(df, model_dir, id_col="id", text_col="text", text_b_col=None, batch_size=32,
             min_probability=None, model_flags=(None, None, None), num_threads=1, counters=None):
  """Entity spans of every note of `df` with the fine-tuned model in `model_dir`.

  Args:
    df: a DataFrame with the notes' ids and texts (any partitioning).
    model_dir: the model directory (see the module docstring for where executors find it).
    id_col, text_col: the columns of a note's id and text.
    text_b_col: the second sentence for a sentence-pair (NLI) model (default `text_b`).
    batch_size: windows per TensorFlow run.
    min_probability: a word gets an entity label when P(not O) reaches this (None: argmax).
    model_flags: (bert_config_file, vocab_file, init_checkpoint) overrides, as predict.py's flags.
    num_threads: TensorFlow threads per task.
    counters: a `Counters` whose accumulators count bad notes and model loads (optional).

  Returns:
    A DataFrame `id, entities: array<struct<start:int, end:int, label:string, score:double>>`
    (offsets into the note, end exclusive), or for a sentence-pair model `id, label,
    probabilities: map<string,double>`. A row without an id or text (a pair without both
    sentences) is left out and counted as bad.
  """
  pairs = _pairs(model_dir, model_flags)
  columns = [df[id_col].alias("id"), df[text_col].alias("text")]
  if pairs:
    columns.append(df[text_b_col or "text_b"].alias("text_b"))
  counters = counters or Counters(df.sparkSession)
  fn = _Annotate(model_dir, tuple(model_flags), num_threads, batch_size, min_probability, pairs,
                 counters.loads, counters.bad, _fault_dir())
  return df.select(*columns).mapInPandas(fn, PAIRS_SCHEMA if pairs else ANNOTATE_SCHEMA)


class Counters(object):
  """Accumulators the engine adds to as executors work: bad notes, model loads, words."""

  def __init__(self, spark):
    context = spark.sparkContext
    self.bad = context.accumulator(0)
    self.loads = context.accumulator(0)
    self.words = context.accumulator(0)


def make_anonymizer(operators="placeholder", secret=None, random_seed=None, locale=None,
                    mask_char="*"):
  """An `anonymize.Anonymizer` (the defaults of `surrogates` where None)."""
  from clinicalbert_tf import anonymize  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import surrogates  # pylint: disable=g-import-not-at-top
  return anonymize.Anonymizer(
      anonymize.parse_operators(operators), secret=secret,
      random_seed=surrogates.DEFAULT_SEED if random_seed is None else random_seed,
      locale=locale or surrogates.DEFAULT_LOCALE, mask_char=mask_char)


def _worker_anonymizer(key, make):
  """One anonymizer per Python worker and job (`key`), made by `make()`."""
  anonymizer = _ANONYMIZERS.get(key)
  if anonymizer is None:
    anonymizer = _ANONYMIZERS[key] = make()
  return anonymizer


class _Deidentify(object):
  """mapInPandas function of `deidentify`."""

  def __init__(self, key, anonymizer_args, model_args, batch_size, min_probability, loads, bad,
               fault_dir):
    self.key, self.anonymizer_args, self.model_args = key, anonymizer_args, model_args
    self.batch_size, self.min_probability = batch_size, min_probability
    self.loads, self.bad, self.fault_dir = loads, bad, fault_dir

  def _notes(self, frames):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    for row in _rows(frames):
      note_id, text = _id(row["id"]), _text(row["text"])
      if note_id is None or text is None:
        self.bad.add(1)
        continue
      note = readers.Note(note_id, text, "", "", patient=_id(row.get("patient")))
      yield note, row.get("spans")

  def __call__(self, frames):
    from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
    anonymizer = _worker_anonymizer(self.key, lambda: make_anonymizer(**self.anonymizer_args))
    notes = self._notes(frames)
    if self.model_args is None:  # given spans
      spanned = ((note, _spans_of(spans)) for note, spans in notes)
    else:
      model = worker_model(*self.model_args, loads=self.loads)
      predictor = predictor_lib.Predictor(model, self.batch_size, self.min_probability)
      spanned = predictor.predict((note for note, _ in notes))
    records = ({"id": note.id, "text": result.text, "items": [_item(i) for i in result.items]}
               for note, result in ((note, step.note_outputs(note, spans, anonymizer).deidentified)
                                    for note, spans in spanned))
    yield from _frames(records, ("id", "text", "items"))
    _fail_once(self.fault_dir, "deidentify")


def deidentify(df, model_dir=None, spans_col=None, operators="placeholder", secret=None,
               patient_col=None, id_col="id", text_col="text", random_seed=None, locale=None,
               mask_char="*", min_probability=None, batch_size=32,
               model_flags=(None, None, None), num_threads=1, counters=None):
  """De-identified notes: every PHI span (predicted by `model_dir`, or given) replaced.

  Each note goes through `inference.step.note_outputs` with an `anonymize.Anonymizer` made once
  per Python worker; surrogates, hashes and date shifts are keyed by (secret, patient, value), so
  no note needs another's and no shuffle happens.

  Args:
    df: the notes.
    model_dir: a PHI model (i2b2 2006 / 2014 labels); or None with `spans_col`.
    spans_col: a column of spans (array of struct start, end, label[, score]), e.g. `annotate`'s
      `entities` joined back, or reviewed annotations; used instead of a model.
    operators: the replacement operator(s), as deidentify.py's `--replace`.
    secret: the key of per-patient consistent surrogates (None: seeded per note).
    patient_col: the column of each note's patient (None: each note is its own patient).
    id_col, text_col: the columns of a note's id and text.
    random_seed, locale, mask_char: as deidentify.py's flags of those names.
    min_probability, batch_size, model_flags, num_threads, counters: as in `annotate`.

  Returns:
    A DataFrame `id, text, items`, items `array<struct<start, end, label, operator, input_start,
    input_end>>` (start/end in the output text, input_* in the note). Rows without an id or text
    are left out and counted as bad.
  """
  if (model_dir is None) == (spans_col is None):
    raise fileio.InputError("deidentify: give a model_dir or a spans_col (one of them)")
  anonymizer_args = dict(operators=operators, secret=secret, random_seed=random_seed,
                         locale=locale, mask_char=mask_char)
  make_anonymizer(**anonymizer_args)  # bad operators or locale: an error here, not per task
  model_args = None
  if model_dir is not None:
    from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
    head = _head(model_dir, model_flags)
    if head.output != heads.WORD_LABELS:
      raise fileio.InputError("the model has a %s head: deidentify needs a PHI model whose head "
                              "outputs word labels" % head.name)
    model_args = (model_dir, tuple(model_flags), num_threads)
  columns = [df[id_col].alias("id"), df[text_col].alias("text")]
  if patient_col:
    columns.append(df[patient_col].cast("string").alias("patient"))
  if spans_col:
    columns.append(df[spans_col].alias("spans"))
  counters = counters or Counters(df.sparkSession)
  fn = _Deidentify(uuid.uuid4().hex, anonymizer_args, model_args, batch_size, min_probability,
                   counters.loads, counters.bad, _fault_dir())
  return df.select(*columns).mapInPandas(fn, DEIDENTIFY_SCHEMA)


# ---------------------------------------------------------------------------------------------
# format_notes over a NOTEEVENTS DataFrame.

def read_noteevents(spark, path):
  """MIMIC-III NOTEEVENTS (CSV, plain or .gz) as a DataFrame of strings, with `position`.

  `position` is the row's place in the file (Spark reads a multi-line CSV file as one split, in
  order), the order in which format_notes.py writes notes. Column names keep the file's case.
  """
  from pyspark.sql import functions as F  # pylint: disable=g-import-not-at-top
  df = spark.read.csv(path, header=True, multiLine=True, escape='"', quote='"',
                      inferSchema=False, mode="PERMISSIVE")
  return df.withColumn("position", F.monotonically_increasing_id())


def _column(df, name):
  """`df`'s column named `name` in any case (NOTEEVENTS headers come upper or lower case)."""
  for column in df.columns:
    if column.lower() == name.lower():
      return df[column]
  raise fileio.InputError("format_notes: the DataFrame has no %s column (has %s)" %
                          (name, ", ".join(df.columns)))


class _FormatNotes(object):
  """mapInPandas function of `format_notes`: `pipeline.process_chunk` over a task's notes."""

  def __init__(self, spacy_model, phi, fault_dir):
    self.spacy_model, self.phi, self.fault_dir = spacy_model, phi, fault_dir

  def __call__(self, frames):
    from clinicalbert_tf.notes import pipeline  # pylint: disable=g-import-not-at-top
    splitter, surrogates_ = worker_splitter(self.spacy_model, self.phi)

    def records():
      rows = list(_rows(frames))
      for begin in range(0, len(rows), pipeline.CHUNK_NOTES):
        chunk = rows[begin:begin + pipeline.CHUNK_NOTES]
        keys = [_note_key(row["row_id"]) for row in chunk]
        rendered, _ = pipeline.process_chunk(splitter, surrogates_,
                                             ([row["text"] for row in chunk], keys))
        for row, data in zip(chunk, rendered):
          failed = isinstance(data, str)
          yield {"row_id": row["row_id"], "position": row["position"],
                 "category": row["category"],
                 "file": pipeline.category_file_name(row["category"]) + ".txt",
                 "text": None if failed else data.decode("utf-8"),
                 "sentences": None if failed else data.count(b"\n") - 1,
                 "error": data if failed else None}
    yield from _frames(records(), ("row_id", "position", "category", "file", "text",
                                   "sentences", "error"))
    _fail_once(self.fault_dir, "format_notes")


def worker_splitter(spacy_model, phi):
  """(SentenceSplitter, Surrogates or None) of format_notes, made once per Python worker."""
  key = (spacy_model, phi)
  if key not in _SPLITTERS:
    from clinicalbert_tf import surrogates  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.notes import sentences  # pylint: disable=g-import-not-at-top
    if spacy_model == sentences.RULES_MODEL and "torch" not in sys.modules:
      sys.modules["torch"] = None  # as format_notes.py: the rules never need what thinc imports
    _SPLITTERS[key] = (sentences.SentenceSplitter(spacy_model), surrogates.make_surrogates(phi))
  return _SPLITTERS[key]


def _note_key(row_id):
  """The surrogate seed key of a note: its ROW_ID as NOTEEVENTS' reader gives it (an int)."""
  try:
    return int(row_id)
  except (TypeError, ValueError):
    return row_id


def format_notes(df, spacy_model="rules", phi="keep", random_seed=None, locale=None,
                 categories=None):
  """NOTEEVENTS rows -> one sentence per line, per note, with the file of its category.

  Rows written in error (ISERROR 1), with empty text, or of categories not in `categories` are
  left out, as format_notes.py leaves them out. For each category, concatenating `text` of its
  rows (no error) ordered by `position` gives the bytes of format_notes.py's `<category>.txt`
  (`file`) for the same input.

  Args:
    df: NOTEEVENTS rows (`read_noteevents`, or a table with ROW_ID, CATEGORY, ISERROR, TEXT in any
      case, and `position` (the input order; default: ROW_ID)).
    spacy_model, phi, random_seed, locale, categories: as format_notes.py's flags.

  Returns:
    A DataFrame `row_id, position, category, file, text, sentences, error` (`error`: why a note
    could not be formatted, never its text; `text` is then null).
  """
  from pyspark.sql import functions as F  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import surrogates  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.notes import pipeline  # pylint: disable=g-import-not-at-top
  phi_options = surrogates.PhiOptions(
      phi, surrogates.DEFAULT_SEED if random_seed is None else random_seed,
      locale or surrogates.DEFAULT_LOCALE)
  surrogates.check_phi_options(phi_options)
  position = (df["position"] if "position" in df.columns
              else _column(df, "ROW_ID").cast("long"))
  rows = df.select(_column(df, "ROW_ID").cast("string").alias("row_id"),
                   position.cast("long").alias("position"),
                   F.trim(_column(df, "CATEGORY")).alias("category"),
                   _column(df, "ISERROR").alias("iserror"), _column(df, "TEXT").alias("text"))
  rows = rows.where(F.col("text").isNotNull() & (F.length(F.trim(F.col("text"))) > 0) &
                    ~F.coalesce(F.trim(F.col("iserror")) == "1", F.lit(False)))
  selected = pipeline._category_selector(categories)  # pylint: disable=protected-access
  if selected is not None:
    keep = F.udf(lambda c: bool(c is not None and selected(c)), "boolean")
    rows = rows.where(keep(F.col("category")))
  return rows.mapInPandas(_FormatNotes(spacy_model, phi_options, _fault_dir()), FORMAT_SCHEMA)


class SparkChunkRunner(object):
  """format_notes.py --engine=spark: a `notes.pipeline` runner whose chunks run on executors.

  The pipeline (reading, the bad-row policy, held-out split, outputs and sidecars) stays on the
  driver; chunks of notes are gathered and formatted by `pipeline.process_chunk` in one Spark job
  per `batch_chunks` chunks, results coming back in submission order, so the output files are the
  local run's bytes.
  """

  def __init__(self, spark, spacy_model, phi, batch_chunks=None):
    self._context = spark.sparkContext
    self._fn = _ChunkFn(spacy_model, phi, _fault_dir())
    self._batch = batch_chunks or 4 * self._context.defaultParallelism
    self._pending = []

  def _run(self):
    pending, self._pending = self._pending, []
    if not pending:
      return
    chunks = [chunk for _, chunk in pending]
    results = self._context.parallelize(list(enumerate(chunks)), len(chunks)).map(
        self._fn).collect()
    for (meta, _), result in zip(pending, results):
      yield meta, result

  def submit(self, chunk, meta):
    self._pending.append((meta, chunk))
    if len(self._pending) >= self._batch:
      yield from self._run()

  def drain(self):
    return self._run()

  def close(self, unused_ok):
    self._pending = []


class _ChunkFn(object):
  """One chunk of notes -> `pipeline.process_chunk`'s result, on an executor."""

  def __init__(self, spacy_model, phi, fault_dir):
    self.spacy_model, self.phi, self.fault_dir = spacy_model, phi, fault_dir

  def __call__(self, indexed_chunk):
    from clinicalbert_tf.notes import pipeline  # pylint: disable=g-import-not-at-top
    splitter, surrogates_ = worker_splitter(self.spacy_model, self.phi)
    result = pipeline.process_chunk(splitter, surrogates_, indexed_chunk[1])
    _fail_once(self.fault_dir, "format_chunk")
    return result


def format_notes_runner(spark):
  """A `runner_factory` for `pipeline.format_notes`: chunks formatted on `spark`'s executors."""
  return lambda spacy_model, unused_num_workers, phi: SparkChunkRunner(spark, spacy_model, phi)


# ---------------------------------------------------------------------------------------------
# create_pretraining_data.py --engine=spark.

def map_shards(spark):
  """A `map_shards(fn, jobs)` for `pretraining_data`: one Spark task per shard, results in order.

  Each task writes its shard's temporary files (on a file system the driver sees too: local mode,
  or a shared one) and the driver renames them once every shard succeeded; a retried task writes
  its files again from the start.
  """
  def run(fn, jobs):
    return spark.sparkContext.parallelize(list(jobs), len(jobs)).map(
        _ShardFn(fn, _fault_dir())).collect()
  return run


class _ShardFn(object):

  def __init__(self, fn, fault_dir):
    self.fn, self.fault_dir = fn, fault_dir

  def __call__(self, job):
    result = self.fn(job)
    _fail_once(self.fault_dir, "shard")
    return result


# ---------------------------------------------------------------------------------------------
# predict.py / deidentify.py --engine=spark.

def _read_file(fmt_and_options, bad, fault_dir):
  """flatMap function: an (index, path) -> the note rows of that file, read by its reader."""
  input_format, options = fmt_and_options

  def read(indexed):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    index, path = indexed
    reader = readers.reader_for(path, input_format)
    for number, note in enumerate(reader.read(path, options)):
      if isinstance(note, readers.BadNote):
        bad.add(1)
        logging.warning("unreadable note: %s: %s", note.where, note.reason)  # never its text
        yield (index, number, None, None, None, None, note.source, note.where, note.reason)
      else:
        yield (index, number, note.id, note.text, note.text_b, note.patient, note.source,
               note.where, None)
    _fail_once(fault_dir, "read")
  return read


def split_inputs(input_file):
  """(Parquet datasets, other files) of a comma list of files and globs (Parquet: `*.parquet`)."""
  import glob  # pylint: disable=g-import-not-at-top
  parquet, other = [], []
  for pattern in fileio.split_comma_list(input_file):
    if pattern.rstrip("/").endswith(PARQUET_SUFFIX):
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
        _read_file((input_format, read_options), counters.bad, _fault_dir()))
    frames.append(spark.createDataFrame(rdd, _NOTE_SCHEMA))
  for k, path in enumerate(parquet):
    df = spark.read.parquet(path)
    o = read_options
    for name in (o.id_field, o.text_field) + ((o.patient_field,) if o.patient_field else ()):
      if name not in df.columns:
        raise fileio.InputError("%s: no column %r (has %s)" % (path, name, ", ".join(df.columns)))
    frames.append(df.select(
        F.lit(len(files) + k).cast("long").alias("file_index"),
        F.monotonically_increasing_id().alias("note_index"),
        df[o.id_field].cast("string").alias("id"), df[o.text_field].alias("text"),
        (df["sentence2"] if read_options.pairs else F.lit(None)).cast("string").alias("text_b"),
        (df[o.patient_field].cast("string") if o.patient_field else F.lit(None).cast("string")
         ).alias("patient"),
        F.lit(path).alias("source"), F.lit(path).alias("where"),
        F.lit(None).cast("string").alias("bad")))
  result = frames[0]
  for frame in frames[1:]:
    result = result.unionByName(frame)
  return result, files + parquet


class _JobStep(object):
  """mapInPandas function of the script job: the per-note step for every good note of a task."""

  def __init__(self, model_args, options, pairs, counters, fault_dir, make_anonymizer_fn):
    self.model_args, self.options, self.pairs = model_args, options, pairs
    self.loads, self.words = counters.loads, counters.words
    self.fault_dir, self.make_anonymizer_fn = fault_dir, make_anonymizer_fn
    self.key = uuid.uuid4().hex

  def __call__(self, frames):
    from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
    o = self.options
    model = worker_model(*self.model_args, loads=self.loads)
    anonymizer = (_worker_anonymizer(self.key, lambda: self.make_anonymizer_fn(o))
                  if o.deidentify else None)
    bad_rows = []

    def notes():
      for row in _rows(frames):
        if row["bad"] is not None:
          bad_rows.append(row)  # passed through to the driver, which applies --max_bad_notes
          continue
        note = readers.Note(row["id"], row["text"], row["source"], row["where"],
                            text_b=_text(row["text_b"]), patient=_text(row["patient"]))
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
        predictor = predictor_lib.Predictor(model, o.batch_size, o.min_probability)
        done = 0
        for note, spans in predictor.predict(notes()):
          outputs = step.note_outputs(note, spans, anonymizer)
          record = base(note)
          record["entities"] = [dict(_entity(s), first_line=s.first and s.first[0],
                                     first_token=s.first and s.first[1],
                                     last_line=s.last and s.last[0],
                                     last_token=s.last and s.last[1]) for s in outputs.spans]
          if outputs.deidentified is not None:
            record["deid_text"] = outputs.deidentified.text
            record["items"] = [_item(i) for i in outputs.deidentified.items]
          record["words"] = predictor.words_done - done
          done = predictor.words_done
          yield record
        self.words.add(predictor.words_done)
      for row in bad_rows:
        yield dict(row, words=0)

    yield from _frames(records(), _job_columns())
    _fail_once(self.fault_dir, "predict")


def _job_columns():
  return ("file_index", "note_index", "id", "text", "text_b", "patient", "source", "where", "bad",
          "entities", "label", "probabilities", "deid_text", "items", "words")


def parquet_output(options):
  """The Parquet dataset the job writes (an output path ending in .parquet), or None."""
  path = options.output_dir if options.deidentify else (options.output_file or options.output_dir)
  return path if path and path.rstrip("/").endswith(PARQUET_SUFFIX) else None


def run_job(options, model_dir, model_flags=(None, None, None), master=DEFAULT_MASTER,
            partitions=0, num_threads=1, make_anonymizer_fn=None):
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
    make_anonymizer_fn: options -> Anonymizer (default: `job._make_anonymizer`).

  Returns:
    Counts, as `job.run_job`'s.
  """
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import job  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
  o = options
  make_anonymizer_fn = make_anonymizer_fn or job._make_anonymizer  # pylint: disable=protected-access
  started = time.time()
  head = _head(model_dir, model_flags)
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
  if o.deidentify:
    make_anonymizer_fn(o)  # a bad operator or locale: an error before Spark starts
  read_options = readers.ReadOptions(id_field=o.id_field, text_field=o.text_field,
                                     patient_field=getattr(o, "patient_field", None), pairs=pairs)
  spark = get_session(master)
  counters = Counters(spark)
  notes, input_files = read_notes(spark, o.input_file, o.input_format, read_options, counters)
  notes = notes.repartition(partitions or spark.sparkContext.defaultParallelism)
  results = notes.mapInPandas(
      _JobStep((model_dir, tuple(model_flags), num_threads), o, pairs, counters, _fault_dir(),
               make_anonymizer_fn), _JOB_SCHEMA)
  counts = collections.Counter(notes=0, words=0, entities=0, bad=0, skipped=0)
  if parquet:
    _write_parquet(results, parquet, o, pairs, counters, counts)
  else:
    _write_files(results, plan, input_files, o, pairs, counts)
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


def _write_files(results, plan, input_files, o, pairs, counts):
  """Results back in input order through the local engine's writers and bad-note policy."""
  import contextlib  # pylint: disable=g-import-not-at-top
  from pyspark import StorageLevel  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import anonymize  # pylint: disable=g-import-not-at-top
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
          outputs = step.pair_outputs(note, row["label"], dict(row["probabilities"]))
        else:
          outputs = step.note_outputs(note, _spans_of(row["entities"]), None, o.include_text)
          if o.deidentify:
            outputs.deidentified = anonymize.Result(row["deid_text"], [
                anonymize.Item(**i.asDict()) for i in row["items"] or ()])
        for writer in writers:
          writer.write(outputs)
        counts["entities"] += len(outputs.spans)
        counts["notes"] += 1
  finally:
    results.unpersist()
