"""Tests for clinicalbert_tf/cli.py: required flags, flags to a config, package flags as key flags,
one-line errors, positional args, --use_xla."""

import collections
import dataclasses
import os
import subprocess
import sys
import textwrap

from absl import flags
from absl.testing import absltest

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from tests import testutil

# A script as every top-level script is written: flags, a main, `cli.run(main, ...)`.
_SCRIPT = textwrap.dedent("""\
    import os
    from absl import flags
    from absl import logging
    from clinicalbert_tf import cli
    from clinicalbert_tf import fileio

    flags.DEFINE_string("name", None, "Required.")
    flags.DEFINE_integer("count", 1, "Must be positive.")
    flags.DEFINE_bool("fail_other", False, "Raise an error type passed in `errors`.")
    %(xla_flag)s
    FLAGS = flags.FLAGS

    class OtherError(Exception):
      pass

    def main(argv):
      cli.require_flags(FLAGS, ("name",))
      if FLAGS.count < 1:
        raise fileio.InputError("--count=%%d: expected a positive integer" %% FLAGS.count)
      if FLAGS.fail_other:
        raise OtherError("the other error")
      logging.info("hello %%s", FLAGS.name)
      print("TF_XLA_FLAGS=%%s" %% os.environ.get("TF_XLA_FLAGS", ""))

    if __name__ == "__main__":
      cli.run(main, uses_tensorflow=%(uses_tensorflow)s, errors=(OtherError,))
    """)


class RequireFlagsTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.flag_values = flags.FlagValues()
    flags.DEFINE_string("a", None, "", flag_values=self.flag_values)
    flags.DEFINE_string("b", "", "", flag_values=self.flag_values)
    flags.DEFINE_integer("c", 0, "", flag_values=self.flag_values)
    self.flag_values(["prog"])

  def test_first_missing_flag_is_named(self):
    with self.assertRaisesRegex(fileio.InputError, r"^--a is required$"):
      cli.require_flags(self.flag_values, ("a", "b"))
    self.flag_values.a = "x"
    with self.assertRaisesRegex(fileio.InputError, r"^--b is required to train$"):
      cli.require_flags(self.flag_values, ("a", "b"), when=" to train")
    self.flag_values.b = "y"
    cli.require_flags(self.flag_values, ("a", "b"))

  def test_zero_and_false_are_values(self):
    cli.require_flags(self.flag_values, ("c",))


@dataclasses.dataclass
class _Config:
  name: str
  count: int = 1
  renamed: float = dataclasses.field(default=0.5, metadata={"flag": "other_name"})
  no_flag: str = "kept"


class ConfigFromFlagsTest(testutil.TestCase):

  def setUp(self):
    super().setUp()
    self.flag_values = flags.FlagValues()
    flags.DEFINE_string("name", "n", "", flag_values=self.flag_values)
    flags.DEFINE_integer("count", 3, "", flag_values=self.flag_values)
    flags.DEFINE_float("other_name", 2.0, "", flag_values=self.flag_values)
    flags.DEFINE_float("renamed", 9.0, "A flag of the field's own name, not read.",
                       flag_values=self.flag_values)
    flags.DEFINE_bool("unused", True, "", flag_values=self.flag_values)
    self.flag_values(["prog", "--name=x", "--other_name=0.25"])

  def test_dataclass_by_field_name_with_renames(self):
    self.assertEqual(cli.config_from_flags(_Config, self.flag_values),
                     _Config(name="x", count=3, renamed=0.25, no_flag="kept"))

  def test_overrides_win(self):
    self.assertEqual(cli.config_from_flags(_Config, self.flag_values, count=7, no_flag="o"),
                     _Config(name="x", count=7, renamed=0.25, no_flag="o"))

  def test_namedtuple_and_function(self):
    pair = collections.namedtuple("Pair", ["name", "count"])
    self.assertEqual(cli.config_from_flags(pair, self.flag_values), ("x", 3))

    def run(name, count=0, seed=5, *args, **kwargs):
      return name, count, seed, args, kwargs

    self.assertEqual(cli.config_from_flags(run, self.flag_values, seed=6), ("x", 3, 6, (), {}))

  def test_a_field_without_flag_or_default_is_a_programming_error(self):

    def run(missing, name):
      return missing, name

    with self.assertRaises(TypeError):
      cli.config_from_flags(run, self.flag_values)


class AdoptPackageFlagsTest(testutil.TestCase):

  def test_package_flags_become_key_flags_of_the_main_module(self):
    flag_values = flags.FlagValues()
    # As a package module's define_* function registers them: under that module's name.
    for module, name in (("clinicalbert_tf.estimator", "use_xla"), ("absl.logging", "verbose"),
                         ("clinicalbert_tflike", "other"), ("script.py", "own")):
      flags.DEFINE_bool(name, False, "", flag_values=flag_values, module_name=module)
    cli.adopt_package_flags(flag_values, main_module="script.py")
    key = {f.name for f in flag_values.get_key_flags_for_module("script.py")}
    self.assertEqual(key, {"use_xla", "own"})


