"""clinicalbert_tf: a TensorFlow-1-style reimplementation of the ClinicalBERT pipeline.

One module (or package) per concern, mirroring google-research/bert; the scripts at the top level
are thin absl wrappers around them:
  modeling, tokenization, optimization  -- Google's three core modules, same public API.
  cli, fileio, progress, checkpoints     -- shared by every script: start-up and errors, globs and
                                            atomic writes, progress lines, configs and checkpoints.
  estimator, train_op, hooks, lamb       -- the training machinery (Estimator and RunConfig, the
                                            training op, session hooks, the LAMB optimizer).
  notes/, surrogates, deid_demo          -- clinical notes to pretraining sentences, surrogate PHI,
                                            the invented de-identification set.
  vocab, pretraining_text, pretraining_data, pretraining_fast, tfrecord, pretraining,
  eval_history                           -- the vocabulary, pretraining data and pretraining.
  tasks/, finetuning/                    -- fine-tuning readers (one per data family) and heads.
  features, hf, inference/, anonymize/, savedmodel
                                         -- using models: embeddings, HuggingFace conversion,
                                            predictions on raw notes (model, per-note step, note
                                            readers, output formats, the job), PHI replacement,
                                            TF Serving.
  evaluation/                            -- scoring spans: the i2b2 2014 / 2010 scorers' own
                                            definitions, SemEval span schemes, the HTML review page.
"""

import os

# TensorFlow's C++ start-up lines (cuDNN/cuFFT/cuBLAS "Unable to register factory" errors, "Could
# not find TensorRT", oneDNN and CPU-feature notes) are about ten lines before any script's own
# output. They go through TensorFlow's C++ logger, which reads this variable once, when TensorFlow
# is imported: so it is set here, before any module of the package imports TensorFlow. Level 3:
# the factory lines are ERRORs, which level 2 still prints. A value the user set is kept
# (TF_CPP_MIN_LOG_LEVEL=0 shows them all again).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
