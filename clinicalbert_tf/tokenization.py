"""WordPiece tokenization with Google's exact behaviour under Python 3.

Same public API as google-research/bert's `tokenization.py` (`FullTokenizer`, `BasicTokenizer`,
`WordpieceTokenizer`, `load_vocab`, `convert_to_unicode`, ...), so code written against Google's module
works with this one. The rules:

  * text is cleaned: NUL, U+FFFD and control characters (categories Cc and Cf, except tab, newline and
    carriage return) are dropped; whitespace (space, tab, newline, CR and category Zs) becomes a space;
  * CJK ideographs are surrounded by spaces;
  * with `do_lower_case`, each whitespace token is lower-cased and accents are stripped (NFD, drop Mn);
  * every punctuation character (category P*, and all ASCII non-alphanumerics) is its own token;
  * each resulting word is split greedily into the longest word pieces found in the vocabulary
    (continuations prefixed `##`); a word with an unmatchable rest, or longer than 200 characters,
    becomes `[UNK]`.

Two faster paths give the same tokens (a test compares them with Google's code on a generated corpus):
pure-ASCII text is cleaned and split with a translation table and one regular expression, and
word-piece splits are memoised per word (bounded cache).
"""

import collections
import itertools
import re
import unicodedata

from clinicalbert_tf import fileio



