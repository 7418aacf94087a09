"""clinicalbert_tf: a TensorFlow-1-style reimplementation of the ClinicalBERT pipeline.

One module per concern, mirroring google-research/bert:
  modeling, tokenization, optimization  -- Google's three core modules, same public API.
  fileio                                 -- globbing, atomic writes, sidecar records.
  training                               -- Estimator / RunConfig construction shared by the scripts.
"""

__version__ = "0.1.0"
