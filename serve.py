#!/usr/bin/env python3
"""Serves a fine-tuned model over HTTP: spans of notes, de-identified text, TF Serving's REST API.

  serve.py --model_dir=finetune/i2b2_2014 --port=8501 --auth_token_file=token.txt
  curl -s localhost:8501/analyze -H "Authorization: Bearer $(cat token.txt)" \
    -d '{"text": "Seen by Dr. Smith on 3/4/2012."}'

Loads the model (a fine-tuned directory or its SavedModel) once and answers POST /analyze (the
spans predict.py writes; NLI pairs), POST /deidentify (deidentify.py's replacement; or given spans,
no model call), GET /health, /supportedentities, /openapi.json, and TF Serving's GET
/v1/models/{name}[/metadata] and POST /v1/models/{name}:predict. Concurrent requests are batched
into one model call. Binds to 127.0.0.1 unless --host says otherwise; SIGTERM drains. See
clinicalbert_tf/serving/ and the README.
"""

from absl import flags

from clinicalbert_tf import anonymize
from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.inference import deid
from clinicalbert_tf.inference import job
from clinicalbert_tf.serving import api
from clinicalbert_tf.serving import server
from clinicalbert_tf.serving import service

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None,
                    "A fine-tuned model directory (run_finetune.py's output_dir) or an exported "
                    "SavedModel (export_savedmodel.py's export_dir).")
flags.DEFINE_string("bert_config_file", None,
                    "The model's bert_config.json (default: the one in --model_dir).")
flags.DEFINE_string("vocab_file", None, "The model's vocab.txt (default: the one in --model_dir).")
flags.DEFINE_string("init_checkpoint", None,
                    "Checkpoint prefix or directory (default: the latest in --model_dir).")
flags.DEFINE_string("host", "127.0.0.1",
                    "Address to listen on. Anything but loopback is reachable by others: use "
                    "--auth_token_file and a TLS reverse proxy (README).")
flags.DEFINE_integer("port", 8501, "TCP port (TF Serving's REST port; 0: any free port, logged).")
flags.DEFINE_string("model_name", "default",
                    "The {name} of TF Serving's /v1/models/{name} paths (its --model_name).")
flags.DEFINE_string("auth_token_file", None,
                    "A file holding a bearer token: every endpoint but /health then needs "
                    "'Authorization: Bearer <token>'.")
flags.DEFINE_string("secret_file", None,
                    "A file holding the de-identification secret (never sent in a request).")
flags.DEFINE_integer("num_threads", 0, "TensorFlow threads (0: TensorFlow's choice).")
flags.DEFINE_integer("predict_batch_size", 32, "Windows per session run.")
job.define_speed_flags()
flags.DEFINE_integer("max_batch_size", 64,
                     "Notes of concurrent requests run together in one model call, at most.")
flags.DEFINE_float("max_batch_wait_ms", 5.0,
                   "How long the model waits for more requests after the first of a batch.")
flags.DEFINE_integer("max_queue_notes", 1024,
                     "Notes waiting at most; beyond it requests get 503 with Retry-After.")
flags.DEFINE_integer("max_body_bytes", 4 << 20, "Largest request body (413 beyond).")
flags.DEFINE_integer("max_texts", 64, "Texts (or TF Serving rows) per request (413 beyond).")
flags.DEFINE_integer("max_text_chars", 100000, "Characters per text (413 beyond).")
flags.DEFINE_float("request_timeout_s", 60.0, "A request waits this long for the model (504).")
flags.DEFINE_float("min_probability", None,
                   "Default of the requests' min_probability: a word gets an entity label when "
                   "P(not O) reaches this; default: the most probable label.")
flags.DEFINE_string("replace", "placeholder",
                    "/deidentify's operators when a request names none, as deidentify.py's "
                    "--replace: one operator, or LABEL:operator pairs with a default "
                    "(operators: %s)." % ", ".join(anonymize.OPERATOR_NAMES))
flags.DEFINE_string("operators_file", None,
                    "A JSON object {label: operator, \"default\": operator}, instead of --replace.")
flags.DEFINE_string("mask_char", "*", "The mask operator's character.")
flags.DEFINE_integer("date_shift_days", anonymize.DEFAULT_DATE_SHIFT_DAYS,
                     "The shift operator moves a patient's dates by up to this many days.")
flags.DEFINE_string("recognizers", deid.DEFAULT_RECOGNIZERS,
                    "/deidentify's PHI spans, as deidentify.py's: model (the model's, or a "
                    "request's spans), patterns (the pattern recognizers), or both merged.")
flags.DEFINE_float("min_label_recall", deid.DEFAULT_MIN_LABEL_RECALL,
                   "At start: warn about PHI types whose recorded dev recall is under this "
                   "(deidentify.py's release check).")
surrogates_lib.define_flags("the surrogate operator")


def main(argv):
  cli.require_flags(FLAGS, ("model_dir",))
  for name in ("max_batch_size", "max_queue_notes", "max_body_bytes", "max_texts",
               "max_text_chars", "predict_batch_size"):
    if FLAGS[name].value < 1:
      raise fileio.InputError("--%s=%d: expected at least 1" % (name, FLAGS[name].value))
  if FLAGS.max_batch_wait_ms < 0 or FLAGS.request_timeout_s <= 0:
    raise fileio.InputError("--max_batch_wait_ms must be >= 0 and --request_timeout_s > 0")
  if len(FLAGS.mask_char) != 1:
    raise fileio.InputError("--mask_char=%r: expected one character" % FLAGS.mask_char)
  surrogates_lib.check_locale(FLAGS.surrogate_locale)
  deid.parse_recognizers(FLAGS.recognizers)
  secret = anonymize.read_secret_file(FLAGS.secret_file) if FLAGS.secret_file else None
  service_options = cli.config_from_flags(service.ServiceOptions, FLAGS, secret=secret)
  token = server.read_token_file(FLAGS.auth_token_file) if FLAGS.auth_token_file else None
  api_options = cli.config_from_flags(api.ApiOptions, FLAGS, auth_token=token)
  server.serve_model(FLAGS.model_dir, FLAGS.host, FLAGS.port, service_options, api_options,
                     num_threads=FLAGS.num_threads, bert_config_file=FLAGS.bert_config_file,
                     vocab_file=FLAGS.vocab_file, init_checkpoint=FLAGS.init_checkpoint,
                     min_label_recall=FLAGS.min_label_recall, use_bf16=FLAGS.use_bf16)


if __name__ == "__main__":
  cli.run(main)
