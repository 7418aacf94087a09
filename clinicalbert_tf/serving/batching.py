"""Dynamic batching: requests from many threads, one worker thread that owns the model.

  batcher = Batcher(run_batch, max_batch_size=64, max_wait_ms=5, max_queue=1024)
  future = batcher.submit(Job("spans", texts, size=len(texts)))   # from any thread
  spans = future.result()
  batcher.close()                                                  # finishes what was queued

The worker takes the oldest job, then keeps taking jobs for up to `max_wait_ms` (or until the
batch holds `max_batch_size` items), and calls `run_batch(jobs)` once with all of them: that one
call is where a model runs the notes of every request together. Each job has its own
`concurrent.futures.Future`; `run_batch` sets the result of each job from that job's items only,
so requests never see each other's data. A job whose caller gave up (its future cancelled) before
its batch started is skipped. Nothing here knows about models or HTTP.
"""

import collections
import concurrent.futures
import dataclasses
import queue
import threading
import time
import traceback
from typing import Any

from absl import logging


class Overloaded(Exception):
  """The queue holds `max_queue` items already: the caller should retry later."""


class Closed(Exception):
  """The batcher is closing (the server is draining) and takes no new work."""


@dataclasses.dataclass(eq=False)
class Job:
  """One request's work: `kind` and `option` say how `run_batch` treats `items`.

  Attributes:
    kind: what the items are (the service's choice: "spans", "pairs", "tensors").
    items: the request's inputs (texts, pairs, arrays).
    size: how many notes the job counts for, against the batch and queue limits.
    option: a setting the job shares with the jobs it may be batched with (e.g. min_probability).
    future: where its result (or exception) goes.
  """
  kind: str
  items: Any
  size: int = 1
  option: Any = None
  future: concurrent.futures.Future = dataclasses.field(
      default_factory=concurrent.futures.Future)


_STOP = object()


class Batcher(object):
  """Collects jobs from any thread and runs them in batches on one worker thread."""

  def __init__(self, run_batch, max_batch_size=64, max_wait_ms=5.0, max_queue=1024,
               name="model-worker"):
    """Args:
      run_batch: called on the worker thread with a list of jobs; sets every job's future (an
        exception it raises is set on the futures it left unset, and the worker goes on).
      max_batch_size: items (notes) per batch; a single larger job still runs, alone.
      max_wait_ms: how long the worker waits for more jobs after the first one of a batch.
      max_queue: items waiting at most; `submit` raises Overloaded beyond it.
    """
    if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
      raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms >= 0")
    self.run_batch = run_batch
    self.max_batch_size = max_batch_size
    self.max_wait = max_wait_ms / 1000.0
    self.max_queue = max_queue
    self._queue = queue.Queue()
    self._lock = threading.Lock()
    self._waiting = 0  # items submitted and not yet taken into a batch
    self._closed = False
    self.batches = collections.Counter()  # "batches", "jobs", "items": for tests and logs
    self._thread = threading.Thread(target=self._work, name=name, daemon=True)
    self._thread.start()

  @property
  def waiting(self):
    """Items queued and not yet in a batch."""
    return self._waiting

  def submit(self, job):
    """Queues `job` and returns its future.

    Raises:
      Overloaded: the queue is full (with this job it would hold more than `max_queue` items;
        a job larger than `max_queue` is taken when the queue is empty).
      Closed: `close` was called.
    """
    with self._lock:
      if self._closed:
        raise Closed("the server is shutting down")
      if self._waiting and self._waiting + job.size > self.max_queue:
        raise Overloaded("%d notes are waiting (the queue holds %d)" % (self._waiting,
                                                                         self.max_queue))
      self._waiting += job.size
      self._queue.put(job)
    return job.future

  def close(self, timeout=None):
    """Takes no new jobs, runs those queued, and stops the worker. Returns when it has stopped."""
    with self._lock:
      if not self._closed:
        self._closed = True
        self._queue.put(_STOP)
    self._thread.join(timeout)

  def _take(self, block_until):
    """The next job, or None when none comes before `block_until` (None: wait for ever)."""
    timeout = None if block_until is None else max(0.0, block_until - time.monotonic())
    try:
      job = self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
    except queue.Empty:
      return None
    if job is not _STOP:
      with self._lock:
        self._waiting -= job.size
    return job

  def _work(self):
    stopping = False
    while not stopping:
      first = self._take(None)
      if first is _STOP:
        break
      batch, size = [first], first.size
      deadline = time.monotonic() + self.max_wait
      while size < self.max_batch_size:
        job = self._take(deadline)
        if job is None:
          break
        if job is _STOP:
          stopping = True  # run this batch, then stop: everything queued before close() runs
          break
        batch.append(job)
        size += job.size
      self._run(batch)

  def _run(self, batch):
    self.batches.update(batches=1, jobs=len(batch), items=sum(j.size for j in batch))
    try:
      self.run_batch(batch)
    except BaseException as e:  # pylint: disable=broad-except
      # The worker must outlive any one batch. Only the type is logged: a message could quote
      # a note.
      logging.error("a batch of %d requests failed with %s:\n%s", len(batch), type(e).__name__,
                    "".join(traceback.format_tb(e.__traceback__)))
      for job in batch:
        if not job.future.done():
          try:
            job.future.set_exception(e)
          except concurrent.futures.InvalidStateError:
            pass
