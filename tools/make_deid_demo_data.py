"""Writes an invented de-identification set in the i2b2 2014 XML format (for the demo).

Example:
  python tools/make_deid_demo_data.py --output_dir=demo_output/deid_2014 --random_seed=2014

Templated clinical sentences with surrogate PHI of every category and gold offsets,
`<output_dir>/{train,dev,test}/<patient>-01.xml`, made from the seed
(`clinicalbert_tf/deid_demo.py`).
Never real data. `run_finetune.py --task_name=i2b2_2014 --data_dir=<output_dir>` reads it.
"""

from absl import flags
from absl import logging

from clinicalbert_tf import cli
from clinicalbert_tf import deid_demo
from clinicalbert_tf import surrogates

FLAGS = flags.FLAGS

flags.DEFINE_string("output_dir", None, "Directory for train/, dev/ and test/.")
flags.DEFINE_integer("random_seed", deid_demo.DEFAULT_SEED,
                     "Decides the sentences and the surrogates: the same seed, the same files.")
flags.DEFINE_string("surrogate_locale", surrogates.DEFAULT_LOCALE,
                    "The Faker locale of the surrogates (en_US, en_GB, ...).")


def main(unused_argv):
  cli.require_flags(FLAGS, ("output_dir",))
  surrogates.check_locale(FLAGS.surrogate_locale)
  counts = deid_demo.write_dataset(FLAGS.output_dir, seed=FLAGS.random_seed,
                                   locale=FLAGS.surrogate_locale)
  for split, (notes, sentences, spans) in counts.items():
    logging.info("wrote %s: %d notes, %d sentences, %d PHI spans", split, notes, sentences, spans)


if __name__ == "__main__":
  cli.run(main, uses_tensorflow=False)
