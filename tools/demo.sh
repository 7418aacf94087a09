#!/usr/bin/env bash
# `make demo`: the whole ClinicalBERT pipeline on the bundled invented data, into demo_output/.
#
#   format_notes.py        testdata/NOTEEVENTS_sample.csv -> one sentence per line, per category + all notes
#   format_notes.py --phi=surrogate  the same notes with realistic surrogates for MIMIC's placeholders
#   build_vocab.py         all notes -> a cased WordPiece vocab.txt (tensorflow-text's learner)
#   create_pretraining_data.py  -> masked-LM / next-sentence TFRecords (dupe_factor 5, as the paper)
#   run_pretraining.py     a tiny BERT from scratch, 1,000 steps (model.ckpt-0 is kept too)
#   make_deid_demo_data.py an invented i2b2 2014 de-identification set made from surrogates (seeded)
#   run_finetune.py        i2b2 2006 / 2010 / 2012 / 2014 and MedNLI samples (train, dev, test)
#   evaluate.py            the i2b2 2014 run's test predictions: official scorer report, review page
#   tools/demo_summary.py  a Table-2-style summary (task, metric, dev, test): printed + summary.md
#   nearest_neighbors.py   Table-3-style neighbours of a few words: untrained vs pretrained, side by side
#   export_hf.py           the pretrained model and the MedNLI classifier as HuggingFace directories
#   extract_features.py    per-token embeddings of a few sentences (Google's JSON lines)
#   tools/demo_predict.sh  predict.py (i2b2 2010 model on raw notes), export_savedmodel.py,
#                          deidentify.py (i2b2 2014 model) with its recall/precision trade, and
#                          serve.py (the 2014 model over HTTP: two notes analysed and de-identified)
#
# Every command is printed as it runs, with its progress lines; full logs are in demo_output/logs/.
# A second run starts from an empty demo_output/.
#
#   tools/demo.sh            (what `make demo` runs after setting up .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=demo_output
TOTAL=12
# Steps and sizes: small enough for about five minutes on 2 cores.
PRETRAIN_STEPS=${DEMO_PRETRAIN_STEPS:-1000}
SEQ=64
FINETUNE_EPOCHS=${DEMO_FINETUNE_EPOCHS:-10}
QUERY_WORDS="pain,CHF,home,Discharge"

export TF_CPP_MIN_LOG_LEVEL=2      # TensorFlow's C++ start-up chatter stays out of the logs
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# Log lines worth showing while a step runs (the rest is in the step's log file).
PROGRESS='^wrote |\] (step [0-9]+/[0-9]+|trained to global step|training from global step|training: |  (f1|precision|recall|accuracy|masked_lm_accuracy|next_sentence_accuracy) = |made [0-9]+ instances|Wrote [0-9]+ total|wrote |counted [0-9]+|notes: |imported|nearest neighbours done)'

step_no=0
demo_start=$SECONDS

banner() {
  step_no=$((step_no + 1))
  printf '\n[%d/%d] %s\n' "$step_no" "$TOTAL" "$1"
}