class SplitUnknownFlagsTest(testutil.TestCase):

  def test_flags_and_positional_arguments(self):
    argv, names = cli.split_unknown_flags(
        ["prog", "--keep_checkpoint_max=1", "--nofoo", "--bar", "value", "stray", "--", "--x"])
    self.assertEqual(names, ["--keep_checkpoint_max", "--nofoo", "--bar"])
    # `--bar value` took its value along; after `--` everything is positional.
    self.assertEqual(argv, ["prog", "stray", "--x"])

  def test_nothing_unknown(self):
    self.assertEqual(cli.split_unknown_flags(["prog"]), (["prog"], []))


class RunTest(testutil.TestCase):

  def _script(self, name, uses_tensorflow=False, xla_flag=False):
    path = os.path.join(self.temp_dir(), name)
    with open(path, "w", encoding="utf-8") as f:
      f.write(_SCRIPT % dict(
          uses_tensorflow=uses_tensorflow,
          xla_flag='flags.DEFINE_bool("use_xla", False, "XLA.")' if xla_flag else ""))
    return path

  def _run(self, script, *args, env=None):
    env = testutil.script_env(env)
    env.pop("TF_XLA_FLAGS", None)
    return subprocess.run([sys.executable, script] + list(args), capture_output=True, text=True,
                          env=env, check=False, timeout=300)

  def _assert_one_line_error(self, proc, script, expected):
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if ": error: " in l]
    self.assertEqual(lines, ["%s: error: %s" % (os.path.basename(script), expected)],
                     proc.stderr)

  def test_ok(self):
    script = self._script("ok.py")
    proc = self._run(script, "--name=x")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("hello x", proc.stderr)  # INFO logging is on

  def test_bad_flag_value_is_one_line(self):
    script = self._script("bad_value.py")
    self._assert_one_line_error(self._run(script, "--name=x", "--count=0"), script,
                                "--count=0: expected a positive integer")

  def test_missing_required_flag_is_one_line(self):
    script = self._script("missing.py")
    self._assert_one_line_error(self._run(script), script, "--name is required")

  def test_errors_argument(self):
    script = self._script("other.py")
    self._assert_one_line_error(self._run(script, "--name=x", "--fail_other"), script,
                                "the other error")

  def test_positional_arguments_are_refused(self):
    script = self._script("positional.py")
    proc = self._run(script, "--name=x", "stray", "args")
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertIn("unexpected arguments: stray args", proc.stderr)
    self.assertNotIn("TF_XLA_FLAGS=", proc.stdout)  # main did not run

  def test_unknown_flags_are_warned_about_by_name_and_the_run_goes_on(self):
    script = self._script("unknown.py")
    proc = self._run(script, "--name=x", "--keep_checkpoint_max=1", "--cross_val_sz", "10",
                     "--nodo_magic")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("hello x", proc.stderr)
    warnings = [l for l in proc.stderr.splitlines() if "does not define" in l]
    self.assertLen(warnings, 1, proc.stderr)
    self.assertIn("ignoring flags unknown.py does not define: --keep_checkpoint_max, "
                  "--cross_val_sz, --nodo_magic", warnings[0])
    # Without unknown flags, no warning.
    self.assertNotIn("does not define", self._run(script, "--name=x").stderr)

  def test_bad_value_of_a_known_flag_is_still_an_error(self):
    script = self._script("typo_value.py")
    proc = self._run(script, "--name=x", "--count=three", "--unknown_too=1")
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertIn("--count=three", proc.stderr)
    self.assertNotIn("hello x", proc.stderr)  # main did not run
    # A value for a boolean flag is a bad value too.
    proc = self._run(script, "--name=x", "--fail_other=maybe")
    self.assertEqual(proc.returncode, 1, proc.stderr)
    self.assertNotIn("hello x", proc.stderr)

  def test_use_xla_is_set_before_main(self):
    # TensorFlow reads TF_XLA_FLAGS when absl initialises its devices, before `main`: cli.run
    # must have set it by then, from the command line.
    xla = self._script("xla.py", uses_tensorflow=True, xla_flag=True)
    # (script, its flags, what TF_XLA_FLAGS is in `main`); a script without the flag leaves the
    # environment alone.
    cases = [(xla, ["--use_xla"], "--tf_xla_cpu_global_jit"),
             (xla, ["--use_xla=false"], ""),
             (self._script("no_xla.py", uses_tensorflow=True), [], "")]
    for script, args, expected in cases:
      proc = self._run(script, "--name=x", *args)
      self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
      self.assertIn("TF_XLA_FLAGS=%s\n" % expected, proc.stdout, args)


if __name__ == "__main__":
  absltest.main()
