#!/usr/bin/env bash
# The GPU check: one script for a machine with an NVIDIA GPU (no network needed), about 8 minutes.
#
#   bash benchmarks/gpu_check.sh
#
# Prints
#   (a) BERT-Base pretraining sequences/s (seq 128, 20 predictions) of Google's run_pretraining.py
#       (bert-tensorflow 1.0.4, float32) and ours (float32; --use_amp --use_xla) at the largest
#       batch of 128, 96, 64, 48, 32 that fits, and ours / Google's (target: AMP+XLA >= 2.5x);
#   (b) run_finetune.py training examples/s (generated i2b2 2010 token classification, BERT-Base,
#       seq 128), float32 and --use_amp --use_xla;
#   (c) predict.py notes/s on generated notes with (b)'s float32 model;
#   (d) the GPU (nvidia-smi name, memory, driver) and the GPUs TensorFlow sees.
# Weights are random, data generated (benchmarks/gpu_check.py); nothing is downloaded but, where
# TensorFlow cannot see the GPU, packages (below).
#
# Python: $PYTHON if set, else the repository's .venv. If nvidia-smi sees a GPU and that Python's
# TensorFlow does not, a temporary venv gets requirements.txt, tensorflow[and-cuda]==2.15.1 and
# bert-tensorflow==1.0.4 (--no-deps) from the package registry, or with GPU_CHECK_WHEELS=DIR from
# that folder of wheels alone (--no-index --find-links, for a machine with no network at all).
#
# Every temporary thing (work files, the venv) is under one mktemp -d folder, removed on exit, on
# failure and on Ctrl-C. Each part runs under `timeout`; the measurements share a budget of
# GPU_CHECK_BUDGET seconds (480); the install, when needed, has its own (GPU_CHECK_INSTALL_TIMEOUT,
# 600). Exit status 0 when every part ran, 1 when one failed or timed out.
#
# Without a GPU it says so, prints a SKIPPED line for each GPU-only part and exits 0; with
# GPU_CHECK_SMOKE=1 it then runs the same parts with a tiny model for a few steps on CPU (the
# table is marked "CPU smoke run, not a measurement"). For the tests: GPU_CHECK_PARTS=a,b runs
# only those parts (names below; prepare always runs), GPU_CHECK_FAIL=<part> makes that part's
# script fail.
set -uo pipefail  # not -e: a failed part is reported and counted; the others still run
cd "$(dirname "$0")/.."

START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET:-480}
INSTALL_TIMEOUT=${GPU_CHECK_INSTALL_TIMEOUT:-600}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || {
  echo "gpu_check: FAILED: cannot create a temporary folder" >&2
  exit 1
}
# Every child's temporary files (TensorFlow's autograph modules and their __pycache__ included) go
# under $TMP too, so the trap removes them with it.
export TMPDIR="$TMP"
CHILD=
cleanup() { rm -rf "$TMP"; }
# on_signal STATUS: stops the running part (timeout passes the signal to its whole process group),
# then exits; the EXIT trap removes the temporary folder.
on_signal() {
  trap - INT TERM
  echo "gpu_check: interrupted; stopping the running part and removing $TMP" >&2
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
echo "temporary folder: $TMP"

W=$TMP/work
mkdir -p "$W/logs" "$W/status" "$W/results"
FAILED=()

fail() {
  echo "gpu_check: FAILED: $*" >&2
  exit 1
}

# run_bg SECONDS LOG COMMAND...: COMMAND under `timeout`, in the background so that a signal reaches
# the trap at once, its output in LOG. Returns COMMAND's status (124: timed out).
run_bg() {
  local seconds=$1 log=$2 rc=0
  shift 2
  timeout -k 10 "$seconds" "$@" >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}

# show_tail LOG: the last lines of a failed step's log, indented.
show_tail() { tail -n 15 "$1" | sed 's/^/    | /' >&2; }

# --- Python -------------------------------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
  PY_FROM="\$PYTHON"
else
  PY=.venv/bin/python
  PY_FROM="the repository's .venv"
fi
command -v "$PY" >/dev/null 2>&1 || fail "no Python at $PY ($PY_FROM): set PYTHON to a Python" \
    "3.11 with requirements.txt installed, or make the .venv (make venv)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
HAS_TF=1
# find_spec, not an import: importing TensorFlow costs seconds of CPU.
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('tensorflow') is None)" \
    >/dev/null 2>&1 || HAS_TF=0

