"""i2b2 2006 de-identification: inline PHI tags, as NER.

Native files:
  <ROOT>
  <RECORD ID="101">
  <TEXT>
  Seen by Dr. <PHI TYPE="DOCTOR">Smith</PHI> on <PHI TYPE="DATE">01/01</PHI>/1995 .
  </TEXT>
  </RECORD>
  ...
  </ROOT>
Types PATIENT, DOCTOR, HOSPITAL, ID, DATE, LOCATION, PHONE, AGE. The released training file has at least
one malformed tag: parsing stops with an error naming file, line and column (fix the tag and rerun).

Layout: `<data_dir>/train/*.xml` (deid_surrogate_train_all_version2.xml) and `<data_dir>/test/*.xml`
(the ground-truth test file). As the ClinicalBERT authors did, the first 70% of training sentences are
train and the rest dev (unless `<data_dir>/dev/` exists). Each line of a record is a sentence.
"""

from clinicalbert_tf import fileio
from clinicalbert_tf.tasks import documents

PHI_TYPES = ("PATIENT", "DOCTOR", "HOSPITAL", "ID", "DATE", "LOCATION", "PHONE", "AGE")


class I2b2_2006Task(documents.DocumentNerTask):  # pylint: disable=invalid-name
  """PHI spans of the 2006 de-identification data."""

  name = "i2b2_2006"
  what = "i2b2 2006 XML"
  entity_types = PHI_TYPES
  dev_rule = "first_70"
  official_scorer = "i2b2_2014"  # the 2014 scorer over the 2006 types (as i2b2 2014 XML)

  def read_file(self, path, checker):
    root = documents.parse_xml(path)
    if root.tag != "ROOT":
      raise fileio.InputError("%s: root element is <%s>, expected <ROOT>" % (path, root.tag))
    result = []
    for n, record in enumerate(root.iter("RECORD")):
      record_id = record.get("ID") or str(n)
      where = "%s: RECORD ID=%s" % (path, record_id)
      text_element = record.find("TEXT")
      if text_element is None:
        raise fileio.InputError("%s: no <TEXT> element" % where)
      parts = [text_element.text or ""]
      entities = []
      offset = len(parts[0])
      for k, child in enumerate(text_element):
        if child.tag != "PHI":
          raise fileio.InputError("%s: unexpected <%s> inside TEXT at character %d (only <PHI> "
                                  "expected)" % (where, child.tag, offset))
        typ = child.get("TYPE")
        ref = "PHI #%d (character %d)" % (k + 1, offset)
        self.check_type(typ, "%s: %s" % (where, ref))
        phi_text = "".join(child.itertext())
        entities.append(documents.Entity(offset, offset + len(phi_text), typ, ref))
        parts.append(phi_text)
        offset += len(phi_text)
        parts.append(child.tail or "")
        offset += len(child.tail or "")
      text = "".join(parts)
      # A PHI tag around whitespace only marks nothing; say where rather than fail on it later.
      for e in entities:
        if not text[e.start:e.end].strip():
          raise fileio.InputError("%s: %s holds no word" % (where, e.ref))
      doc_id = "%s" % record_id
      sentences = documents.tokenize_document(text, entities, doc_id, source=where)
      result.append(documents.Document(doc_id=doc_id, group_id=doc_id, sentences=sentences,
                                       text=text, entities=entities))
    if not result:
      raise fileio.InputError("%s: no <RECORD> elements" % path)
    return result


def make_task(options):
  return I2b2_2006Task(options)
