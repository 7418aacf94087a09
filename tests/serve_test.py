"""serve.py / clinicalbert_tf/serving: the HTTP service on 127.0.0.1, ephemeral ports.

Expected values come from elsewhere: spans from `inference.Predictor` over its own load of the
model (what predict.py runs), de-identified text from deidentify.py run as a script and from
replacements written out here, TF Serving probabilities from the SavedModel's signature run in a
session of its own, errors and limits written out by hand.
"""

import concurrent.futures
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from absl.testing import absltest
import numpy as np

from clinicalbert_tf import fileio
from clinicalbert_tf import inference
from clinicalbert_tf import savedmodel
from clinicalbert_tf.inference import deid
from clinicalbert_tf.inference import readers
from clinicalbert_tf.serving import api
from clinicalbert_tf.serving import batching
from clinicalbert_tf.serving import server
from clinicalbert_tf.serving import service
from tests import testutil

PHI_LABELS = ["O", "B-DATE", "I-DATE", "B-NAME", "I-NAME"]
NOTES = testutil.NOTES
CANARY = "Zxqvcanary Quellbrook"


def request(url, method, path, body=None, headers=None, raw=None, timeout=60):
  """(status, parsed JSON body, headers) of one request on a new connection."""
  host, port = url.split("//")[1].split(":")
  conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
  try:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None, dict(response.getheaders())
  finally:
    conn.close()


def oracle_spans(model, texts, min_probability=None):
  """predict.py's JSON entities for each text: the Predictor over the notes, as run_job does."""
  notes = [readers.Note("n%d" % i, t, "x", "x") for i, t in enumerate(texts)]
  return [[s.to_json() for s in spans]
          for _, spans in inference.Predictor(model, 32, min_probability).predict(notes)]


def replaced(text, spans, mode):
  """`text` with each span replaced as deidentify.py's operators do (README), written out here."""
  out, last = [], 0
  for s in sorted(spans, key=lambda s: s.start):
    new = {"placeholder": "[**%s**]" % s.label, "tag": "<%s>" % s.label,
           "mask": "*" * (s.end - s.start)}[mode]
    out += [text[last:s.start], new]
    last = s.end
  return "".join(out) + text[last:]


def make_server(model_dir, service_options=None, api_options=None):
  """(Background server, Service) over a fresh load of `model_dir`."""
  svc = service.Service(inference.load_model(model_dir), service_options)
  return server.Background(api.create_app(svc, api_options)), svc


class HeldModel(object):
  """Holds a service's worker before each batch until `release`: requests queue up meanwhile.

  `taken`: the items of each batch as the worker took it; `ran`: per batch, the sizes of the jobs
  still wanted (not cancelled) when it was let go.
  """

  def __init__(self, svc):
    self.svc, self.gate, self.taken, self.ran = svc, threading.Event(), [], []

  def __enter__(self):
    self.original = self.svc.batcher.run_batch
    self.svc.batcher.run_batch = self._run
    return self

  def _run(self, jobs):
    self.taken.append(sum(j.size for j in jobs))
    self.gate.wait()
    self.ran.append([j.size for j in jobs if not j.future.cancelled()])
    self.original(jobs)

  def wait_for(self, condition, timeout=30):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
      time.sleep(0.02)

  def release(self):
    self.gate.set()

  def __exit__(self, *unused):
    self.gate.set()
    self.svc.batcher.run_batch = self.original