# run LOGNAME SCRIPT ARGS...: prints the command, streams its progress lines, keeps the full log,
# and stops the demo (showing the log's tail) if the command fails.
run() {
  local name=$1
  shift
  local log="$OUT/logs/$(printf '%02d' "$step_no")_$name.log"
  local arg line='    $ python'
  for arg in "$@"; do
    # Quote only what a shell would need quoted (no backslashes before commas, as %q would add).
    if [[ $arg =~ ^[][A-Za-z0-9_./=,:+@%-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  echo "$line"
  local t0=$SECONDS
  : >"$log"  # exists before `tail` looks for it
  "$PY" "$@" >>"$log" 2>&1 &
  local pid=$!
  # Follow the log while the command runs; show progress lines without the absl prefix. (Showing
  # progress must never stop the demo, hence the `|| true`.)
  { tail -n +1 -s 0.5 -f --pid="$pid" "$log" 2>/dev/null \
    | { grep --line-buffered -E "$PROGRESS" || true; } \
    | { grep --line-buffered -v '^INFO:tensorflow' || true; } \
    | sed -u -E 's/^[IWE][0-9]{4} [0-9:.]+ +[0-9]+ [^]]+\] +//; s/^/      /'; } || true
  local rc=0
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "    FAILED (exit $rc) after $((SECONDS - t0)) s; the end of $log:"
    tail -n 25 "$log" | sed 's/^/      /'
    exit "$rc"
  fi
  echo "    done in $((SECONDS - t0)) s"
}

echo "clinicalbert_tf demo: the ClinicalBERT pipeline on invented data, into $OUT/"
rm -rf "$OUT"
mkdir -p "$OUT/logs"

# 1. Notes -> sentences --------------------------------------------------------------------------
banner "format_notes.py: NOTEEVENTS sample -> sections and sentences (one per line)"
CORPUS=$OUT/sentences/all_notes.txt
run format_notes format_notes.py --input_file=testdata/NOTEEVENTS_sample.csv \
  --output_dir="$OUT/sentences" --all_notes_file="$CORPUS"
echo "    $(grep -c . "$CORPUS") sentences in $CORPUS; per category: $(ls "$OUT"/sentences/*.txt | wc -l) files"

# 2. Surrogate PHI -------------------------------------------------------------------------------
banner "format_notes.py --phi=surrogate: MIMIC's placeholders -> realistic, consistent surrogates"
SURROGATE_CORPUS=$OUT/sentences_surrogate/all_notes.txt
run format_notes_surrogate format_notes.py --input_file=testdata/NOTEEVENTS_sample.csv \
  --category_files=False --all_notes_file="$SURROGATE_CORPUS" --phi=surrogate --random_seed=12345
if [ "$(wc -l <"$CORPUS")" = "$(wc -l <"$SURROGATE_CORPUS")" ]; then
  # Same number of lines: the surrogates were split as their placeholders were; show a few pairs.
  for n in $(grep -n '\[\*\*' "$CORPUS" | sed -n '1p;2p;5p;6p' | cut -d: -f1); do
    echo "    before: $(sed -n "${n}p" "$CORPUS" | cut -c1-110)"
    echo "    after:  $(sed -n "${n}p" "$SURROGATE_CORPUS" | cut -c1-110)"
  done
fi
"$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))["phi"]
print("    %d placeholders replaced (seed %d, %s): %s" % (r["placeholders"], r["random_seed"],
      r["locale"], ", ".join("%s %d" % kv for kv in r["counts"].items())))' "$SURROGATE_CORPUS.json"

# 3. Vocabulary ----------------------------------------------------------------------------------
banner "build_vocab.py: a cased WordPiece vocabulary learnt from the notes"
VOCAB=$OUT/vocab.txt
run build_vocab build_vocab.py --input_file="$CORPUS" --output_file="$VOCAB" \
  --vocab_size=1000 --lower_thresh=2
echo "    $(wc -l <"$VOCAB") tokens; first: $(head -n 5 "$VOCAB" | tr '\n' ' ')"

# A tiny BERT for the vocabulary just built (BERT-Base is 12 x 768; this runs on 2 CPU cores).
CONFIG=$OUT/bert_config.json
cat >"$CONFIG" <<EOF
{
  "vocab_size": $(wc -l <"$VOCAB"),
  "hidden_size": 64,
  "num_hidden_layers": 2,
  "num_attention_heads": 2,
  "intermediate_size": 256,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "max_position_embeddings": 128,
  "type_vocab_size": 2,
  "initializer_range": 0.02
}
EOF

# 4. Pretraining data ----------------------------------------------------------------------------
banner "create_pretraining_data.py: masked-LM and next-sentence instances (dupe_factor 5)"
RECORDS=$OUT/pretraining_data/all_notes.tfrecord
run create_pretraining_data create_pretraining_data.py --input_file="$CORPUS" \
  --output_file="$RECORDS" --vocab_file="$VOCAB" --do_lower_case=False \
  --max_seq_length=$SEQ --max_predictions_per_seq=10 --masked_lm_prob=0.15 \
  --random_seed=12345 --dupe_factor=5

# 5. Pretraining ---------------------------------------------------------------------------------
banner "run_pretraining.py: a tiny BERT from scratch, $PRETRAIN_STEPS steps"
PRETRAINED=$OUT/pretrained
run run_pretraining run_pretraining.py --bert_config_file="$CONFIG" --input_file="$RECORDS" \
  --output_dir="$PRETRAINED" --do_train=True --do_eval=True --train_batch_size=16 \
  --eval_batch_size=16 --max_seq_length=$SEQ --max_predictions_per_seq=10 \
  --num_train_steps="$PRETRAIN_STEPS" --num_warmup_steps=$((PRETRAIN_STEPS / 10)) \
  --learning_rate=1e-3 --save_checkpoints_steps="$PRETRAIN_STEPS" --max_eval_steps=20 \
  --log_every_n_steps=100
CKPT=$PRETRAINED/model.ckpt-$PRETRAIN_STEPS

# 6. Fine-tuning on the five tasks ---------------------------------------------------------------
banner "run_finetune.py: i2b2 2006, 2010, 2012, 2014 (NER, exact-span F1) and MedNLI (accuracy)"
DEID_2014=$OUT/deid_2014
echo "  - an invented i2b2 2014 de-identification set (surrogate PHI of every category, gold offsets)"
run make_deid_demo_data tools/make_deid_demo_data.py --output_dir="$DEID_2014" --random_seed=2014
for task in i2b2_2006 i2b2_2010 i2b2_2012 i2b2_2014 mednli; do
  data_dir=testdata/$task
  if [ "$task" = i2b2_2014 ]; then data_dir=$DEID_2014; fi
  echo "  - $task ($data_dir)"
  run "finetune_$task" run_finetune.py --task_name=$task --data_dir="$data_dir" \
    --bert_config_file="$CONFIG" --vocab_file="$VOCAB" --init_checkpoint="$CKPT" \
    --output_dir="$OUT/finetune/$task" --do_lower_case=False --do_train=True --do_eval=True \
    --do_predict=True --max_seq_length=$SEQ --train_batch_size=4 --learning_rate=1e-3 \
    --num_train_epochs="$FINETUNE_EPOCHS" --seed=12345
done

# The i2b2 2014 run's test predictions (run_finetune.py wrote them as i2b2 2014 XML) against the
# invented gold: the official scorer's report and the review page (invented notes: no real PHI).
REVIEW=$OUT/review_i2b2_2014.html
echo "  - evaluate.py: the i2b2 2014 test predictions, official scorer and review page"
run evaluate_i2b2_2014 evaluate.py --gold="$DEID_2014/test" \
  --system="$OUT/finetune/i2b2_2014/test_i2b2_2014/system" --scorer=i2b2_2014 \
  --output_file="$OUT/finetune/i2b2_2014/official_report.txt" --html_file="$REVIEW"
sed -n '8,12p' "$OUT/finetune/i2b2_2014/official_report.txt" | sed 's/^/    /'

# 7. Summary -------------------------------------------------------------------------------------
banner "Summary (Table-2 style): $OUT/summary.md"
"$PY" tools/demo_summary.py "$OUT" | sed 's/^/    /'

# 8. Nearest neighbours --------------------------------------------------------------------------
banner "nearest_neighbors.py: neighbours of $QUERY_WORDS, untrained vs pretrained (Table-3 style)"
run nearest_neighbors nearest_neighbors.py --input_file="$CORPUS" \
  --init_checkpoint="$PRETRAINED/model.ckpt-0,$CKPT" \
  --checkpoint_names="untrained (step 0),pretrained (step $PRETRAIN_STEPS)" \
  --bert_config_file="$CONFIG" --vocab_file="$VOCAB" --do_lower_case=False \
  --query_words="$QUERY_WORDS" --num_neighbors=5 --min_count=3 --max_seq_length=$SEQ \
  --output_file="$OUT/nearest_neighbors.md"
sed 's/^/    /' "$OUT/nearest_neighbors.md"

# 9. HuggingFace export --------------------------------------------------------------------------
banner "export_hf.py: the pretrained model and the MedNLI classifier as HuggingFace directories"
run export_hf export_hf.py --bert_config_file="$CONFIG" --init_checkpoint="$CKPT" \
  --vocab_file="$VOCAB" --do_lower_case=False --output_dir="$OUT/hf_model"
echo "    $(ls "$OUT/hf_model" | tr '\n' ' ')"
# A fine-tuned head: the NLI classifier as BertForSequenceClassification with its labels, both
# read from the finetune_head.json run_finetune.py wrote next to the checkpoint.
run export_hf_mednli export_hf.py --bert_config_file="$CONFIG" \
  --init_checkpoint="$OUT/finetune/mednli" --vocab_file="$VOCAB" --do_lower_case=False \
  --output_dir="$OUT/hf_mednli"

# 10. Features ------------------------------------------------------------------------------------
banner "extract_features.py: per-token embeddings of three sentences"
head -n 3 "$CORPUS" >"$OUT/features_input.txt"
run extract_features extract_features.py --input_file="$OUT/features_input.txt" \
  --output_file="$OUT/features.jsonl" --bert_config_file="$CONFIG" --init_checkpoint="$CKPT" \
  --vocab_file="$VOCAB" --do_lower_case=False --layers=-1,-2 --max_seq_length=$SEQ
echo "    $(wc -l <"$OUT/features.jsonl") JSON lines in $OUT/features.jsonl"

# 11. Models on raw notes ------------------------------------------------------------------------
banner "predict.py, export_savedmodel.py, deidentify.py: the fine-tuned models on raw notes"
tools/demo_predict.sh "$OUT"

# 12. Done ---------------------------------------------------------------------------------------
banner "Done"
echo "    everything is in $OUT/ (logs in $OUT/logs/); total $((SECONDS - demo_start)) s"
echo "    review page of the i2b2 2014 run (open it in a browser): $REVIEW"
