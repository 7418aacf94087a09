"""What every top-level script does the same way: set up TensorFlow, check flags, report errors.

A script defines its flags and a `main(argv)` that does the work, then ends with

  if __name__ == "__main__":
    cli.run(main)                      # a TensorFlow script
    cli.run(main, uses_tensorflow=False)   # format_notes.py, build_vocab.py, ...

`run` does, in this order: turn TF2 behaviour off (before absl parses flags, so every graph the
script builds is a TF1 graph), apply `--use_xla` from the command line when the script has that flag
(TF reads `TF_XLA_FLAGS` when absl initialises its devices, which is before `main`), parse flags,
refuse positional arguments, set INFO logging (absl's and TensorFlow's own), and run `main` inside
`fileio.exit_on_input_error`, so bad input ends with one line `<script>.py: error: <what was
wrong>` and exit status 1.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from clinicalbert_tf import fileio


def require_flags(flag_values, names, when=""):
  """Raises InputError naming the first flag of `names` that has no value.

  Args:
    flag_values: absl's FLAGS (or anything indexable by flag name with `.value`).
    names: the required flag names, in the order they should be reported.
    when: an optional reason appended to the message (e.g. `" to train or evaluate"`).
  """
  for name in names:
    value = flag_values[name].value
    if value is None or value == "":
      raise fileio.InputError("--%s is required%s" % (name, when))


def run(main, uses_tensorflow=True, errors=()):
  """Runs a script's `main(argv)` with the set-up every script shares (see the module docstring).

  Args:
    main: the script's main; it receives absl's argv.
    uses_tensorflow: set TensorFlow up first (False: the script never imports it, and start-up
      stays fast).
    errors: exception types reported as one line, like `fileio.InputError` (e.g. a NaN loss).
  """
  if uses_tensorflow:
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    tf.disable_v2_behavior()
    # TensorFlow's own messages (the Estimator's checkpoint and step lines) go through its logger.
    tf.logging.set_verbosity(tf.logging.INFO)
    if "use_xla" in flags.FLAGS:
      # Only the training scripts have the flag; the others need not import the Estimator.
      from clinicalbert_tf import estimator  # pylint: disable=g-import-not-at-top
      estimator.enable_xla_from_argv(sys.argv)

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    logging.set_verbosity(logging.INFO)
    with fileio.exit_on_input_error(also=tuple(errors)):
      return main(argv)

  app.run(wrapped)
