"""Output formats: JSON lines, brat standoff, i2b2 2014 XML, i2b2 2010 `.con`, de-identified text.

Each format is registered with its scope, which decides where it is written:

  ONE_FILE   one file for the whole run (`--output_file`): JSON lines, the HTML review page;
  PER_INPUT  one file per input file in `--output_dir` (`<input stem>.jsonl`): JSON lines;
  PER_NOTE   one file per note in `--output_dir` (`<id><suffix>`): brat `.ann`, i2b2 2014 `.xml`,
             `.con`, and de-identified `.txt`.

A format renders one note's outputs (`step.NoteOutputs`) to text; the writers here put that text in
place, each as a context manager that commits its files on success and leaves nothing under a
final name on failure (`fileio.atomic_open`). Offsets are Python string indices into the note as
given, end exclusive. Only the formats that need the note's text hold it (brat's entity text, the
i2b2 2014 XML's TEXT, `.con`'s concept text, JSON lines with `include_text`): JSON lines without it
carry no clinical text.

A new format is one class (`name`, `scopes`, `suffix`, `render`) and one `register` line.
"""

import collections
import json
import os

from clinicalbert_tf import fileio
from clinicalbert_tf.evaluation import html
from clinicalbert_tf.tasks import i2b2_2010
from clinicalbert_tf.tasks import i2b2_2014 as i2b2_2014_task

# The i2b2 2014 XML lives with its reader (tasks/i2b2_2014.py), where evaluate.py's scorer and
# run_finetune's official scores also write it.
I2B2_2014_TAGS = i2b2_2014_task.I2B2_2014_TAGS
i2b2_2014_tag = i2b2_2014_task.i2b2_2014_tag
format_i2b2_2014 = i2b2_2014_task.format_i2b2_2014

ONE_FILE = "one_file"
PER_INPUT = "per_input"
PER_NOTE = "per_note"

def jsonl_record(note_id, spans, text=None):
  """The JSON-lines object of one note (`text` only when asked for: it is PHI)."""
  record = {"id": note_id, "entities": [s.to_json() for s in spans]}
  if text is not None:
    record["text"] = text
  return record


def format_brat(text, spans):
  """brat standoff (`.ann`) lines: `T1<TAB>label start end<TAB>text`."""
  return "".join("T%d\t%s %d %d\t%s\n" % (n, s.label, s.start, s.end, text[s.start:s.end])
                 for n, s in enumerate(spans, 1))


def format_con(text, spans):
  """i2b2 2010 concept lines (`c="text" 3:2 3:4||t="problem"`), as run_finetune writes them."""
  lines = []
  for s in spans:
    words = text[s.start:s.end].split()
    lines.append(i2b2_2010.format_con_line(words, s.first, s.last, s.label) + "\n")
  return "".join(lines)


class OutputFormat(object):
  """A way to write a note's outputs. Subclasses set the attributes and implement `render`.

  Attributes:
    name: the `--output_format` value.
    scopes: the scopes it can be written in (see the module docstring), the default first.
    suffix: the file suffix of its files.
    pairs: whether a sentence-pair model's outputs can be written in it.
    help: one line for `--help`.
  """

  name = None
  scopes = ()
  suffix = None
  pairs = False
  help = ""

  def render(self, outputs):
    """The text of one note's outputs (`step.NoteOutputs`) in this format."""
    raise NotImplementedError()


class JsonLines(OutputFormat):
  name = "jsonl"
  scopes = (ONE_FILE, PER_INPUT)
  suffix = ".jsonl"
  pairs = True
  help = "{id, entities: [{start, end, label, score}]} per note"

  def render(self, outputs):
    return json.dumps(outputs.record, ensure_ascii=False) + "\n"


class _SpanFile(OutputFormat):
  """A per-note file made from the note's text and spans by `format_function`."""
  scopes = (PER_NOTE,)
  format_function = None

  def render(self, outputs):
    return type(self).format_function(outputs.note.text, outputs.spans)


class Brat(_SpanFile):
  name = "brat"
  suffix = ".ann"
  help = "<id>.ann"
  format_function = format_brat


class I2b2Xml(_SpanFile):
  name = "i2b2_2014"
  suffix = ".xml"
  help = "<id>.xml (the n2c2 de-id scorer's XML)"
  format_function = format_i2b2_2014


class Con(_SpanFile):
  name = "con"
  suffix = ".con"
  help = "i2b2 2010 <id>.con"
  format_function = format_con


class Deidentified(OutputFormat):
  """The de-identified note (deidentify.py's output)."""
  name = "deidentified"
  scopes = (PER_NOTE,)
  suffix = ".txt"
  help = "the de-identified <id>.txt"

  def render(self, outputs):
    return outputs.deidentified.text


