"""ClinicalBERT's `run_ner.py` command line (their `run_i2b2.sh`) on this project's fine-tuning.

The flags and defaults of the authors' script: cased input, 128 word pieces, train and predict by
default, 10 epochs, one checkpoint kept. `--data_dir` is the folder of IOB files their notebooks
wrote (`train.tsv`, `dev.tsv`, `test.tsv`; `train.conll`, ... for i2b2 2006), as
`run_finetune.py --iob_output_dir` writes them, or the task's native files. The model is the one
`run_finetune.py` trains (`finetuning.heads.TokenClassificationHead`), and the run scores what the
paper reports, exact-span F1, into `eval_results.txt` (dev) and `test_results.txt` (test), with
the predictions as `word gold predicted` lines.

  python run_ner.py --task_name=i2b2_2010 --data_dir=$NER_DIR --vocab_file=$BERT_DIR/vocab.txt \
      --bert_config_file=$BERT_DIR/bert_config.json --init_checkpoint=$BERT_DIR/bert_model.ckpt \
      --do_train=True --do_eval=True --do_predict=True --num_train_epochs=3 \
      --learning_rate=2e-5 --train_batch_size=32 --max_seq_length=150 \
      --save_checkpoints_steps=2000 --output_dir=out/i2b2_2010

Also the accelerator flags of run_pretraining.py and run_finetune.py: --use_xla, --use_amp,
--num_accumulation_steps, --distribution_strategy (`estimator.define_accelerator_flags`).

See README.md ("Drop-in") for what differs from their script.
"""

from absl import flags
from absl import logging

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import runner
from clinicalbert_tf.tasks import iob_folders

runner.define_original_flags(
    dict(do_train=True, do_predict=True, num_train_epochs=10.0, keep_checkpoint_max=1),
    iob_folders.IOB_TASKS,
    "The IOB files (train.tsv, dev.tsv, test.tsv, or .conll), or the task's native files.")
flags.DEFINE_integer("cross_val_sz", 10,
                     "Accepted for the authors' command lines; their cross-validation loop is not "
                     "run (the paper reports the given train/dev/test split).")

FLAGS = flags.FLAGS


def main(argv):
  cli.require_flags(FLAGS, ("data_dir", "task_name", "vocab_file", "bert_config_file",
                            "output_dir"))
  if FLAGS.task_name.lower() not in iob_folders.IOB_TASKS:
    raise fileio.InputError("--task_name=%s: expected one of %s" %
                            (FLAGS.task_name, ", ".join(iob_folders.IOB_TASKS)))
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
    raise fileio.InputError("at least one of --do_train, --do_eval or --do_predict must be True")
  if FLAGS["cross_val_sz"].present:
    logging.warning("--cross_val_sz=%d: no cross-validation; training on the train split, "
                    "scoring dev and test", FLAGS.cross_val_sz)
  config = runner.config_from_flags(FLAGS, google_record_names=True,
                                    task_name=FLAGS.task_name.lower())
  runner.run(config)


if __name__ == "__main__":
  cli.run(main)
