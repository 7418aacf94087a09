"""Fine-tuned models applied to raw notes: notes -> words -> windows -> one loaded session -> outputs.

`predict.py`, `deidentify.py` and the service are front ends over this package:

  model = inference.load_model("finetune/i2b2_2010")      # a fine-tuned directory or a SavedModel
  for note, spans in inference.Predictor(model).predict(notes):
    outputs = inference.note_outputs(note, spans)         # the per-note step: record, de-id text

One module per concern:

  model.py      locating (`tf.io.gfile` paths) and loading a model: `LoadedModel`, one session;
  text.py       notes -> blocks of lines -> sentences of words (the head record's word rules) ->
                character spans (`Span`);
  predictor.py  `Predictor` (word-labelling heads: spans) and `predict_pairs` (pair heads), batched
                across notes, streamed, in input order;
  step.py       the pure per-note step `(note, spans) -> NoteOutputs` every engine calls;
  readers.py    the registry of note readers (text, JSON lines, NOTEEVENTS);
  outputs.py    the registry of output formats (each with its scope) and their writers;
  job.py        the local job: options, reading, the bad-note policy, writers, progress, flags.

Every decision that depends on the kind of model is the head's (`finetuning/heads.py`); PHI
replacement is `anonymize`'s. Nothing here logs note text.
"""

from clinicalbert_tf.inference.job import JobOptions
from clinicalbert_tf.inference.job import run_job
from clinicalbert_tf.inference.model import LoadedModel
from clinicalbert_tf.inference.model import load_model
from clinicalbert_tf.inference.model import locate_model
from clinicalbert_tf.inference.model import SERVING_INPUTS
from clinicalbert_tf.inference.model import SERVING_SIGNATURE
from clinicalbert_tf.inference.predictor import predict_pairs
from clinicalbert_tf.inference.predictor import Predictor
from clinicalbert_tf.inference.step import note_outputs
from clinicalbert_tf.inference.step import NoteOutputs
from clinicalbert_tf.inference.text import Span