class HtmlPage(OutputFormat):
  """One review page of the whole run: every note's text with its predicted spans highlighted
  (`evaluation/html.py`: self-contained, written with mode 0600 since it holds the notes)."""
  name = "html"
  scopes = (ONE_FILE,)
  suffix = ".html"
  help = "one self-contained review page of every note and its spans (PHI: mode 0600)"

  def render(self, outputs):
    return ""  # the page is drawn whole, when the run ends (HtmlPageWriter)

  @staticmethod
  def writer(path, output_format):
    return HtmlPageWriter(path, output_format)


class Items(OutputFormat):
  """deidentify.py's replacement items: where each replacement lies in the de-identified note."""
  name = "items"
  scopes = (ONE_FILE,)
  suffix = ".jsonl"
  help = "{id, items: [{start, end, label, operator, input_start, input_end}]} per note"

  def render(self, outputs):
    return json.dumps({"id": outputs.note.id, "items": outputs.deidentified.items_json()},
                      ensure_ascii=False) + "\n"


_REGISTRY = collections.OrderedDict()


def register(format_class):
  """Adds an OutputFormat class to the registry under its `name` (usable as a decorator)."""
  _REGISTRY[format_class.name] = format_class()
  return format_class


for _format in (JsonLines, Brat, I2b2Xml, Con, HtmlPage, Deidentified, Items):
  register(_format)

# What predict.py's --output_format offers (deidentify.py writes `deidentified`, `items` and
# `jsonl`).
OUTPUT_FORMATS = tuple(name for name in _REGISTRY if name not in (Deidentified.name, Items.name))


def get(name):
  """The registered OutputFormat called `name`; InputError if there is none."""
  if name not in _REGISTRY:
    raise fileio.InputError("--output_format=%s: expected one of %s" %
                            (name, ", ".join(OUTPUT_FORMATS)))
  return _REGISTRY[name]


def format_help():
  """`name: help` of every predict.py format, for the flag's help."""
  return "; ".join("%s: %s" % (f.name, f.help) for f in _REGISTRY.values()
                   if f.name in OUTPUT_FORMATS)


# --------------------------------------------------------------------------------------------------
# Writers: context managers that commit on success, leave nothing under a final name on failure.

class OneFileWriter(object):
  """Every note's rendering appended to one file, renamed into place at the end."""

  def __init__(self, path, output_format):
    self.output_format = output_format
    self._context = fileio.atomic_open(path)
    self._file = None

  def __enter__(self):
    self._file = self._context.__enter__()
    return self

  def write(self, outputs):
    self._file.write(self.output_format.render(outputs))

  def __exit__(self, *exc_info):
    return self._context.__exit__(*exc_info)


class HtmlPageWriter(object):
  """Collects every note (id, text, spans) and writes the review page on success."""

  def __init__(self, path, output_format):
    self.path = path
    self.output_format = output_format
    self.notes = []

  def __enter__(self):
    return self

  def write(self, outputs):
    self.notes.append((outputs.note.id, outputs.note.text, None,
                       [(s.start, s.end, s.label) for s in outputs.spans]))

  def __exit__(self, exc_type, exc_value, traceback):
    if exc_type is None:
      html.write_page(self.path, html.render_page(self.notes, title="Predicted spans"))
    return False


class PerInputWriter(object):
  """One file per input file, `<output_dir>/<input stem><suffix>`, each written atomically.

  Input files without a readable note get an empty file, so a rerun with `--skip_existing` sees
  them done.
  """

  def __init__(self, output_dir, input_files, output_format):
    self.output_dir = output_dir
    self.output_format = output_format
    self.remaining = collections.deque(input_files)
    self.current = None  # (input file, context manager, file)

  @staticmethod
  def path_for(output_dir, input_file, suffix=".jsonl"):
    return os.path.join(output_dir, os.path.splitext(os.path.basename(input_file))[0] + suffix)

  def _commit(self):
    if self.current:
      self.current[1].__exit__(None, None, None)
      self.current = None

  def _open_next(self):
    self._commit()
    source = self.remaining.popleft()
    context = fileio.atomic_open(self.path_for(self.output_dir, source, self.output_format.suffix))
    self.current = (source, context, context.__enter__())

  def __enter__(self):
    return self

  def write(self, outputs):
    source = outputs.note.source
    while self.current is None or self.current[0] != source:
      self._open_next()  # an input file without a readable note gets an empty output
    self.current[2].write(self.output_format.render(outputs))

  def __exit__(self, exc_type, exc_value, traceback):
    if exc_type is not None:
      if self.current:
        self.current[1].__exit__(exc_type, exc_value, traceback)
        self.current = None
      return False
    while self.remaining or self.current:
      if self.remaining:
        self._open_next()
      else:
        self._commit()
    return False


class PerNoteWriter(object):
  """One file per note, `<output_dir>/<id><suffix>`, each written atomically as it comes."""

  def __init__(self, output_dir, output_format):
    self.output_dir = output_dir
    self.output_format = output_format

  def __enter__(self):
    return self

  def write(self, outputs):
    fileio.write_text_atomic(os.path.join(self.output_dir, outputs.note.id +
                                          self.output_format.suffix),
                             self.output_format.render(outputs))

  def __exit__(self, *exc_info):
    return False
