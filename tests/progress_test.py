"""Tests for clinicalbert_tf/progress.py: durations, and progress lines with a fake clock."""

from absl.testing import absltest

from clinicalbert_tf import progress
from tests import testutil


class FakeClock(object):
  """A clock that moves only when told to."""

  def __init__(self, now=1000.0):
    self.now = now

  def __call__(self):
    return self.now

  def advance(self, seconds):
    self.now += seconds


class FormatDurationTest(testutil.TestCase):

  def test_format(self):
    self.assertEqual(progress.format_duration(65), "1m05s")
    self.assertEqual(progress.format_duration(3725), "1h02m05s")
    self.assertEqual(progress.format_duration(93784), "1d02h03m")
    self.assertEqual(progress.format_duration(None), "?")

  def test_edges(self):
    self.assertEqual(progress.format_duration(0), "0m00s")
    self.assertEqual(progress.format_duration(59.6), "1m00s")  # rounded, not truncated
    self.assertEqual(progress.format_duration(-5), "0m00s")
    self.assertEqual(progress.format_duration(float("inf")), "?")
    self.assertEqual(progress.format_duration(float("nan")), "?")
    self.assertEqual(progress.format_duration(86400), "1d00h00m")


class EtaTest(testutil.TestCase):

  def test_eta_seconds(self):
    self.assertEqual(progress.eta_seconds(25, 100, 10.0), 30.0)
    self.assertEqual(progress.eta_seconds(100, 100, 10.0), 0.0)
    self.assertEqual(progress.eta_seconds(120, 100, 10.0), 0.0)  # overshoot: never negative
    self.assertIsNone(progress.eta_seconds(0, 100, 10.0))
    self.assertIsNone(progress.eta_seconds(10, None, 10.0))
    self.assertIsNone(progress.eta_seconds(10, 100, 0.0))


class ProgressTest(testutil.TestCase):

  def test_line_with_total_rate_and_eta(self):
    clock = FakeClock()
    p = progress.Progress("notes", total=5000, every_seconds=30, label="format_notes: ",
                          clock=clock)
    clock.advance(30)
    self.assertEqual(p.rate(1200), 40.0)
    self.assertEqual(p.format_line(1200, detail="9120 sentences"),
                     "format_notes: 1200 of 5000 notes (24.0%), 40 notes/s, ETA 1m35s; "
                     "9120 sentences")

  def test_line_without_total(self):
    clock = FakeClock()
    p = progress.Progress("instances", clock=clock)
    clock.advance(4)
    self.assertEqual(p.format_line(10), "10 instances, 2.5 instances/s")
    # A total given at the call overrides the missing one.
    self.assertEqual(p.format_line(10, total=20), "10 of 20 instances (50.0%), 2.5 instances/s, "
                     "ETA 0m04s")

  def test_no_time_passed(self):
    clock = FakeClock()
    p = progress.Progress("steps", total=10, clock=clock)
    self.assertEqual(p.rate(3), 0.0)
    self.assertEqual(p.format_line(3), "3 of 10 steps (30.0%), 0 steps/s, ETA ?")

  def test_start_restarts_the_rate(self):
    clock = FakeClock()
    p = progress.Progress("steps", clock=clock)
    clock.advance(100)  # set-up before the loop
    p.start()
    clock.advance(2)
    self.assertEqual(p.elapsed(), 2)
    self.assertEqual(p.rate(10), 5.0)

  def test_due_and_maybe_log(self):
    clock = FakeClock()
    p = progress.Progress("lines", total=100, every_seconds=10, clock=clock)
    self.assertFalse(p.due())
    with self.assertNoLogs("absl", level="INFO"):
      self.assertFalse(p.maybe_log(1))
    clock.advance(10)
    self.assertTrue(p.due())
    with self.assertLogs("absl", level="INFO") as logs:
      self.assertTrue(p.maybe_log(50))
    self.assertEqual([r.getMessage() for r in logs.records],
                     ["50 of 100 lines (50.0%), 5 lines/s, ETA 0m10s"])
    # The interval counts from the last line.
    self.assertFalse(p.due())
    clock.advance(5)
    self.assertFalse(p.maybe_log(60))
    # `log` writes whatever the interval, and restarts it.
    with self.assertLogs("absl", level="INFO") as logs:
      p.log(75, detail="final")
    self.assertEqual([r.getMessage() for r in logs.records],
                     ["75 of 100 lines (75.0%), 5 lines/s, ETA 0m05s; final"])
    clock.advance(9)
    self.assertFalse(p.due())
    clock.advance(1)
    self.assertTrue(p.due())


if __name__ == "__main__":
  absltest.main()