# --- (d) the GPU ----------------------------------------------------------------------------------
GPU=
if ! command -v nvidia-smi >/dev/null 2>&1; then
  NO_GPU="nvidia-smi: command not found"
elif ! GPU=$(timeout 60 nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1) ||
    [ -z "$GPU" ]; then
  NO_GPU="nvidia-smi --query-gpu=name,memory.total: $(echo "${GPU:-no output}" | head -n 1)"
  GPU=
fi
if [ -n "$GPU" ]; then
  DRIVER=$(timeout 60 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null |
           head -n 1)
  echo "GPU: $(echo "$GPU" | paste -sd ';' -); driver ${DRIVER:-unknown}" | tee "$W/gpu.txt"
else
  echo "GPU: no NVIDIA GPU found ($NO_GPU)" | tee "$W/gpu.txt"
fi

# tf_info: the GPUs the chosen Python's TensorFlow sees (into $W/info.txt); sets TF_GPUS.
tf_info() {
  TF_GPUS=0
  if ! run_bg 300 "$W/logs/info.log" "$PY" benchmarks/gpu_check.py info --workdir="$W"; then
    show_tail "$W/logs/info.log"
    fail "$PY could not list TensorFlow's GPUs"
  fi
  cat "$W/info.txt"
  TF_GPUS=$(sed -n 's/^TF_GPUS=//p' "$W/tf_gpus.txt")
}

INSTALL_SECONDS=0
if [ -n "$GPU" ]; then
  [ "$HAS_TF" = 1 ] && tf_info
  if [ "$HAS_TF" = 0 ] || [ "${TF_GPUS:-0}" = 0 ]; then
    # TensorFlow's GPU support needs the CUDA libraries of tensorflow[and-cuda] in its own venv.
    if [ "$HAS_TF" = 0 ]; then
      echo "$PY ($PY_FROM) has no TensorFlow."
    else
      echo "TensorFlow in $PY ($PY_FROM) sees no GPU although nvidia-smi does."
    fi
    PIP_FROM=()
    if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
      PIP_FROM=(--no-index --find-links "$GPU_CHECK_WHEELS")
      WHERE="the wheels in $GPU_CHECK_WHEELS (--no-index)"
    else
      WHERE="the package registry"
    fi
    echo "Installing a temporary GPU environment in $TMP/venv from $WHERE: requirements.txt," \
         "tensorflow[and-cuda]==2.15.1, bert-tensorflow==1.0.4 (--no-deps); timeout" \
         "${INSTALL_TIMEOUT}s, not counted in the measurement budget."
    T0=$SECONDS
    "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null ||
      fail "$PY is not Python 3.11 (TensorFlow 2.15.1's wheels stop at 3.11): set PYTHON"
    run_bg 120 "$W/logs/venv.log" "$PY" -m venv "$TMP/venv" ||
      { show_tail "$W/logs/venv.log"; fail "could not create the venv $TMP/venv"; }
    # pip_install LOG ARGS...: pip in the venv, within what is left of the install's timeout; its
    # downloads and build folders in $TMP, no cache written elsewhere.
    pip_install() {
      local log=$1 left=$((INSTALL_TIMEOUT - (SECONDS - T0)))
      shift
      [ "$left" -gt 0 ] || fail "the install took more than ${INSTALL_TIMEOUT}s"
      run_bg "$left" "$log" env TMPDIR="$TMP" "$TMP/venv/bin/python" -m pip install \
          --disable-pip-version-check --no-cache-dir "${PIP_FROM[@]}" "$@"
    }
    pip_install "$W/logs/install.log" -r requirements.txt "tensorflow[and-cuda]==2.15.1" ||
      { show_tail "$W/logs/install.log"; fail "pip could not install the GPU environment" \
          "from $WHERE (log above)"; }
    pip_install "$W/logs/install_bert.log" --no-deps bert-tensorflow==1.0.4 ||
      { show_tail "$W/logs/install_bert.log"; fail "pip could not install bert-tensorflow==1.0.4" \
          "from $WHERE (log above)"; }
    INSTALL_SECONDS=$((SECONDS - T0))
    PY=$TMP/venv/bin/python
    PY_FROM="the temporary venv"
    echo "Installed in ${INSTALL_SECONDS}s; using $PY."
    tf_info
    [ "$TF_GPUS" != 0 ] || fail "TensorFlow still sees no GPU after installing" \
        "tensorflow[and-cuda]==2.15.1 (is the NVIDIA driver new enough for CUDA 12.2?)"
  fi
  MODE=gpu
