"""i2b2 2010 concepts (problem, treatment, test) as NER, and predictions back as `.con` files.

Native files, per note: `<note>.txt` (one sentence per line, tokens separated by spaces) and
`<note>.con` with lines like
  c="chest pain" 3:5 3:6||t="problem"
(line numbers 1-based, token indexes 0-based, end inclusive, concept text lower-cased). Each concept's
text is checked against the tokens it points at. A concept that spans lines joins those lines into one
sentence, so every concept stays whole.

Layout: `<data_dir>/train/` and `<data_dir>/test/`, each searched recursively for `*.txt` with a `.con`
of the same name anywhere under the same folder (the release's `beth/txt` + `beth/concept`,
`partners/...`, `test_data/` + `reference_standard_for_test_data/concepts/` all work). Dev: optional
`<data_dir>/dev/`, else 10% of training notes (one note per patient), fixed seed, as the authors did.
"""

import collections
import os
import re

from absl import logging

from clinicalbert_tf import fileio
from clinicalbert_tf import tasks
from clinicalbert_tf.tasks import documents

CONCEPT_TYPES = ("problem", "test", "treatment")

_CON_RE = re.compile(r'^c="(.*)" (\d+):(\d+) (\d+):(\d+)\|\|t="([^"]*)"\s*$')


def parse_con_line(line, where):
  """(text, start_line, start_token, end_line, end_token, type) of one `.con` line."""
  m = _CON_RE.match(line)
  if not m:
    raise fileio.InputError('%s: expected c="text" LINE:TOKEN LINE:TOKEN||t="type"' % where)
  text, l1, t1, l2, t2, typ = m.groups()
  return text, int(l1), int(t1), int(l2), int(t2), typ


def parse_concept(line, where):
  """`parse_con_line`, and an error if the concept ends before it starts."""
  text, l1, t1, l2, t2, typ = parse_con_line(line.strip(), where)
  if (l1, t1) > (l2, t2):
    raise fileio.InputError("%s: concept ends (%d:%d) before it starts (%d:%d)" %
                            (where, l2, t2, l1, t1))
  return text, l1, t1, l2, t2, typ


def format_con_line(words, start, end, typ):
  """A `.con` line for the concept over `words` from position `start` to `end` (inclusive)."""
  text = " ".join(words).lower()
  return 'c="%s" %d:%d %d:%d||t="%s"' % (text, start[0], start[1], end[0], end[1], typ)


