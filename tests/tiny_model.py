"""Old name of the tiny-BERT helpers, kept only until every test imports `tests.testutil`.

A thin re-export of `tests/testutil.py` (which see) with the old signatures; new code uses
testutil directly.
"""

import os

from tests import testutil

WORDS = testutil.WORDS
SPECIAL = testutil.SPECIAL
vocab_tokens = testutil.vocab_tokens
read_checkpoint = testutil.read_checkpoint
random_ids = testutil.random_ids


def write_vocab(directory):
  return testutil.write_vocab(directory)


def config(hidden_act="gelu", **overrides):
  return testutil.tiny_config(hidden_act=hidden_act, **overrides)


def write_config(directory, bert_config, name="bert_config.json"):
  return testutil.write_config(os.path.join(directory, name), bert_config)


def write_checkpoint(prefix, bert_config, heads=None, num_labels=3, seed=1):
  heads = "sequence_classification" if heads == "classifier" else heads
  return testutil.write_checkpoint(prefix, bert_config, heads=heads, num_labels=num_labels,
                                   seed=seed)
