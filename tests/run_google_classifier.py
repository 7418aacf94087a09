"""Runs Google's `run_classifier.py` (bert-tensorflow 1.0.4) unmodified, for tests.

  python -m tests.run_google_classifier --task_name=MRPC --data_dir=... [Google's flags]

`tests.oracle` is imported first: it installs the `tensorflow.contrib.layers.layer_norm` stand-in
and turns v2 behaviour off, which is all Google's script needs on TF 2.15. Then Google's `main`
runs under absl with Google's required flags, exactly as `python run_classifier.py` would.
"""

from tests import oracle  # pylint: disable=unused-import  (stand-in + v2 behaviour off)

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from bert import run_classifier as google_run_classifier

if __name__ == "__main__":
  for name in ("data_dir", "task_name", "vocab_file", "bert_config_file", "output_dir"):
    flags.mark_flag_as_required(name)
  app.run(google_run_classifier.main)