class I2b2_2010Task(documents.DocumentNerTask):  # pylint: disable=invalid-name
  """Concept spans of the 2010 relations challenge data."""

  name = "i2b2_2010"
  what = "i2b2 2010 .txt/.con"
  # The 2010 notes are tokenized text: punctuation stands apart from the words.
  word_rules = "lines_punctuation"
  entity_types = CONCEPT_TYPES
  file_suffix = ".txt"

  def list_files(self, data_dir, split):
    """Pairs (txt, con) under `<data_dir>/<split>/`."""
    txt_files = documents.find_files(data_dir, split, ".txt", self.what)
    folder = os.path.join(data_dir, split)
    con_files = collections.defaultdict(list)
    for path in documents.find_files(data_dir, split, ".con", self.what):
      con_files[os.path.splitext(os.path.basename(path))[0]].append(path)
    pairs, missing = [], []
    for txt in txt_files:
      stem = os.path.splitext(os.path.basename(txt))[0]
      candidates = con_files.get(stem, [])
      if len(candidates) > 1:
        raise fileio.InputError("%s: %d .con files named %s.con: %s" %
                                (folder, len(candidates), stem, ", ".join(candidates)))
      if candidates:
        pairs.append((txt, candidates[0]))
      else:
        missing.append(txt)
    if missing:
      logging.warning("%s: %d .txt files without a .con skipped (e.g. %s)", folder, len(missing),
                      missing[0])
    if not pairs:
      raise fileio.InputError("%s: no .txt file has a matching .con file" % folder)
    return pairs

  def read_file(self, path, checker):
    txt_path, con_path = path
    doc_id = os.path.splitext(os.path.basename(txt_path))[0]
    lines = [line.split() for line in documents.read_text_file(txt_path).split("\n")]
    if lines and not lines[-1]:
      lines.pop()  # the final newline
    concepts = []
    for where, line in documents.nonblank_lines(con_path):
      text, l1, t1, l2, t2, typ = parse_concept(line, where)
      self.check_type(typ, where)
      for l, t in ((l1, t1), (l2, t2)):
        if not 1 <= l <= len(lines) or not 0 <= t < len(lines[l - 1]):
          raise fileio.InputError(
              "%s: position %d:%d is outside %s (%d lines%s)" %
              (where, l, t, txt_path, len(lines),
               ", line %d has %d tokens" % (l, len(lines[l - 1])) if 1 <= l <= len(lines) else ""))
      words = []
      for l in range(l1, l2 + 1):
        tokens = lines[l - 1]
        words.extend(tokens[(t1 if l == l1 else 0):(t2 + 1 if l == l2 else len(tokens))])
      if checker is not None:
        checker.check(text, " ".join(words).lower(),
                      "%s: concept at %d:%d-%d:%d of %s" % (where, l1, t1, l2, t2, txt_path))
      concepts.append((l1, t1, l2, t2, typ, where))

    # Lines joined by concepts that span them: join[l] is True when line l continues line l-1.
    join = [False] * (len(lines) + 2)
    for l1, _, l2, _, _, _ in concepts:
      for l in range(l1 + 1, l2 + 1):
        join[l] = True
    groups = []
    for l in range(1, len(lines) + 1):
      if join[l] and groups:
        groups[-1].append(l)
      else:
        groups.append([l])
    group_of = {l: g for g, group in enumerate(groups) for l in group}

    positions = []  # per group: [(line, token)]
    for group in groups:
      positions.append([(l, t) for l in group for t in range(len(lines[l - 1]))])
    spans = collections.defaultdict(list)
    for l1, t1, l2, t2, typ, where in concepts:
      g = group_of[l1]
      index = {p: i for i, p in enumerate(positions[g])}
      spans[g].append(documents.Entity(index[(l1, t1)], index[(l2, t2)] + 1, typ, where))

    sentences = []
    for g, group in enumerate(groups):
      if not positions[g]:
        continue
      kept = documents.drop_overlaps(spans[g], "%s line %d" % (con_path, group[0]))
      labels = tasks.spans_to_iob(len(positions[g]), [(e.start, e.end, e.type) for e in kept])
      sentences.append(tasks.TaggedSentence(
          guid="%s-%d" % (doc_id, group[0]),
          words=[lines[l - 1][t] for l, t in positions[g]],
          labels=labels, doc_id=doc_id, positions=positions[g]))
    return [documents.Document(doc_id=doc_id, group_id=doc_id, sentences=sentences)]

  def write_native_predictions(self, examples, predicted_labels, output_dir):
    """Writes `<output_dir>/<note>.con` with the predicted concepts of each note. Returns the paths."""
    by_doc = collections.OrderedDict()
    for example, labels in zip(examples, predicted_labels):
      if example.doc_id is None or example.positions is None:
        return []  # not read from native files: nothing to map back to
      lines = by_doc.setdefault(example.doc_id, [])
      for start, end, typ in tasks.iob_to_spans(labels):
        lines.append(format_con_line(example.words[start:end], example.positions[start],
                                     example.positions[end - 1], typ))
    paths = []
    for doc_id, lines in by_doc.items():
      path = os.path.join(output_dir, doc_id + ".con")
      fileio.write_text_atomic(path, "".join(line + "\n" for line in lines))
      paths.append(path)
    return paths


def make_task(options):
  return I2b2_2010Task(options)
