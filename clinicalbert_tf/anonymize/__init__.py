"""De-identification a data team can release: per-type operators over PHI spans, one patient one
consistent identity (keyed by a secret), HIPAA Safe Harbor rules, pattern recognizers and span
readers.

    from clinicalbert_tf import anonymize
    operators = anonymize.parse_operators("DATE:shift,IDNUM:mask,AGE:safe_harbor,default:surrogate")
    anonymizer = anonymize.Anonymizer(operators, secret=anonymize.read_secret_file(path))
    result = anonymizer.anonymize(text, spans, note_id, patient=subject_id)
    result.text, [item.to_json() for item in result.items]

Modules, one concern each: `operators` (the registry), `keyed` (HMAC choices, the secret),
`names`, `dates`, `shapes`, `safe_harbor`, `labels` (label families), `spans` (checks, merging),
`anonymizer` (the per-note step), `recognizers` (pattern recognizers), `span_readers` (spans from
predict.py, i2b2 2014 XML, brat).
"""

from clinicalbert_tf.anonymize.anonymizer import Anonymizer
from clinicalbert_tf.anonymize.anonymizer import DEFAULT_DATE_SHIFT_DAYS
from clinicalbert_tf.anonymize.anonymizer import Item
from clinicalbert_tf.anonymize.anonymizer import Result
from clinicalbert_tf.anonymize.keyed import read_secret_file
from clinicalbert_tf.anonymize.operators import ANY_LABEL
from clinicalbert_tf.anonymize.operators import load_operators_file
from clinicalbert_tf.anonymize.operators import OPERATOR_NAMES
from clinicalbert_tf.anonymize.operators import OPERATORS
from clinicalbert_tf.anonymize.operators import Operators
from clinicalbert_tf.anonymize.operators import parse_operators
from clinicalbert_tf.anonymize.spans import merge as merge_spans
