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
#                        (Spark local[2]), whose outputs must equal the local run's; then one
#                        invented patient's two notes from reviewed spans with a secret: the same
#                        surrogate name in both notes, and the days between their dates kept
#   serve.py             the i2b2 2014 model over HTTP on a free loopback port: two notes through
#                        /analyze and /deidentify, then SIGTERM (it drains and exits)
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
  # The model alone (no pattern recognizers): the table shows the threshold's trade.
  step "deidentify_$threshold" deidentify.py "${PHI[@]}" --input_file="$P/notes/*.txt" \
    --output_dir="$P/deid_$threshold" --output_file="$P/deid_$threshold/phi.jsonl" \
    --recognizers=model "${extra[@]}"
done

echo "  - deidentify.py --engine=spark (Spark local[2]): the same notes, the same bytes"
rm -rf "$P/deid_spark"
step deidentify_spark deidentify.py "${PHI[@]}" --input_file="$P/notes/*.txt" \
  --output_dir="$P/deid_spark" --output_file="$P/deid_spark/phi.jsonl" \
  --recognizers=model --engine=spark --spark_master="local[2]"
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

echo "  - deidentify.py for a release: one invented patient's two notes, reviewed spans, a secret"
mkdir -p "$P/patient/notes"
"$PY" - "$P/patient" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
notes = {  # invented
    "visit-1": "Name: Zorvak Quilbrex   MRN: 4455123\nSeen on 03/04/2019 by Dr. Wythgral; "
               "Mr. Quilbrex reports chest pain. Call 617-555-0100.\n",
    "visit-2": "QUILBREX, ZORVAK seen again on 03/18/2019 (Monday). Zorvak is better; "
               "follow up 04/01/2019.\n",
}
phi = {"visit-1": [("Zorvak Quilbrex", "PATIENT"), ("4455123", "MEDICALRECORD"),
                   ("03/04/2019", "DATE"), ("Wythgral", "DOCTOR"), ("Quilbrex", "PATIENT"),
                   ("617-555-0100", "PHONE")],
       "visit-2": [("QUILBREX, ZORVAK", "PATIENT"), ("03/18/2019", "DATE"), ("Monday", "DATE"),
                   ("Zorvak", "PATIENT"), ("04/01/2019", "DATE")]}
with open(os.path.join(out, "reviewed.jsonl"), "w") as f:
  for note_id, text in notes.items():
    with open(os.path.join(out, "notes", note_id + ".txt"), "w") as g:
      g.write(text)
    entities, at = [], 0
    for phrase, label in phi[note_id]:
      start = text.index(phrase, at)
      entities.append({"start": start, "end": start + len(phrase), "label": label, "score": 1.0})
      at = start + len(phrase)
    f.write(json.dumps({"id": note_id, "entities": entities}) + "\n")
with open(os.path.join(out, "patients.tsv"), "w") as f:
  f.write("visit-1\t9001\nvisit-2\t9001\n")
with open(os.path.join(out, "demo.key"), "wb") as f:  # a fresh key per run: never reuse a demo's
  f.write(os.urandom(32).hex().encode())
PYEOF
step deidentify_patient deidentify.py --input_file="$P/patient/notes/*.txt" \
  --spans_file="$P/patient/reviewed.jsonl" --patient_map="$P/patient/patients.tsv" \
  --secret_file="$P/patient/demo.key" --replace=DATE:shift,default:surrogate \
  --output_dir="$P/patient/deid"
"$PY" - "$P/patient" <<'PYEOF'
import datetime, json, os, sys
out = sys.argv[1]
items = {r["id"]: r["items"] for r in map(json.loads, open(os.path.join(out, "deid",
                                                                         "deidentify_items.jsonl")))}
dates = {}
for note_id in ("visit-1", "visit-2"):
  before = open(os.path.join(out, "notes", note_id + ".txt")).read()
  after = open(os.path.join(out, "deid", note_id + ".txt")).read()
  print("      %s before: %s" % (note_id, before.rstrip().replace("\n", " / ")))
  print("      %s after:  %s" % (note_id, after.rstrip().replace("\n", " / ")))
  for item in items[note_id]:
    if item["label"] == "DATE" and "/" in before[item["input_start"]:item["input_end"]]:
      parse = lambda s: datetime.datetime.strptime(s, "%m/%d/%Y").date()
      dates.setdefault("before", []).append(parse(before[item["input_start"]:item["input_end"]]))
      dates.setdefault("after", []).append(parse(after[item["start"]:item["end"]]))
gaps = {k: [(d - v[0]).days for d in v] for k, v in dates.items()}
print("      days from the first visit, before %s, after %s: %s" % (
    gaps["before"], gaps["after"], "kept" if gaps["before"] == gaps["after"] else "CHANGED"))
PYEOF

echo "  - serve.py, i2b2 2014 model: loaded once, two notes over HTTP (analyze, deidentify)"
SERVE_LOG="$P/logs/serve.log"
"$PY" serve.py "${PHI[@]}" --port=0 >"$SERVE_LOG" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 240); do
  port=$(sed -nE 's/.*serving .* on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$SERVE_LOG" | head -n 1)
  [ -n "$port" ] && break
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    tail -n 20 "$SERVE_LOG"
    exit 1
  fi
  sleep 0.5
done
[ -n "$port" ] || { echo "serve.py did not start"; tail -n 20 "$SERVE_LOG"; exit 1; }
echo "    \$ python serve.py ${PHI[*]} --port=0   (listening on 127.0.0.1:$port)"
SERVE_NOTES=("$P"/notes/*.txt testdata/i2b2_2010/test/test_data/note-201.txt)  # two invented notes
"$PY" - "$port" "${SERVE_NOTES[@]:0:2}" <<'PYEOF'
import json, sys, urllib.request
port, paths = sys.argv[1], sys.argv[2:]
texts = [open(p, encoding="utf-8").read() for p in paths]  # invented notes: fine to show

def post(path, body):
  request = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path),
                                   data=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=120) as response:
    return json.load(response)

print("    POST /analyze {\"text\": [2 notes]}")
for text, spans in zip(texts, post("/analyze", {"text": texts})["entities"]):
  print("      %d PHI spans, the first ones:" % len(spans))
  for s in spans[:4]:
    print("        %-10s %5d-%-5d %-24r %.2f" % (s["label"], s["start"], s["end"],
                                               text[s["start"]:s["end"]], s["score"]))
print("    POST /deidentify {\"text\": [2 notes], \"operators\": \"DATE:shift,default:surrogate\"}")
answer = post("/deidentify", {"text": texts, "operators": "DATE:shift,default:surrogate"})
for new_text in answer["text"]:
  print("      the first lines:")
  for line in [l for l in new_text.splitlines() if l.strip()][:3]:
    print("        " + line[:100])
PYEOF
kill -TERM "$serve_pid"
wait "$serve_pid" || { echo "serve.py did not exit cleanly"; tail -n 20 "$SERVE_LOG"; exit 1; }
trap - EXIT
echo "    stopped with SIGTERM after draining; its access log (no note text):"
grep -oE 'access .*' "$SERVE_LOG" | sed 's/^/      /'
