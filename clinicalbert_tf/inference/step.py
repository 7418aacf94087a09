"""The per-note step: one note and its spans in, everything written about it out.

  outputs = step.note_outputs(note, spans, anonymizer=anonymizer)
  outputs.record          # predict.py's JSON line ({"id", "entities"})
  outputs.deidentified    # anonymize.Result (text, items), with an anonymizer

A pure function of its arguments (no files, no model, no state between notes), so every engine
calls exactly this: the local job (`job.py`), a Spark or Beam worker, an HTTP request. Spans come
from the model (`Predictor`), or from elsewhere (given spans, pattern recognizers).
"""

import dataclasses
from typing import List, Optional

from clinicalbert_tf.inference import outputs as outputs_lib


@dataclasses.dataclass
class NoteOutputs:
  """What one note gives.

  Attributes:
    note: the note (`readers.Note`, or anything with id, text, source, patient).
    spans: its entity spans (`text.Span`), sorted by start; empty for a sentence pair.
    record: its JSON-lines record (spans, or a pair's label and probabilities).
    deidentified: the de-identified note and its replacement items, when asked for.
  """
  note: object
  spans: List
  record: dict
  deidentified: Optional[object] = None


def note_outputs(note, spans, anonymizer=None, include_text=False):
  """The outputs of one note with entity `spans`.

  Args:
    note: the note (id, text; patient where known).
    spans: its spans, sorted by start.
    anonymizer: an `anonymize.Anonymizer` to de-identify the note with (None: predict only).
    include_text: put the note's text in its JSON record (it is PHI: off by default).
  """
  record = outputs_lib.jsonl_record(note.id, spans, note.text if include_text else None)
  deidentified = None
  if anonymizer is not None:
    deidentified = anonymizer.anonymize(note.text, spans, note.id,
                                        patient=getattr(note, "patient", None))
  return NoteOutputs(note=note, spans=spans, record=record, deidentified=deidentified)


def pair_outputs(pair, label, probabilities):
  """The outputs of one sentence pair: its label and {label: probability}."""
  return NoteOutputs(note=pair, spans=[], record={"id": pair.id, "label": label,
                                                  "probabilities": probabilities})
