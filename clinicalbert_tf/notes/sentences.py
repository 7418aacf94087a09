"""Clinical notes to sentences: placeholders, sections, the spaCy pipeline, one sentence per line.

`SentenceSplitter` splits a note into sections (`sections.py`, rules R1-R7) and sentences
(spaCy/scispaCy, rules S1-S7 below); `render_note` writes a note's sentences one per line with a
blank line after the note. Reading `NOTEEVENTS.csv` is `noteevents.py`; formatting a whole source
of notes, in one process or a pool, is `pipeline.py`.

Sentence rules (applied to TEXT and ITEM segments; HEADER and FIXED segments are one line each):
  S1 Placeholders. Every de-identification placeholder `[**...**]` (within one line) is replaced by
     a lower-case stand-in word before sections and spaCy see the note, and restored verbatim at
     the end, so a placeholder is never split inside and never split across two sentences.
     (`format_notes.py --phi=surrogate` replaces each placeholder by a realistic surrogate first,
     `surrogates.py`; the surrogate is then split like any other text.)
  S2 spaCy. `--spacy_model=rules` (the default, no download): `spacy.blank("en")` with scispaCy's
     `combined_rule_tokenizer` (keeps `s/p`, `h/o`, `w/`, `120/80`, `Dr.` whole) and spaCy's
     rule-based `sentencizer` (a sentence ends at a `.`, `!`, `?` token and the punctuation right
     after it). Any other value is loaded with `spacy.load(name, disable=["tagger", "ner"])`, as
     the paper did with `en_core_sci_md`, and its parser decides, with S3 added before the parser.
  S3 Period + title case. A `.` token followed by a title-case token starts a sentence (the
     authors' `sbd_component`); so does a `.` glued to a title-case word (`stable.He`,
     `0.12.Cardiology`), unless the word before the `.` is a known abbreviation (`Dr.Smith`) or
     has a `.` between letters (`U.S.Army`); and so does a title-case word after a lone capital
     letter and `.`, which spaCy keeps as one token (`65 yo M. He ...`, `Vitamin D. Take ...`).
  S4 Abbreviations. A sentence that ends with `.`, `!` or `?` and then `,`, `;` or `:` (`q.d.,`) is
     joined with the next sentence of the same segment. With the rules model, so is a sentence
     that ends with an abbreviation (`p.o.`, `b.i.d.`, `Pt.`, `approx.`, `vs.`, any `x.y.` form,
     ...) when the next one starts with a lower-case letter or a digit (`ASA 81 mg p.o. daily.`,
     `approx. 5 cm`).
  S5 List markers. A sentence that is only a list marker (`1.`, `2)`, `-`) is joined with the
     sentence after it (`1. Aspirin 81 mg daily.`).
  S6 Whitespace. Newlines inside a sentence become spaces; every run of whitespace becomes one
     space (placeholders are restored verbatim afterwards); sentences are stripped.
  S7 Empty sentences are dropped. A note left with no sentence is counted as empty, not written.
"""

import os
import re
import warnings

from clinicalbert_tf import fileio
from clinicalbert_tf.notes import sections

RULES_MODEL = "rules"
# scispaCy 0.5.5 uses the v0.5.4 models (spaCy 3.7).
SCISPACY_MODEL_URL = ("https://s3-us-west-2.amazonaws.com/ai2-s2-scispacy/releases/v0.5.4/"
                      "{name}-0.5.4.tar.gz")
# The spaCy vocabulary and tokenizer cache grow with every new string; past this many lexemes the
# pipeline is rebuilt so memory does not grow with the input (tokenization does not depend on it).
MAX_VOCAB_LEXEMES = 300000

PLACEHOLDER_RE = re.compile(r"\[\*\*.*?\*\*\]")
_STAND_IN_STEM = "qqphi"

# S3: a `.` glued to a following title-case word, with the word before it; and a single capital
# letter with a `.` (one token for spaCy, like `M.` in `65 yo M. He ...`) before a title-case word.
_GLUED_PERIOD_RE = re.compile(r"(\S+)\.(?=[A-Z][a-z])")
_LETTER_PERIOD_RE = re.compile(r"(?<![\w.])[A-Z]\.(?=\s+[A-Z][a-z])")
# S4: abbreviations after which a lower-case word continues the sentence.
_ABBREVIATIONS = frozenset("""
    dr mr mrs ms st pt pts approx appt vs no nos fig figs sig disp tab tabs cap caps inj susp soln
    hx dx tx rx sx yo etc al jr sr
    """.split())
_DOTTED_ABBREVIATION_RE = re.compile(r"(?:[A-Za-z]\.){2,}|(?:[A-Za-z]\.)+[A-Za-z]")
# S3: a word with a `.` between letters (`p.o`, `U.S`), after which a glued `.` is not a boundary.
_DOTTED_WORD_RE = re.compile(r"[A-Za-z]\.[A-Za-z]")
# S4: a sentence cut right after `.`, `!` or `?` that is followed by `,`, `;` or `:` (`q.d.,`).
_PUNCT_THEN_COMMA_RE = re.compile(r"[.!?][,;:]$")
# S5: a sentence that is only a list marker.
_LIST_MARKER_RE = re.compile(r"\(?\d{1,2}[.)]|[-*\u2022#]+")


