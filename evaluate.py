#!/usr/bin/env python3
"""Scores system spans against gold with the shared tasks' own definitions; writes a review page.

  evaluate.py --gold=testing-PHI-Gold-fixed/ --system=xml/ --scorer=i2b2_2014 \
    --output_file=report.txt --html_file=review.html
  evaluate.py --gold=i2b2_2010/test/ --system=con/ --scorer=i2b2_2010
  evaluate.py --gold=gold.jsonl --system=spans.jsonl --scorer=spans

--scorer=i2b2_2014: the official i2b2/n2c2 2014 de-identification scorer's report (Token, Strict,
Relaxed, HIPAA, Binary; micro and macro), its definitions reimplemented (clinicalbert_tf/evaluation/
i2b2_2014.py); --noofficial_quirks corrects what it gets wrong. --scorer=i2b2_2010: exact/inexact,
class/span concept matching. --scorer=spans: the SemEval-2013 schemes with F2 and binary token recall.
Gold and system: files or folders of i2b2 2014 XML, i2b2 2010 .con (+ .txt), brat .ann (+ .txt) or
predict.py's JSON lines (with --include_text for the page), notes paired by name.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf.evaluation import scoring

FLAGS = flags.FLAGS

flags.DEFINE_string("gold", None, "Gold file or folder.")
flags.DEFINE_string("system", None, "System file or folder (notes paired with the gold by name).")
flags.DEFINE_enum("scorer", "i2b2_2014", list(scoring.SCORERS), "Which definitions to score by.")
flags.DEFINE_string("output_file", None,
                    "Also write the report here, and its JSON twin (`<stem>.json`) beside it.")
flags.DEFINE_string("html_file", None,
                    "Write the review page (notes with gold and system spans: PHI, mode 0600) here.")
flags.DEFINE_bool("allow_missing", False,
                  "Count a note missing on one side as a note without spans there (else an error).")
flags.DEFINE_bool("official_quirks", True,
                  "i2b2_2014: reproduce the official script exactly, quirks included (see the "
                  "README's Differences); false: IDNUM is HIPAA, case-insensitive types, one-to-one "
                  "relaxed matching, macro averages over the notes where they are defined.")


def main(unused_argv):
  cli.require_flags(FLAGS, ("gold", "system"))
  for name in ("output_file", "html_file"):  # a wrong path fails now, not after the scoring
    if FLAGS[name].value:
      fileio.check_output_file(FLAGS[name].value, name)
  text, result, pairs = scoring.evaluate(FLAGS.gold, FLAGS.system, FLAGS.scorer,
                                         allow_missing=FLAGS.allow_missing,
                                         official=FLAGS.official_quirks)
  scoring.write_outputs(text, result, pairs, FLAGS.scorer, FLAGS.output_file, FLAGS.html_file)
  print(text, end="")


if __name__ == "__main__":
  cli.run(main, uses_tensorflow=False)
