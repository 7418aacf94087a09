"""The HTTP API (FastAPI): endpoints, request limits, errors as one line, bearer auth, access log.

  app = api.create_app(service.Service(model, ...), api.ApiOptions(max_texts=64))

Endpoints (the contract is /openapi.json):
  POST /analyze        {"text": str | [str], "text_b"?, "entities"?, "score_threshold"?,
                        "min_probability"?, "correlation_id"?} -> {"entities": spans | [spans]}
                       (an NLI model: text and text_b -> {"label", "probabilities"}); every output
                       field has the shape of "text"
  POST /deidentify     {"text", "operators"?, "note_id"?, "patient"?, "spans"?, ...}
                       -> {"text", "items"}; with "spans" the model is not called
  GET  /health, GET /supportedentities, GET /openapi.json
  GET  /v1/models/{name}, GET /v1/models/{name}/metadata, POST /v1/models/{name}:predict
                       TF Serving's REST subset (`tf_serving.py`)

Every error is `{"error": "<one line>"}`: 400 malformed JSON or a bad TF Serving tensor, 401 no or
a wrong bearer token, 404, 413 over a size limit (body bytes, texts per request, characters per
text: the message names the flag), 422 a wrong type, field, label or operator, 503 (with
Retry-After) when the queue is full or the server is draining, 504 past the per-request timeout,
500 for anything else (the server goes on). The access log has one line per request: time, method,
endpoint (the route, never the raw path), status, request and response bytes, latency and the
correlation id; never a note's text, spans' text or tokens.
"""

import asyncio
import dataclasses
import hmac
import re
import time
import traceback
from typing import Any, Dict, List, Optional, Union
import uuid

from absl import logging
import fastapi
from fastapi import exceptions as fastapi_exceptions
from fastapi import responses
import pydantic
from starlette import concurrency
from starlette import exceptions as starlette_exceptions
from starlette import routing

from clinicalbert_tf import fileio
from clinicalbert_tf import inference
from clinicalbert_tf.inference import readers
from clinicalbert_tf.serving import batching
from clinicalbert_tf.serving import service as service_lib
from clinicalbert_tf.serving import tf_serving

CORRELATION_HEADER = "x-correlation-id"
CORRELATION_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
OPEN_PATHS = ("/health",)  # no token needed


@dataclasses.dataclass
class ApiOptions:
  """Limits and security of the HTTP layer (serve.py's flags of the same names)."""
  model_name: str = "default"
  max_body_bytes: int = 4 << 20
  max_texts: int = 64
  max_text_chars: int = 100000
  request_timeout_s: float = 60.0
  auth_token: Optional[str] = None


class ApiError(Exception):
  """An HTTP error answered as `{"error": message}`."""

  def __init__(self, status, message, headers=None):
    super().__init__(message)
    self.status, self.message, self.headers = status, message, headers


# --------------------------------------------------------------------------------------------------
# The request and response bodies (they make the OpenAPI document).

Texts = Union[pydantic.StrictStr, List[pydantic.StrictStr]]
Probability = pydantic.confloat(gt=0.0, le=1.0)


class _Strict(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid")


class AnalyzeRequest(_Strict):
  text: Texts = pydantic.Field(description="A note, or a list of notes.")
  text_b: Optional[Texts] = pydantic.Field(
      None, description="NLI models: the hypothesis of each pair (the shape of text).")
  entities: Optional[List[pydantic.StrictStr]] = pydantic.Field(
      None, description="Keep only spans of these entity types (see /supportedentities).")
  score_threshold: Optional[pydantic.confloat(ge=0.0, le=1.0)] = pydantic.Field(
      None, description="Keep only spans whose score reaches this.")
  min_probability: Optional[Probability] = pydantic.Field(
      None, description="A word gets an entity label when P(not O) reaches this (predict.py "
      "--min_probability); default: the server's.")
  correlation_id: Optional[pydantic.constr(pattern=CORRELATION_PATTERN)] = None


class SpanOut(pydantic.BaseModel):
  start: int
  end: int
  label: str
  score: float


class AnalyzeResponse(pydantic.BaseModel):
  entities: Optional[Union[List[SpanOut], List[List[SpanOut]]]] = None
  label: Optional[Union[str, List[str]]] = None
  probabilities: Optional[Union[Dict[str, float], List[Dict[str, float]]]] = None
  correlation_id: str


class SpanIn(_Strict):
  start: pydantic.conint(strict=True, ge=0)
  end: pydantic.conint(strict=True, ge=0)
  label: pydantic.StrictStr
  score: Optional[float] = None


class DeidentifyRequest(_Strict):
  text: Texts = pydantic.Field(description="A note, or a list of notes.")
  operators: Optional[Union[pydantic.StrictStr, Dict[pydantic.StrictStr, pydantic.StrictStr]]] = \
      pydantic.Field(None, description="Per label, as deidentify.py: \"DATE:mask,default:tag\" "
                     "or {\"DATE\": \"mask\", \"default\": \"tag\"}; default: the server's.")
  note_id: Optional[Texts] = pydantic.Field(
      None, description="Each note's id (seeds its surrogates); default note-<index>.")
  patient: Optional[Texts] = pydantic.Field(None, description="Each note's patient key.")
  spans: Optional[Union[List[SpanIn], List[List[SpanIn]]]] = pydantic.Field(
      None, description="The PHI spans to replace (the shape of text): no model call.")
  min_probability: Optional[Probability] = None
  correlation_id: Optional[pydantic.constr(pattern=CORRELATION_PATTERN)] = None


class DeidentifyResponse(pydantic.BaseModel):
  text: Texts
  items: Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]
  correlation_id: str


