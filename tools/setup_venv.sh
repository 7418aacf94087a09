#!/usr/bin/env bash
# Creates or completes .venv (Python 3.11) with the product pins and the test-only oracles.
# Called by `make venv`, which skips it while the stamp for the current pins exists.
#
#   tools/setup_venv.sh VENV STAMP
#
# Order matters: torch is installed first, alone, as exactly `torch==2.13.0`, which pip takes from the CPU
# wheel on this machine's disk; any other spec (or letting transformers pull it) fetches a multi-GB CUDA
# build. bert-tensorflow (Google's BERT code, used as a test oracle) goes in with --no-deps: its metadata
# asks for nothing the tests need.
set -euo pipefail

venv=${1:?usage: setup_venv.sh VENV STAMP}
stamp=${2:?usage: setup_venv.sh VENV STAMP}
python=${PYTHON:-python3.11}
bert_pin="bert-tensorflow==1.0.4"
torch_pin=$(grep -E '^torch==' requirements-test.txt)

if [ -x "$venv/bin/python" ]; then
  version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$version" != "3.11" ]; then
    echo "error: $venv has Python $version, expected 3.11; remove it and run make again" >&2
    exit 1
  fi
else
  command -v "$python" >/dev/null || { echo "error: $python not found (Python 3.11 is required)" >&2; exit 1; }
  echo "== creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi

pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
echo "== upgrading pip"
"${pip[@]}" --quiet --upgrade pip
echo "== installing requirements.txt"
"${pip[@]}" -r requirements.txt
echo "== installing $torch_pin (CPU wheel)"
"${pip[@]}" "$torch_pin"
echo "== installing requirements-test.txt"
"${pip[@]}" -r requirements-test.txt
echo "== installing $bert_pin --no-deps"
"${pip[@]}" --no-deps "$bert_pin"

"$venv/bin/python" - <<'PY'
import torch
if torch.version.cuda is not None:
  raise SystemExit("error: torch %s is a CUDA build (CUDA %s); expected the CPU wheel. "
                   "Uninstall it and install exactly torch==2.13.0." % (torch.__version__, torch.version.cuda))
print("torch %s (CPU build)" % torch.__version__)
PY
"$venv/bin/python" -m pip check --disable-pip-version-check

rm -f "$venv"/.installed-*
touch "$stamp"
echo "== $venv ready"
