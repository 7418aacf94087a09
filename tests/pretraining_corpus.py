"""Invented clinical-style corpora and vocabularies for the create_pretraining_data tests and benchmark.

Nothing here is real clinical text: sentences are drawn from a small invented lexicon. The generator is
deterministic (its own `random.Random(seed)`) and deliberately covers the corners of Google's reading
and instance-building rules:

  * one-sentence documents, runs of blank lines (empty documents), whitespace-only lines;
  * lines that tokenize to nothing (control characters only: they neither add a sentence nor end the
    document), and lines made only of characters Python strips (they end the document);
  * sentences longer than `max_seq_length` word pieces;
  * Unicode: accents (stripped when lower-casing), CJK ideographs, a Greek letter, an en dash, a
    non-breaking space, characters missing from the vocabulary ([UNK]);
  * MIMIC-style de-identification placeholders such as `[**2101-10-20**]` and `[**Hospital1 18**]`;
  * CRLF line endings and a stray carriage return inside a line (TF's reader drops every `\\r`);
  * words the vocabulary only covers as several word pieces (so whole-word masking has work to do);
  * `[unusedN]` tokens, some in the vocabulary (for --preserve_unused_tokens).
"""

import random

_WORDS = (
    "patient denies chest pain shortness of breath nausea vomiting fever chills cough history "
    "hypertension diabetes mellitus coronary artery disease status post cabg admitted with "
    "pneumonia treated antibiotics discharged home stable condition follow up cardiology clinic "
    "blood pressure heart rate respiratory oxygen saturation room air lungs clear auscultation "
    "bilaterally abdomen soft nontender nondistended extremities edema neuro intact alert "
    "oriented times three labs notable creatinine potassium sodium glucose hemoglobin platelets "
    "white count elevated normal chronic acute renal failure atrial fibrillation anticoagulation "
    "warfarin heparin metoprolol lisinopril aspirin insulin sliding scale given started continue "
    "the a an and or to for on in at by was is were be been has had no not daily twice").split()

# Rarer words the vocabulary does not hold whole: they split into several word pieces.
_RARE = ("echocardiogram thrombocytopenia hyperkalemia cholecystectomy bronchoscopy "
         "nephrolithiasis tachycardic diaphoretic hemodynamically anticoagulated "
         "electrolytes intubated extubated ventilator pericardial effusion").split()

_UNICODE = ["café", "naïve", "Ångström", "résumé", "µg", "°C", "β-blocker", "5–10", "中文",
            "señor", "Zoë", "coöperate", "∆", "x\u00a0y", "🙂", "ﬁbrosis"]

_PLACEHOLDERS = ["[**2101-10-20**]", "[**Hospital1 18**]", "[**Known lastname 123**]",
                 "[**First Name8 (NamePattern2) 1234**]", "[**Telephone/Fax (1) 5678**]",
                 "[**2-14**]", "[**Location (un) 86**]"]

# Google's tokenizer keeps `[unusedN]` whole with --preserve_unused_tokens when the vocabulary has it.
_UNUSED = ["[unused1]", "[unused3]", "[unused9]"]

_PUNCT = [",", ".", ";", ":", "/", "(", ")", "-", "%", "+", "=", "#", "&"]

SPECIAL_TOKENS = ["[PAD]"] + ["[unused%d]" % i for i in range(5)] + ["[UNK]", "[CLS]", "[SEP]",
                                                                      "[MASK]"]


