"""Real notes for the benchmarks: MTSamples transcriptions (../shared/data/mtsamples/) or a folder.

The benchmarks take the path as a flag, with MTSamples beside the checkout as the default when it
is there; the project never ships it and no test needs it.
"""

import csv
import glob
import gzip
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_mtsamples():
  """../shared/data/mtsamples/mtsamples.csv.gz beside the checkout (or beside its parent), or None."""
  for up in ("..", os.path.join("..", "..")):
    path = os.path.normpath(os.path.join(REPO, up, "shared", "data", "mtsamples",
                                         "mtsamples.csv.gz"))
    if os.path.exists(path):
      return path
  return None


def read_mtsamples(path, num):
  """The first `num` non-empty transcriptions of an MTSamples CSV (.csv or .csv.gz), in file order."""
  csv.field_size_limit(1 << 24)
  opener = gzip.open if path.endswith(".gz") else open
  notes = []
  with opener(path, "rt", encoding="utf-8", newline="") as f:
    for row in csv.DictReader(f):
      text = (row.get("transcription") or "").strip()
      if text:
        notes.append(text)
      if len(notes) >= num:
        break
  return notes


def read_notes(path, num):
  """(notes, description): the first `num` notes of `path`.

  `path`: an MTSamples CSV (.csv / .csv.gz, its `transcription` column), or a folder of plain-text
  notes (`*.txt`, one note per file, in name order).
  """
  if os.path.isdir(path):
    notes = []
    for name in sorted(glob.glob(os.path.join(path, "*.txt")))[:num]:
      with open(name, encoding="utf-8") as f:
        notes.append(f.read())
    return notes, "%d notes of %s" % (len(notes), path)
  return read_mtsamples(path, num), "the first %d MTSamples transcriptions (%s)" % (
      num, os.path.basename(path))
