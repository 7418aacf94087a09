"""Names: each word of a name span mapped on its own, so one person stays one surrogate person.

A name span is read into words: titles (`Mr.`, `Dr.`) and suffixes (`Jr.`, `MD`) stay; a single
letter (`J.`, `J`) or an upper-case pair not in the last-name list (`JS`) is initials; every other
word (hyphenated parts one by one) is a name word. A name word maps by the word alone, never by its
place in the span, so `John` means the same whether it stands alone, first, or after a comma:
  * a word of the locale's last-name list only: moved along the patient's keyed cycle of that
    list (no two of a patient's last names collide, none maps to itself);
  * a word of the first-name list only: a keyed draw from the first names that start with the
    patient's surrogate initial of its initial (and share its sex, when the locale's female or male
    list alone has it);
  * a word of both lists: a keyed draw from all first and last names that start with its
    surrogate initial; a word of neither list (many real names, mostly surnames): from the last
    names that start with its surrogate initial (about 40 a letter in en_US).
Initials: the patient's initials are shifted by one keyed amount through the initials the name
lists have, so `John` -> `Peter` and `J.` -> `P.`. Every mapping is keyed by (patient, the word in
lower case). So `John Smith`, `Mr. Smith`, `SMITH, JOHN`, `J. Smith` and `John` become `Peter
Brown`, `Mr. Brown`, `BROWN, PETER`, `P. Brown` and `Peter`. Case follows the original word (upper,
lower, else the list's). Candidates are offered to a chooser (`choose(kind, key, candidate)`),
which rejects those that repeat the note's PHI or another value's surrogate and asks for the next.
"""

import re

from clinicalbert_tf import surrogates as surrogates_lib

_TITLES = frozenset("mr mrs ms miss mx dr prof sir dame madam rev fr sr".split())
_SUFFIXES = frozenset("jr sr ii iii iv md do phd rn np pa dds dmd mph facs".split())
# Words of letters (apostrophes inside: O'Brien), each with an optional trailing dot.
_WORD_RE = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*\.?")


class NamePools(object):
  """The locale's first and last names, grouped for the mappings above."""

  def __init__(self, generator):
    lists = surrogates_lib.name_lists(generator)
    self.last = sorted(set(lists.get("last_names", ())))
    self.last_index = {name.lower(): i for i, name in enumerate(self.last)}
    female = set(lists.get("first_names_female", ()))
    male = set(lists.get("first_names_male", ()))
    firsts = sorted(female | male | set(lists.get("first_names", ())))
    self.first_lower = set(n.lower() for n in firsts)
    self.female = set(n.lower() for n in female) - set(n.lower() for n in male)
    self.male = set(n.lower() for n in male) - set(n.lower() for n in female)
    self.groups = {}
    for name in firsts:
      initial = name[0].upper()
      sex = "F" if name.lower() in self.female else "M" if name.lower() in self.male else None
      self.groups.setdefault((initial, None), []).append(name)
      if sex:
        self.groups.setdefault((initial, sex), []).append(name)
    self.initials = sorted(set(initial for initial, _ in self.groups))
    self.initial_index = {initial: i for i, initial in enumerate(self.initials)}
    self.either = {}  # initial -> first and last names with it (words of both lists)
    for name in sorted(set(firsts) | set(self.last)):
      self.either.setdefault(name[0].upper(), []).append(name)
    self.last_by_initial = {}  # initial -> last names with it (words of neither list)
    for name in self.last:
      self.last_by_initial.setdefault(name[0].upper(), []).append(name)

  def sex(self, word):
    lower = word.lower()
    return "F" if lower in self.female else "M" if lower in self.male else None


def _apply_case(original, new):
  letters = original.rstrip(".")
  if len(letters) > 1 and letters.isupper():
    return new.upper()
  if letters.islower():
    return new.lower()
  return new


