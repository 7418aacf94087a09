"""Token-classification training speed: ours (TF Estimator) vs transformers (PyTorch), on CPU.

Both train the same BERT configuration with a token-classification head on the same batches of
random word-piece ids (labels on about half of the positions, the rest masked as continuation pieces
or padding), with Adam + weight decay and gradient clipping. Ours runs the full fine-tuning path:
TFRecord input, `finetuning/runner.model_fn_builder` (the token-classification head, masked loss,
`create_optimizer`) and the shared Estimator from `estimator.py`. Transformers runs
`BertForTokenClassification` with `AdamW` and labels -100 where ours masks. Steady-state examples/s
are measured after warm-up steps, excluding graph building and checkpoint saving, in rounds that
alternate the two implementations (median reported), so that a change in the load of a shared
machine hits both alike.

  PYTHONSAFEPATH=1 PYTHONPATH=. .venv/bin/python benchmarks/finetune_bench.py [--threads=0]

Prints one line per implementation and the ratio ours / transformers (target >= 1.0).
"""

import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_integer("hidden_size", 256, "Hidden size.")
flags.DEFINE_integer("num_layers", 4, "Transformer layers.")
flags.DEFINE_integer("num_heads", 4, "Attention heads.")
flags.DEFINE_integer("intermediate_size", 1024, "Feed-forward size.")
flags.DEFINE_integer("vocab_size", 8000, "Vocabulary size.")
flags.DEFINE_integer("num_labels", 7, "Labels (e.g. i2b2 2010: O + B/I of 3 types).")
flags.DEFINE_integer("seq_length", 128, "Sequence length.")
flags.DEFINE_integer("batch_size", 16, "Training batch size.")
flags.DEFINE_integer("warmup_steps", 5, "Steps not timed (first runs, allocation).")
flags.DEFINE_integer("steps", 10, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3,
                     "Rounds, alternating the two implementations; the median rate of each is "
                     "reported (the machine may be shared, so load changes during a run).")
flags.DEFINE_bool("use_xla", False, "Ours with XLA auto-clustering.")
flags.DEFINE_integer("threads", 1,
                     "CPU threads for both frameworks (0: all cores). 1 by default: on a shared "
                     "machine, PyTorch's OpenMP threads spin-wait and slow down many-fold when "
                     "other processes hold the cores, which would flatter ours.")
FLAGS = flags.FLAGS


