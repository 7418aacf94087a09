"""Google's `run_classifier.py` command line on this project's fine-tuning code.

The flags, defaults and outputs of google-research/bert's script: `--task_name` one of cola, mnli,
mrpc, xnli (Google's GLUE/XNLI layouts, `tasks/glue.py`) or mednli (the MedNLI jsonl files),
lower-cased input by default, and in `output_dir` `train.tf_record` / `eval.tf_record` /
`predict.tf_record`, `eval_results.txt` (`eval_accuracy`, `eval_loss`, `global_step`, `loss`) and
`test_results.tsv` (each test example's probabilities, tab-separated, one line each). The model is
the one `run_finetune.py` trains for MedNLI (`finetuning.heads.SequenceClassificationHead`).

  python run_classifier.py --task_name=MRPC --do_train=true --do_eval=true \
      --data_dir=$GLUE_DIR/MRPC --vocab_file=$BERT_BASE_DIR/vocab.txt \
      --bert_config_file=$BERT_BASE_DIR/bert_config.json \
      --init_checkpoint=$BERT_BASE_DIR/bert_model.ckpt --max_seq_length=128 \
      --train_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3.0 --output_dir=/tmp/mrpc

Also the accelerator flags of run_pretraining.py and run_finetune.py: --use_xla, --use_amp,
--num_accumulation_steps, --distribution_strategy (`estimator.define_accelerator_flags`).

See README.md ("Drop-in") for what differs from Google's script.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf.finetuning import runner

TASKS = ("cola", "mnli", "mrpc", "xnli", "mednli")

runner.define_original_flags(dict(do_lower_case=True), TASKS,
                             "The task's files in Google's layout (e.g. train.tsv, dev.tsv, "
                             "test.tsv for MRPC), or the MedNLI jsonl files.")
flags.DEFINE_string("tpu_job_name", None, "The TPU worker's name (only the default is supported).")

FLAGS = flags.FLAGS


def main(argv):
  cli.require_flags(FLAGS, ("data_dir", "task_name", "vocab_file", "bert_config_file",
                            "output_dir"))
  if FLAGS.task_name.lower() not in TASKS:
    raise fileio.InputError("--task_name=%s: expected one of %s" % (FLAGS.task_name,
                                                                     ", ".join(TASKS)))
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
    raise fileio.InputError("at least one of --do_train, --do_eval or --do_predict must be True")
  if FLAGS.tpu_job_name:
    raise fileio.InputError("--tpu_job_name=%s: only the default TPU worker name is supported" %
                            FLAGS.tpu_job_name)
  config = runner.config_from_flags(FLAGS, google_outputs=True, task_name=FLAGS.task_name.lower())
  runner.run(config)


if __name__ == "__main__":
  cli.run(main)
