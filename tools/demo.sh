#!/usr/bin/env bash
# `make demo`: a short end-to-end smoke of what the project can do so far. It grows with later issues.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f clinicalbert_tf/demo.py ]; then
  exec .venv/bin/python -m clinicalbert_tf.demo "$@"
fi
echo "clinicalbert_tf $(.venv/bin/python -c 'import clinicalbert_tf; print(clinicalbert_tf.__version__)'):" \
     "no demo yet; it grows with later issues (see README.md)."
