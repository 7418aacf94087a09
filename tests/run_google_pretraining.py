"""Runs Google's `run_pretraining.py` (bert-tensorflow 1.0.4) unmodified, for tests and benchmarks.

  python -m tests.run_google_pretraining --bert_config_file=... --input_file=... --output_dir=... \\
      [Google's flags]

`tests.oracle` is imported first: it installs the `tensorflow.contrib.layers.layer_norm` stand-in
and turns v2 behaviour off, which is all Google's script needs on TF 2.15. Then Google's `main`
runs under `absl.app` with Google's flags, exactly as `python run_pretraining.py` would.

With the environment variable `GOOGLE_PRETRAINING_NO_SHUFFLE=1`, `tf.data` shuffling is an
identity for this process (Google's record shuffle buffer of 100 is unseeded, so otherwise two runs
never see the same batches); the code of Google's script is not changed.
"""

import os

from tests import oracle  # pylint: disable=unused-import  (stand-in + v2 behaviour off)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from bert import run_pretraining as google_run_pretraining
from tensorflow.python.data.ops import dataset_ops


def _disable_shuffle():
  def no_shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=None, name=None):  # pylint: disable=unused-argument
    return self
  dataset_ops.DatasetV2.shuffle = no_shuffle
  dataset_ops.DatasetV1.shuffle = no_shuffle


if __name__ == "__main__":
  if os.environ.get("GOOGLE_PRETRAINING_NO_SHUFFLE") == "1":
    _disable_shuffle()
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("output_dir")
  app.run(google_run_pretraining.main)
