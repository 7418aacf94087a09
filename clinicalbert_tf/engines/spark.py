"""The Apache Spark engine: the application's per-note steps over DataFrames, on any cluster.

In a notebook (Databricks 15.4 LTS: Spark 3.5, Python 3.11):

  from clinicalbert_tf.engines import spark as engine
  notes = spark.read.parquet("/data/notes")                     # id, text, patient, ...
  spans = engine.annotate(notes, "/dbfs/models/i2b2_2010", id_col="note_id", text_col="text")
  deid = engine.deidentify(notes, "/dbfs/models/i2b2_2014", operators="placeholder",
                           patient_col="patient")               # id, text, items
  sentences = engine.format_notes(engine.read_noteevents(spark, "/data/NOTEEVENTS.csv.gz"))

and from the command line `predict.py`, `deidentify.py` and `format_notes.py --engine=spark`,
`create_pretraining_data.py --engine=spark` (`spark_job.run_job`, `format_notes_runner`,
`map_shards`).

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

import os
import re
import shutil
import socket
import sys
import uuid

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

_MODELS = {}  # (model_dir, model_flags, num_threads, use_bf16) -> LoadedModel, per Python worker
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


def worker_model(model_dir, model_flags=(None, None, None), num_threads=1, use_bf16=False,
                 loads=None):
  """The LoadedModel of `model_dir`, loaded once per Python worker (`loads`: an accumulator)."""
  key = (model_dir, tuple(model_flags), num_threads, use_bf16)
  model = _MODELS.get(key)
  if model is None:
    from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
    model = model_lib.load_model(resolve_model_dir(model_dir), *model_flags,
                                 num_threads=num_threads, use_bf16=use_bf16)
    _MODELS[key] = model
    if loads is not None:
      loads.add(1)
  return model


def fail_once(fault_dir, stage):
  """The test hook of FAIL_ONCE_ENV: raises on this task's first attempt (after its work)."""
  if not fault_dir:
    return
  from pyspark import TaskContext  # pylint: disable=g-import-not-at-top
  marker = os.path.join(fault_dir, "%s-%d" % (stage, TaskContext.get().partitionId()))
  if not os.path.exists(marker):
    with open(marker, "w") as f:
      f.write("failed once\n")
    raise RuntimeError("injected task failure (%s): this attempt is retried" % FAIL_ONCE_ENV)


def fault_hook_dir():
  return os.environ.get(FAIL_ONCE_ENV) or None


def rows_of(frames):
  """The rows of pandas batches as dicts (the Arrow batches of mapInPandas), streamed."""
  for frame in frames:
    yield from frame.to_dict("records")


def frames_of(records, columns, size=256):
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


def text_or_none(value):
  """A cell as text, or None for a missing one (pandas gives NaN/None for SQL NULL)."""
  return value if isinstance(value, str) else None


def _id(value):
  if value is None or (isinstance(value, float) and value != value):
    return None
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  return str(value)


def entity_record(span):
  return {"start": int(span.start), "end": int(span.end), "label": span.label,
          "score": float(span.score)}


def item_record(item):
  return {name: getattr(item, name, None) for name in ITEM_FIELDS}


def spans_of(entities):
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

def model_head(model_dir, model_flags):
  """The head of `model_dir` (read on the driver, without loading the model)."""
  from clinicalbert_tf.inference import model as model_lib  # pylint: disable=g-import-not-at-top
  return model_lib.locate_model(model_dir, *model_flags).record.make_head()


def _pairs(model_dir, model_flags):
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  return model_head(model_dir, model_flags).output == heads.PAIR_LABEL


class _Annotate(object):
  """mapInPandas function of `annotate` (a module-level class: pickled by reference)."""

  def __init__(self, model_dir, model_flags, num_threads, batch_size, min_probability, pairs,
               loads, bad, fault_dir, window_context=None, use_bf16=False):
    self.args = (model_dir, model_flags, num_threads, use_bf16)
    self.batch_size, self.min_probability, self.pairs = batch_size, min_probability, pairs
    self.window_context = window_context
    self.loads, self.bad, self.fault_dir = loads, bad, fault_dir

  def _notes(self, frames):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    for row in rows_of(frames):
      note_id, text = _id(row["id"]), text_or_none(row["text"])
      text_b = text_or_none(row.get("text_b"))
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
        yield from frames_of([record], ("id", "label", "probabilities"), 1)
    else:
      predictor = predictor_lib.Predictor(model, self.batch_size, self.min_probability,
                                          window_context=self.window_context)
      yield from frames_of(({"id": note.id, "entities": [
          entity_record(s) for s in step.note_outputs(note, spans).spans]}
                          for note, spans in predictor.predict(notes)), ("id", "entities"))
    fail_once(self.fault_dir, "annotate")


