"""File handling shared by every script: globbing, atomic writes, sidecar records.

Written once so that each script gets the same guarantees:
  * comma-separated lists of glob patterns expand the way Google's scripts expand them
    (`tf.io.gfile.glob` per pattern, in the order given);
  * outputs are written under a temporary name and renamed on success, so a crash never leaves a
    file under the final name that looks complete;
  * a small JSON "sidecar" next to an output records how it was made.
"""

import contextlib
import hashlib
import json
import os
import sys


class InputError(ValueError):
  """Bad user input (a flag, a file or its contents). The message is meant to be shown as is."""


@contextlib.contextmanager
def exit_on_input_error(script_name=None, also=()):
  """Turns `InputError` (and the exception types in `also`) into one line on stderr and exit 1.

  Every script's `main` runs its work inside this, so bad input ends with
  `<script>.py: error: <what was wrong>` rather than a traceback.

  Args:
    script_name: the name the message starts with (default: the running script's file name).
    also: more exception types to report the same way.
  """
  try:
    yield
  except (InputError,) + tuple(also) as e:
    name = script_name or os.path.basename(sys.argv[0])
    sys.exit("%s: error: %s" % (name, one_line(e)))


def one_line(error):
  """An exception's message on one line: TensorFlow's errors carry node and stack lines after it."""
  if isinstance(error, InputError):
    return str(error)  # written to be shown as is
  message = getattr(error, "message", None)
  text = str(message if message else error).strip()
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  # TF's "Graph execution error:" headline says nothing; the cause is on the next line.
  if len(lines) > 1 and lines[0].rstrip(":").lower() in ("graph execution error",):
    lines = lines[1:]
  return lines[0]


def _nearest_existing(path):
  """The longest prefix of `path` (absolute) that exists."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def _check_folder_can_be_written(folder, path, flag_name):
  """`folder` (for the output `path` of `--flag_name`) exists or can be created, and is writable."""
  existing = _nearest_existing(folder)
  if not os.path.isdir(existing):
    raise InputError("--%s=%s: %s is a file, so the folder cannot be created" %
                     (flag_name, path, existing))
  if not os.access(existing, os.W_OK | os.X_OK):
    raise InputError("--%s=%s: %s is not writable" % (flag_name, path, existing))


def check_output_dir(path, flag_name="output_dir"):
  """An output folder must be a folder (or creatable as one) that this process can write.

  Checked before any work starts, so a wrong path costs a second, not a training run. Remote
  paths (`gs://...`) are not checked.

  Raises:
    InputError: `path` is an existing file, sits below a file, or its nearest existing folder is
      not writable.
  """
  if not path or "://" in path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError("--%s=%s is a file: expected a folder (or a path to create)" %
                     (flag_name, path))
  _check_folder_can_be_written(path, path, flag_name)


def check_output_file(path, flag_name="output_file"):
  """An output file's path must not be a folder, and its folder must be creatable and writable.

  Raises:
    InputError: `path` is a folder, its folder sits below a file, or is not writable.
  """
  if not path or "://" in path:
    return
  if os.path.isdir(path):
    raise InputError("--%s=%s is a folder: expected a file name" % (flag_name, path))
  _check_folder_can_be_written(os.path.dirname(os.path.abspath(path)), path, flag_name)


def split_comma_list(value):
  """Splits a comma-separated flag value into stripped, non-empty items."""
  if not value:
    return []
  return [item.strip() for item in value.split(",") if item.strip()]


def expand_file_patterns(patterns, flag_name="input_file", skip_sidecars=False):
  """Expands a comma list of glob patterns into files, keeping Google's order.

  Google's scripts call `tf.gfile.Glob` on each pattern and extend the list, so the order of
  files is the order of patterns, then the glob's order within a pattern. Local paths use Python's
  `glob` (sorted), which is what `tf.io.gfile.glob` returns for local files, without importing TF.

  Args:
    patterns: a string (comma list) or a list of patterns.
    flag_name: the flag the patterns came from, for the error message.
    skip_sidecars: drop a glob match `X.json` when `X` matched too (the sidecar record this
      project writes next to each output), so `--input_file=records/*` reads only the records.

  Returns:
    A list of file paths.

  Raises:
    InputError: if a pattern matches no file.
  """
  import glob as _glob  # pylint: disable=g-import-not-at-top
  if isinstance(patterns, str):
    patterns = split_comma_list(patterns)
  if not patterns:
    raise InputError("--%s is empty: expected a file, a glob or a comma list of them" % flag_name)
  files = []
  for pattern in patterns:
    if "://" in pattern:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      matches = tf.io.gfile.glob(pattern)
    elif _glob.has_magic(pattern):
      matches = sorted(_glob.glob(pattern))
    else:
      matches = [pattern] if os.path.exists(pattern) else []
    if not matches:
      raise InputError("--%s: no file matches %r" % (flag_name, pattern))
    if skip_sidecars and len(matches) > 1:
      matched = set(matches)
      matches = [m for m in matches
                 if not (m.endswith(".json") and m[:-len(".json")] in matched)]
    files.extend(matches)
  return files


def temporary_path_for(path):
  """Returns the temporary name an output is written under before it is renamed to `path`."""
  directory, name = os.path.split(os.path.abspath(path))
  return os.path.join(directory, ".%s.tmp-%d" % (name, os.getpid()))


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path to write; renames it to `path` only if the block succeeds.

  Usage:
    with atomic_output(out) as tmp:
      write_everything(tmp)

  On an exception the temporary file is removed and `path` is left untouched.
  """
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise InputError("%s cannot be written: its folder cannot be created (%s)" %
                     (path, e.strerror or e)) from None
  if os.path.isdir(path):
    raise InputError("%s is a folder: expected a file name for the output" % path)
  tmp = temporary_path_for(path)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8", newline=None):
  """Like `open(path, mode)` for writing, but the file appears under `path` only on success."""
  with atomic_output(path) as tmp:
    try:
      if "b" in mode:
        f = open(tmp, mode)
      else:
        f = open(tmp, mode, encoding=encoding, newline=newline)
    except OSError as e:
      raise InputError("%s cannot be written (%s)" % (path, e.strerror or e)) from None
    with f:
      yield f


