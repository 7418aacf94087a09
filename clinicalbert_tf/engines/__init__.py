"""Engines that run the application's per-note steps somewhere other than this process.

`spark.py`: Apache Spark (a DataFrame API, and `--engine=spark` of predict.py, deidentify.py,
format_notes.py and create_pretraining_data.py). An engine owns no per-note logic: it calls
`inference.step`, `notes.pipeline.process_chunk` and `pretraining_data`'s shard worker, so its
outputs are the local engine's.
"""

ENGINES = ("local", "spark")


def define_flags(what=None):
  """Defines --engine and --spark_master on absl's FLAGS, and --spark_partitions when `what`
  (the help's word for what the tasks share out) is given."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("engine", "local", list(ENGINES),
                    "local: this machine's processes. spark: Apache Spark (--spark_master; under "
                    "spark-submit its master). Same outputs either way.")
  flags.DEFINE_string("spark_master", "local[*]",
                      "--engine=spark: the master (local[N], spark://HOST:PORT, yarn, k8s://...); "
                      "spark-submit's --master wins when run under spark-submit.")
  if what is None:
    return
  flags.DEFINE_integer("spark_partitions", 0,
                       "--engine=spark: tasks to spread the %s over (0: Spark's default "
                       "parallelism)." % what)


def spark_session(flag_values):
  """The SparkSession of --spark_master (see `spark.get_session`)."""
  from clinicalbert_tf.engines import spark  # pylint: disable=g-import-not-at-top
  return spark.get_session(flag_values.spark_master)