def protect_placeholders(text):
  """Replaces each `[**...**]` by a stand-in word that occurs nowhere else in `text` (rule S1).

  Args:
    text: a note.

  Returns:
    (protected_text, placeholders, stand_in): `placeholders` in order of appearance; `stand_in` is
    None when there are none. `restore_placeholders` undoes it.
  """
  placeholders = PLACEHOLDER_RE.findall(text)
  if not placeholders:
    return text, [], None
  tail = 2
  while True:
    stand_in = _STAND_IN_STEM + "q" * tail
    protected = PLACEHOLDER_RE.sub(stand_in, text)
    # Count overlapping occurrences too, so that no text next to a stand-in can fake one.
    if len(re.findall("(?=%s)" % stand_in, protected)) == len(placeholders):
      return protected, placeholders, stand_in
    tail += 1


def restore_placeholders(sentences, placeholders, stand_in):
  """Puts the placeholders back, in order, into the sentences made from a protected note."""
  if not placeholders:
    return sentences
  remaining = iter(placeholders)
  pattern = re.compile(re.escape(stand_in))
  restored = [pattern.sub(lambda _: next(remaining), s) for s in sentences]
  if next(remaining, None) is not None:
    raise AssertionError("internal error: a placeholder was lost while splitting a note")
  return restored


def _period_titlecase_component(doc):
  """Rule S3 as a spaCy component: a `.` token followed by a title-case token starts a sentence."""
  for i in range(len(doc) - 1):
    if doc[i].text == "." and doc[i + 1].is_title:
      doc[i + 1].is_sent_start = True
  return doc


_COMPONENT_NAME = "clinicalbert_period_titlecase"


def _register_component():
  import spacy  # pylint: disable=g-import-not-at-top
  if not spacy.language.Language.has_factory(_COMPONENT_NAME):
    spacy.language.Language.component(_COMPONENT_NAME, func=_period_titlecase_component)


def missing_model_message(name):
  """The one-line error for a spaCy model that is not installed."""
  if name.startswith(("en_core_sci_", "en_ner_")):
    how = "pip install " + SCISPACY_MODEL_URL.format(name=name)
  else:
    how = "python -m spacy download %s" % name
  return ("--spacy_model=%s: spaCy model %r is not installed; install it with `%s`, or use "
          "--spacy_model=%s, which needs no download" % (name, name, how, RULES_MODEL))


def check_spacy_model(name):
  """Raises InputError unless `name` is `rules`, an installed spaCy package or a model directory."""
  if name == RULES_MODEL:
    return
  import spacy  # pylint: disable=g-import-not-at-top
  if not (spacy.util.is_package(name) or os.path.isdir(name)):
    raise fileio.InputError(missing_model_message(name))


def build_pipeline(spacy_model=RULES_MODEL):
  """Builds the spaCy pipeline for sentence splitting (rule S2).

  Args:
    spacy_model: `rules`, or a spaCy model name or path.

  Returns:
    A `spacy.Language`.

  Raises:
    InputError: if the model is not installed.
  """
  import spacy  # pylint: disable=g-import-not-at-top
  from scispacy import custom_tokenizer  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    # scispaCy's tokenizer regexes trigger Python's "possible set union" FutureWarning.
    warnings.simplefilter("ignore", FutureWarning)
    if spacy_model == RULES_MODEL:
      # spaCy's sentencizer rather than scispaCy's pysbd_sentencizer: measured here 4.5x faster
      # (363k vs 80k tokens/s), and pysbd joined `no n/v/d. Echo showed ...`; what pysbd did
      # better (`p.o. daily`) rule S4 does.
      nlp = spacy.blank("en")
      nlp.tokenizer = custom_tokenizer.combined_rule_tokenizer(nlp)
      nlp.add_pipe("sentencizer")
      return nlp
    try:
      nlp = spacy.load(spacy_model, disable=["tagger", "ner"])
    except OSError as e:
      if "E050" in str(e) or "E053" in str(e):
        raise fileio.InputError(missing_model_message(spacy_model)) from None
      raise
  _register_component()
  if "parser" in nlp.pipe_names:
    nlp.add_pipe(_COMPONENT_NAME, before="parser")
  elif "senter" in nlp.pipe_names:
    nlp.add_pipe(_COMPONENT_NAME, before="senter")
  else:
    # No parser: a sentencizer decides (it sets every token's start), then S3 adds starts.
    if "sentencizer" not in nlp.pipe_names:
      nlp.add_pipe("sentencizer")
    nlp.add_pipe(_COMPONENT_NAME, last=True)
  return nlp