class ErrorResponse(pydantic.BaseModel):
  error: str


_FIELD_NAMES = frozenset(name for model in (AnalyzeRequest, SpanIn, DeidentifyRequest)
                         for name in model.model_fields)
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503, 504)}


# --------------------------------------------------------------------------------------------------
# Request helpers.

def _shaped(value, single, count, field):
  """`value` as a list of `count` (a str given for a single text, a list of `count` otherwise)."""
  if single != (not isinstance(value, list)):
    raise ApiError(422, "%s: must have the shape of text (%s)" % (
        field, "one value" if single else "a list of %d" % count))
  values = [value] if single else value
  if len(values) != count:
    raise ApiError(422, "%s: %d values for %d texts" % (field, len(values), count))
  return values


def _note(note_id, text, patient=None):
  """A request's note, as the readers make them."""
  return readers.Note(id=note_id, text=text, source="request", where="request", patient=patient)


class _Handlers(object):
  """The endpoints' logic, over one service and its options."""

  def __init__(self, service, options):
    self.service, self.options = service, options
    with service.model.graph.as_default():  # a graph, also when the caller runs eagerly
      self.signature = tf_serving.signature_def(service.model.inputs, service.model.outputs)

  def texts(self, value, field="text"):
    """(list of texts, single) within the limits."""
    single = not isinstance(value, list)
    texts = [value] if single else value
    o = self.options
    if not texts:
      raise ApiError(422, "%s: an empty list" % field)
    if len(texts) > o.max_texts:
      raise ApiError(413, "%s: %d texts, more than the limit of %d per request (--max_texts)" %
                     (field, len(texts), o.max_texts))
    for i, text in enumerate(texts):
      if len(text) > o.max_text_chars:
        raise ApiError(413, "%s%s: %d characters, more than the limit of %d (--max_text_chars)" % (
            field, "" if single else "[%d]" % i, len(text), o.max_text_chars))
    return texts, single

  async def wait(self, submit, *args):
    """The result of a service job, within the request timeout."""
    try:
      future = submit(*args)
    except batching.Overloaded as e:
      raise ApiError(503, "overloaded: %s (--max_queue_notes); retry later" % e,
                     {"Retry-After": "1"}) from None
    except batching.Closed as e:
      raise ApiError(503, str(e), {"Retry-After": "5"}) from None
    try:
      return await asyncio.wait_for(asyncio.wrap_future(future), self.options.request_timeout_s)
    except asyncio.TimeoutError:
      future.cancel()  # still queued: the worker skips it
      raise ApiError(504, "no answer within %gs (--request_timeout_s)" %
                     self.options.request_timeout_s) from None

  def check_entities(self, entities):
    if entities is None:
      return None
    for name in entities:
      if name not in self.service.entity_types:
        raise ApiError(422, "entities: unknown entity type %r (the model's: %s)" % (
            name, ", ".join(self.service.entity_types)))
    return set(entities)

  async def analyze(self, body):
    texts, single = self.texts(body.text)
    svc = self.service
    if svc.spans:
      if body.text_b is not None:
        raise ApiError(422, "text_b: only for a sentence-pair (NLI) model; this one tags spans")
      entities = self.check_entities(body.entities)
      results = await self.wait(svc.submit_spans, texts, body.min_probability)
      # predict.py's record of each note, by the per-note step every engine calls.
      out = [inference.note_outputs(_note("note-%d" % i, text), service_lib.filter_spans(
          spans, entities, body.score_threshold)).record["entities"]
             for i, (text, spans) in enumerate(zip(texts, results))]
      return {"entities": out[0] if single else out}
    if body.text_b is None:
      raise ApiError(422, "text_b: required by a sentence-pair (NLI) model")
    for field in ("entities", "score_threshold", "min_probability"):
      if getattr(body, field) is not None:
        raise ApiError(422, "%s: only for a span (NER) model" % field)
    texts_b = _shaped(body.text_b, single, len(texts), "text_b")
    self.texts(texts_b, "text_b")
    results = await self.wait(svc.submit_pairs,
                              [service_lib.Pair(a, b) for a, b in zip(texts, texts_b)])
    labels = [label for label, _ in results]
    probabilities = [p for _, p in results]
    return {"label": labels[0] if single else labels,
            "probabilities": probabilities[0] if single else probabilities}

  def given_spans(self, spans, texts, single):
    """The request's spans as `inference.Span` lists, one per text, checked."""
    nested = bool(spans) and isinstance(spans[0], list)
    if single and nested:
      raise ApiError(422, "spans: one text takes a list of spans, not a list of lists")
    if not single and spans and not nested:
      raise ApiError(422, "spans: a list of texts takes a list of span lists, one per text")
    per_text = [spans] if single else _shaped(spans, False, len(texts), "spans")
    result = []
    for t, (text, group) in enumerate(zip(texts, per_text)):
      last_end = 0
      converted = []
      for i, s in enumerate(sorted(group, key=lambda s: s.start)):
        where = "spans%s[%d]" % ("" if single else "[%d]" % t, i)
        if not s.start < s.end <= len(text):
          raise ApiError(422, "%s: start %d, end %d: expected start < end <= %d (the text's "
                         "length)" % (where, s.start, s.end, len(text)))
        if s.start < last_end:
          raise ApiError(422, "%s: overlaps the span before it" % where)
        last_end = s.end
        converted.append(inference.Span(s.start, s.end, s.label,
                                        1.0 if s.score is None else s.score))
      result.append(converted)
    return result

  async def deidentify(self, body):
    svc = self.service
    if not svc.spans:
      raise ApiError(422, "de-identification needs a token-classification (PHI) model")
    texts, single = self.texts(body.text)
    ids = (_shaped(body.note_id, single, len(texts), "note_id") if body.note_id is not None
           else ["note-%d" % i for i in range(len(texts))])
    patients = (_shaped(body.patient, single, len(texts), "patient")
                if body.patient is not None else [None] * len(texts))
    try:
      anonymizer = svc.anonymizers.get(body.operators)
    except fileio.InputError as e:
      raise ApiError(422, str(e)) from None
    notes = [_note(i, t, p) for t, i, p in zip(texts, ids, patients)]
    if body.spans is not None:  # in the model's place, as deidentify.py --spans_file
      spans = self.given_spans(body.spans, texts, single)
    elif svc.uses_model:
      spans = await self.wait(svc.submit_spans, texts, body.min_probability)
    else:  # --recognizers=patterns
      spans = [[] for _ in texts]

    def step():  # patterns and the per-note step, in a thread: they take a while
      found = service_lib.phi_spans(notes, spans, svc.options.recognizers)
      return [svc.anonymizers.outputs(anonymizer, note, s).deidentified
              for note, s in zip(notes, found)]
    results = await concurrency.run_in_threadpool(step)
    new_texts = [r.text for r in results]
    items = [[item.to_json() for item in r.items] for r in results]
    return {"text": new_texts[0] if single else new_texts, "items": items[0] if single else items}

  def check_name(self, name):
    if name != self.options.model_name:
      raise ApiError(404, "Servable not found for request: Latest(%s)" % name)

  async def predict(self, body):
    svc = self.service
    try:
      feeds, form = tf_serving.parse_predict(
          body, list(inference.SERVING_INPUTS), self.options.max_texts,
          {"vocab_size": svc.vocab_size, "type_vocab_size": svc.type_vocab_size,
           "max_positions": svc.max_positions})
    except fileio.InputError as e:
      raise ApiError(400, str(e)) from None
    outputs = await self.wait(svc.submit_tensors, feeds, sorted(svc.model.outputs))
    return tf_serving.format_predict(outputs, form)


