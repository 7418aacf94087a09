"""Every top-level script as a new user first meets it: `--help` and a quiet start.

`python <script> --help` must list every flag the script takes, including those the package's
modules define for it (`inference.define_flags`, `estimator.define_run_config_flags`, ...), which
absl lists only under --helpfull unless they are key flags of the main module (`cli.run` makes
them so). The expected names come from absl's registry in the same process, not from the help
text: every flag defined, less absl's own (`--logtostderr`, `--flagfile`, ...) and those
TensorFlow's TPU internals define on import (`--hbm_oom_exit`, ...), which no script reads.

And no script starts with TensorFlow's C++ lines (cuDNN/cuFFT/cuBLAS factory errors, TensorRT,
oneDNN, CPU features) unless the user asks for them with TF_CPP_MIN_LOG_LEVEL.
"""

import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys

from absl.testing import absltest

from tests import testutil

# The scripts: every top-level .py ending in `cli.run(main...)`.
SCRIPTS = sorted(
    path for path in glob.glob(os.path.join(testutil.REPO, "*.py"))
    if "cli.run(main" in open(path, encoding="utf-8").read())

# Runs `<script> --help` as `python <script> --help` does (the script as __main__, argv[0] its
# path), then writes absl's registry, {flag name: module that defined it}, to argv[2].
_HELP_AND_REGISTRY = """
import json, runpy, sys
from absl import flags
script, out = sys.argv[1], sys.argv[2]
sys.argv = [script, "--help"]
try:
  runpy.run_path(script, run_name="__main__")
except SystemExit:
  pass
defined = {flag.name: module for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
           for flag in module_flags}
with open(out, "w") as f:
  json.dump(defined, f)
"""

# What TensorFlow's C++ side prints at start-up (TF 2.15: import, first session).
_TF_NOISE = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory|TensorRT|oneDNN|"
                       r"cpu_feature_guard|cudart_stub|"
                       r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] ", re.M)


def _env(level=None):
  """The scripts' environment with TF_CPP_MIN_LOG_LEVEL as a user would have it (unset: None)."""
  env = testutil.script_env()
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  if level is not None:
    env["TF_CPP_MIN_LOG_LEVEL"] = level
  return env


def _listed_flags(help_text):
  """Names of the flags `--help` lists (after its `flags:` line; the docstring above is not)."""
  lines = help_text.splitlines()
  if "flags:" not in lines:
    return set()
  start = lines.index("flags:")
  return {m.group(1) for m in (re.match(r"\s+--(?:\[no\])?(\w+):", line)
                               for line in lines[start:]) if m}


class HelpTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    out_dir = cls.class_temp_dir()

    def run(script):
      out = os.path.join(out_dir, os.path.basename(script) + ".json")
      proc = subprocess.run([sys.executable, "-c", _HELP_AND_REGISTRY, script, out],
                            env=_env(), capture_output=True, text=True, timeout=300,
                            cwd=out_dir)
      with open(out, encoding="utf-8") as f:
        return script, proc, json.load(f)

    # Two at a time: most of each is TensorFlow's import.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      cls.runs = {os.path.basename(s): (proc, defined)
                  for s, proc, defined in pool.map(run, SCRIPTS)}

  def test_all_scripts_found(self):
    self.assertGreaterEqual(len(SCRIPTS), 14)
    for name in ("predict.py", "deidentify.py", "run_classifier.py", "run_pretraining.py",
                 "format_notes.py"):
      self.assertIn(name, self.runs)

  def test_help_lists_every_flag_the_script_takes(self):
    for script, (proc, defined) in self.runs.items():
      expected = {name for name, module in defined.items()
                  if not module.startswith(("absl.", "tensorflow."))}
      self.assertGreaterEqual(len(expected), 2, script)
      listed = _listed_flags(proc.stdout)
      self.assertEqual(sorted(expected - listed), [], script)

  def test_help_of_the_scripts_that_listed_few_flags(self):
    # Hand-picked flags the package defines for them (absl listed none or one before).
    for script, names in (("predict.py", ("model_dir", "input_file", "output_format")),
                          ("deidentify.py", ("model_dir", "replace", "surrogate_locale")),
                          ("run_classifier.py", ("task_name", "do_eval", "use_xla")),
                          ("run_ner.py", ("init_checkpoint", "keep_checkpoint_max")),
                          ("run_finetune.py", ("save_checkpoints_steps", "num_accumulation_steps")),
                          ("run_pretraining.py", ("use_tpu", "distribution_strategy"))):
      listed = _listed_flags(self.runs[script][0].stdout)
      for name in names:
        self.assertIn(name, listed, script)

  def test_the_progress_interval_is_one_flag(self):
    for script, (_, defined) in self.runs.items():
      if any("progress" in name for name in defined):
        self.assertIn("progress_seconds", defined, script)
    listed = _listed_flags(self.runs["format_notes.py"][0].stdout)
    self.assertIn("progress_every_s", listed)  # the old name, an alias
    code = ("import format_notes; from absl import flags; "
            "flags.FLAGS(['format_notes.py', '--progress_every_s=7']); "
            "print(flags.FLAGS.progress_seconds)")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=300, cwd=testutil.REPO, check=True)
    self.assertEqual(proc.stdout.split(), ["7.0"])

  def test_start_is_quiet(self):
    for script, (proc, _) in self.runs.items():
      self.assertIsNone(_TF_NOISE.search(proc.stderr), (script, proc.stderr[:2000]))

  def test_the_users_level_wins(self):
    # A level the user set is kept: 0 shows TensorFlow's C++ lines again.
    proc = subprocess.run([sys.executable, os.path.join(testutil.REPO, "predict.py"), "--help"],
                          env=_env("0"), capture_output=True, text=True, timeout=300)
    self.assertIn("--model_dir", proc.stdout)
    self.assertIsNotNone(_TF_NOISE.search(proc.stderr), proc.stderr[:3000])

  def test_a_run_is_quiet(self):
    d = self.temp_dir()
    config = testutil.tiny_config()
    input_file = os.path.join(d, "input.txt")
    with open(input_file, "w", encoding="utf-8") as f:
      f.write("the patient was seen\n")
    args = [sys.executable, os.path.join(testutil.REPO, "extract_features.py"),
            "--input_file=" + input_file, "--vocab_file=" + testutil.write_vocab(d),
            "--bert_config_file=" + testutil.write_config(d, config), "--max_seq_length=16",
            "--layers=-1",
            "--init_checkpoint=" + testutil.write_checkpoint(os.path.join(d, "model.ckpt"),
                                                             config),
            "--output_file=" + os.path.join(d, "features.jsonl")]
    quiet = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    self.assertEqual(quiet.returncode, 0, quiet.stderr[-3000:])
    self.assertIsNone(_TF_NOISE.search(quiet.stderr), quiet.stderr[:3000])
    with open(os.path.join(d, "features.jsonl"), encoding="utf-8") as f:
      self.assertLen(f.read().splitlines(), 1)


if __name__ == "__main__":
  absltest.main()