def write_text_atomic(path, text):
  """Writes `text` to `path` atomically (UTF-8)."""
  with atomic_open(path) as f:
    f.write(text)


def write_json_atomic(path, obj):
  """Writes `obj` as indented, key-sorted JSON to `path` atomically."""
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sidecar_path(output_path):
  """The sidecar JSON that records how `output_path` was made."""
  return output_path + ".json"


def write_sidecar(output_path, record):
  """Writes the sidecar record for `output_path` (atomically)."""
  write_json_atomic(sidecar_path(output_path), record)


def sha256_of_file(path, chunk_size=1 << 20):
  """Hex SHA-256 of a file's bytes, read in chunks (bounded memory)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(chunk_size), b""):
      digest.update(chunk)
  return digest.hexdigest()


def format_key_values(values):
  """Google's `eval_results.txt` lines: `key = value`, one per key, sorted by key."""
  return "".join("%s = %s\n" % (key, str(values[key])) for key in sorted(values))


def write_key_values(path, values):
  """Writes `values` as `key = value` lines (sorted keys, Google's format) to `path` atomically.

  A remote path (`gs://...`) is written through `tf.io.gfile`, which has no rename-on-success.
  """
  text = format_key_values(values)
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, "w") as writer:
      writer.write(text)
  else:
    write_text_atomic(path, text)
  return path


def read_key_values(path, convert=float):
  """Parses `key = value` lines (ours or Google's) into {key: convert(value)}.

  Lines without ` = ` are skipped. `convert=None` keeps the values as strings.

  Raises:
    InputError: the file cannot be read, or a value does not convert.
  """
  out = {}
  try:
    with open(path, encoding="utf-8") as f:
      for line_number, line in enumerate(f, 1):
        if " = " not in line:
          continue
        key, value = line.strip().split(" = ", 1)
        try:
          out[key] = convert(value) if convert else value
        except ValueError:
          raise InputError("%s:%d: %s = %r is not a number" % (path, line_number, key,
                                                                value)) from None
  except OSError as e:
    raise InputError("%s cannot be read: %s" % (path, e)) from e
  return out