# --------------------------------------------------------------------------------------------------
# The app.

def create_app(service, options=None):
  """The FastAPI app serving `service` (a `service.Service`); closes it at shutdown."""
  options = options or ApiOptions()
  handlers = _Handlers(service, options)

  async def lifespan(_):
    yield
    # uvicorn has finished the requests in flight; the queue is empty, the worker stops.
    await concurrency.run_in_threadpool(service.close)

  app = fastapi.FastAPI(title="clinicalbert_tf serve.py", version="1",
                        description=__doc__.split("\n\n")[0], docs_url=None, redoc_url=None,
                        lifespan=lifespan)

  def correlate(request, correlation_id):
    if correlation_id:
      request.state.correlation_id = correlation_id
    return request.state.correlation_id

  @app.post("/analyze", response_model=AnalyzeResponse, response_model_exclude_none=True,
            responses=ERRORS)
  async def analyze(body: AnalyzeRequest, request: fastapi.Request):
    """Spans of entities per note (predict.py's), or an NLI model's label per pair."""
    result = await handlers.analyze(body)
    result["correlation_id"] = correlate(request, body.correlation_id)
    return result

  @app.post("/deidentify", response_model=DeidentifyResponse, responses=ERRORS)
  async def deidentify(body: DeidentifyRequest, request: fastapi.Request):
    """Every PHI span (predicted, or given) replaced per its label's operator."""
    result = await handlers.deidentify(body)
    result["correlation_id"] = correlate(request, body.correlation_id)
    return result

  @app.get("/health")
  async def health() -> Dict[str, str]:
    """Up (no token needed)."""
    return {"status": "ok"}

  @app.get("/supportedentities")
  async def supported_entities() -> List[str]:
    """The entity types the model tags (empty for an NLI model)."""
    return list(service.entity_types)

  @app.get("/v1/models/{name}", responses=ERRORS)
  async def model_status(name: str) -> Dict[str, Any]:
    """TF Serving: the model's version status."""
    handlers.check_name(name)
    return tf_serving.model_status(service.version)

  @app.get("/v1/models/{name}/metadata", responses=ERRORS)
  async def model_metadata(name: str) -> Dict[str, Any]:
    """TF Serving: the serving_default signature."""
    handlers.check_name(name)
    return tf_serving.metadata(name, service.version, handlers.signature)

  @app.post("/v1/models/{name}:predict", responses=ERRORS)
  async def predict(name: str, body: Dict[str, Any] = fastapi.Body(
      ..., examples=[{"instances": [{"input_ids": [2, 7, 3], "input_mask": [1, 1, 1],
                                     "segment_ids": [0, 0, 0]}]}])) -> Dict[str, Any]:
    """TF Serving: probabilities and label ids of token ids (row "instances" or columnar
    "inputs")."""
    handlers.check_name(name)
    return await handlers.predict(body)

  @app.exception_handler(ApiError)
  async def api_error(_, e):
    return error_response(e.status, e.message, e.headers)

  @app.exception_handler(fastapi_exceptions.RequestValidationError)
  async def validation_error(_, e):
    # Of a union's errors ("text": a string, or a list of strings), the one that got furthest.
    errors = sorted(e.errors(), key=lambda error: -len(error.get("loc", ())))
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
      return error_response(400, "malformed JSON: %s" % first.get("ctx", {}).get("error", ""))
    if first.get("type") == "extra_forbidden":
      return error_response(422, "%s: unknown field" % ".".join(
          str(x) for x in first.get("loc", ())[1:]))
    # pydantic names the member of a union it tried ("text.list[str]"): keep fields and indexes.
    where = ".".join(str(x) for x in first.get("loc", ())
                     if isinstance(x, int) or x in _FIELD_NAMES) or "body"
    return error_response(422, "%s: %s" % (where, first.get("msg", "invalid")))

  @app.exception_handler(starlette_exceptions.HTTPException)
  async def http_error(_, e):
    message = {404: "no such endpoint", 405: "method not allowed"}.get(e.status_code, e.detail)
    return error_response(e.status_code, message, getattr(e, "headers", None))

  @app.exception_handler(fileio.InputError)
  async def input_error(_, e):
    return error_response(422, str(e))

  @app.exception_handler(Exception)
  async def internal_error(_, e):
    # Starlette re-raises it after this answer; `Gate` logs its type only.
    return error_response(500, "internal error (%s)" % type(e).__name__)

  original_openapi = app.openapi

  def openapi():
    if app.openapi_schema is None:
      schema = original_openapi()
      if options.auth_token:
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        schema["paths"]["/health"]["get"]["security"] = []
      app.openapi_schema = schema
    return app.openapi_schema
  app.openapi = openapi
  return Gate(app, options)


