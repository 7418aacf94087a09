"""What the server does with a loaded model, apart from HTTP: batched jobs, spans, replacement.

  service = Service(inference.load_model(model_dir), ServiceOptions(max_batch_size=64))
  future = service.submit_spans(["note one", "note two"])     # any thread
  spans = future.result()                                     # [[inference.Span], ...]
  service.close()

One `batching.Batcher` worker owns the model's session: every model call (spans of notes, NLI
pairs, raw tensors for the TF Serving endpoint) runs there. The notes of all requests in a batch go
through one `inference.Predictor` run (windows of all of them sorted by length, as `predict.py`
batches the notes of a file), so a note gets the spans `predict.py` gives it; each request gets back
the spans of its own notes only. Records and de-identified text come from the per-note step every
engine calls (`inference.note_outputs`, with an `anonymize.Anonymizer`). Nothing here logs note text.
"""

import collections
import dataclasses
import json
import os
import threading
import types
from typing import Optional

from absl import logging
import numpy as np

from clinicalbert_tf import anonymize
from clinicalbert_tf import checkpoints
from clinicalbert_tf import fileio
from clinicalbert_tf import inference
from clinicalbert_tf import surrogates as surrogates_lib
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.inference import deid
from clinicalbert_tf.inference import predictor as predictor_lib
from clinicalbert_tf.serving import batching

SPANS, PAIRS, TENSORS = "spans", "pairs", "tensors"


@dataclasses.dataclass
class ServiceOptions:
  """How the model is run and notes are de-identified (serve.py's flags of the same names)."""
  predict_batch_size: int = 32     # windows per session run
  max_batch_size: int = 64         # notes per model call (dynamic batching)
  max_batch_wait_ms: float = 5.0
  max_queue_notes: int = 1024
  min_probability: Optional[float] = None  # default of /analyze and /deidentify
  window_context: Optional[int] = None  # long lines' windows (predict.py's --window_context)
  # /deidentify, as deidentify.py's flags of the same names.
  replace: str = "placeholder"
  operators_file: Optional[str] = None
  mask_char: str = "*"
  random_seed: int = surrogates_lib.DEFAULT_SEED
  surrogate_locale: str = surrogates_lib.DEFAULT_LOCALE
  date_shift_days: int = anonymize.DEFAULT_DATE_SHIFT_DAYS
  recognizers: str = deid.DEFAULT_RECOGNIZERS
  secret: Optional[bytes] = None   # from --secret_file only, never from a request


@dataclasses.dataclass
class Pair:
  """An NLI request's pair, as `inference.predict_pairs` reads it."""
  text: str
  text_b: str


def is_span_model(model):
  """Whether the model's head labels words (spans out) rather than classifying pairs."""
  return model.head.output == heads.WORD_LABELS


def bert_config_values(files):
  """The model's bert_config.json as a dict (a checkpoint directory's, or a SavedModel's asset)."""
  path = files.bert_config_file
  if not path and files.saved_model_dir:
    path = os.path.join(files.saved_model_dir, "assets", checkpoints.BERT_CONFIG_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, TypeError, ValueError):
    return {}


def model_version(files):
  """The SavedModel's version (its directory's number), or 1 for a checkpoint directory."""
  name = os.path.basename(os.path.normpath(files.saved_model_dir or ""))
  return int(name) if name.isdigit() else 1


class Anonymizers(object):
  """`anonymize.Anonymizer`s by operator spec, made once each, used under one lock.

  The server's default comes from `--replace` / `--operators_file` as deidentify.py reads them
  (`deid.operators_of`); a request may name its own spec (`anonymize.parse_operators`: one
  operator, or LABEL:operator pairs, labels known PHI types or the model's). Faker's generator
  (the surrogate operator) is not thread-safe, hence the lock.
  """

  MAX_CACHED = 32
  _DEFAULT = object()

  def __init__(self, options, labels):
    self.options = options
    self.labels = list(labels)
    self._cache = collections.OrderedDict()
    self._lock = threading.Lock()
    self.default = self.get(None)
    keyed = self.default.operators.names() & {"surrogate", "shift", "hash"}
    if options.secret is None and keyed:
      logging.warning("no --secret_file: %s are seeded per note (--random_seed and the note's "
                      "id), so one patient's names and dates differ between requests and notes",
                      "/".join(sorted(keyed)))

  def get(self, operators):
    """The anonymizer of `operators` (None: the server's; a spec; or {label: operator}).

    Raises:
      InputError: an unknown operator or label, named.
    """
    if isinstance(operators, dict):
      operators = ",".join("%s:%s" % item for item in operators.items())
    key = self._DEFAULT if operators is None else operators
    with self._lock:
      if key in self._cache:
        self._cache.move_to_end(key)
        return self._cache[key]
    o = self.options
    parsed = (deid.operators_of(o, self.labels) if operators is None else
              anonymize.parse_operators(operators, self.labels, flag="operators"))
    anonymizer = anonymize.Anonymizer(parsed, secret=o.secret, random_seed=o.random_seed,
                                      locale=o.surrogate_locale, mask_char=o.mask_char,
                                      date_shift_days=o.date_shift_days, labels=self.labels)
    with self._lock:
      self._cache[key] = anonymizer
      while len(self._cache) > self.MAX_CACHED:
        self._cache.popitem(last=False)
    return anonymizer

  def outputs(self, anonymizer, note, spans):
    """The per-note step (`inference.note_outputs`) with `anonymizer`, under the lock."""
    with self._lock:
      return inference.note_outputs(note, spans, anonymizer=anonymizer)


