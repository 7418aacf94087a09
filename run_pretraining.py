"""Masked-LM / next-sentence pretraining of BERT (continues BERT-Base, BioBERT, ClinicalBERT).

Google's `run_pretraining.py` command line works unchanged, e.g. ClinicalBERT's:

  python run_pretraining.py --output_dir=out --input_file='records/*.tfrecord' \\
      --do_train=True --do_eval=True --bert_config_file=biobert/bert_config.json \\
      --init_checkpoint=biobert/model.ckpt --train_batch_size=32 --max_seq_length=128 \\
      --max_predictions_per_seq=20 --num_train_steps=150000 --num_warmup_steps=10000 \\
      --learning_rate=5e-5 --save_checkpoints_steps=1000 --keep_checkpoint_max=5

Extra flags: --keep_checkpoint_max, --use_xla, --use_amp, --num_accumulation_steps,
--distribution_strategy (none | mirrored | multi_worker_mirrored with TF_CONFIG),
--log_every_n_steps, --optimizer; held-out evaluation: --eval_input_file (records of its own for
--do_eval and for evaluations during training), --eval_every_n_steps (evaluate every N steps into
eval_history.jsonl and TensorBoard's eval folder), --keep_best_checkpoint (copy the checkpoint with
the lowest masked_lm_loss to <output_dir>/best).
Restarting with the same --output_dir resumes from its latest checkpoint. The work is done by
`clinicalbert_tf.pretraining.run_pretraining`.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import estimator
from clinicalbert_tf import hooks
from clinicalbert_tf import pretraining
from clinicalbert_tf import train_op

FLAGS = flags.FLAGS

## Required parameters
flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")

flags.DEFINE_string("input_file", None,
                    "Input TF example files (can be a glob or comma separated).")

flags.DEFINE_string("output_dir", None,
                    "The output directory where the model checkpoints will be written.")

## Other parameters
flags.DEFINE_string("init_checkpoint", None,
                    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Sequences longer than this will be truncated, and sequences shorter "
    "than this will be padded. Must match data generation.")

flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence. "
                     "Must match data generation.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")

flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

# save_checkpoints_steps, iterations_per_loop, the TPU flags, keep_checkpoint_max and
# log_every_n_steps.
estimator.define_run_config_flags()

## Additions (not in Google's script): --use_xla, --use_amp, --num_accumulation_steps,
## --distribution_strategy, shared with the fine-tuning scripts.
estimator.define_accelerator_flags()

flags.DEFINE_enum("optimizer", "adamw", list(train_op.OPTIMIZERS),
                  "adamw: Google's Adam with weight decay; lamb: layer-wise adaptive moments "
                  "(NVIDIA's recipe, for large global batches).")

## Held-out evaluation (additions).
flags.DEFINE_string(
    "eval_input_file", None,
    "Evaluation TF example files (a glob or comma separated), for --do_eval and "
    "--eval_every_n_steps. Default: evaluate on --input_file, as Google's script does.")

flags.DEFINE_integer(
    "eval_every_n_steps", 0,
    "With --do_train: evaluate (max_eval_steps batches) the checkpoint saved at each multiple of "
    "N steps, appending one JSON line to <output_dir>/eval_history.jsonl and writing the metrics "
    "to <output_dir>/eval for TensorBoard. Must be a multiple of --save_checkpoints_steps. "
    "0: off.")

flags.DEFINE_bool(
    "keep_best_checkpoint", False,
    "With --eval_every_n_steps: keep a copy of the checkpoint with the lowest masked_lm_loss so "
    "far in <output_dir>/best (with best_eval.json); the regular checkpoints are unaffected.")


def main(argv):
  # Every argument is the flag of its name (the run-config and accelerator flags included).
  cli.config_from_flags(pretraining.run_pretraining, FLAGS)

if __name__ == "__main__":
  # cli.run applies --use_xla before absl initialises TF's devices (which read TF_XLA_FLAGS).
  cli.run(main, errors=(hooks.NanLossError,))
