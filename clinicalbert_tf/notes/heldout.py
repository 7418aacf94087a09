"""The held-out split by patient of `format_notes.py --heldout_fraction`.

With a fraction F > 0 a share F of the patients is held out: patient s is held out when the first
8 bytes (big-endian) of SHA-256 of `"<seed>:<s>"`, over 2**64, are below F (`is_heldout_subject`),
a pure function of the seed and the id, so the split is the same for any worker count, any order
of rows and any `categories`, and a larger F holds out a superset. Every note of a held-out patient
goes to the held-out sibling of each file it would have gone to (`heldout_path`:
`discharge_summary.heldout.txt` next to `discharge_summary.txt`), written in the same format by the
same rules; no patient has notes on both sides (`pipeline.py` routes the notes).
"""

import hashlib
import os

from clinicalbert_tf import fileio

# Inserted before the extension of an output's name to name its held-out sibling.
HELDOUT_INFIX = ".heldout"


def heldout_path(path):
  """The held-out sibling of an output file: `.heldout` before its extension.

  `out/discharge_summary.txt` -> `out/discharge_summary.heldout.txt`; `all` -> `all.heldout`.
  """
  root, extension = os.path.splitext(path)
  return root + HELDOUT_INFIX + extension


def is_heldout_subject(subject_id, fraction, seed):
  """Whether patient `subject_id` (an int) is held out at `fraction` with `seed`.

  The first 8 bytes (big-endian) of SHA-256 of `"<seed>:<subject_id>"`, over 2**64, below
  `fraction`: the same in every process and run (Python's `hash` is salted per process), about a
  share `fraction` of patients, and nested (a patient held out at F is held out at every F' > F).
  """
  if fraction <= 0.0:
    return False
  digest = hashlib.sha256(("%d:%d" % (seed, subject_id)).encode("ascii")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def check_heldout_fraction(fraction, flag="--heldout_fraction"):
  """Raises InputError unless 0 <= `fraction` < 1."""
  if not 0.0 <= fraction < 1.0:  # also false for NaN
    raise fileio.InputError("%s=%s: expected a share of patients to hold out, at least 0 (no "
                            "split) and below 1" % (flag, fraction))