class BatcherTest(testutil.TestCase):
  """The batching worker alone, with a stand-in for the model."""

  def test_batches_waiting_jobs_up_to_the_limit_and_drains_on_close(self):
    seen = []
    gate = threading.Event()

    def run(jobs):
      gate.wait()
      seen.append([j.items for j in jobs])
      for j in jobs:
        if j.future.set_running_or_notify_cancel():
          j.future.set_result([x * 10 for x in j.items])
    batcher = batching.Batcher(run, max_batch_size=4, max_wait_ms=0, max_queue=7)
    first = batcher.submit(batching.Job("x", [1], size=1))
    time.sleep(0.2)  # the worker has taken it and waits at the gate
    futures = [batcher.submit(batching.Job("x", [i, i], size=2)) for i in (2, 3, 4)]
    with self.assertRaises(batching.Overloaded):  # 6 waiting + 2 > 7
      batcher.submit(batching.Job("x", [5, 5], size=2))
    cancelled = batcher.submit(batching.Job("x", [6], size=1))
    self.assertTrue(cancelled.cancel())
    gate.set()
    self.assertEqual(first.result(5), [10])
    self.assertEqual([f.result(5) for f in futures], [[20, 20], [30, 30], [40, 40]])
    batcher.close()
    with self.assertRaises(batching.Closed):
      batcher.submit(batching.Job("x", [7], size=1))
    # [1] alone; then 2+2 items fill a batch of 4; then the rest. The cancelled job is handed
    # over (run_batch skips it: set_running_or_notify_cancel) but never given a result.
    self.assertEqual(seen[:3], [[[1]], [[2, 2], [3, 3]], [[4, 4], [6]]])

  def test_a_failing_batch_fails_its_jobs_and_the_worker_goes_on(self):
    def run(jobs):
      if jobs[0].items == "bad":
        raise ValueError("boom")
      for j in jobs:
        j.future.set_result("ok")
    batcher = batching.Batcher(run, max_wait_ms=0)
    with self.assertRaisesRegex(ValueError, "boom"):
      batcher.submit(batching.Job("x", "bad")).result(5)
    self.assertEqual(batcher.submit(batching.Job("x", "good")).result(5), "ok")
    batcher.close()


