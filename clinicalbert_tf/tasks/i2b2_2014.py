"""i2b2/UTHealth 2014 de-identification: every PHI annotation with its fine TYPE, as NER.

Native files (one XML per note, root `deIdi2b2`):
  <TEXT><![CDATA[...note text...]]></TEXT>
  <TAGS>
    <DATE id="P0" start="16" end="26" text="2067-11-30" TYPE="DATE" comment="" />
    <NAME id="P1" start="..." end="..." text="..." TYPE="PATIENT" comment="" />
  </TAGS>
Tags are NAME, PROFESSION, LOCATION, AGE, DATE, CONTACT, ID; the label is the fine `TYPE` (DOCTOR,
PATIENT, HOSPITAL, ...). The label set is read from the data (train and test), since the guidelines allow
types (ROOM, DEPARTMENT) that the ClinicalBERT label list lacks.

Layout: `<data_dir>/train/**/*.xml` (training-PHI-Gold-Set1 and Set2) and `<data_dir>/test/**/*.xml`
(testing-PHI-Gold-fixed); optional `<data_dir>/dev/`, else 10% of training patients (the file name's
part before `-`: notes `220-01.xml`, `220-02.xml` belong to one patient), with a fixed seed.
"""

import os
from xml.sax import saxutils

from clinicalbert_tf.tasks import documents
from clinicalbert_tf.tasks import i2b2_2012

PHI_TAGS = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID", "PHI")

# The 2014 de-identification guidelines' fine TYPEs under their XML tags (the tag the scorer reads).
I2B2_2014_TAGS = {
    "NAME": ("PATIENT", "DOCTOR", "USERNAME"),
    "PROFESSION": ("PROFESSION",),
    "LOCATION": ("ROOM", "DEPARTMENT", "HOSPITAL", "ORGANIZATION", "STREET", "CITY", "STATE",
                 "COUNTRY", "ZIP", "LOCATION-OTHER"),
    "AGE": ("AGE",),
    "DATE": ("DATE",),
    "CONTACT": ("PHONE", "FAX", "EMAIL", "URL", "IPADDR"),
    "ID": ("SSN", "MEDICALRECORD", "HEALTHPLAN", "ACCOUNT", "LICENSE", "VEHICLE", "DEVICE", "BIOID",
           "IDNUM"),
}
_TAG_OF_TYPE = {t: tag for tag, types in I2B2_2014_TAGS.items() for t in types}


def i2b2_2014_tag(label):
  """The XML tag of a fine PHI TYPE (`DOCTOR` -> `NAME`); an unknown type is its own tag."""
  return _TAG_OF_TYPE.get(label, label)


def format_i2b2_2014(text, spans):
  """The de-identification XML the i2b2/n2c2 2014 scorer reads (TEXT in CDATA, one tag per span)."""
  cdata = text.replace("]]>", "]]]]><![CDATA[>")  # "]]>" cannot appear inside one CDATA section
  lines = ['<?xml version="1.0" encoding="UTF-8" ?>', "<deIdi2b2>",
           "<TEXT><![CDATA[%s]]></TEXT>" % cdata, "<TAGS>"]
  for n, s in enumerate(spans):
    lines.append('<%s id="P%d" start="%d" end="%d" text=%s TYPE=%s comment="" />' % (
        i2b2_2014_tag(s.label), n, s.start, s.end, saxutils.quoteattr(text[s.start:s.end]),
        saxutils.quoteattr(s.label)))
  lines += ["</TAGS>", "</deIdi2b2>"]
  return "\n".join(lines) + "\n"


class I2b2_2014Task(documents.DocumentNerTask):  # pylint: disable=invalid-name
  """PHI spans of the 2014 de-identification data with fine TYPE labels."""

  name = "i2b2_2014"
  what = "i2b2 2014 XML"
  entity_types = None  # from the data
  official_scorer = "i2b2_2014"

  def read_file(self, path, checker):
    text, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", PHI_TAGS, "TYPE",
                                                  self.check_type)
    doc_id = os.path.splitext(os.path.basename(path))[0]
    sentences = documents.tokenize_document(text, entities, doc_id, source=path, checker=checker)
    return [documents.Document(doc_id=doc_id, group_id=doc_id.split("-")[0], sentences=sentences,
                               text=text, entities=entities)]


def make_task(options):
  return I2b2_2014Task(options)