def make_batches(num_examples, seed=0):
  """Random inputs: real lengths between half and all of seq_length; labels on ~half the pieces."""
  rng = np.random.RandomState(seed)
  n, length = num_examples, FLAGS.seq_length
  input_ids = rng.randint(5, FLAGS.vocab_size, size=[n, length])
  lengths = rng.randint(length // 2, length + 1, size=[n])
  input_mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
  input_ids *= input_mask
  label_mask = input_mask * (rng.rand(n, length) < 0.5)
  label_mask[:, 0] = 0
  label_ids = rng.randint(0, FLAGS.num_labels, size=[n, length]) * label_mask
  return input_ids, input_mask, label_ids, label_mask


def ours_rounds(data, workdir):
  """Yields examples/s of our fine-tuning training loop, one value per round."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  tf.logging.set_verbosity(tf.logging.ERROR)
  from clinicalbert_tf import estimator as estimator_lib  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf import modeling  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.finetuning import data as data_lib  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.finetuning import heads  # pylint: disable=g-import-not-at-top
  from clinicalbert_tf.finetuning import runner  # pylint: disable=g-import-not-at-top

  input_ids, input_mask, label_ids, label_mask = data
  head = heads.TokenClassificationHead(["L%d" % i for i in range(FLAGS.num_labels)])
  features = [data_lib.TokenFeatures(
      input_ids=list(input_ids[i]), input_mask=list(input_mask[i]),
      segment_ids=[0] * FLAGS.seq_length, label_ids=list(label_ids[i]),
      label_mask=list(label_mask[i])) for i in range(len(input_ids))]
  record = os.path.join(workdir, "train.tf_record")
  data_lib.write_records(record, head, features)
  config = modeling.BertConfig(
      vocab_size=FLAGS.vocab_size, hidden_size=FLAGS.hidden_size,
      num_hidden_layers=FLAGS.num_layers, num_attention_heads=FLAGS.num_heads,
      intermediate_size=FLAGS.intermediate_size,
      max_position_embeddings=max(512, FLAGS.seq_length))
  per_round = FLAGS.warmup_steps + FLAGS.steps
  total = per_round * FLAGS.rounds
  model_fn = runner.model_fn_builder(config, head, None, 5e-5, total, max(1, total // 10), False,
                                     False)
  run_config = estimator_lib.make_run_config(os.path.join(workdir, "model"),
                                             save_checkpoints_steps=10**9, log_every_n_steps=10**6,
                                             seed=1, use_xla=FLAGS.use_xla)
  if FLAGS.threads:
    session_config = run_config.session_config or tf.ConfigProto()
    session_config.intra_op_parallelism_threads = FLAGS.threads
    session_config.inter_op_parallelism_threads = FLAGS.threads
    run_config = run_config.replace(session_config=session_config)
  estimator = estimator_lib.build_estimator(model_fn, run_config, FLAGS.batch_size,
                                            FLAGS.batch_size)
  input_fn = data_lib.input_fn_builder(record, head, FLAGS.seq_length, is_training=True,
                                       drop_remainder=True, num_examples=len(features), seed=1)

  class StepTimes(tf.train.SessionRunHook):

    def __init__(self):
      self.times = []

    def after_run(self, run_context, run_values):
      self.times.append(time.perf_counter())

  for r in range(FLAGS.rounds):
    # Each round continues from the last checkpoint; graph building and restoring are not timed.
    timer = StepTimes()
    estimator.train(input_fn, max_steps=per_round * (r + 1), hooks=[timer])
    timed = timer.times[FLAGS.warmup_steps - 1:]
    yield (len(timed) - 1) * FLAGS.batch_size / (timed[-1] - timed[0])


def transformers_rounds(data):
  """Yields examples/s of BertForTokenClassification training (PyTorch, CPU), one per round."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  if FLAGS.threads:
    torch.set_num_threads(FLAGS.threads)
  torch.manual_seed(1)
  config = transformers.BertConfig(
      vocab_size=FLAGS.vocab_size, hidden_size=FLAGS.hidden_size,
      num_hidden_layers=FLAGS.num_layers, num_attention_heads=FLAGS.num_heads,
      intermediate_size=FLAGS.intermediate_size,
      max_position_embeddings=max(512, FLAGS.seq_length), hidden_act="gelu_new",
      num_labels=FLAGS.num_labels)
  model = transformers.BertForTokenClassification(config)
  model.train()
  no_decay = ("bias", "LayerNorm.weight")
  groups = [
      {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
       "weight_decay": 0.01},
      {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
       "weight_decay": 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=5e-5, eps=1e-6)
  input_ids, input_mask, label_ids, label_mask = [torch.tensor(x) for x in data]
  labels = torch.where(label_mask > 0, label_ids, torch.full_like(label_ids, -100))
  n = len(input_ids)
  step = 0
  for _ in range(FLAGS.rounds):
    times = []
    for _ in range(FLAGS.warmup_steps + FLAGS.steps):
      i = (step * FLAGS.batch_size) % (n - FLAGS.batch_size + 1)
      batch = slice(i, i + FLAGS.batch_size)
      out = model(input_ids=input_ids[batch], attention_mask=input_mask[batch],
                  token_type_ids=torch.zeros_like(input_ids[batch]), labels=labels[batch])
      out.loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      optimizer.zero_grad(set_to_none=True)
      times.append(time.perf_counter())
      step += 1
    timed = times[FLAGS.warmup_steps - 1:]
    yield (len(timed) - 1) * FLAGS.batch_size / (timed[-1] - timed[0])


def main(argv):
  del argv
  data = make_batches(FLAGS.batch_size * 8)
  print("config: %d layers, hidden %d, heads %d, intermediate %d, vocab %d, seq %d, batch %d, "
        "%d labels; %d rounds of %d timed steps after %d warm-up; threads %s; %d CPUs; xla %s" % (
            FLAGS.num_layers, FLAGS.hidden_size, FLAGS.num_heads, FLAGS.intermediate_size,
            FLAGS.vocab_size, FLAGS.seq_length, FLAGS.batch_size, FLAGS.num_labels, FLAGS.rounds,
            FLAGS.steps, FLAGS.warmup_steps, FLAGS.threads or "all", os.cpu_count(),
            FLAGS.use_xla))
  sys.stdout.flush()
  workdir = tempfile.mkdtemp(prefix="finetune_bench-")
  rates = {"ours": [], "transformers": []}
  try:
    runs = {"transformers": transformers_rounds(data), "ours": ours_rounds(data, workdir)}
    for r in range(FLAGS.rounds):
      for name in ("transformers", "ours"):
        rates[name].append(next(runs[name]))
        print("round %d %-12s %.1f examples/s" % (r + 1, name, rates[name][-1]))
        sys.stdout.flush()
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  theirs, ours = np.median(rates["transformers"]), np.median(rates["ours"])
  print("transformers BertForTokenClassification (torch CPU): %.1f examples/s (median)" % theirs)
  print("ours (finetuning runner.model_fn_builder + shared Estimator): %.1f examples/s (median)" %
        ours)
  print("ratio ours / transformers: %.2f (target >= 1.0)" % (ours / theirs))


if __name__ == "__main__":
  app.run(main)
