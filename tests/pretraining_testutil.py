"""Old name of the run_pretraining test helpers, kept only until every test imports testutil.

A thin re-export of `tests/testutil.py` (which see) with the old signatures; new code uses
testutil directly.
"""

from tests import testutil

read_checkpoint = testutil.read_checkpoint
subprocess_env = testutil.script_env
flag_args = testutil.flag_args
make_examples = testutil.pretraining_examples
write_records = testutil.write_pretraining_records
run_google = testutil.run_google_pretraining


def tiny_config(vocab_size=97, num_attention_heads=2, **overrides):
  """The old defaults (vocab 97, 2 heads), as a dict."""
  return testutil.tiny_config(vocab_size=vocab_size, num_attention_heads=num_attention_heads,
                              **overrides).to_dict()


def write_config(path, config):
  return testutil.write_config(path, config)


def make_init_checkpoint(config, prefix, seed=1):
  return testutil.write_checkpoint(prefix, config, heads="pretraining", seed=seed, released=True)


def run_ours(flags, timeout=600, check=True, env=None, popen=False):
  return testutil.run_module("run_pretraining", testutil.flag_args(flags), env=env,
                             timeout=timeout, check=check, popen=popen)


def assert_close_results(test, ours, google, rtol, keys=None):
  testutil.TestCase.assertResultsClose(test, ours, google, rtol, keys)
