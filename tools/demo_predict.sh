#!/usr/bin/env bash
# The demo's prediction step: the fine-tuned demo models put to work on raw notes.
#
#   predict.py           the i2b2 2010 model (problems, tests, treatments) over the invented
#                        i2b2 2010 test note and the NOTEEVENTS sample: entity spans as JSON
#                        lines, and .con
#   export_savedmodel.py the i2b2 2010 model as a versioned SavedModel; predict.py reads it alone
#   deidentify.py        the i2b2 2014 model (PHI) over the 2014 test note as plain text, at a few
#                        --min_phi_probability values: de-identified text, and the recall/precision
#                        trade against the note's gold PHI; once more with --engine=spark
#                        (Spark local[2]), whose outputs must equal the local run's
#
#   tools/demo_predict.sh [OUT]     (tools/demo.sh calls it after fine-tuning; OUT=demo_output)
#
# Reads OUT/finetune/i2b2_2010 and OUT/finetune/i2b2_2014 (with OUT/bert_config.json and
# OUT/vocab.txt for model directories that do not hold their own); writes OUT/predict/.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=${1:-demo_output}
P=$OUT/predict
export TF_CPP_MIN_LOG_LEVEL=2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$P/logs" "$P/notes"

# model_flags DIR: the config and vocabulary flags a directory without its own copies needs.
model_flags() {
  local flags=(--model_dir="$1")
  [ -f "$1/bert_config.json" ] || flags+=(--bert_config_file="$OUT/bert_config.json")
  [ -f "$1/vocab.txt" ] || flags+=(--vocab_file="$OUT/vocab.txt")
  printf '%s\n' "${flags[@]}"
}

# step NAME SCRIPT ARGS...: prints the command, keeps its log, shows the log's tail on failure.
step() {
  local name=$1
  shift
  echo "    \$ python $*"
  if ! "$PY" "$@" >"$P/logs/$name.log" 2>&1; then
    tail -n 20 "$P/logs/$name.log"
    exit 1
  fi
  grep -E '^(predicted|de-identified|wrote) ' "$P/logs/$name.log" | sed 's/^/      /' || true
}

mapfile -t NER < <(model_flags "$OUT/finetune/i2b2_2010")
mapfile -t PHI < <(model_flags "$OUT/finetune/i2b2_2014")
# The i2b2 2014 test notes: the invented set the demo fine-tuned on, else the bundled sample.
PHI_TEST=("$OUT"/deid_2014/test/*.xml)
[ -e "${PHI_TEST[0]}" ] || PHI_TEST=(testdata/i2b2_2014/test/*.xml)

echo "  - predict.py, i2b2 2010 model: the test note and the NOTEEVENTS sample"
step predict_2010 predict.py "${NER[@]}" \
  --input_file=testdata/i2b2_2010/test/test_data/note-201.txt,testdata/NOTEEVENTS_sample.csv \
  --output_file="$P/concepts.jsonl" --max_bad_notes=5  # the sample has a broken row on purpose
step predict_2010_con predict.py "${NER[@]}" \
  --input_file=testdata/i2b2_2010/test/test_data/note-201.txt --output_format=con \
  --output_dir="$P/con"
"$PY" - "$P/concepts.jsonl" testdata/i2b2_2010/test/test_data/note-201.txt <<'PYEOF'
import json, sys
text = open(sys.argv[2], encoding="utf-8").read()
for line in open(sys.argv[1], encoding="utf-8"):
  record = json.loads(line)
  if record["id"] == "note-201":  # invented text: fine to show
    for e in record["entities"][:8]:
      print("      %-10s %4d-%-4d %-30r %.2f" % (e["label"], e["start"], e["end"],
                                                text[e["start"]:e["end"]], e["score"]))
PYEOF

echo "  - export_savedmodel.py, and predict.py from the SavedModel alone"
rm -rf "$P/serving"
step export export_savedmodel.py "${NER[@]}" --export_dir="$P/serving"
step predict_savedmodel predict.py --model_dir="$P/serving" \
  --input_file=testdata/i2b2_2010/test/test_data/note-201.txt \
  --output_file="$P/from_savedmodel.jsonl"

echo "  - deidentify.py, i2b2 2014 model: the 2014 test notes as plain text"
"$PY" - "$P/notes" "${PHI_TEST[@]}" <<'PYEOF'
import os, sys
from clinicalbert_tf.tasks import i2b2_2012
for path in sys.argv[2:]:
  text, _ = i2b2_2012.read_annotated_xml(path, "deIdi2b2", ("NAME", "PROFESSION", "LOCATION",
      "AGE", "DATE", "CONTACT", "ID", "PHI"), "TYPE", lambda *a: None)
  name = os.path.splitext(os.path.basename(path))[0] + ".txt"
  with open(os.path.join(sys.argv[1], name), "w", encoding="utf-8") as f:
    f.write(text)
PYEOF
for threshold in none 0.5 0.2 0.05; do
  extra=()
  [ "$threshold" = none ] || extra=(--min_phi_probability=$threshold)
  step "deidentify_$threshold" deidentify.py "${PHI[@]}" --input_file="$P/notes/*.txt" \
    --output_dir="$P/deid_$threshold" --output_file="$P/deid_$threshold/phi.jsonl" "${extra[@]}"
done

echo "  - deidentify.py --engine=spark (Spark local[2]): the same notes, the same bytes"
rm -rf "$P/deid_spark"
step deidentify_spark deidentify.py "${PHI[@]}" --input_file="$P/notes/*.txt" \
  --output_dir="$P/deid_spark" --output_file="$P/deid_spark/phi.jsonl" \
  --engine=spark --spark_master="local[2]"
if diff -r "$P/deid_none" "$P/deid_spark" >/dev/null; then
  echo "      identical to the local run: $(ls "$P/deid_spark" | wc -l) files"
else
  echo "error: deidentify.py --engine=spark differs from the local run" >&2
  diff -r "$P/deid_none" "$P/deid_spark" | head -5 >&2
  exit 1
fi
"$PY" - "$P" "${PHI_TEST[@]}" <<'PYEOF'
import json, os, sys
from clinicalbert_tf.tasks import i2b2_2012
gold = {}
for path in sys.argv[2:]:
  _, entities = i2b2_2012.read_annotated_xml(path, "deIdi2b2", ("NAME", "PROFESSION", "LOCATION",
      "AGE", "DATE", "CONTACT", "ID", "PHI"), "TYPE", lambda *a: None)
  gold[os.path.splitext(os.path.basename(path))[0]] = entities
print("      %-22s %9s %9s %8s" % ("--min_phi_probability", "PHI spans", "precision", "recall"))
for threshold in ("none", "0.5", "0.2", "0.05"):
  found = hit = covered = total = 0
  for line in open(os.path.join(sys.argv[1], "deid_" + threshold, "phi.jsonl")):
    record = json.loads(line)
    phi = set()
    for e in gold[record["id"]]:
      phi.update(range(e.start, e.end))
    predicted = set()
    for e in record["entities"]:
      predicted.update(range(e["start"], e["end"]))
    found += len(record["entities"])
    hit += len(predicted & phi)
    covered += len(predicted)
    total += len(phi)
  # Character-level: the share of predicted characters that are PHI, and of PHI characters caught.
  print("      %-22s %9d %9.2f %8.2f" % (threshold, found, hit / max(1, covered),
                                           hit / max(1, total)))
PYEOF
echo "    de-identified (placeholders), the first lines:"
first=$(ls "$P/deid_0.2/"*.txt | head -n 1)
head -n 5 "$first" | sed 's/^/      /'
