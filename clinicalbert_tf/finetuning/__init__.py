"""Fine-tuning BERT with one linear layer: NER (i2b2 2006/2010/2012/2014, CoNLL) and NLI (MedNLI).

The models follow the ClinicalBERT paper and Google's `run_classifier.py`; both train with
`optimization.create_optimizer` (Adam with weight decay, warmup, linear decay) in the shared
Estimator of `estimator.py`. Evaluation runs the model over the dev/test inputs, reassembles one
label per word (NER) or per pair (NLI), and scores with seqeval (IOB2, strict: exact spans) or
accuracy.

One module per concern:

  data.py     features (`TokenFeatures`, `PairFeatures`), word pieces, the window planner
              (`plan_word_windows`: every word predicted in exactly one window), TFRecord writing
              and the `input_fn`;
  heads.py    one class per head, owning everything that differs between NER and NLI: conversion,
              record fields, output layer and loss, EVAL metrics and PREDICT outputs, reassembly,
              scores, prediction files, and for prediction on raw text its output kind, decoding,
              word rules and HuggingFace architecture; the registry of heads (`register_head`,
              `head_for_task`);
  head_record.py  the `finetune_head.json` record next to a checkpoint (`write`, `read`,
              `HeadRecord`), read in this one place;
  word_rules.py   how raw text is split into words, as a task's training files were;
  metrics.py  seqeval exact-span scores, accuracy and confusion matrix, the result files;
  runner.py   `FinetuneConfig`, `config_from_flags`, the `model_fn`, `Runner` and `run` (what
              run_finetune.py calls);
  grid.py     the paper's grid (learning rate x batch x epochs, picked on dev) and its summary.

Outputs in `output_dir`: `eval_results.txt` / `test_results.txt` (Google's `key = value` lines),
`eval_results.json` / `test_results.json`, predictions as CoNLL (`word gold predicted`) or TSV
(NLI), per-note `.con` files for i2b2 2010, `finetune_head.json` next to the checkpoint, and for
`--grid` a summary table (`grid_summary.md`/`.json`).
"""