def make_vocab(path, extra_words=0, seed=0):
  """Writes a WordPiece vocabulary for the invented lexicon; returns its tokens.

  It holds the special tokens, every ASCII letter and digit (whole and as `##` continuation),
  punctuation, the common words in lower and title case, a few `##` suffixes, some (not all) of the
  Unicode characters, a repeated token (Google keeps its first id) and optionally `extra_words`
  invented filler tokens so that the random-word draw ranges over a realistic size.
  """
  rng = random.Random(seed)
  tokens = list(SPECIAL_TOKENS)
  chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
  chars += [str(d) for d in range(10)]
  tokens += chars
  tokens += ["##" + c for c in chars]
  tokens += [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
  for word in _WORDS:
    tokens += [word, word.capitalize()]
  tokens += ["##s", "##ed", "##ing", "##tion", "##ia", "##ic", "##ec", "##to", "##my", "##scopy",
             "echo", "thrombo", "hyper", "chole", "nephro", "tachy", "hemo", "anti", "electro",
             "ventil", "peri"]
  tokens += ["é", "##é", "ï", "##ï", "µ", "°", "β", "–", "中", "文", "ñ", "##ñ", "ë", "##ë"]
  tokens += ["patient"]  # a repeated entry: Google keeps the first id and assigns no new one
  for i in range(extra_words):
    tokens.append("filler%d%s" % (i, rng.choice("abcdefgh")))
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  return tokens


def _word(rng):
  r = rng.random()
  if r < 0.06:
    return rng.choice(_RARE)
  if r < 0.08:
    return rng.choice(_UNICODE)
  if r < 0.11:
    return rng.choice(_PLACEHOLDERS)
  if r < 0.14:
    return str(rng.randint(0, 400))
  if r < 0.145:
    return rng.choice(_UNUSED)
  if r < 0.20:
    return rng.choice(_PUNCT)
  word = rng.choice(_WORDS)
  if rng.random() < 0.1:
    word = word.capitalize()
  elif rng.random() < 0.02:
    word = word.upper()
  return word


def _sentence(rng, long_prob):
  n = rng.randint(1, 25)
  if rng.random() < long_prob:
    n = rng.randint(60, 180)  # longer than a short max_seq_length once split into word pieces
  return " ".join(_word(rng) for _ in range(n))


def make_corpus_lines(num_docs, seed=0, long_prob=0.03):
  """Returns the lines (each ending in a line break) of an invented corpus with `num_docs` documents."""
  rng = random.Random(seed)
  lines = []
  for d in range(num_docs):
    kind = rng.random()
    if kind < 0.1:
      n_sent = 1  # one-sentence document
    elif kind < 0.15:
      n_sent = rng.randint(2, 3)
    else:
      n_sent = rng.randint(3, 30)
    for _ in range(n_sent):
      s = _sentence(rng, long_prob)
      r = rng.random()
      if r < 0.02:
        s = "  \t" + s + "   "  # stripped
      elif r < 0.03:
        s += "\r"  # a CRLF line ending
      elif r < 0.035:
        s = s.replace(" ", "\r", 1)  # TF's reader drops a carriage return inside a line, too
      lines.append(s + "\n")
      r = rng.random()
      if r < 0.01:
        lines.append("\x01\x02\n")  # tokenizes to nothing: no sentence and no document break
      elif r < 0.015:
        lines.append("\u00ad\n")  # a soft hyphen (format character): also nothing
    lines.append("\n")
    r = rng.random()
    if r < 0.05:
      lines.append("\n")  # an empty document
    elif r < 0.07:
      lines.append("   \n\x1f\n")  # whitespace-only lines end documents too (Python's strip)
    if d == 0 and num_docs > 1:
      lines.append("\n\n")
  return lines


def write_corpus(path, num_docs, seed=0, long_prob=0.03, final_newline=True):
  """Writes `make_corpus_lines(...)` to `path` (UTF-8); returns its size in bytes."""
  text = "".join(make_corpus_lines(num_docs, seed=seed, long_prob=long_prob))
  if not final_newline:
    text = text.rstrip("\n")
  data = text.encode("utf-8")
  with open(path, "wb") as f:
    f.write(data)
  return len(data)


def write_corpus_of_size(path, min_bytes, seed=0, long_prob=0.01):
  """Writes a corpus of at least `min_bytes` bytes to `path`; returns the size written."""
  rng = random.Random(seed)
  chunks = []
  size = 0
  while size < min_bytes:
    text = "".join(make_corpus_lines(200, seed=rng.randint(0, 1 << 30), long_prob=long_prob))
    data = text.encode("utf-8")
    chunks.append(data)
    size += len(data)
  with open(path, "wb") as f:
    for data in chunks:
      f.write(data)
  return size
