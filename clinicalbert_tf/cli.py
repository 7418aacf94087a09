"""What every top-level script does the same way: set up TensorFlow, check flags, report errors.

A script defines its flags and a `main(argv)` that does the work, then ends with

  if __name__ == "__main__":
    cli.run(main)                      # a TensorFlow script
    cli.run(main, uses_tensorflow=False)   # format_notes.py, build_vocab.py, ...

`run` does, in this order: turn TF2 behaviour off (before absl parses flags, so every graph the
script builds is a TF1 graph), apply `--use_xla` from the command line when the script has that flag
(TF reads `TF_XLA_FLAGS` when absl initialises its devices, which is before `main`), make every
flag a clinicalbert_tf module defined for the script one of the script's key flags (absl's
`--help` lists only those: without this `predict.py --help` listed none), parse flags,
refuse positional arguments, set INFO logging (absl's and TensorFlow's own), and run `main` inside
`fileio.exit_on_input_error`, so bad input ends with one line `<script>.py: error: <what was
wrong>` and exit status 1. The same holds, as a safety net under the scripts' own checks, for an
`OSError` (a file that cannot be opened or written: its message names the file) and TensorFlow's
`DataLossError` / `PermissionDeniedError` (corrupt data, an unreadable path): their first line.

A flag the script does not define is ignored with one warning naming each such flag, as TF1's
`tf.app.run` ignored them (it parsed with `known_only=True`): the original command lines of
Google's and ClinicalBERT's scripts pass flags some of them never defined (`--keep_checkpoint_max`).
A bad value of a flag the script does define is still an error.

`config_from_flags(cls, flag_values, **overrides)` is the one path from parsed flags to the
configuration an entry point hands to the package: a dataclass (or namedtuple, or function)
filled by field name.

TensorFlow's C++ start-up lines are hidden by `clinicalbert_tf/__init__.py` (`TF_CPP_MIN_LOG_LEVEL`
set before TensorFlow is imported); the one deprecation warning `disable_v2_behavior` logs is
hidden here.
"""

import dataclasses
import inspect
import os
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


def config_from_flags(cls, flag_values, **overrides):
  """`cls` built from parsed flags: each field (or parameter) from the flag of its name.

  The one way an entry point turns its flags into the configuration it hands to the package.

  Args:
    cls: a dataclass (a field's `metadata={"flag": "other_name"}` reads that flag instead), a
      namedtuple class or a function (its keyword parameters). A field with no flag of its name
      (and no override) keeps its default.
    flag_values: absl's FLAGS (parsed), or any FlagValues.
    **overrides: values that win over the flags (what the script computed or renamed).

  Returns:
    `cls(**values)`.
  """
  if dataclasses.is_dataclass(cls):
    names = [(f.name, f.metadata.get("flag", f.name)) for f in dataclasses.fields(cls) if f.init]
  else:
    names = [(p.name, p.name) for p in inspect.signature(cls).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  values = {name: flag_values[flag].value for name, flag in names
            if name not in overrides and flag in flag_values}
  values.update(overrides)
  return cls(**values)


def adopt_package_flags(flag_values=flags.FLAGS, main_module=None):
  """Makes the flags clinicalbert_tf modules defined key flags of the main module.

  absl's `--help` lists the main module's key flags only: the flags the script file defines
  itself. Those `inference.define_flags`, `estimator.define_run_config_flags`,
  `runner.define_original_flags` ... define for it are registered under the package module, so
  without this `predict.py --help` listed no flag at all. absl's own flags stay under --helpfull.

  Args:
    flag_values: absl's FLAGS.
    main_module: the name absl files the script's own flags under (default `sys.argv[0]`, as
      absl's help does).
  """
  main_module = main_module or sys.argv[0]
  for module, module_flags in list(flag_values.flags_by_module_dict().items()):
    if module == "clinicalbert_tf" or module.startswith("clinicalbert_tf."):
      for flag in module_flags:
        flag_values.register_key_flag_for_module(main_module, flag)


def split_unknown_flags(remaining):
  """Splits what a `known_only` parse left over into unknown flags and positional arguments.

  Args:
    remaining: absl's `FLAGS(argv, known_only=True)` result (program name first).

  Returns:
    (argv: the program name and the positional arguments, the unknown flags' names as typed:
    `--name` or `--noname`). An unknown `--name value` (no `=`) takes the word after it along,
    as its value; after `--` everything is positional.
  """
  positional, names = [], []
  rest = remaining[1:]
  i = 0
  while i < len(rest):
    arg = rest[i]
    if arg == "--":
      positional.extend(rest[i + 1:])
      break
    if arg.startswith("-") and len(arg) > 1:
      names.append(arg.split("=", 1)[0])
      if "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
        i += 1
    else:
      positional.append(arg)
    i += 1
  return [remaining[0]] + positional, names


def _parse_flags_leniently(unknown):
  """A `flags_parser` for `app.run`: absl's, with `known_only=True`; unknown names go to `unknown`.

  A bad value of a defined flag is still absl's usual error (and exit status 1).
  """

  def parse(argv):
    try:
      remaining = flags.FLAGS(argv, known_only=True)
    except flags.Error:
      return app.parse_flags_with_usage(argv)  # reports the error as absl does, and exits
    argv, names = split_unknown_flags(remaining)
    unknown.extend(names)
    return argv

  return parse


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
    # disable_v2_behavior logs a deprecation warning (resource variables) at every start that
    # no user can act on; only that call runs at ERROR.
    tf.logging.set_verbosity(tf.logging.ERROR)
    tf.disable_v2_behavior()
    # TensorFlow's own messages (the Estimator's checkpoint and step lines) go through its logger.
    tf.logging.set_verbosity(tf.logging.INFO)
    if "use_xla" in flags.FLAGS:
      # Only the training scripts have the flag; the others need not import the Estimator.
      from clinicalbert_tf import estimator  # pylint: disable=g-import-not-at-top
      estimator.enable_xla_from_argv(sys.argv)

  # A file that cannot be opened, read or written, or data TensorFlow finds corrupt, is the
  # user's to fix: one line naming it (OSError's message names the file), never a traceback.
  environment_errors = (OSError,)
  if uses_tensorflow:
    environment_errors += (tf.errors.DataLossError, tf.errors.PermissionDeniedError)

  adopt_package_flags()
  unknown = []

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    logging.set_verbosity(logging.INFO)
    if unknown:
      # One line naming each: a mistyped flag ignored in silence is a setting lost in silence.
      logging.warning("ignoring flags %s does not define: %s", os.path.basename(argv[0]),
                      ", ".join(unknown))
    with fileio.exit_on_input_error(also=tuple(errors) + environment_errors):
      return main(argv)

  app.run(wrapped, flags_parser=_parse_flags_leniently(unknown))
