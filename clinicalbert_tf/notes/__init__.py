"""Clinical notes to pretraining text: reading notes, splitting them, formatting a whole source.

One module per concern:

  noteevents.py  MIMIC-III NOTEEVENTS: the streaming CSV reader (`NoteEventsReader`, `NoteRow`,
                 `BadRow`; `predict.py` reads notes through it too) and `NoteEventsSource`, the
                 file as a source of the pipeline;
  rows.py        what any source gives the pipeline: `Note` (key, ref, line, category, error flag,
                 text, patient) and `BadRow`, and the source interface; another note source is
                 one class with that interface;
  heldout.py     the held-out split by patient (`is_heldout_subject`, `heldout_path`);
  sentences.py   the sentence rules S1-S7 (placeholders, spaCy, abbreviations, list markers):
                 `SentenceSplitter` and `render_note`, one sentence per line;
  sections.py    the section rules R1-R7 that cut a note into segments before the sentence rules;
  pipeline.py    the `format_notes.py` driver: `format_notes(source, ...)` (selection, surrogate
                 PHI, the split, workers, one file per category and one of all notes, sidecars)
                 and `format_notes_file`, which reads a NOTEEVENTS file.
"""