def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Checks that `do_lower_case` agrees with the casing of Google's released checkpoints.

  Only checkpoints whose directory names Google published are recognised (as in Google's code);
  anything else is accepted silently.

  Raises:
    ValueError: if the checkpoint is a known cased model and `do_lower_case` is True, or vice versa.
  """
  if not init_checkpoint:
    return
  m = re.match("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt", init_checkpoint)
  if m is None:
    return
  model_name = m.group(1)
  lower_models = [
      "uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
      "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12"
  ]
  cased_models = [
      "cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16",
      "multi_cased_L-12_H-768_A-12"
  ]
  if model_name in lower_models and not do_lower_case:
    actual_flag, case_name, opposite_flag = "False", "lowercased", "True"
  elif model_name in cased_models and do_lower_case:
    actual_flag, case_name, opposite_flag = "True", "cased", "False"
  else:
    return
  raise ValueError(
      "You passed in `--do_lower_case=%s` with `--init_checkpoint=%s`. However, `%s` seems to be a "
      "%s model, so you should pass in `--do_lower_case=%s` so that the fine-tuning matches how the "
      "model was pre-training. If this error is wrong, please just comment out this check." %
      (actual_flag, init_checkpoint, model_name, case_name, opposite_flag))


def convert_to_unicode(text):
  """Returns `text` as `str`, decoding UTF-8 bytes (invalid sequences ignored)."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError("Unsupported string type: %s" % (type(text)))


def printable_text(text):
  """Returns `text` in a form suitable for printing (`str` in Python 3)."""
  return convert_to_unicode(text)


def load_vocab(vocab_file):
  """Loads a vocabulary file (one token per line) into an ordered token -> id dictionary.

  As in Google's code (bert-tensorflow 1.0.4), a repeated token keeps its first id and takes no
  new one, and a blank line in the middle of the file is the token "".

  Raises:
    fileio.InputError: naming the file and line if a line is not UTF-8 (Google's raises
      UnicodeDecodeError from inside TensorFlow's reader).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  vocab = collections.OrderedDict()
  with tf.io.gfile.GFile(vocab_file, "r") as reader:
    for line_number in itertools.count(1):
      try:
        token = convert_to_unicode(reader.readline())
      except UnicodeDecodeError as e:
        raise fileio.InputError("vocabulary %s:%d: not valid UTF-8 (%s); expected one token per "
                                "line" % (vocab_file, line_number, e.reason)) from None
      if not token:
        break
      token = token.strip()
      if token not in vocab:
        vocab[token] = len(vocab)
  return vocab


def convert_by_vocab(vocab, items):
  """Maps a sequence of tokens (or ids) through `vocab`."""
  return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
  return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
  return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text):
  """Strips `text` and splits it on runs of whitespace."""
  text = text.strip()
  if not text:
    return []
  return text.split()


def truncate_seq_pair(tokens_a, tokens_b, max_length):
  """Truncates a pair of token lists in place to `max_length` tokens in total.

  Google's heuristic (run_classifier, extract_features): one token at a time from the end of the
  longer list, since a token of a short text carries more information than one of a long text.
  """
  while len(tokens_a) + len(tokens_b) > max_length:
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


_UNUSED_TOKEN_RE = re.compile(r"^\[unused\d+\]$")


def preserve_token(token, vocab, preserve_unused_tokens=False):
  """True if `token` is an `[unusedN]` vocabulary entry that must not be split.

  Google reads this switch from a global `--preserve_unused_tokens` flag (default False); here it is
  an argument so that importing this module defines no flags.
  """
  if not preserve_unused_tokens or token not in vocab:
    return False
  return bool(_UNUSED_TOKEN_RE.search(token))


class FullTokenizer(object):
  """Runs basic tokenization (punctuation splitting, lower casing) then WordPiece."""

  def __init__(self, vocab_file, do_lower_case=True, preserve_unused_tokens=False):
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {v: k for k, v in self.vocab.items()}
    self.preserve_unused_tokens = preserve_unused_tokens
    self.basic_tokenizer = BasicTokenizer(
        do_lower_case=do_lower_case, vocab=self.vocab,
        preserve_unused_tokens=preserve_unused_tokens)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

  def tokenize(self, text):
    """Returns the list of word pieces for `text`."""
    split_tokens = []
    wordpiece = self.wordpiece_tokenizer.tokenize_word
    for token in self.basic_tokenizer.tokenize(text):
      if self.preserve_unused_tokens and preserve_token(token, self.vocab, True):
        split_tokens.append(token)
      else:
        split_tokens.extend(wordpiece(token))
    return split_tokens

  def convert_tokens_to_ids(self, tokens):
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    return convert_by_vocab(self.inv_vocab, ids)


# ASCII fast path. For pure-ASCII text Google's per-character rules reduce to: drop the C0 controls
# and DEL (tab, newline and CR become spaces), then split into runs of letters/digits and single
# punctuation characters (every printable ASCII non-alphanumeric counts as punctuation).
_ASCII_CLEAN_TABLE = {cp: None for cp in list(range(0, 32)) + [127]}
_ASCII_CLEAN_TABLE.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})
_ASCII_TOKEN_RE = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")

# Distinct words (or non-ASCII pieces) remembered per tokenizer; a full cache is cleared, so memory
# stays bounded.
_CACHE_LIMIT = 500000


class BasicTokenizer(object):
  """Runs basic tokenization (punctuation splitting, lower casing, etc.)."""

  def __init__(self, do_lower_case=True, vocab=tuple(), preserve_unused_tokens=False):
    """Constructs a BasicTokenizer.

    Args:
      do_lower_case: Whether to lower case (and strip accents from) the input.
      vocab: tokens that `preserve_unused_tokens` may keep whole.
      preserve_unused_tokens: keep `[unusedN]` vocabulary entries as single tokens.
    """
    self.do_lower_case = do_lower_case
    self.vocab = vocab
    self.preserve_unused_tokens = preserve_unused_tokens
    self._cache = {}

  def tokenize(self, text):
    """Tokenizes a piece of text into words and punctuation."""
    text = convert_to_unicode(text)
    if self.preserve_unused_tokens:
      return self._tokenize_general(text)
    if text.isascii():
      return self._tokenize_ascii(text)
    # Every rule acts on single characters or on whitespace-separated tokens, so text can be cut at
    # plain spaces and each piece tokenized alone: ASCII pieces take the fast path and the others
    # the general one (remembered, since the same few non-ASCII words tend to recur).
    output = []
    cache = self._cache
    for chunk in text.split(" "):
      if chunk.isascii():
        output.extend(self._tokenize_ascii(chunk))
        continue
      tokens = cache.get(chunk)
      if tokens is None:
        tokens = self._tokenize_general(chunk)
        if len(cache) >= _CACHE_LIMIT:
          cache.clear()
        cache[chunk] = tokens
      output.extend(tokens)
    return output

  def _tokenize_ascii(self, text):
    text = text.translate(_ASCII_CLEAN_TABLE)
    if self.do_lower_case:
      text = text.lower()
    return _ASCII_TOKEN_RE.findall(text)

  def _tokenize_general(self, text):
    """Google's per-character path (any text)."""
    text = self._clean_text(text)
    # Surrounding CJK characters with spaces makes each one a word, as Google does for the
    # multilingual and Chinese models (and, harmlessly, for English ones).
    text = self._tokenize_chinese_chars(text)
    split_tokens = []
    for token in whitespace_tokenize(text):
      if self.preserve_unused_tokens and preserve_token(token, self.vocab, True):
        split_tokens.append(token)
        continue
      if self.do_lower_case:
        token = self._run_strip_accents(token.lower())
      split_tokens.extend(self._run_split_on_punc(token))
    return whitespace_tokenize(" ".join(split_tokens))

  def _run_strip_accents(self, text):
    """Strips accents: NFD-normalises and drops combining marks (category Mn)."""
    text = unicodedata.normalize("NFD", text)
    return "".join(c for c in text if unicodedata.category(c) != "Mn")

  def _run_split_on_punc(self, text):
    """Splits punctuation characters off as tokens of their own."""
    output = []
    start_new_word = True
    for char in text:
      if _is_punctuation(char):
        output.append([char])
        start_new_word = True
      else:
        if start_new_word:
          output.append([])
        start_new_word = False
        output[-1].append(char)
    return ["".join(x) for x in output]

  def _tokenize_chinese_chars(self, text):
    """Adds whitespace around any CJK character."""
    output = []
    for char in text:
      if self._is_chinese_char(ord(char)):
        output.extend((" ", char, " "))
      else:
        output.append(char)
    return "".join(output)

  def _is_chinese_char(self, cp):
    """Checks whether code point `cp` is in a CJK Unified Ideographs block."""
    # The blocks Google's code treats as CJK (Hangul and Japanese kana are not among them).
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or
            (0x20000 <= cp <= 0x2A6DF) or (0x2A700 <= cp <= 0x2B73F) or
            (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF) or
            (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))

  def _clean_text(self, text):
    """Drops invalid and control characters and maps whitespace to a space."""
    output = []
    for char in text:
      cp = ord(char)
      if cp == 0 or cp == 0xfffd or _is_control(char):
        continue
      output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


