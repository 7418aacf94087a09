#!/usr/bin/env python3
"""Exports a Google-format BERT checkpoint as a HuggingFace model directory (no torch needed).

  export_hf.py --bert_config_file=bert_config.json --init_checkpoint=model.ckpt-150000 \
    --vocab_file=vocab.txt --do_lower_case=False --output_dir=hf_model

Writes config.json, model.safetensors, vocab.txt, tokenizer_config.json (with the model's
do_lower_case) and special_tokens_map.json. A pretraining checkpoint becomes BertForPreTraining; a
run_finetune checkpoint becomes BertForTokenClassification (NER) or BertForSequenceClassification
(NLI) with id2label (from --head/--labels or finetune_head.json next to the checkpoint). Load it with
`transformers.AutoModel.from_pretrained("hf_model")`. See clinicalbert_tf/hf.py.
"""

from absl import flags

from clinicalbert_tf import cli
from clinicalbert_tf import fileio
from clinicalbert_tf import hf

FLAGS = flags.FLAGS

flags.DEFINE_string("bert_config_file", None, "The bert_config.json of the checkpoint.")
flags.DEFINE_string("init_checkpoint", None, "Checkpoint prefix (or a directory: its latest).")
flags.DEFINE_string("vocab_file", None, "The vocab.txt of the checkpoint.")
flags.DEFINE_bool("do_lower_case", None,
                  "Whether the model expects lower-cased input (required: False for the cased "
                  "clinical models; written to tokenizer_config.json).")
flags.DEFINE_string("output_dir", None, "The HuggingFace model directory to write.")
flags.DEFINE_enum("head", "auto", list(hf.HEADS),
                  "Which model to export: auto (pretraining heads if the checkpoint has cls/, a "
                  "fine-tuned head as recorded in finetune_head.json, else the encoder), none "
                  "(BertModel), pretraining, token_classification (NER) or sequence_classification "
                  "(NLI).")
flags.DEFINE_string("labels", None,
                    "Comma list of the fine-tuned head's labels in id order (e.g. "
                    "contradiction,entailment,neutral), when no finetune_head.json records them.")


def main(argv):
  cli.require_flags(FLAGS, ("bert_config_file", "init_checkpoint", "vocab_file", "output_dir"))
  if FLAGS.do_lower_case is None:
    raise fileio.InputError("--do_lower_case is required (True or False): it decides how HF's "
                            "tokenizer treats case, and HF's own default (True) is wrong for "
                            "cased models")
  labels = fileio.split_comma_list(FLAGS.labels) if FLAGS.labels else None
  summary = cli.config_from_flags(hf.export_checkpoint, FLAGS, labels=labels)
  print("wrote %s (%s, %d tensors%s)" % (
      summary["output_dir"], summary["architecture"], summary["num_tensors"],
      ", labels " + ",".join(summary["labels"]) if summary["labels"] else ""))


if __name__ == "__main__":
  cli.run(main)
