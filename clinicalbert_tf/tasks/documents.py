"""Shared by the native NER readers: character-offset documents, safe XML, splits by patient.

Character-offset formats (i2b2 2006, 2012, 2014) become words and IOB2 labels the way the ClinicalBERT
authors made them: each line is a sentence, words are separated by whitespace, and every entity
boundary is also a word boundary (`01/01</PHI>/1995` gives the words `01/01` and `/1995`). A line break
inside an entity does not end the sentence, so every entity stays whole.

XML is parsed with defusedxml (no external entities, no entity expansion). A bare `&` outside CDATA (the
released i2b2 2012 files contain some) is read as `&amp;`; any other malformed XML is an error naming the
file, line and column.
"""

import bisect
import dataclasses
import glob
import os
import random
import re
import xml.etree.ElementTree as std_et
from typing import List, Optional

from absl import logging
import defusedxml
import defusedxml.ElementTree as safe_et

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks

# The dev split of the ClinicalBERT preprocessing: 10% of training patients (90/10), drawn with this
# fixed seed here (the authors' notebooks drew an unseeded permutation).
DEV_FRACTION = 0.1
SPLIT_SEED = 12345


@dataclasses.dataclass
class Entity:
  """An annotation over characters [start, end) of a document's text.

  `ref` says where it came from for messages (e.g. `EVENT id=E12`), never its text.
  """
  start: int
  end: int
  type: str
  ref: str
  text: Optional[str] = None  # the annotation's own copy of its text, checked against the document


@dataclasses.dataclass
class Document:
  """One note: its sentences (words, IOB2 labels) and the patient it belongs to.

  `text` and `entities` (the note's text and gold annotations as read) are kept by the readers whose
  predictions are also scored with a shared task's own scorer (`DocumentNerTask.official_scorer`).
  """
  doc_id: str
  group_id: str
  sentences: List[tasks.TaggedSentence]
  text: Optional[str] = None
  entities: Optional[List[Entity]] = None


