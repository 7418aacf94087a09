"""benchmarks/gpu_check.sh on a machine without a GPU: skip lines, the CPU smoke table, failures.

The script runs in a child process with TMPDIR set to a folder of the test, so that every temporary
thing it makes can be seen to be gone afterwards. A fake `nvidia-smi` first on PATH decides whether
the script sees a GPU (so the test does the same on a machine that has one); CUDA_VISIBLE_DEVICES
is empty, so TensorFlow never does. `first_batch_that_fits` (the batch search) is tested directly.
"""

import argparse
import contextlib
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import time

from absl.testing import absltest

from tests import testutil

SCRIPT = os.path.join(testutil.REPO, "benchmarks", "gpu_check.sh")

# What nvidia-smi prints on a machine whose driver is not loaded.
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make "
             "sure that the latest NVIDIA driver is installed and running.")


def load_gpu_check():
  spec = importlib.util.spec_from_file_location(
      "gpu_check", os.path.join(testutil.REPO, "benchmarks", "gpu_check.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class GpuCheckScriptTest(testutil.TestCase):

  def fake_nvidia_smi(self, output, status, driver=None):
    """A folder holding an `nvidia-smi` that prints `output` (or, asked for it, `driver`)."""
    folder = self.temp_dir()
    for name, text in (("output", output), ("driver", driver or output)):
      with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    path = os.path.join(folder, "nvidia-smi")
    with open(path, "w", encoding="utf-8") as f:
      f.write('#!/bin/sh\ncase "$*" in *driver_version*) cat "%s/driver";; *) cat "%s/output";; '
              'esac\nexit %d\n' % (folder, folder, status))
    os.chmod(path, 0o755)
    return folder

  def env(self, tmp, nvidia_smi=None, **extra):
    env = dict(os.environ)
    env.update(TMPDIR=tmp, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    env["PATH"] = (nvidia_smi or self.fake_nvidia_smi(NO_DRIVER, 9)) + os.pathsep + env["PATH"]
    for name in ("GPU_CHECK_SMOKE", "GPU_CHECK_PARTS", "GPU_CHECK_FAIL", "GPU_CHECK_WHEELS"):
      env.pop(name, None)
    env.update(extra)
    return env

  def run_check(self, timeout=600, nvidia_smi=None, **extra):
    """Runs the script; returns (process, its temporary folder), after checking that it is gone."""
    tmp = self.temp_dir()
    proc = subprocess.run(["bash", SCRIPT], env=self.env(tmp, nvidia_smi, **extra),
                          capture_output=True, text=True, timeout=timeout)
    found = re.findall(r"^temporary folder: (.*)$", proc.stdout, flags=re.M)
    self.assertLen(found, 1, proc.stdout + proc.stderr)
    self.assertTrue(found[0].startswith(tmp + os.sep), found[0])
    self.assertFalse(os.path.exists(found[0]), "left behind: " + found[0])
    self.assertEqual(os.listdir(tmp), [], "left behind in TMPDIR")
    return proc, found[0]

  def assert_skip_lines(self, out):
    self.assertIn("GPU: no NVIDIA GPU found (nvidia-smi --query-gpu=name,memory.total: "
                  "NVIDIA-SMI has failed", out)
    self.assertRegex(out, r"TensorFlow 2\.15\.1 \(built with CUDA: \w+\) sees 0 GPU\(s\)")
    skipped = re.findall(r"^SKIPPED \(needs an NVIDIA GPU\): \((\w)\) ", out, flags=re.M)
    self.assertEqual(skipped, ["a", "b", "c"], out)

  def test_smoke_run_prints_every_number_and_cleans_up(self):
    proc, _ = self.run_check(GPU_CHECK_SMOKE="1")
    out = proc.stdout
    self.assertEqual(proc.returncode, 0, out + proc.stderr)
    self.assert_skip_lines(out)
    table = out[out.index("== GPU check results (CPU smoke run, not a measurement) =="):]
    number = r"\s+batch\s+\d+\s+(\d+\.\d)"
    rows = {
        "google": r"Google's run_pretraining\.py, float32" + number + r" seq/s\n",
        "ours": r"ours run_pretraining\.py, float32" + number + r" seq/s\s+\d+\.\d\dx Google's",
        "ours_amp_xla": (r"ours --use_amp --use_xla" + number +
                         r" seq/s\s+\d+\.\d\dx Google's \(target on a GPU: >= 2\.5x\)"),
        "finetune": r"\n    float32" + number + r" examples/s\n",
        "finetune_amp_xla": r"--use_amp --use_xla" + number + r" examples/s\s+\d+\.\d\dx float32",
        "predict": r"predict" + number + r" notes/s",
    }
    for name, pattern in rows.items():
      match = re.search(pattern, table)
      self.assertIsNotNone(match, "%s: no row matching %r in\n%s" % (name, pattern, table))
      self.assertGreater(float(match.group(1)), 0, name)
    for part in ("(a) pretraining", "(b) fine-tuning", "(c) predict.py"):
      line = [l for l in table.splitlines() if l.startswith(part)]
      self.assertLen(line, 1, table)
      self.assertIn("(CPU smoke run, not a measurement)", line[0])
    self.assertRegex(out, r"total: \d+s \(measurements \d+s of the 480s budget")

  def test_without_smoke_only_the_skip_lines(self):
    proc, _ = self.run_check(timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
    self.assert_skip_lines(proc.stdout)
    self.assertNotIn("GPU check results", proc.stdout)

  def test_python_without_tensorflow_fails_clearly(self):
    proc, _ = self.run_check(timeout=120, PYTHON="/bin/false", GPU_CHECK_SMOKE="1")
    self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
    self.assertIn("gpu_check: FAILED: /bin/false ($PYTHON) cannot import tensorflow", proc.stderr)

  def test_failing_measurement_exits_non_zero_and_names_it(self):
    proc, _ = self.run_check(GPU_CHECK_SMOKE="1", GPU_CHECK_PARTS="pretrain_google",
                             GPU_CHECK_FAIL="pretrain_google")
    self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
    # The script's own error (an unknown flag) is shown, and the part is named in the summary.
    self.assertIn("gpu_check_forced_failure", proc.stderr)
    self.assertRegex(proc.stderr, r"gpu_check: FAILED: pretrain_google: exit 1: ")
    self.assertRegex(proc.stdout, r"Google's run_pretraining\.py, float32\s+FAILED \(exit 1\)")
    self.assertRegex(proc.stdout, r"ours --use_amp --use_xla\s+not run \(not in GPU_CHECK_PARTS\)")

  def test_gpu_that_tensorflow_cannot_see_installs_offline_and_fails_cleanly(self):
    # nvidia-smi sees a GPU, TensorFlow does not: the script makes a venv in its temporary folder
    # and installs from GPU_CHECK_WHEELS alone; an empty folder fails at once, and clearly.
    wheels = self.temp_dir()
    gpu = self.fake_nvidia_smi("Invented GPU, 1024 MiB", 0, driver="550.54.15")
    proc, _ = self.run_check(timeout=300, nvidia_smi=gpu, GPU_CHECK_WHEELS=wheels)
    self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
    self.assertIn("GPU: Invented GPU, 1024 MiB; driver 550.54.15", proc.stdout)
    self.assertIn("sees no GPU although nvidia-smi does", proc.stdout)
    self.assertIn("from the wheels in %s (--no-index)" % wheels, proc.stdout)
    self.assertIn("gpu_check: FAILED: pip could not install the GPU environment from the wheels "
                  "in %s (--no-index)" % wheels, proc.stderr)

  def test_interrupt_stops_the_part_and_cleans_up(self):
    tmp = self.temp_dir()
    proc = subprocess.Popen(["bash", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=self.env(tmp, GPU_CHECK_SMOKE="1",
                                                    GPU_CHECK_PARTS="pretrain_google"))
    try:
      lines = []
      for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("pretrain_google (timeout"):
          break
      folder = re.findall(r"^temporary folder: (.*)$", "".join(lines), flags=re.M)[0]
      time.sleep(1)  # the part has started (it takes 10 s and more: TensorFlow, graph, steps)
      proc.send_signal(signal.SIGINT)
      sent = time.time()
      _, err = proc.communicate(timeout=60)
      took = time.time() - sent
    finally:
      if proc.poll() is None:
        proc.kill()
    self.assertEqual(proc.returncode, 130, err)
    self.assertIn("gpu_check: interrupted", err)
    # Stopped, not waited for.
    self.assertLess(took, 8, "the script took %.1fs to stop after SIGINT" % took)
    self.assertFalse(os.path.exists(folder))
    # No process of the part (they name the work folder on their command lines) is left.
    deadline = time.time() + 5
    while True:
      left = [pid for pid in os.listdir("/proc") if pid.isdigit() and folder in _cmdline(pid)]
      if not left or time.time() > deadline:
        break
      time.sleep(0.5)
    self.assertEqual(left, [])


def _cmdline(pid):
  try:
    with open("/proc/%s/cmdline" % pid, "rb") as f:
      return f.read().decode("utf-8", "replace")
  except OSError:
    return ""


class GpuTableTest(testutil.TestCase):
  """The GPU run's table, from invented results (no GPU here to make real ones)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.gpu_check = load_gpu_check()

  def table(self, amp_xla_rate):
    w = self.temp_dir()
    results = {
        "pretrain_google": dict(batch=128, oom=[], rate=400.0),
        "pretrain_ours": dict(batch=128, oom=[], rate=420.0),
        "pretrain_ours_amp_xla": dict(batch=96, oom=[128], rate=amp_xla_rate),
        "finetune": dict(batch=32, rate=500.0),
        "predict": dict(batch=64, rate=1500.0, words_rate=67500.0, notes=2000),
    }
    for name, result in results.items():
      self.gpu_check.write_result(w, name, result)
    os.makedirs(os.path.join(w, "status"))
    with open(os.path.join(w, "status", "finetune_amp_xla"), "w", encoding="utf-8") as f:
      f.write("timed out after 120s\n")
    with open(os.path.join(w, "gpu.txt"), "w", encoding="utf-8") as f:
      f.write("GPU: Invented GPU, 1024 MiB; driver 550.54.15\n")
    args = argparse.Namespace(workdir=w, mode="gpu")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      self.gpu_check.table(args, self.gpu_check.MODES["gpu"])
    return out.getvalue()

  def test_ratios_target_and_statuses(self):
    out = self.table(1000.0)
    self.assertNotIn("smoke", out)
    self.assertIn("(d) GPU: Invented GPU, 1024 MiB; driver 550.54.15", out)
    self.assertIn("(a) pretraining, BERT-Base (12 x 768), seq 128, 20 predictions", out)
    self.assertIn("TF32", out)
    self.assertRegex(out, r"Google's run_pretraining\.py, float32\s+batch 128\s+400\.0 seq/s\n")
    self.assertRegex(out, r"ours run_pretraining\.py, float32\s+batch 128\s+420\.0 seq/s\s+"
                          r"1\.05x Google's\n")
    self.assertRegex(out, r"ours --use_amp --use_xla\s+batch  96\s+1000\.0 seq/s\s+"
                          r"\(out of memory at batch 128\)\s+2\.50x Google's \(target >= 2\.5x: "
                          r"met\); batch differs from Google's 128\n")
    self.assertRegex(out, r"\n    float32\s+batch  32\s+500\.0 examples/s\n")
    self.assertRegex(out, r"--use_amp --use_xla\s+timed out after 120s\n")
    self.assertRegex(out, r"predict\s+batch  64\s+1500\.0 notes/s  \(67500 words/s, 2000 notes\)")

  def test_target_not_met(self):
    self.assertIn("2.25x Google's (target >= 2.5x: NOT met)", self.table(900.0))


class FirstBatchThatFitsTest(testutil.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.gpu_check = load_gpu_check()

  def test_steps_down_past_out_of_memory(self):
    tried = []

    def measure(batch):
      tried.append(batch)
      if batch > 64:
        raise RuntimeError("ours failed:\n... tensorflow.python.framework.errors_impl."
                           "ResourceExhaustedError: OOM when allocating tensor with shape[%d,12,"
                           "128,128]" % batch)
      return {"rate": batch * 10.0}

    batch, result, oom = self.gpu_check.first_batch_that_fits(measure, [128, 96, 64, 48, 32])
    self.assertEqual((batch, result, oom), (64, {"rate": 640.0}, [128, 96]))
    self.assertEqual(tried, [128, 96, 64])

  def test_out_of_memory_messages(self):
    for message in ("ResourceExhaustedError: OOM when allocating tensor with shape[128,30522]",
                    "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.50GiB.",
                    "InternalError: Dst tensor is not initialized."):
      self.assertTrue(self.gpu_check.is_oom(RuntimeError(message)), message)
    for message in ("NotFoundError: records.tfrecord", "InvalidArgumentError: NaN in loss"):
      self.assertFalse(self.gpu_check.is_oom(RuntimeError(message)), message)

  def test_other_errors_stop_at_once(self):
    tried = []

    def measure(batch):
      tried.append(batch)
      raise RuntimeError("google failed:\nModuleNotFoundError: No module named 'bert'")

    with self.assertRaisesRegex(self.gpu_check.CheckError,
                                "(?s)batch 128: .*No module named 'bert'"):
      self.gpu_check.first_batch_that_fits(measure, [128, 96])
    self.assertEqual(tried, [128])

  def test_out_of_memory_everywhere(self):

    def measure(batch):
      raise RuntimeError("OOM when allocating tensor (batch %d)" % batch)

    with self.assertRaisesRegex(self.gpu_check.CheckError,
                                "out of GPU memory at every batch of 48,32"):
      self.gpu_check.first_batch_that_fits(measure, [48, 32])


if __name__ == "__main__":
  absltest.main()
