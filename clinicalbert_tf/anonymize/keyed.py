"""Keyed consistency: every pseudonymous choice is a function of (key, patient, type, value).

With a secret (`--secret_file`) the key is the secret, so the same value of the same patient gets
the same surrogate in every note, run, worker and machine with no state shared between them (a
Spark or Beam worker needs no shuffle). Without a secret the key comes from the run's seed and the
patient is the note itself: today's per-note, seeded behaviour. The secret is held only here, never
printed (`repr` hides it), and no output is made from it except through HMAC-SHA256.

Two primitives:
  * `Keyed.integer(patient, kind, value, n)`: a uniform choice among n, from an HMAC of its parts
    (each part length-prefixed, so ("ab", "c") and ("a", "bc") differ);
  * `Keyed.cycle(patient, kind, n).successor(i)`: the element after i on one keyed cycle through
    all of range(n) (a Feistel permutation with cycle walking, taken as a cyclic order). It is a
    bijection without fixed points, so values mapped through it never collide and never map to
    themselves: shapes of digits and letters, and names found in the surrogate pool, use it.
"""

import hashlib
import hmac

from absl import logging

from clinicalbert_tf import fileio

# Feistel rounds of the keyed permutation (4 suffice for a pseudo-random permutation; 8 for margin).
_ROUNDS = 8
# Secrets shorter than this get a warning (never an echo of the secret).
MIN_SECRET_BYTES = 16


def read_secret_file(path):
  """The secret in `path` (bytes, surrounding whitespace removed).

  Raises:
    fileio.InputError: one line naming the file when it is missing, unreadable or empty (the
      message never quotes its contents).
  """
  if not path:
    raise fileio.InputError("--secret_file: no path given")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise fileio.InputError("--secret_file=%s: no such file" % path) from None
  except OSError as e:
    raise fileio.InputError("--secret_file=%s: cannot be read (%s)" % (
        path, e.strerror or type(e).__name__)) from None
  secret = data.strip()
  if not secret:
    raise fileio.InputError("--secret_file=%s: the file is empty; expected a secret key (keep it "
                            "private: it decides every surrogate)" % path)
  if len(secret) < MIN_SECRET_BYTES:
    # Its length only: a short secret can be guessed, and with it every surrogate undone.
    logging.warning("--secret_file=%s: the secret has %d bytes; use at least %d random bytes",
                    path, len(secret), MIN_SECRET_BYTES)
  return secret


def _encode(parts):
  return b"".join(b"%d:%s;" % (len(p), p) for p in
                  (part if isinstance(part, bytes) else str(part).encode("utf-8") for part in parts))


class Keyed(object):
  """HMAC-SHA256 choices under one key (see the module docstring)."""

  def __init__(self, key):
    if not isinstance(key, bytes) or not key:
      raise ValueError("Keyed needs a non-empty bytes key")
    self._key = key
    self._cycles = {}

  @classmethod
  def from_seed(cls, random_seed):
    """The key of runs without a secret: from the seed (public, so not a secret)."""
    return cls(hashlib.sha256(b"clinicalbert_tf/anonymize/seed/%d" % int(random_seed)).digest())

  def __repr__(self):
    return "Keyed(<key hidden>)"

  def digest(self, *parts):
    """HMAC-SHA256 of the length-prefixed `parts` (str, int or bytes)."""
    return hmac.new(self._key, _encode(parts), hashlib.sha256).digest()

  def integer(self, patient, kind, value, n, attempt=0):
    """A choice in range(n) keyed by (patient, kind, value, attempt)."""
    return int.from_bytes(self.digest(patient, kind, value, attempt), "big") % n

  def hex(self, patient, kind, value, length=6):
    """`length` hex digits keyed by (patient, kind, value): a stable pseudonym's suffix."""
    return self.digest(patient, kind, value, "hex").hex()[:length]

  def cycle(self, patient, kind, n):
    """The keyed cycle through range(n) of (patient, kind), cached."""
    cache_key = (patient, kind, n)
    cycle = self._cycles.get(cache_key)
    if cycle is None:
      if len(self._cycles) > 4096:  # one note's or a few patients' worth; keep memory flat
        self._cycles.clear()
      cycle = self._cycles[cache_key] = KeyedCycle(self.digest(patient, kind, n, "cycle"), n)
    return cycle


class KeyedCycle(object):
  """One keyed cyclic order of range(n): `successor(i)` is a derangement and a bijection."""

  def __init__(self, key, n):
    if n < 1:
      raise ValueError("a cycle needs n >= 1")
    self.n = n
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    self._half = bits // 2
    self._mask = (1 << self._half) - 1
    self._bytes = (self._half + 7) // 8
    # One keyed BLAKE2b per round, copied for each call (cheaper than keying it again).
    self._rounds = [hashlib.blake2b(key=hashlib.sha256(key + bytes([r])).digest(),
                                    digest_size=max(8, min(64, self._bytes)))
                    for r in range(_ROUNDS)]

  def _f(self, r, x):
    h = self._rounds[r].copy()
    h.update(x.to_bytes(self._bytes, "big"))
    return int.from_bytes(h.digest(), "big") & self._mask

  def _encrypt(self, x):
    left, right = x >> self._half, x & self._mask
    for r in range(_ROUNDS):
      left, right = right, left ^ self._f(r, right)
    return (left << self._half) | right

  def _decrypt(self, y):
    left, right = y >> self._half, y & self._mask
    for r in reversed(range(_ROUNDS)):
      left, right = right ^ self._f(r, left), left
    return (left << self._half) | right

  def forward(self, position):
    """The element at `position` of the cycle (cycle walking keeps it in range(n))."""
    y = self._encrypt(position)
    while y >= self.n:
      y = self._encrypt(y)
    return y

  def backward(self, element):
    """The position of `element` (the inverse of `forward`)."""
    x = self._decrypt(element)
    while x >= self.n:
      x = self._decrypt(x)
    return x

  def successor(self, element, steps=1):
    """The element `steps` after `element` on the cycle (never `element` itself while steps < n)."""
    return self.forward((self.backward(element) + steps) % self.n)
