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

from clinicalbert_tf.tasks import documents
from clinicalbert_tf.tasks import i2b2_2012

PHI_TAGS = ("NAME", "PROFESSION", "LOCATION", "AGE", "DATE", "CONTACT", "ID", "PHI")


class I2b2_2014Task(documents.DocumentNerTask):  # pylint: disable=invalid-name
  """PHI spans of the 2014 de-identification data with fine TYPE labels."""

  name = "i2b2_2014"
  what = "i2b2 2014 XML"
  entity_types = None  # from the data

  def read_file(self, path, checker):
    text, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", PHI_TAGS, "TYPE",
                                                  self.check_type)
    doc_id = os.path.splitext(os.path.basename(path))[0]
    sentences = documents.tokenize_document(text, entities, doc_id, source=path, checker=checker)
    return [documents.Document(doc_id=doc_id, group_id=doc_id.split("-")[0], sentences=sentences)]


def make_task(options):
  return I2b2_2014Task(options)