def parse(text, pools):
  """[(start, end, part)] of the words of a name span; part: first, last, initial or keep (first
  and last by place: `Last, First`, else the last word is the last name; a single word by the
  lists). Only hashes (`normalised`) use first and last; surrogates map each word by itself."""
  words = [(m.start(), m.end(), m.group(0)) for m in _WORD_RE.finditer(text)]
  roles = []
  for start, end, word in words:
    bare = word.rstrip(".").lower()
    if bare in _TITLES and (word.endswith(".") or len(words) > 1):
      roles.append("keep")
    elif bare in _SUFFIXES and roles and start > 0:
      roles.append("keep")
    elif len(bare) == 1 or (len(bare) == 2 and word.isupper() and bare not in pools.last_index):
      roles.append("initial")
    else:
      roles.append("name")
  names = [i for i, r in enumerate(roles) if r == "name"]
  # A word joined to the previous one by a hyphen takes its part (Smith-Jones, Mary-Ann).
  compound = [i > 0 and words[i - 1][1] + 1 == words[i][0] and text[words[i - 1][1]] == "-"
              for i in range(len(words))]
  heads = [i for i in names if not compound[i]]
  comma = text.find(",")
  parts = {}
  if heads and 0 <= comma and words[heads[0]][1] <= comma and any(
      words[i][0] > comma for i in heads):
    for i in heads:
      parts[i] = "last" if words[i][0] < comma else "first"
  elif len(heads) == 1:
    i = heads[0]
    titled = any(roles[j] == "keep" for j in range(i))
    bare = words[i][2].rstrip(".").lower()
    first_only = bare in pools.first_lower and bare not in pools.last_index
    parts[i] = "first" if first_only and not titled else "last"
  else:
    for n, i in enumerate(heads):
      parts[i] = "last" if n == len(heads) - 1 else "first"
  out = []
  current = None
  for i, (start, end, word) in enumerate(words):
    if roles[i] == "name":
      current = parts[i] if not compound[i] else (current or "last")
      out.append((start, end, current))
    else:
      out.append((start, end, roles[i]))
  return out


def normalised(text, pools):
  """The person a name span names, for keyed pseudonyms: `first|last` in lower case."""
  found = {"first": [], "last": [], "initial": []}
  for start, end, part in parse(text, pools):
    if part in found:
      found[part].append(text[start:end].rstrip(".").lower())
  return "%s|%s" % (" ".join(found["first"] or found["initial"]), " ".join(found["last"]))


class NameMapper(object):
  """Maps name spans of one patient (see the module docstring)."""

  def __init__(self, pools, keyed):
    self.pools = pools
    self.keyed = keyed
    self._shifts = {}  # patient -> the shift of its initials

  def initial(self, patient, letter):
    """The patient's surrogate initial for `letter` (upper case): never `letter` itself."""
    initials = self.pools.initials
    upper = letter.upper()
    if len(initials) < 2:
      return upper
    if upper in initials:
      shift = self._shifts.get(patient)
      if shift is None:
        if len(self._shifts) > 4096:  # a few notes' patients: keep memory flat
          self._shifts.clear()
        shift = self._shifts[patient] = 1 + self.keyed.integer(patient, "NAME_INITIAL", "",
                                                               len(initials) - 1)
      return initials[(self.pools.initial_index[upper] + shift) % len(initials)]
    return initials[self.keyed.integer(patient, "NAME_INITIAL", upper, len(initials))]

  def _last(self, patient, lower, attempt):
    pool = self.pools.last
    index = self.pools.last_index.get(lower)
    if index is not None and attempt == 0:
      return pool[self.keyed.cycle(patient, "NAME_LAST", len(pool)).successor(index)]
    return pool[self.keyed.integer(patient, "NAME_LAST", lower, len(pool), attempt)]

  def _first(self, patient, word, attempt):
    initial = self.initial(patient, word[0])
    group = (self.pools.groups.get((initial, self.pools.sex(word)))
             or self.pools.groups.get((initial, None)))
    if not group:
      return None
    return group[self.keyed.integer(patient, "NAME_FIRST", word.lower(), len(group), attempt)]

  def _either(self, patient, word, attempt, groups):
    initial = self.initial(patient, word[0])
    group = groups.get(initial) or self.pools.either.get(initial)
    if not group:
      return None
    return group[self.keyed.integer(patient, "NAME_EITHER", word.lower(), len(group), attempt)]

  def _word(self, patient, bare, attempt):
    lower = bare.lower()
    in_first, in_last = lower in self.pools.first_lower, lower in self.pools.last_index
    if in_last and not in_first:
      return self._last(patient, lower, attempt)
    if in_first and not in_last:
      return self._first(patient, bare, attempt)
    return self._either(patient, bare, attempt,
                        self.pools.either if in_first else self.pools.last_by_initial)

  def surrogate(self, text, patient, choose):
    """The surrogate of one name span's text; `choose(kind, key, candidate)` vets each word."""
    out = []
    last = 0
    for start, end, part in parse(text, self.pools):
      word = text[start:end]
      out.append(text[last:start])
      last = end
      if part == "keep":
        out.append(word)
        continue
      bare = word.rstrip(".")
      dot = word[len(bare):]
      if part == "initial":
        out.append("".join(_apply_case(c, self.initial(patient, c)) for c in bare) + dot)
        continue
      new = choose("NAME", bare.lower(),
                   lambda attempt, w=bare: self._word(patient, w, attempt))
      if not new:  # every candidate clashed with the note: keyed letters after the initial
        digest = self.keyed.digest(patient, "NAME_LETTERS", bare.lower())
        new = self.initial(patient, bare[0]) + "".join(chr(ord("a") + b % 26)
                                                       for b in digest[:6])
      out.append(_apply_case(bare, new) + dot)
    out.append(text[last:])
    return "".join(out)