class ServeTest(testutil.TestCase):
  """One tiny PHI model, exported as a SavedModel; servers over it in this process."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    d = cls.class_temp_dir()
    cls.model_dir = testutil.write_model_dir(os.path.join(d, "model"), labels=PHI_LABELS)
    cls.export_dir = savedmodel.export(cls.model_dir, os.path.join(d, "serving"))
    cls.oracle = inference.load_model(cls.export_dir)
    cls.addClassCleanup(cls.oracle.close)
    cls.background, cls.service = make_server(
        cls.export_dir, service.ServiceOptions(max_batch_wait_ms=20),
        api.ApiOptions(max_body_bytes=20000, max_texts=8, max_text_chars=2000))
    cls.url = cls.background.start()
    cls.addClassCleanup(cls.background.stop)

  def post(self, path, body=None, **kwargs):
    return request(self.url, "POST", path, body, **kwargs)

  def assert_spans_equal(self, got, want):
    """Same offsets and labels; scores as predict.py rounds them, within batching's float noise."""
    strip = lambda spans: [{k: v for k, v in s.items() if k != "score"} for s in spans]
    self.assertEqual([strip(s) for s in got], [strip(s) for s in want])
    for g, w in zip(got, want):
      self.assertAllClose([s["score"] for s in g], [s["score"] for s in w], rtol=0, atol=2e-6)

  def test_a_bad_window_context_stops_the_service_at_start(self):
    with self.assertRaisesRegex(fileio.InputError, "--window_context=7: expected 0 to 6 pieces"):
      service.Service(self.oracle, service.ServiceOptions(window_context=7))

  def test_analyze_gives_predict_spans(self):
    want = oracle_spans(self.oracle, NOTES)
    status, body, headers = self.post("/analyze", {"text": NOTES, "correlation_id": "req-1"})
    self.assertEqual(status, 200, body)
    self.assertEqual(body["correlation_id"], "req-1")
    self.assertEqual(headers["x-correlation-id"], "req-1")
    self.assert_spans_equal(body["entities"], want)
    self.assertGreater(sum(len(s) for s in want), 3)
    # One text in, one list of spans out; entities and score_threshold filter.
    status, one, _ = self.post("/analyze", {"text": NOTES[4]})
    self.assert_spans_equal([one["entities"]], [want[4]])
    status, dates, _ = self.post("/analyze", {"text": NOTES, "entities": ["DATE"],
                                              "score_threshold": 0.3})
    self.assert_spans_equal(dates["entities"], [[s for s in spans if s["label"] == "DATE" and
                                                 s["score"] >= 0.3] for spans in want])
    # min_probability as predict.py's flag.
    low = oracle_spans(self.oracle, NOTES, min_probability=0.01)
    status, body, _ = self.post("/analyze", {"text": NOTES, "min_probability": 0.01})
    self.assert_spans_equal(body["entities"], low)

  def test_deidentify_replaces_as_deidentify_does(self):
    texts = [NOTES[0], NOTES[4]]
    spans = [s for _, s in inference.Predictor(self.oracle).predict(
        [readers.Note("n%d" % i, t, "x", "x") for i, t in enumerate(texts)])]
    for mode in ("placeholder", "tag", "mask"):
      status, body, _ = self.post("/deidentify", {"text": texts, "operators": mode})
      self.assertEqual(status, 200, body)
      self.assertEqual(body["text"], [replaced(t, s, mode) for t, s in zip(texts, spans)])
      self.assertEqual([[(i["input_start"], i["input_end"], i["label"]) for i in items]
                        for items in body["items"]],
                       [[(s.start, s.end, s.label) for s in group] for group in spans])
      for new_text, items in zip(body["text"], body["items"]):
        for item in items:  # items point into the new text
          if mode == "placeholder":
            self.assertEqual(new_text[item["start"]:item["end"]], "[**%s**]" % item["label"])
    # Spans given: no model call (hand-made expectation).
    before = dict(self.service.batcher.batches)
    status, body, _ = self.post("/deidentify", {
        "text": "Seen by John Smith on 3/4/2012.", "operators": {"NAME": "tag", "DATE": "mask"},
        "spans": [{"start": 22, "end": 30, "label": "DATE"},
                  {"start": 8, "end": 18, "label": "NAME", "score": 0.9}]})
    self.assertEqual(status, 200, body)
    self.assertEqual(body["text"], "Seen by <NAME> on ********.")
    # The pattern recognizers (--recognizers=model,patterns, deidentify.py's default) add what the
    # given spans miss.
    status, body, _ = self.post("/deidentify", {
        "text": "Call 617-555-0199 on 03/04/2012.", "operators": "tag", "spans": []})
    self.assertEqual(body["text"], "Call <PHONE> on <DATE>.")
    self.assertEqual(dict(self.service.batcher.batches), before)

  def test_tf_serving_predict_gives_the_savedmodels_probabilities(self):
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    rng = np.random.RandomState(3)
    lengths = [7, 4, 2]
    ids = rng.randint(5, 30, size=[3, 7])
    mask = (np.arange(7)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    ids = ids * mask
    segments = (np.arange(7)[None, :] >= 3).astype(np.int64) * mask
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as session:
      meta = tf.saved_model.loader.load(session, ["serve"], self.export_dir)
      signature = meta.signature_def["serving_default"]
      feed = {signature.inputs[k].name: v for k, v in
              (("input_ids", ids), ("input_mask", mask), ("segment_ids", segments))}
      want = session.run({k: v.name for k, v in signature.outputs.items()}, feed)
    inputs = {"input_ids": ids.tolist(), "input_mask": mask.tolist(),
              "segment_ids": segments.tolist()}
    status, body, _ = self.post("/v1/models/default:predict", {"inputs": inputs})
    self.assertEqual(status, 200, body)
    self.assertEqual(sorted(body["outputs"]), ["label_ids", "probabilities"])
    self.assertAllClose(np.array(body["outputs"]["probabilities"]), want["probabilities"],
                        rtol=0, atol=1e-5)
    self.assertAllEqual(np.array(body["outputs"]["label_ids"]), want["label_ids"])
    rows = [{k: inputs[k][i] for k in inputs} for i in range(3)]
    status, body, _ = self.post("/v1/models/default:predict",
                                {"signature_name": "serving_default", "instances": rows})
    self.assertEqual(status, 200, body)
    self.assertLen(body["predictions"], 3)
    for i, row in enumerate(body["predictions"]):
      self.assertAllClose(np.array(row["probabilities"]), want["probabilities"][i], rtol=0,
                          atol=1e-5)
    status, body, _ = request(self.url, "GET", "/v1/models/default")
    self.assertEqual(body["model_version_status"][0]["version"], "1")  # the export's version
    self.assertEqual(body["model_version_status"][0]["state"], "AVAILABLE")
    status, body, _ = request(self.url, "GET", "/v1/models/default/metadata")
    served = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    self.assertEqual({k: v["dtype"] for k, v in served["inputs"].items()},
                     {"input_ids": "DT_INT32", "input_mask": "DT_INT32",
                      "segment_ids": "DT_INT32"})
    self.assertEqual(sorted(served["outputs"]), sorted(signature.outputs))
    self.assertEqual(served["method_name"], "tensorflow/serving/predict")

  def test_tf_serving_requests_of_one_length_share_a_session_run(self):
    rng = np.random.RandomState(5)
    bodies = []
    for rows in (1, 2, 3):
      ids = rng.randint(5, 30, size=[rows, 6]).tolist()
      bodies.append({"inputs": {"input_ids": ids, "input_mask": [[1] * 6] * rows,
                                "segment_ids": [[0] * 6] * rows}})
    want = []
    for body in bodies:  # one at a time: the oracle
      status, answer, _ = self.post("/v1/models/default:predict", body)
      want.append(answer["outputs"])
    with HeldModel(self.service) as held, concurrent.futures.ThreadPoolExecutor(4) as pool:
      blocker = pool.submit(self.post, "/analyze", {"text": "fever"})
      held.wait_for(lambda: held.taken)
      futures = [pool.submit(self.post, "/v1/models/default:predict", b) for b in bodies]
      held.wait_for(lambda: self.service.batcher.waiting == 6)
      held.release()
      got = [f.result()[1]["outputs"] for f in futures]
      self.assertEqual(blocker.result()[0], 200)
    self.assertEqual(sorted(held.ran[1]), [1, 2, 3])  # all three in the batch after the held one
    for g, w in zip(got, want):
      self.assertAllClose(np.array(g["probabilities"]), np.array(w["probabilities"]), rtol=0,
                          atol=1e-5)

  def test_sixteen_concurrent_clients_get_their_own_answers_in_few_batches(self):
    texts = [[NOTES[k % 5] + " kidney %d" % k, NOTES[(k + 2) % 5]][:1 + k % 2] for k in range(16)]
    want = [oracle_spans(self.oracle, t) for t in texts]
    before = self.service.batcher.batches["batches"]
    with HeldModel(self.service) as held, concurrent.futures.ThreadPoolExecutor(16) as pool:
      futures = [pool.submit(self.post, "/analyze", {"text": t, "correlation_id": "c%d" % k})
                 for k, t in enumerate(texts)]
      # The first batch is held in the model; the other requests queue up behind it.
      held.wait_for(lambda: self.service.batcher.waiting + sum(held.taken) ==
                    sum(map(len, texts)))
      held.release()
      results = [f.result() for f in futures]
    for k, (status, body, _) in enumerate(results):
      self.assertEqual(status, 200, body)
      self.assertEqual(body["correlation_id"], "c%d" % k)
      self.assert_spans_equal(body["entities"], want[k])
    batches = self.service.batcher.batches["batches"] - before
    # All in one batch, or the held request and then the 15 that queued behind it.
    self.assertLessEqual(batches, 2)

  def test_limits_and_errors_are_one_line_and_the_server_goes_on(self):
    long_text = "pain " * 401
    cases = [
        # (method, path, body or raw bytes, status, what the error names)
        ("POST", "/analyze", b'{"text": "x"' + b" " * 20001 + b"}", 413, "--max_body_bytes"),
        ("POST", "/analyze", {"text": ["a"] * 9}, 413, "--max_texts"),
        ("POST", "/analyze", {"text": ["a", long_text]}, 413, "text[1]: 2005 characters"),
        ("POST", "/deidentify", {"text": long_text}, 413, "--max_text_chars"),
        ("POST", "/analyze", b'{"text": ', 400, "malformed JSON"),
        ("POST", "/analyze", {"text": 5}, 422, "text:"),
        ("POST", "/analyze", {"text": ["a", 5]}, 422, "text.1"),
        ("POST", "/analyze", {}, 422, "text: Field required"),
        ("POST", "/analyze", {"text": "a", "txt": "b"}, 422, "txt: unknown field"),
        ("POST", "/analyze", {"text": []}, 422, "text: an empty list"),
        ("POST", "/analyze", {"text": "a", "entities": ["DATE", "PET"]}, 422, "'PET'"),
        ("POST", "/analyze", {"text": "a", "score_threshold": 2}, 422, "score_threshold"),
        ("POST", "/analyze", {"text": "a", "text_b": "b"}, 422, "text_b"),
        ("POST", "/analyze", {"text": "a", "correlation_id": "a b"}, 422, "correlation_id"),
        ("POST", "/deidentify", {"text": "a", "operators": "DATE:shred"}, 422, "'shred'"),
        ("POST", "/deidentify", {"text": "a", "operators": {"PET": "tag"}}, 422, "'PET'"),
        ("POST", "/deidentify", {"text": ["a", "b"], "note_id": ["x"]}, 422, "note_id"),
        ("POST", "/deidentify", {"text": ["a", "b"], "note_id": "x"}, 422, "note_id"),
        ("POST", "/deidentify", {"text": "abc", "spans": [{"start": 1, "end": 9, "label": "D"}]},
         422, "spans[0]: start 1, end 9"),
        ("POST", "/deidentify", {"text": "abcdef", "spans": [
            {"start": 0, "end": 3, "label": "D"}, {"start": 2, "end": 4, "label": "D"}]},
         422, "spans[1]: overlaps"),
        ("POST", "/deidentify", {"text": ["ab"], "spans": [{"start": 0, "end": 1, "label": "D"}]},
         422, "spans: a list of texts"),
        ("POST", "/v1/models/default:predict", {"inputs": {"input_ids": [[1, 2], [3]],
                                                           "input_mask": [[1, 1], [1]],
                                                           "segment_ids": [[0, 0], [0]]}},
         400, "not a rectangular array"),
        ("POST", "/v1/models/default:predict", {"inputs": {"input_ids": [[1.5]],
                                                           "input_mask": [[1]],
                                                           "segment_ids": [[0]]}},
         400, "expected integers"),
        ("POST", "/v1/models/default:predict", {"inputs": {"input_ids": [[10 ** 6]],
                                                           "input_mask": [[1]],
                                                           "segment_ids": [[0]]}},
         400, "input_ids: values must be in [0, "),
        ("POST", "/v1/models/default:predict", {"instances": [{"input_ids": [1]}]}, 400,
         "instances[0]"),
        ("POST", "/v1/models/default:predict", {"inputs": {}, "instances": []}, 400,
         "exactly one of"),
        ("POST", "/v1/models/default:predict", {"inputs": {"input_ids": [[1] * 600],
                                                           "input_mask": [[1] * 600],
                                                           "segment_ids": [[0] * 600]}},
         400, "positions"),
        ("POST", "/v1/models/other:predict", {"instances": []}, 404, "Latest(other)"),
        ("GET", "/v1/models/other/metadata", None, 404, "Servable not found"),
        ("GET", "/nowhere", None, 404, "no such endpoint"),
        ("GET", "/analyze", None, 405, "method not allowed"),
    ]
    for method, path, body, status, names in cases:
      with self.subTest(path=path, names=names):
        raw = body if isinstance(body, bytes) else None
        got, answer, _ = request(self.url, method, path, None if raw else body, raw=raw)
        self.assertEqual(got, status, answer)
        self.assertEqual(list(answer), ["error"])
        self.assertIn(names, answer["error"])
        self.assertNotIn("\n", answer["error"])
    # A chunked body over the limit (no Content-Length) is refused as well.
    conn = http.client.HTTPConnection("127.0.0.1", self.background.port, timeout=30)
    conn.request("POST", "/analyze", body=iter([b'{"text": "', b"a" * 15000, b"a" * 15000,
                                               b'"}']), encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    self.assertEqual(response.status, 413)
    self.assertIn("--max_body_bytes", json.loads(response.read())["error"])
    conn.close()
    status, body, _ = self.post("/analyze", {"text": "patient denies chest pain"})
    self.assertEqual(status, 200, body)  # still serving

  def test_overloaded_queue_and_timeout(self):
    background, svc = make_server(self.export_dir, service.ServiceOptions(
        max_batch_size=1, max_batch_wait_ms=0, max_queue_notes=2),
                                  api.ApiOptions(request_timeout_s=2.0))
    with background as url, HeldModel(svc) as held, \
        concurrent.futures.ThreadPoolExecutor(4) as pool:
      first = pool.submit(request, url, "POST", "/analyze", {"text": "held in the model"})
      held.wait_for(lambda: held.taken)
      queued = pool.submit(request, url, "POST", "/analyze", {"text": ["one", "two"]})
      held.wait_for(lambda: svc.batcher.waiting >= 2)
      status, body, headers = request(url, "POST", "/analyze", {"text": "three"})
      self.assertEqual(status, 503, body)
      self.assertEqual(headers["retry-after"], "1")
      self.assertIn("--max_queue_notes", body["error"])
      # Held and queued both pass the 2 s timeout while the model is held.
      self.assertEqual(first.result()[0], 504)
      self.assertIn("--request_timeout_s", queued.result()[1]["error"])
      held.release()
      # The timed-out requests' notes leave the queue when the worker reaches them (as empty
      # batches); until then they still count against --max_queue_notes.
      held.wait_for(lambda: svc.batcher.waiting == 0)
      status, body, _ = request(url, "POST", "/analyze", {"text": "after"})
      self.assertEqual(status, 200, body)
    self.assertEqual(held.ran, [[], [], [1]])  # the timed-out requests never reached the model

  def test_an_unexpected_failure_is_a_500_logged_by_type_only(self):
    original = self.service.submit_spans

    def broken(texts, min_probability=None):
      raise RuntimeError("quoting the note: " + texts[0])
    self.service.submit_spans = broken
    try:
      with self.assertLogs(logger="absl", level="ERROR") as logs:
        status, body, _ = self.post("/analyze", {"text": CANARY})
        deadline = time.time() + 10
        while not logs.records and time.time() < deadline:  # logged once the answer is sent
          time.sleep(0.02)
    finally:
      self.service.submit_spans = original
    self.assertEqual((status, body), (500, {"error": "internal error (RuntimeError)"}))
    self.assertIn("RuntimeError", "\n".join(logs.output))
    self.assertNotIn("Zxqvcanary", "\n".join(logs.output))
    self.assertEqual(self.post("/analyze", {"text": "fever"})[0], 200)

  def test_health_supported_entities_and_openapi_document(self):
    from openapi_spec_validator import validate  # pylint: disable=g-import-not-at-top
    status, body, _ = request(self.url, "GET", "/health")
    self.assertEqual((status, body), (200, {"status": "ok"}))
    status, body, _ = request(self.url, "GET", "/supportedentities")
    self.assertEqual(body, ["DATE", "NAME"])
    status, document, _ = request(self.url, "GET", "/openapi.json")
    self.assertEqual(status, 200)
    validate(document)
    self.assertEqual({(p, m) for p, methods in document["paths"].items() for m in methods}, {
        ("/analyze", "post"), ("/deidentify", "post"), ("/health", "get"),
        ("/supportedentities", "get"), ("/v1/models/{name}", "get"),
        ("/v1/models/{name}/metadata", "get"), ("/v1/models/{name}:predict", "post")})

  def test_sentence_pair_model(self):
    d = self.temp_dir()
    model_dir = testutil.write_model_dir(
        os.path.join(d, "nli"), labels=["contradiction", "entailment", "neutral"],
        head="sequence_classification")
    pairs = [readers.Note("p0", "patient denies chest pain", "x", "x", text_b="no pain"),
             readers.Note("p1", "fever", "x", "x", text_b="")]
    model = inference.load_model(model_dir)
    want = [(label, probs) for _, label, probs in inference.predict_pairs(model, pairs)]
    model.close()
    background, _ = make_server(model_dir)
    with background as url:
      status, body, _ = request(url, "POST", "/analyze", {"text": [p.text for p in pairs],
                                                          "text_b": [p.text_b for p in pairs]})
      self.assertEqual(status, 200, body)
      self.assertEqual(body["label"], [label for label, _ in want])
      self.assertAllClose(body["probabilities"], [p for _, p in want], rtol=0, atol=2e-6)
      status, body, _ = request(url, "POST", "/analyze", {"text": "fever"})
      self.assertEqual(status, 422)
      self.assertIn("text_b", body["error"])
      status, body, _ = request(url, "GET", "/supportedentities")
      self.assertEqual(body, [])


class ServeScriptTest(testutil.TestCase):
  """serve.py as a child process: deidentify.py's output, auth, no note text in logs, SIGTERM."""

  def test_script_deidentify_auth_canary_and_sigterm_drain(self):
    d = self.temp_dir()
    model_dir = testutil.write_model_dir(os.path.join(d, "model"), labels=PHI_LABELS)
    notes_dir = os.path.join(d, "notes")
    os.makedirs(notes_dir)
    # b2 also has PHI the pattern recognizers find (a date, a phone number).
    texts = {"a1": NOTES[0], "b2": NOTES[4] + "\nSeen by %s on 03/04/2012 , call 617-555-0199 ."
                                             % CANARY}
    for name, text in texts.items():
      with open(os.path.join(notes_dir, name + ".txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    token_file = os.path.join(d, "token")
    with open(token_file, "w") as f:
      f.write("s3cret-token\n")
    replace = "--replace=DATE:shift,default:surrogate"
    proc = testutil.run_module("serve", [
        "--model_dir=" + model_dir, "--port=0", "--auth_token_file=" + token_file,
        "--max_batch_wait_ms=1500", replace, "--random_seed=7"], popen=True)
    lines = []
    try:
      # predict.py and deidentify.py on the same notes, while the server starts.
      out = os.path.join(d, "deid")
      spans_file = os.path.join(d, "spans.jsonl")
      scripts = [
          testutil.run_module("predict", [
              "--model_dir=" + model_dir, "--input_file=" + notes_dir + "/*.txt",
              "--output_file=" + spans_file], popen=True),
          testutil.run_module("deidentify", [
              "--model_dir=" + model_dir, "--input_file=" + notes_dir + "/*.txt",
              "--output_dir=" + out, replace, "--random_seed=7"], popen=True)]
      for script in scripts:
        _, err = script.communicate(timeout=300)
        self.assertEqual(script.returncode, 0, err[-3000:])
      with open(spans_file) as f:
        want_spans = {r["id"]: r["entities"] for r in map(json.loads, f)}
      with open(os.path.join(out, deid.ITEMS_FILE)) as f:
        want_items = {r["id"]: r["items"] for r in map(json.loads, f)}
      port = None
      for line in proc.stderr:
        lines.append(line)
        found = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
        if found:
          port = int(found.group(1))
          break
      self.assertIsNotNone(port, "".join(lines[-20:]))
      reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
      reader.start()
      url = "http://127.0.0.1:%d" % port
      auth = {"Authorization": "Bearer s3cret-token"}
      ids = sorted(texts)
      body = {"text": [texts[i] for i in ids], "note_id": ids}
      # Auth: /health open, everything else needs the token.
      self.assertEqual(request(url, "GET", "/health")[0], 200)
      for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                      {"Authorization": "Basic s3cret-token"}):
        status, answer, response_headers = request(url, "POST", "/analyze", body, headers)
        self.assertEqual(status, 401, headers)
        self.assertEqual(response_headers["www-authenticate"], "Bearer")
        self.assertIn("bearer token", answer["error"])
      self.assertEqual(request(url, "GET", "/openapi.json")[0], 401)
      status, answer, _ = request(url, "POST", "/analyze", {"text": body["text"]}, auth)
      self.assertEqual(status, 200, answer)
      self.assertEqual(answer["entities"], [want_spans[i] for i in ids])
      status, answer, _ = request(url, "POST", "/deidentify", body, auth)
      self.assertEqual(status, 200, answer)
      for i, new_text, items in zip(ids, answer["text"], answer["items"]):
        with open(os.path.join(out, i + ".txt"), encoding="utf-8", newline="") as f:
          self.assertEqual(new_text, f.read())
        self.assertEqual(items, want_items[i])
      # Bad requests carrying the canary: answered, never logged.
      for bad in ({"text": [CANARY, 5]}, {"text": CANARY, "entities": [CANARY]},
                  {"text": CANARY, "correlation_id": CANARY}):
        self.assertEqual(request(url, "POST", "/analyze", bad, auth)[0], 422)
      # SIGTERM while a request waits for its batch: it is answered, then the server exits 0.
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(request, url, "POST", "/analyze", {"text": CANARY}, auth)
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        status, answer, _ = in_flight.result()
      self.assertEqual(status, 200, answer)
      self.assertEqual(proc.wait(timeout=60), 0)
      reader.join(10)
      with self.assertRaises(OSError):
        request(url, "GET", "/health", timeout=5)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      proc.stdout.close()
      proc.stderr.close()
    log = "".join(lines)
    self.assertIn("signal 15", log)
    self.assertEqual(len(re.findall(r"access method=POST endpoint=/analyze status=", log)), 9)
    self.assertIn("endpoint=/deidentify status=200", log)
    for word in CANARY.split() + [NOTES[4].split()[0]]:
      self.assertNotIn(word, log)


if __name__ == "__main__":
  absltest.main()
