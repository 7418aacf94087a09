"""deidentify.py --replace=surrogate below the script: the anonymizer hands predicted spans (labels,
note key) to `surrogates.Surrogates.replace_spans`; a bad locale is refused with the options.
(End to end: tests/predict_test.py; the surrogate rules themselves: tests/surrogates_test.py.)"""

from absl.testing import absltest

from clinicalbert_tf import fileio
from clinicalbert_tf import anonymize
from clinicalbert_tf import surrogates
from clinicalbert_tf.inference import job
from clinicalbert_tf.inference import text as text_lib
from tests import testutil


class SurrogateReplacementTest(testutil.TestCase):

  def test_spans_go_to_the_surrogate_module_with_their_labels_and_note_key(self):
    text = "Seen by Dr. Ines Aldana on 8/7/73 at Pinecrest Clinic; Aldana to call 617-555-0199."
    phi = [("Ines Aldana", "DOCTOR"), ("8/7/73", "DATE"), ("Pinecrest Clinic", "HOSPITAL"),
           ("Aldana", "DOCTOR"), ("617-555-0199", "PHONE")]
    spans, position = [], 0
    for phrase, label in phi:
      start = text.index(phrase, position)
      spans.append(text_lib.Span(start, start + len(phrase), label, 0.9))
      position = start + len(phrase)
    replacer = surrogates.Surrogates(locale="en_US", random_seed=12345)
    anonymizer = anonymize.Anonymizer("surrogate", random_seed=12345, locale="en_US")
    got = anonymizer.anonymize(text, spans[::-1], "n1").text
    want, _ = replacer.replace_spans(text, [(s.start, s.end, s.label) for s in spans], "n1")
    self.assertEqual(got, want)
    for phrase in ("Ines", "Aldana", "Pinecrest", "555"):
      self.assertNotIn(phrase, got)
    self.assertTrue(got.startswith("Seen by Dr. "))
    self.assertNotEqual(got, anonymizer.anonymize(text, spans, "n2").text)

  def test_unknown_locale_is_refused_with_the_options(self):
    options = job.JobOptions(input_file="x", output_dir="out", replace="surrogate",
                             surrogate_locale="xx_YY")
    with self.assertRaisesRegex(fileio.InputError, r"^--surrogate_locale=xx_YY: not a Faker"):
      job.check_options(options, pairs=False)
    options.surrogate_locale = "en_GB"
    job.check_options(options, pairs=False)


if __name__ == "__main__":
  absltest.main()