def error_response(status, message, headers=None):
  """`{"error": message}` (one line) with `status`."""
  message = " ".join(str(message).split()) or "error"
  return responses.JSONResponse({"error": message}, status_code=status, headers=headers)


class Gate(object):
  """ASGI middleware around the app: correlation id, bearer token, body limit, access log.

  The body is read here (up to `max_body_bytes`, also when chunked) and handed on, so an oversized
  request is refused before any parsing. An exception the app lets through is answered with 500
  and logged by type only (its message could quote a note).
  """

  def __init__(self, app, options):
    self.app, self.options = app, options
    self._token = options.auth_token.encode("utf-8") if options.auth_token else None

  def __getattr__(self, name):
    return getattr(self.app, name)  # app.openapi() and the like, for tests and tools

  def authorized(self, headers):
    if self._token is None:
      return True
    given = headers.get(b"authorization", b"")
    scheme, _, token = given.partition(b" ")
    # compare_digest: the time taken does not tell how much of the token was right.
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token)

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    began = time.perf_counter()
    headers = dict(scope.get("headers") or [])
    state = scope.setdefault("state", {})
    given = headers.get(CORRELATION_HEADER.encode(), b"").decode("latin-1")
    state["correlation_id"] = (given if re.match(CORRELATION_PATTERN, given)
                               else uuid.uuid4().hex[:16])
    seen = {"status": None, "out": 0, "in": 0}

    async def tracked_send(message):
      if message["type"] == "http.response.start":
        seen["status"] = message["status"]
        message = dict(message)
        message["headers"] = list(message.get("headers") or []) + [
            (CORRELATION_HEADER.encode(), state["correlation_id"].encode("latin-1"))]
      elif message["type"] == "http.response.body":
        seen["out"] += len(message.get("body", b""))
      await send(message)

    async def answer(status, message, extra=None):
      await error_response(status, message, extra)(scope, receive, tracked_send)

    try:
      if scope["path"] not in OPEN_PATHS and not self.authorized(headers):
        await answer(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                     {"WWW-Authenticate": "Bearer"})
        return
      body, too_large = await self._read_body(receive, headers)
      seen["in"] = len(body)
      if too_large:
        await answer(413, "the body is larger than the limit of %d bytes (--max_body_bytes)" %
                     self.options.max_body_bytes)
        return
      replayed = [False]

      async def replay():
        if not replayed[0]:
          replayed[0] = True
          return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
      await self.app(scope, replay, tracked_send)
    except Exception as e:  # pylint: disable=broad-except
      logging.error("request failed with %s:\n%s", type(e).__name__,
                    "".join(traceback.format_tb(e.__traceback__)))
      if seen["status"] is None:
        await answer(500, "internal error (%s)" % type(e).__name__)
    finally:
      logging.info("access method=%s endpoint=%s status=%s request_bytes=%d response_bytes=%d "
                   "latency_ms=%.1f correlation_id=%s", scope.get("method", "-"),
                   self._endpoint(scope), seen["status"], seen["in"], seen["out"],
                   1000.0 * (time.perf_counter() - began), state["correlation_id"])

  def _endpoint(self, scope):
    """The route's path template ("/v1/models/{name}:predict"), never the raw path (a client
    could put anything there); "-" when no route matches."""
    route = scope.get("route")
    if route is None:
      for candidate in getattr(self.app, "routes", ()):
        match, _ = candidate.matches(scope)
        if match != routing.Match.NONE:
          route = candidate
          break
    return getattr(route, "path", "-")

  async def _read_body(self, receive, headers):
    """(body bytes, too large) — stops reading at the limit."""
    limit = self.options.max_body_bytes
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
      return b"", True
    chunks, size = [], 0
    while True:
      message = await receive()
      if message["type"] != "http.request":
        break
      chunk = message.get("body", b"")
      size += len(chunk)
      if size > limit:
        return b"", True
      chunks.append(chunk)
      if not message.get("more_body", False):
        break
    return b"".join(chunks), False