def read_text_file(path):
  """The file's text (UTF-8). Raises InputError naming the file and byte offset if it is not UTF-8."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise fileio.InputError("%s: not UTF-8 text (byte %d: %s)" % (path, e.start, e.reason)) from None


def nonblank_lines(path):
  """(`path:line number`, line) of each line of a UTF-8 file that is not blank."""
  for number, line in enumerate(read_text_file(path).split("\n"), 1):
    if line.strip():
      yield "%s:%d" % (path, number), line


_CDATA_RE = re.compile(r"<!\[CDATA\[.*?\]\]>", re.S)
_BARE_AMPERSAND_RE = re.compile(r"&(?![A-Za-z_][\w.-]*;|#[0-9]+;|#x[0-9A-Fa-f]+;)")


def escape_bare_ampersands(xml_text):
  """Escapes each `&` that starts no entity reference, outside CDATA sections. Returns (text, count)."""
  parts = []
  count = 0
  last = 0
  for m in _CDATA_RE.finditer(xml_text):
    fixed, n = _BARE_AMPERSAND_RE.subn("&amp;", xml_text[last:m.start()])
    parts.extend([fixed, m.group(0)])
    count += n
    last = m.end()
  fixed, n = _BARE_AMPERSAND_RE.subn("&amp;", xml_text[last:])
  parts.append(fixed)
  return "".join(parts), count + n


def parse_xml(path):
  """Parses an XML file safely and returns its root element.

  Raises:
    fileio.InputError: naming the file, line and column of malformed XML, or a forbidden construct.
  """
  text, fixed = escape_bare_ampersands(read_text_file(path))
  if fixed:
    logging.warning("%s: read %d bare '&' as '&amp;'", path, fixed)
  try:
    return safe_et.fromstring(text)
  except std_et.ParseError as e:
    line, column = e.position
    message = re.sub(r": line \d+, column \d+$", "", str(e))
    raise fileio.InputError("%s: malformed XML at line %d, column %d: %s" %
                            (path, line, column + 1, message)) from None
  except defusedxml.DefusedXmlException as e:
    raise fileio.InputError("%s: refused to parse XML (%s)" % (path, e)) from None


def normalise_space(text):
  return " ".join(text.split())


def describe_mismatch(expected, actual):
  """Says how two texts differ without quoting them (clinical text stays out of logs)."""
  expected, actual = normalise_space(expected), normalise_space(actual)
  i = 0
  while i < min(len(expected), len(actual)) and expected[i] == actual[i]:
    i += 1
  return ("the annotation's text has %d characters, the document has %d there; they first differ at "
          "character %d" % (len(expected), len(actual), i + 1))


class TextChecker(object):
  """Compares annotation texts with the document; raises or counts, as `check_text` says."""

  def __init__(self, check_text, flag_hint="--nocheck_entity_text"):
    self.check_text = check_text
    self.flag_hint = flag_hint
    self.mismatches = 0

  def check(self, expected, actual, where):
    if normalise_space(expected) == normalise_space(actual):
      return
    if self.check_text:
      raise fileio.InputError("%s: text does not match: %s (%s reads on with a warning)" %
                              (where, describe_mismatch(expected, actual), self.flag_hint))
    self.mismatches += 1

  def report(self, what):
    if self.mismatches:
      logging.warning("%s: %d annotations whose text does not match the document (kept)", what,
                      self.mismatches)


def check_entities(text, entities, source, checker=None):
  """Validates offsets (and texts) of `entities`; raises InputError naming file, annotation, offsets."""
  for e in entities:
    if not 0 <= e.start <= e.end <= len(text):
      raise fileio.InputError(
          "%s: %s has offsets %d-%d outside the text (%d characters)" %
          (source, e.ref, e.start, e.end, len(text)))
    if not text[e.start:e.end].strip():
      raise fileio.InputError("%s: %s at offsets %d-%d covers no word" %
                              (source, e.ref, e.start, e.end))
    if checker is not None and e.text is not None:
      checker.check(e.text, text[e.start:e.end],
                    "%s: %s at offsets %d-%d" % (source, e.ref, e.start, e.end))


def drop_overlaps(entities, source):
  """Keeps the first of overlapping entities (by start, longer first); IOB cannot hold both."""
  kept, dropped = [], []
  end = -1
  for e in sorted(entities, key=lambda e: (e.start, -e.end)):
    if e.start >= end:
      kept.append(e)
      end = e.end
    else:
      dropped.append(e)
  if dropped:
    logging.warning("%s: %d overlapping annotations dropped (IOB holds one entity per word): %s",
                    source, len(dropped), ", ".join(e.ref for e in dropped[:5]) +
                    (", ..." if len(dropped) > 5 else ""))
  return kept


def tokenize_document(text, entities, doc_id, guid_prefix="", source=None, checker=None):
  """Words, IOB2 labels and character offsets for a document with character-offset `entities`.

  Lines are sentences (unless an entity spans the line break), words are whitespace-separated, and
  each entity boundary inside a whitespace word splits it, so every entity is a run of whole words.

  Args:
    text: the document text.
    entities: list of Entity (offsets into `text`).
    doc_id: the note's id, stored on each sentence.
    guid_prefix: prefix of each sentence's guid (`<prefix><doc_id>-<n>`).
    source: file name for messages.
    checker: a TextChecker, or None to skip text checks.

  Returns:
    A list of TaggedSentence whose `positions` are (start, end) character offsets of each word.

  Raises:
    fileio.InputError: an entity outside the text, over whitespace only, or (with a checker) whose text
      does not match.
  """
  source = source or doc_id
  check_entities(text, entities, source, checker)
  entities = drop_overlaps(entities, source)
  boundaries = sorted({b for e in entities for b in (e.start, e.end)})

  words = []  # (start, end)
  for m in re.finditer(r"\S+", text):
    start, end = m.span()
    cuts = boundaries[bisect.bisect_right(boundaries, start):bisect.bisect_left(boundaries, end)]
    for cut in cuts + [end]:
      if cut > start:
        words.append((start, cut))
      start = cut

  # Which entity each word is in (entities are sorted and disjoint).
  entity_of = [None] * len(words)
  k = 0
  for i, (start, end) in enumerate(words):
    while k < len(entities) and entities[k].end <= start:
      k += 1
    if k < len(entities) and entities[k].start <= start and end <= entities[k].end:
      entity_of[i] = k

  sentences = []
  current = []
  for i, (start, end) in enumerate(words):
    if current:
      previous_end = words[i - 1][1]
      same_entity = entity_of[i] is not None and entity_of[i] == entity_of[i - 1]
      if "\n" in text[previous_end:start] and not same_entity:
        sentences.append(current)
        current = []
    current.append(i)
  if current:
    sentences.append(current)

  result = []
  for n, indexes in enumerate(sentences):
    labels = []
    for j, i in enumerate(indexes):
      k = entity_of[i]
      if k is None:
        labels.append("O")
      elif j > 0 and entity_of[indexes[j - 1]] == k:
        labels.append("I-" + entities[k].type)
      else:
        labels.append("B-" + entities[k].type)
    result.append(tasks.TaggedSentence(
        guid="%s%s-%d" % (guid_prefix, doc_id, n),
        words=[text[words[i][0]:words[i][1]] for i in indexes],
        labels=labels,
        doc_id=doc_id,
        positions=[words[i] for i in indexes]))
  return result


def sentence_char_spans(sentence):
  """Entity spans (start, end, type) in characters, from a sentence made by tokenize_document."""
  return [(sentence.positions[s][0], sentence.positions[e - 1][1], t)
          for s, e, t in tasks.iob_to_spans(sentence.labels)]


def find_files(data_dir, split, suffix, what):
  """Files ending in `suffix` anywhere under `<data_dir>/<split>/`, sorted.

  Raises:
    fileio.InputError: if the folder is missing or holds no such file.
  """
  folder = os.path.join(data_dir, split)
  if not os.path.isdir(folder):
    hint = ""
    if any(os.path.isfile(os.path.join(data_dir, "train" + s)) for s in (".tsv", ".txt", ".conll")):
      hint = " (it holds IOB files: read those with --task_name=conll)"
    raise fileio.InputError("--data_dir=%s has no %s/ folder: expected the %s %s files under %s%s" %
                            (data_dir, split, what, split, folder, hint))
  files = sorted(p for p in glob.glob(os.path.join(folder, "**", "*" + suffix), recursive=True)
                 if os.path.isfile(p))
  if not files:
    raise fileio.InputError("%s: no *%s files found (expected the %s %s files)" %
                            (folder, suffix, what, split))
  return files


def split_by_group(documents, dev_fraction=DEV_FRACTION, seed=SPLIT_SEED):
  """Splits documents into (train, dev) by patient group: 90/10 with a fixed seed.

  The ClinicalBERT preprocessing keeps `int(n * 0.9)` patients for training; the order is a seeded
  shuffle of the sorted patient ids, so the split depends on nothing but the set of patients.
  """
  groups = sorted({d.group_id for d in documents})
  if len(groups) < 2:
    logging.warning("only %d patient(s) in the training data: the dev split is empty", len(groups))
    return list(documents), []
  random.Random(seed).shuffle(groups)
  num_train = min(len(groups) - 1, max(1, int(len(groups) * (1 - dev_fraction))))
  dev_groups = set(groups[num_train:])
  train = [d for d in documents if d.group_id not in dev_groups]
  dev = [d for d in documents if d.group_id in dev_groups]
  return train, dev


class DocumentNerTask(tasks.Task):
  """A NER task read from native files under `<data_dir>/train/` and `<data_dir>/test/`.

  If `<data_dir>/dev/` exists it is the dev set; otherwise dev is cut from train by `dev_rule`:
  `group` (90/10 by patient, fixed seed) or `first_70` (first 70% of training sentences).
  Subclasses implement `read_file(path, checker)` -> list of Document and set `file_suffix`, `what`,
  and `entity_types` (None: the label set is read from the data, all splits).
  """

  kind = "ner"
  file_suffix = ".xml"
  what = None
  entity_types = None
  dev_rule = "group"
  # "i2b2_2014": run_finetune.py also scores predictions with that official scorer
  # (clinicalbert_tf/evaluation/finetune.py); the reader keeps each Document's text and entities.
  official_scorer = None

  def __init__(self, options=None):
    super().__init__(options)
    self._cache = {}

  def read_file(self, path, checker):
    raise NotImplementedError()

  def list_files(self, data_dir, split):
    return find_files(data_dir, split, self.file_suffix, self.what)

  def check_type(self, typ, where):
    """Raises InputError if `typ` is not one of this task's entity types."""
    if self.entity_types is not None and typ not in self.entity_types:
      raise fileio.InputError("%s: unknown type %r: expected one of %s" %
                              (where, typ, ", ".join(sorted(self.entity_types))))

  def _read_folder(self, data_dir, split):
    checker = TextChecker(self.options.check_text)
    documents = []
    for path in self.list_files(data_dir, split):
      documents.extend(self.read_file(path, checker))
    checker.report(os.path.join(data_dir, split))
    return documents

  def _documents(self, data_dir, split):
    """{split: [Document]} for the splits that `split` needs (memoised per data_dir)."""
    key = (os.path.abspath(data_dir), "test" if split == "test" else "train")
    if key in self._cache:
      return self._cache[key]
    if split == "test":
      result = {"test": self._read_folder(data_dir, "test")}
    else:
      train = self._read_folder(data_dir, "train")
      if os.path.isdir(os.path.join(data_dir, "dev")):
        result = {"train": train, "dev": self._read_folder(data_dir, "dev")}
      elif self.dev_rule == "group":
        train, dev = split_by_group(train)
        result = {"train": train, "dev": dev}
      else:
        result = {"train": train, "dev": None}  # cut by sentences in get_examples
    self._cache[key] = result
    return result

  def documents_by_id(self, split):
    """{doc_id: Document} of the notes of `split` read so far (whole notes: `test`, or a `dev`
    folder or patient split; not a `first_70` dev, which is sentences)."""
    return {d.doc_id: d for splits in self._cache.values() for d in splits.get(split) or []}

  def get_examples(self, data_dir, split):
    tasks.check_split(split)
    docs = self._documents(data_dir, split)
    if docs.get("dev", 0) is None:
      sentences = [s for d in docs["train"] for s in d.sentences]
      cut = int(0.7 * len(sentences))
      sentences = sentences[:cut] if split == "train" else sentences[cut:]
    else:
      sentences = [s for d in docs[split] for s in d.sentences]
    # Stable, text-free guids per split.
    return [dataclasses.replace(s, guid="%s-%d" % (split, i)) for i, s in enumerate(sentences)]

  def get_labels(self, data_dir):
    types = self.entity_types
    if types is None:
      seen = set()
      for split in ("train", "test"):
        try:
          docs = self._documents(data_dir, split)
        except fileio.InputError:
          if split == "train":
            raise
          continue  # no test folder: the training labels are the label set
        for document_list in docs.values():
          for d in document_list or []:
            for s in d.sentences:
              seen.update(tasks.label_type(l) for l in s.labels if l != "O")
      types = seen
    return tasks.ner_label_list(types)
