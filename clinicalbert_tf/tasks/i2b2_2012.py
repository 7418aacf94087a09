"""i2b2 2012 temporal relations: EVENT mentions (and optionally TIMEX3) as NER.

Native files (one XML per note, root `ClinicalNarrativeTemporalAnnotation`):
  <TEXT><![CDATA[
  ...note text...]]></TEXT>
  <TAGS>
    <EVENT id="E0" start="1" end="10" text="ADMISSION" modality="FACTUAL" polarity="POS" type="OCCURRENCE" />
    <TIMEX3 id="T0" start="18" end="28" text="12/13/2002" type="DATE" val="2002-12-13" mod="NA" />
    <TLINK .../> <SECTIME .../>
  </TAGS>
Offsets index the CDATA text, which begins with a newline; each EVENT's `text` is checked against it.

Layout: `<data_dir>/train/**/*.xml` (e.g. the 2012-07-15 release folder) and `<data_dir>/test/**/*.xml`
(the ground-truth XML); optional `<data_dir>/dev/`, else 10% of training notes by patient (file name).
Labels as the ClinicalBERT authors used: the EVENT `type` (OCCURRENCE, EVIDENTIAL, TREATMENT,
CLINICAL_DEPT, PROBLEM, TEST); with `include_timex3` also the TIMEX3 `type` (DATE, TIME, DURATION,
FREQUENCY). An EVENT with an empty type is skipped, as in the authors' notebook.
"""

import os

from clinicalbert_tf import fileio
from clinicalbert_tf.tasks import documents

EVENT_TYPES = ("OCCURRENCE", "EVIDENTIAL", "TREATMENT", "CLINICAL_DEPT", "PROBLEM", "TEST")
TIMEX3_TYPES = ("DATE", "TIME", "DURATION", "FREQUENCY")


def read_annotated_xml(path, root_tag, tag_names, type_attribute, check_type):
  """Text and entities of an i2b2 XML note with CDATA text and a TAGS section.

  Args:
    path: the XML file.
    root_tag: the expected root element.
    tag_names: tags under TAGS to read (None: every child with start/end).
    type_attribute: the attribute holding the label.
    check_type: function(type, where) raising InputError for an unknown type.

  Returns:
    (text, [documents.Entity]).
  """
  root = documents.parse_xml(path)
  if root.tag != root_tag:
    raise fileio.InputError("%s: root element is <%s>, expected <%s>" % (path, root.tag, root_tag))
  text_element = root.find("TEXT")
  if text_element is None:
    raise fileio.InputError("%s: no <TEXT> element" % path)
  text = text_element.text or ""
  entities = []
  tags = root.find("TAGS")
  for element in (list(tags) if tags is not None else []):
    if tag_names is not None and element.tag not in tag_names:
      continue
    if tag_names is None and "start" not in element.attrib:
      continue
    ref = "<%s id=%s>" % (element.tag, element.get("id", "?"))
    where = "%s: %s" % (path, ref)
    try:
      start, end = int(element.get("start")), int(element.get("end"))
    except (TypeError, ValueError):
      raise fileio.InputError("%s: start=%r end=%r are not character offsets" %
                              (where, element.get("start"), element.get("end"))) from None
    typ = (element.get(type_attribute) or "").strip()
    if not typ:
      if element.tag == "EVENT":
        continue  # the authors skip EVENTs without a type
      raise fileio.InputError("%s: no %s attribute" % (where, type_attribute))
    check_type(typ, where)
    entities.append(documents.Entity(start, end, typ, ref, element.get("text")))
  return text, entities


class I2b2_2012Task(documents.DocumentNerTask):  # pylint: disable=invalid-name
  """EVENT (and optionally TIMEX3) spans of the i2b2 2012 temporal relations data."""

  name = "i2b2_2012"
  what = "i2b2 2012 XML"

  def __init__(self, options=None):
    super().__init__(options)
    self.tag_names = ("EVENT", "TIMEX3") if self.options.include_timex3 else ("EVENT",)
    self.entity_types = EVENT_TYPES + (TIMEX3_TYPES if self.options.include_timex3 else ())

  def read_file(self, path, checker):
    text, entities = read_annotated_xml(path, "ClinicalNarrativeTemporalAnnotation", self.tag_names,
                                        "type", self.check_type)
    doc_id = os.path.splitext(os.path.basename(path))[0]
    sentences = documents.tokenize_document(text, entities, doc_id, source=path, checker=checker)
    return [documents.Document(doc_id=doc_id, group_id=doc_id, sentences=sentences)]


def make_task(options):
  return I2b2_2012Task(options)
