"""The span scorer's four SemEval-2013 schemes against nervaluate (test-only oracle), with Hypothesis.

nervaluate takes inclusive ends; ours are exclusive, so each span goes in as (start, end - 1). Spans
are kept shorter than 100 characters: nervaluate also requires the overlap to be at least 1% of the
gold span, which any overlap is then.
"""

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st
import nervaluate

from clinicalbert_tf.evaluation import readers
from clinicalbert_tf.evaluation import spans
from tests import testutil

LABELS = ("NAME", "DATE", "ID")
# nervaluate's scheme names for ours.
ORACLE_NAMES = {"strict": "strict", "exact": "exact", "partial": "partial", "type": "ent_type"}

span_strategy = st.tuples(st.integers(0, 60), st.integers(1, 12), st.sampled_from(LABELS)).map(
    lambda t: (t[0], t[0] + t[1], t[2]))
note_strategy = st.tuples(st.lists(span_strategy, max_size=6), st.lists(span_strategy, max_size=6))


def to_note(note_id, items):
  return readers.Note(note_id, None, [readers.Span(s, e, t) for s, e, t in items], note_id)


def oracle(notes):
  """nervaluate's overall and per-type results, spans in the order our scorer pairs them."""
  true = [[{"label": t, "start": s, "end": e - 1} for s, e, t in sorted(g)] for g, _ in notes]
  pred = [[{"label": t, "start": s, "end": e - 1} for s, e, t in sorted(p)] for _, p in notes]
  return nervaluate.Evaluator(true, pred, tags=list(LABELS), loader="dict").evaluate()


def check_equal(test, ours, theirs, where):
  for field in ("correct", "incorrect", "partial", "missed", "spurious"):
    test.assertEqual(ours[field], getattr(theirs, field), "%s %s" % (where, field))
  test.assertAlmostEqual(ours["precision"], theirs.precision, places=12, msg=where)
  test.assertAlmostEqual(ours["recall"], theirs.recall, places=12, msg=where)
  test.assertAlmostEqual(ours["f1"], theirs.f1, places=12, msg=where)


class SpansTest(testutil.TestCase):

  @hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
  @hypothesis.given(st.lists(note_strategy, min_size=1, max_size=4))
  def test_equals_nervaluate(self, notes):
    pairs = [(to_note("n%d" % i, g), to_note("n%d" % i, p)) for i, (g, p) in enumerate(notes)]
    ours = spans.score(pairs)
    theirs = oracle(notes)
    for scheme, name in ORACLE_NAMES.items():
      check_equal(self, ours["overall"][scheme], theirs["overall"][name], scheme)
      for label in LABELS:
        if label in ours["per_type"]:
          check_equal(self, ours["per_type"][label][scheme], theirs["entities"][label][name],
                      "%s %s" % (label, scheme))

  def test_f2_and_binary_token_recall(self):
    text = "Jane Roe seen 01/02/2090 at Mercy General"
    gold = [(0, 8, "PATIENT"), (14, 24, "DATE"), (28, 41, "HOSPITAL")]
    system = [(0, 4, "PATIENT"), (14, 24, "DATE"), (20, 41, "HOSPITAL")]
    g, s = to_note("n", gold), to_note("n", system)
    g.text = s.text = text
    result = spans.score([(g, s)])
    # Tokens: Jane Roe | 01 02 2090 | Mercy General = 7; system covers Jane, 01 02 2090, Mercy
    # General (20-41 holds 2090, Mercy, General): 6.
    self.assertEqual(result["binary_tokens"], [6, 7])
    strict = result["overall"]["strict"]
    # Strict: DATE correct; Jane (overlaps Jane Roe) incorrect; 20-41 overlaps the DATE (taken)
    # and then HOSPITAL: incorrect. P = R = 1/3; F2 = 5PR / (4P + R) = 1/3.
    self.assertEqual((strict["correct"], strict["incorrect"], strict["missed"],
                      strict["spurious"]), (1, 2, 0, 0))
    self.assertAlmostEqual(strict["f2"], 1 / 3)
    partial = result["overall"]["partial"]
    # Partial: (1 + 0.5 * 2) / 3 both ways.
    self.assertAlmostEqual(partial["precision"], 2 / 3)
    # F2 weighs recall: P = 1/2, R = 1/4 -> 5 * 1/8 / (2 + 1/4) = 0.2778.
    g2 = to_note("m", [(0, 1, "A"), (2, 3, "A"), (4, 5, "A"), (6, 7, "A")])
    s2 = to_note("m", [(0, 1, "A"), (8, 9, "A")])
    self.assertAlmostEqual(spans.score([(g2, s2)])["overall"]["strict"]["f2"],
                           5 * (1 / 2) * (1 / 4) / (4 * (1 / 2) + 1 / 4))


if __name__ == "__main__":
  absltest.main()