def _is_abbreviation(word):
  """True for `p.o.`, `b.i.d.`, `Pt.`, `approx.`: words after which a lower-case word continues."""
  if not word.endswith("."):
    return False
  stem = word[:-1]
  return stem.lower() in _ABBREVIATIONS or bool(_DOTTED_ABBREVIATION_RE.fullmatch(word))


def _split_after_periods(sentence):
  """Rule S3 inside a sentence: `stable.He ...` or `65 yo M. He ...` -> [`... M.`, `He ...`]."""
  cuts = set()
  for match in _GLUED_PERIOD_RE.finditer(sentence):
    word = match.group(1)
    if word.lower() not in _ABBREVIATIONS and not _DOTTED_WORD_RE.search(word):
      cuts.add(match.end())  # just after the `.`
  for match in _LETTER_PERIOD_RE.finditer(sentence):
    cuts.add(match.end())
  if not cuts:
    return [sentence]
  pieces = []
  start = 0
  for cut in sorted(cuts):
    pieces.append(sentence[start:cut].strip())
    start = cut
  pieces.append(sentence[start:].strip())
  return [p for p in pieces if p]


def postprocess_sentences(raw_sentences, abbreviations=True):
  """Rules S3 (glued), S4, S5, S6 and S7 on the raw sentence texts of one segment.

  Args:
    raw_sentences: sentence texts from spaCy, in order, for one segment.
    abbreviations: apply rule S4 (the rules model only).

  Returns:
    The segment's output sentences.
  """
  out = []
  marker = None
  for raw in raw_sentences:
    text = " ".join(raw.split())  # S6
    if not text:  # S7
      continue
    for piece in _split_after_periods(text) if "." in text else (text,):
      if marker is not None:  # S5
        piece = marker + " " + piece
        marker = None
      if _LIST_MARKER_RE.fullmatch(piece):
        marker = piece
        continue
      if out and (_PUNCT_THEN_COMMA_RE.search(out[-1]) or (
          abbreviations and (piece[0].islower() or piece[0].isdigit())
          and _is_abbreviation(out[-1].rsplit(" ", 1)[-1]))):  # S4
        out[-1] = out[-1] + " " + piece
        continue
      out.append(piece)
  if marker is not None:
    out.append(marker)
  return out


def _sentence_texts(doc):
  """The texts of `doc`'s sentences, each running to the next one's start (whitespace included).

  Reading the sentence starts as one array is several times faster than iterating `doc.sents`.
  """
  from spacy import attrs  # pylint: disable=g-import-not-at-top
  if not len(doc):
    return []
  starts = doc.to_array([attrs.SENT_START, attrs.IDX])  # [num_tokens, 2]
  offsets = starts[starts[:, 0] == 1, 1].tolist()
  if not offsets or offsets[0] != 0:
    offsets.insert(0, 0)
  offsets.append(len(doc.text))
  text = doc.text
  return [text[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


class SentenceSplitter(object):
  """Turns note texts into sentences with the sections rules and a spaCy pipeline."""

  def __init__(self, spacy_model=RULES_MODEL):
    self.spacy_model = spacy_model
    self._rules = spacy_model == RULES_MODEL
    self._nlp = build_pipeline(spacy_model)

  def _maybe_rebuild(self):
    # Lexemes and cached tokenizations accumulate for every new string; start afresh (tokenization
    # and sentence boundaries do not depend on what the vocabulary has seen).
    if len(self._nlp.vocab) > MAX_VOCAB_LEXEMES:
      self._nlp = build_pipeline(self.spacy_model)

  def format_notes(self, texts):
    """Splits notes into output sentences.

    Args:
      texts: a list of note texts.

    Returns:
      A list with, for each note, its list of sentences (possibly empty).
    """
    notes = []
    spacy_inputs = []
    for text in texts:
      protected, placeholders, stand_in = protect_placeholders(text)
      segments = sections.split_sections(protected)
      notes.append((segments, placeholders, stand_in))
      spacy_inputs.extend(s.text for s in segments if s.kind in (sections.TEXT, sections.ITEM))
    docs = self._nlp.pipe(spacy_inputs, batch_size=256)
    results = []
    for segments, placeholders, stand_in in notes:
      sentences = []
      for segment in segments:
        if segment.kind in (sections.TEXT, sections.ITEM):
          raw = _sentence_texts(next(docs))
          sentences.extend(postprocess_sentences(raw, abbreviations=self._rules))
        else:
          sentences.append(" ".join(segment.text.split()))
      results.append(restore_placeholders(sentences, placeholders, stand_in))
    if next(docs, None) is not None:
      raise AssertionError("internal error: segments and spaCy documents out of step")
    self._maybe_rebuild()
    return results

  def format_note(self, text):
    """The output sentences of one note."""
    return self.format_notes([text])[0]


def render_note(sentences):
  """The output bytes of one note: one sentence per line, then a blank line (b"" if empty)."""
  if not sentences:
    return b""
  return ("\n".join(sentences) + "\n\n").encode("utf-8")
