"""Fine-tunes BERT on i2b2 NER/de-identification (2006, 2010, 2012, 2014), CoNLL data or MedNLI.

Flags follow Google's `run_classifier.py`. Examples:

  # Train, evaluate on dev, predict test (native i2b2 2010 files under data_dir/train and test).
  python run_finetune.py --task_name=i2b2_2010 --data_dir=$I2B2_2010 \
      --bert_config_file=$BERT/bert_config.json --vocab_file=$BERT/vocab.txt \
      --init_checkpoint=$BERT/model.ckpt-150000 --output_dir=out/i2b2_2010 \
      --do_train --do_eval --do_predict

  # Write the IOB train/dev/test files the ClinicalBERT authors used, and nothing else.
  python run_finetune.py --task_name=i2b2_2010 --data_dir=$I2B2_2010 --iob_output_dir=out/iob_2010

  # The paper's grid (lr x batch x epochs), picked on dev, test reported for the pick.
  python run_finetune.py --task_name=mednli --data_dir=$MEDNLI ... --grid

  # Effective batch 32 on a small GPU: 4 batches of 8 per optimizer step, float16, XLA.
  python run_finetune.py ... --train_batch_size=8 --num_accumulation_steps=4 --use_amp --use_xla

See README.md ("run_finetune.py") for the data layouts and outputs.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import estimator
from clinicalbert_tf import tasks
from clinicalbert_tf.finetuning import heads
from clinicalbert_tf.finetuning import runner

flags.DEFINE_string("task_name", None, "One of: %s." % ", ".join(tasks.TASK_NAMES))
flags.DEFINE_string("data_dir", None,
                    "The task's data in its native layout (see README): e.g. train/ and test/ "
                    "folders of i2b2 files, the MedNLI jsonl files, or train/dev/test .tsv files.")
flags.DEFINE_string("bert_config_file", None, "The model's bert_config.json.")
flags.DEFINE_string("vocab_file", None, "The model's vocab.txt.")
flags.DEFINE_string("init_checkpoint", None,
                    "Checkpoint (prefix or directory) to start from, usually a pretrained model. "
                    "Without a checkpoint in --output_dir, --do_eval and --do_predict use it (a "
                    "fine-tuned model).")
flags.DEFINE_string("output_dir", None, "Checkpoints, results and predictions go here.")
flags.DEFINE_bool("do_lower_case", False,
                  "Lower-case the input. False by default: the clinical models are cased.")
flags.DEFINE_integer("max_seq_length", 150,
                     "Word pieces per input, [CLS] and [SEP] included (the paper's 150). Longer NER "
                     "sentences are split into windows; longer NLI pairs are truncated.")
flags.DEFINE_bool("do_train", False, "Train on the train split.")
flags.DEFINE_bool("do_eval", False, "Evaluate on the dev split (eval_results.txt/.json).")
flags.DEFINE_bool("do_predict", False, "Predict and score the test split (test_results.txt/.json).")
flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")
flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate for Adam.")
flags.DEFINE_float("num_train_epochs", 3.0, "Training epochs.")
flags.DEFINE_float("warmup_proportion", 0.1, "Share of training with linear learning-rate warmup.")
# save_checkpoints_steps, keep_checkpoint_max, iterations_per_loop, log_every_n_steps, TPU flags.
estimator.define_run_config_flags()
# --use_xla, --use_amp, --num_accumulation_steps, --distribution_strategy (as run_pretraining.py).
estimator.define_accelerator_flags()
flags.DEFINE_integer("seed", 42, "Random seed (graph and input shuffling): same seed, same results.")
flags.DEFINE_bool("check_entity_text", True,
                  "Stop when an annotation's own text differs from the text at its offsets "
                  "(False: count and warn).")
flags.DEFINE_bool("include_timex3", False, "i2b2_2012: tag TIMEX3 expressions as well as EVENTs.")
flags.DEFINE_string("iob_output_dir", None,
                    "Write the IOB train.tsv/dev.tsv/test.tsv the ClinicalBERT authors used (NER "
                    "tasks). Without --do_train/--do_eval/--do_predict/--grid, only convert.")
flags.DEFINE_bool("grid", False,
                  "Run the paper's grid (train each setting, pick by dev F1/accuracy, report test).")
flags.DEFINE_string("grid_learning_rates", None, "Grid learning rates (default 2e-5,3e-5,5e-5).")
flags.DEFINE_string("grid_batch_sizes", None, "Grid batch sizes (default 16,32).")
flags.DEFINE_string("grid_num_train_epochs", None,
                    "Grid epochs (default 2,3,4 for NER tasks, 3,4 for MedNLI).")
flags.DEFINE_bool("grid_keep_checkpoints", False,
                  "Keep every grid setting's checkpoints (default: only the best one's).")
flags.DEFINE_enum("head", None, list(heads.HEAD_NAMES),
                  "The fine-tuning head, among those that fit the task (default: the task's own: "
                  "token_classification for NER tasks, sequence_classification for MedNLI).")

FLAGS = flags.FLAGS


def main(argv):
  cli.require_flags(FLAGS, ("task_name", "data_dir"))
  config = runner.config_from_flags(FLAGS)
  if config.do_train or config.do_eval or config.do_predict or config.grid:
    cli.require_flags(FLAGS, ("output_dir",), " to train or evaluate")
  runner.run(config)


if __name__ == "__main__":
  cli.run(main)