def annotate(df, model_dir, id_col="id", text_col="text", text_b_col=None, batch_size=32,
             min_probability=None, model_flags=(None, None, None), num_threads=1, counters=None,
             window_context=None, use_bf16=False):
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
    window_context: long lines' windows, as predict.py's --window_context (None: its default).
    use_bf16: bfloat16 mixed precision, as predict.py's --use_bf16.

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
                 counters.loads, counters.bad, fault_hook_dir(), window_context, use_bf16)
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


def worker_anonymizer(key, make):
  """One anonymizer per Python worker and job (`key`), made by `make()`."""
  anonymizer = _ANONYMIZERS.get(key)
  if anonymizer is None:
    anonymizer = _ANONYMIZERS[key] = make()
  return anonymizer


class _Deidentify(object):
  """mapInPandas function of `deidentify`."""

  def __init__(self, key, anonymizer_args, model_args, batch_size, min_probability, loads, bad,
               fault_dir, window_context=None):
    self.key, self.anonymizer_args, self.model_args = key, anonymizer_args, model_args
    self.batch_size, self.min_probability = batch_size, min_probability
    self.window_context = window_context
    self.loads, self.bad, self.fault_dir = loads, bad, fault_dir

  def _notes(self, frames):
    from clinicalbert_tf.inference import readers  # pylint: disable=g-import-not-at-top
    for row in rows_of(frames):
      note_id, text = _id(row["id"]), text_or_none(row["text"])
      if note_id is None or text is None:
        self.bad.add(1)
        continue
      note = readers.Note(note_id, text, "", "", patient=_id(row.get("patient")))
      yield note, row.get("spans")

  def __call__(self, frames):
    from clinicalbert_tf.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
    from clinicalbert_tf.inference import step  # pylint: disable=g-import-not-at-top
    anonymizer = worker_anonymizer(self.key, lambda: make_anonymizer(**self.anonymizer_args))
    notes = self._notes(frames)
    if self.model_args is None:  # given spans
      spanned = ((note, spans_of(spans)) for note, spans in notes)
    else:
      model = worker_model(*self.model_args, loads=self.loads)
      predictor = predictor_lib.Predictor(model, self.batch_size, self.min_probability,
                                          window_context=self.window_context)
      spanned = predictor.predict((note for note, _ in notes))
    records = ({"id": note.id, "text": result.text, "items": [item_record(i) for i in result.items]}
               for note, result in ((note, step.note_outputs(note, spans, anonymizer).deidentified)
                                    for note, spans in spanned))
    yield from frames_of(records, ("id", "text", "items"))
    fail_once(self.fault_dir, "deidentify")


def deidentify(df, model_dir=None, spans_col=None, operators="placeholder", secret=None,
               patient_col=None, id_col="id", text_col="text", random_seed=None, locale=None,
               mask_char="*", min_probability=None, batch_size=32,
               model_flags=(None, None, None), num_threads=1, counters=None, window_context=None,
               use_bf16=False):
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
    min_probability, batch_size, model_flags, num_threads, counters, window_context, use_bf16:
      as in `annotate`.

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
    head = model_head(model_dir, model_flags)
    if head.output != heads.WORD_LABELS:
      raise fileio.InputError("the model has a %s head: deidentify needs a PHI model whose head "
                              "outputs word labels" % head.name)
    model_args = (model_dir, tuple(model_flags), num_threads, use_bf16)
  columns = [df[id_col].alias("id"), df[text_col].alias("text")]
  if patient_col:
    columns.append(df[patient_col].cast("string").alias("patient"))
  if spans_col:
    columns.append(df[spans_col].alias("spans"))
  counters = counters or Counters(df.sparkSession)
  fn = _Deidentify(uuid.uuid4().hex, anonymizer_args, model_args, batch_size, min_probability,
                   counters.loads, counters.bad, fault_hook_dir(), window_context)
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
      rows = list(rows_of(frames))
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
    yield from frames_of(records(), ("row_id", "position", "category", "file", "text",
                                   "sentences", "error"))
    fail_once(self.fault_dir, "format_notes")


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
  return rows.mapInPandas(_FormatNotes(spacy_model, phi_options, fault_hook_dir()), FORMAT_SCHEMA)


class SparkChunkRunner(object):
  """format_notes.py --engine=spark: a `notes.pipeline` runner whose chunks run on executors.

  The pipeline (reading, the bad-row policy, held-out split, outputs and sidecars) stays on the
  driver; chunks of notes are gathered and formatted by `pipeline.process_chunk` in one Spark job
  per `batch_chunks` chunks, results coming back in submission order, so the output files are the
  local run's bytes.
  """

  def __init__(self, spark, spacy_model, phi, batch_chunks=None):
    self._context = spark.sparkContext
    self._fn = _ChunkFn(spacy_model, phi, fault_hook_dir())
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
    fail_once(self.fault_dir, "format_chunk")
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
        _ShardFn(fn, fault_hook_dir())).collect()
  return run


class _ShardFn(object):

  def __init__(self, fn, fault_dir):
    self.fn, self.fault_dir = fn, fault_dir

  def __call__(self, job):
    result = self.fn(job)
    fail_once(self.fault_dir, "shard")
    return result