class WordpieceTokenizer(object):
  """Greedy longest-match-first WordPiece tokenization."""

  def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    self._cache = {}

  def tokenize(self, text):
    """Tokenizes already whitespace-separated text into word pieces.

    For example, `input = "unaffable"` gives `["un", "##aff", "##able"]`.

    Args:
      text: a single token or whitespace-separated tokens, already passed through `BasicTokenizer`.

    Returns:
      A list of wordpiece tokens.
    """
    output_tokens = []
    for token in whitespace_tokenize(convert_to_unicode(text)):
      output_tokens.extend(self.tokenize_word(token))
    return output_tokens

  def tokenize_word(self, word):
    """Returns the word pieces of one word (a list; callers must not modify it)."""
    pieces = self._cache.get(word)
    if pieces is None:
      pieces = self._split_word(word)
      if len(self._cache) >= _CACHE_LIMIT:
        self._cache.clear()
      self._cache[word] = pieces
    return pieces

  def _split_word(self, word):
    if len(word) > self.max_input_chars_per_word:
      return [self.unk_token]
    vocab = self.vocab
    pieces = []
    start = 0
    n = len(word)
    while start < n:
      end = n
      piece = None
      while start < end:
        candidate = word[start:end]
        if start > 0:
          candidate = "##" + candidate
        if candidate in vocab:
          piece = candidate
          break
        end -= 1
      if piece is None:
        return [self.unk_token]
      pieces.append(piece)
      start = end
    return pieces


def _is_whitespace(char):
  """Space, tab, newline, CR and Unicode space separators (Zs) count as whitespace."""
  if char in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(char) == "Zs"


def _is_control(char):
  """Control (Cc) and format (Cf) characters, except tab, newline and CR (treated as whitespace)."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
  """Unicode punctuation (P*) and every ASCII non-alphanumeric, non-space character."""
  cp = ord(char)
  # Characters such as "^", "$" and "`" are not Unicode punctuation, but Google splits them anyway.
  if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
    return True
  return unicodedata.category(char).startswith("P")