else
  [ "$HAS_TF" = 1 ] || fail "$PY ($PY_FROM) cannot import tensorflow: set PYTHON to a" \
      "Python 3.11 with requirements.txt installed (make venv)"
  # The smoke run's prepare part lists TensorFlow's GPUs itself (one TensorFlow import less).
  [ "${GPU_CHECK_SMOKE:-0}" = 1 ] || tf_info
  echo "SKIPPED (needs an NVIDIA GPU): (a) BERT-Base pretraining sequences/s, Google's float32" \
       "vs ours float32 and --use_amp --use_xla"
  echo "SKIPPED (needs an NVIDIA GPU): (b) BERT-Base fine-tuning examples/s, run_finetune.py" \
       "float32 and --use_amp --use_xla"
  echo "SKIPPED (needs an NVIDIA GPU): (c) predict.py notes/s with a BERT-Base model"
  if [ "${GPU_CHECK_SMOKE:-0}" != 1 ]; then
    echo "(GPU_CHECK_SMOKE=1 runs the same parts with a tiny model on CPU, as a smoke test.)"
    echo "total: $((SECONDS - START))s"
    exit 0
  fi
  echo "CPU smoke run (tiny model, a few steps; not a measurement):"
  MODE=smoke
fi

# --- the parts ------------------------------------------------------------------------------------
DEADLINE=$((SECONDS + BUDGET))
MEASURE_START=$SECONDS

# part NAME CAP ARGS...: `gpu_check.py ARGS` under a timeout of CAP seconds or what is left of the
# budget; a failure or timeout is recorded in $W/status/NAME (for the table) and in FAILED.
part() {
  local name=$1 cap=$2 rc=0 t0=$SECONDS
  shift 2
  if [ "$name" != prepare ] && [ -n "${GPU_CHECK_PARTS:-}" ] &&
      [[ ",$GPU_CHECK_PARTS," != *",$name,"* ]]; then
    echo "not run (not in GPU_CHECK_PARTS)" >"$W/status/$name"
    return 0
  fi
  local seconds=$((DEADLINE - SECONDS))
  [ "$seconds" -gt "$cap" ] && seconds=$cap
  if [ "$seconds" -lt 20 ]; then
    echo "not run: the ${BUDGET}s budget is spent" | tee "$W/status/$name"
    FAILED+=("$name: not run, the ${BUDGET}s budget was spent")
    return 0
  fi
  local extra=()
  [ "${GPU_CHECK_FAIL:-}" = "$name" ] && extra=(--force_failure)
  echo "  $name (timeout ${seconds}s) ..."
  run_bg "$seconds" "$W/logs/$name.log" "$PY" benchmarks/gpu_check.py "$@" --mode="$MODE" \
      --workdir="$W" --timeout="$seconds" --name="$name" "${extra[@]}" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "    $(tail -n 1 "$W/logs/$name.log") ($((SECONDS - t0))s)"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "timed out after ${seconds}s" >"$W/status/$name"
    FAILED+=("$name: timed out after ${seconds}s (log: the lines above)")
    echo "    $name: timed out after ${seconds}s" >&2
    show_tail "$W/logs/$name.log"
  else
    echo "FAILED (exit $rc)" >"$W/status/$name"
    FAILED+=("$name: exit $rc: $(grep -v '^\s*$' "$W/logs/$name.log" | tail -n 1)")
    echo "    $name: FAILED (exit $rc)" >&2
    show_tail "$W/logs/$name.log"
  fi
}

part prepare 90 prepare
part pretrain_google 120 pretrain --impl=google
part pretrain_ours 120 pretrain --impl=ours
part pretrain_ours_amp_xla 150 pretrain --impl=ours_amp_xla
part finetune 100 finetune
part finetune_amp_xla 120 finetune --amp_xla
part predict 75 predict

"$PY" benchmarks/gpu_check.py table --mode="$MODE" --workdir="$W" ||
  FAILED+=("table: could not print the results")
echo
echo "total: $((SECONDS - START))s (measurements $((SECONDS - MEASURE_START))s of the" \
     "${BUDGET}s budget; install ${INSTALL_SECONDS}s)"
if [ "${#FAILED[@]}" -gt 0 ]; then
  for f in "${FAILED[@]}"; do
    echo "gpu_check: FAILED: $f" >&2
  done
  exit 1
fi
exit 0