class _Given(object):
  """Spans already known (the model's, or a request's), in the place of deid's predictor."""

  def __init__(self, spans):
    self.spans = spans

  def predict(self, notes):
    return zip(notes, self.spans)


def phi_spans(notes, spans, recognizers):
  """Each note's PHI spans as deidentify.py finds them (`deid.note_spans`): `spans` (the model's,
  or a request's) where `recognizers` has `model`, merged with the pattern recognizers' where it
  has `patterns`."""
  sources = types.SimpleNamespace(recognizers=recognizers, spans_file=None)
  return [found for _, found in deid.note_spans(notes, sources, _Given(spans))]


class Service(object):
  """A loaded model behind a batching worker, with the request-level steps of the endpoints."""

  def __init__(self, model, options=None):
    self.model = model
    self.options = options or ServiceOptions()
    self.spans = is_span_model(model)
    if self.spans:  # a bad --window_context stops serve.py at start, not each request
      predictor_lib.check_window_context(self.options.window_context, model.max_seq_length)
    self.entity_types = deid.model_types(model.label_list) if self.spans else []
    self.anonymizers = Anonymizers(self.options, self.entity_types) if self.spans else None
    self.uses_model = "model" in deid.parse_recognizers(self.options.recognizers)
    config = bert_config_values(model.files)
    self.vocab_size = int(config.get("vocab_size") or len(model.tokenizer.vocab))
    self.type_vocab_size = int(config.get("type_vocab_size") or 2)
    self.max_positions = int(config.get("max_position_embeddings") or model.max_seq_length)
    self.version = model_version(model.files)
    o = self.options
    self.batcher = batching.Batcher(self._run_batch, max_batch_size=o.max_batch_size,
                                    max_wait_ms=o.max_batch_wait_ms, max_queue=o.max_queue_notes)

  def close(self):
    """Finishes the queued jobs, stops the worker and closes the model's session."""
    self.batcher.close()
    self.model.close()

  # Submitting (any thread). Each returns a concurrent.futures.Future.

  def submit_spans(self, texts, min_probability=None):
    """Future of [[Span]] per text (the spans predict.py writes for it)."""
    if min_probability is None:
      min_probability = self.options.min_probability
    return self.batcher.submit(batching.Job(SPANS, list(texts), size=len(texts),
                                            option=min_probability))

  def submit_pairs(self, pairs):
    """Future of [(label, {label: probability})] per Pair."""
    return self.batcher.submit(batching.Job(PAIRS, list(pairs), size=len(pairs)))

  def submit_tensors(self, feeds, output_names):
    """Future of {output name: array} for int32 arrays {input name: [batch, length]}."""
    rows = len(next(iter(feeds.values())))
    return self.batcher.submit(batching.Job(TENSORS, (feeds, tuple(output_names)), size=rows))

  # The worker thread.

  def _run_batch(self, jobs):
    live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
    groups = {}
    for job in live:
      # Tensors of the same length (and outputs asked for) stack into one session run.
      option = job.option if job.kind != TENSORS else (
          next(iter(job.items[0].values())).shape[1], job.items[1])
      groups.setdefault((job.kind, option), []).append(job)
    for (kind, option), group in groups.items():
      try:
        if kind == SPANS:
          results = self._spans(group, option)
        elif kind == PAIRS:
          results = self._pairs(group)
        else:
          results = self._tensors(group)
      except Exception as e:  # pylint: disable=broad-except
        for job in group:
          job.future.set_exception(e)
        continue
      for job, result in zip(group, results):
        job.future.set_result(result)

  def _spans(self, jobs, min_probability):
    """One Predictor run over the notes of all `jobs`; [[spans per note] per job]."""
    items = [(j, i) for j, job in enumerate(jobs) for i in range(len(job.items))]
    results = [[None] * len(job.items) for job in jobs]
    predictor = inference.Predictor(self.model, self.options.predict_batch_size, min_probability,
                                    window_context=self.options.window_context)
    for (j, i), spans in predictor.predict(items, text_of=lambda it: jobs[it[0]].items[it[1]]):
      results[j][i] = spans
    return results

  def _pairs(self, jobs):
    pairs = [_Indexed(j, p) for j, job in enumerate(jobs) for p in job.items]
    results = [[] for _ in jobs]
    for pair, label, probs in inference.predict_pairs(self.model, pairs,
                                                      self.options.predict_batch_size):
      results[pair.j].append((label, probs))
    return results

  def _tensors(self, jobs):
    """One session run over the rows of all `jobs` (same length, same outputs); their slices."""
    model = self.model
    output_names = jobs[0].items[1]
    feed = {model.inputs[name]: np.concatenate([job.items[0][name] for job in jobs])
            for name in jobs[0].items[0]}
    values = model.session.run({n: model.outputs[n] for n in output_names}, feed)
    results, begin = [], 0
    for job in jobs:
      end = begin + job.size
      results.append({n: np.asarray(v[begin:end]) for n, v in values.items()})
      begin = end
    return results


class _Indexed(object):
  """A pair tagged with its request's index (predict_pairs yields the object it was given)."""

  def __init__(self, j, pair):
    self.j, self.text, self.text_b = j, pair.text, pair.text_b


def filter_spans(spans, entities=None, score_threshold=None):
  """The spans whose label is in `entities` (all when None) and whose score reaches the threshold."""
  return [s for s in spans if (entities is None or s.label in entities) and
          (score_threshold is None or s.score >= score_threshold)]
