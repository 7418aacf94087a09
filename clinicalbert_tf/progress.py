"""One progress reporter for every long job: counts, rate and ETA, at most every few seconds.

Every long-running step (reading notes, making pretraining instances, training, embedding
sentences) reports through `Progress`, so progress lines look alike everywhere and every duration
is printed by the same `format_duration`. Lines carry counts only, never text from the input.

  progress = Progress("notes", total=num_notes, every_seconds=30, label="format_notes: ")
  for i, note in enumerate(notes, 1):
    ...
    progress.maybe_log(i, detail="%d sentences" % num_sentences)
  progress.log(num_notes)  # a final line, whatever the interval

gives lines like
`format_notes: 1200 of 5000 notes (24.0%), 40.1 notes/s, ETA 1m35s; 9120 sentences`.
"""

import math
import time

from absl import logging


def format_duration(seconds):
  """`93784` -> `'1d02h03m'`, `3725` -> `'1h02m05s'`, `65` -> `'1m05s'`; None or inf -> `'?'`."""
  if seconds is None or not math.isfinite(seconds):
    return "?"
  seconds = int(round(max(0.0, seconds)))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  if days:
    return "%dd%02dh%02dm" % (days, hours, minutes)
  if hours:
    return "%dh%02dm%02ds" % (hours, minutes, secs)
  return "%dm%02ds" % (minutes, secs)


def eta_seconds(done, total, elapsed):
  """Seconds left at the mean rate so far (None when nothing is done yet or there is no total)."""
  if not total or done <= 0 or elapsed <= 0:
    return None
  return max(0, total - done) * elapsed / done


class Progress(object):
  """Rate-limited progress lines for one phase of a job.

  The rate is measured from `start()` (the constructor starts it), so set-up before the loop does
  not count if `start()` is called when the loop begins.
  """

  def __init__(self, unit, total=None, every_seconds=30.0, label="", clock=time.time):
    """Args:
      unit: what is counted, plural (`"notes"`, `"instances"`).
      total: how many there will be (None: no percentage and no ETA).
      every_seconds: the shortest interval between two `maybe_log` lines.
      label: a prefix for every line (e.g. `"shard 3: "`).
      clock: the time source (tests pass a fake one).
    """
    self.unit = unit
    self.total = total
    self.every_seconds = every_seconds
    self.label = label
    self._clock = clock
    self.start()

  def start(self):
    """(Re)starts the phase: the rate and ETA count from now."""
    self.start_time = self._clock()
    self._last_log = self.start_time

  def elapsed(self):
    """Seconds since `start()`."""
    return self._clock() - self.start_time

  def rate(self, done):
    """`done` per second since `start()` (0 before any time has passed)."""
    elapsed = self.elapsed()
    return done / elapsed if elapsed > 0 else 0.0

  def due(self):
    """Whether `every_seconds` have passed since the last line (does not log)."""
    return self._clock() - self._last_log >= self.every_seconds

  def format_line(self, done, detail="", total=None):
    """The progress line for `done` items (see the module docstring for its shape)."""
    total = self.total if total is None else total
    elapsed = self.elapsed()
    if total:
      line = "%s%d of %d %s (%.1f%%)" % (self.label, done, total, self.unit,
                                         100.0 * done / max(1, total))
    else:
      line = "%s%d %s" % (self.label, done, self.unit)
    line += ", %.4g %s/s" % (done / elapsed if elapsed > 0 else 0.0, self.unit)
    if total:
      line += ", ETA %s" % format_duration(eta_seconds(done, total, elapsed))
    if detail:
      line += "; " + detail
    return line

  def log(self, done, detail="", total=None):
    """Logs the progress line now, whatever the interval."""
    self._last_log = self._clock()
    logging.info("%s", self.format_line(done, detail, total))

  def maybe_log(self, done, detail="", total=None):
    """Logs the progress line if it is due. Returns whether it logged."""
    if not self.due():
      return False
    self.log(done, detail, total)
    return True
