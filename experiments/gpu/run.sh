#!/usr/bin/env bash
# The GPU run in one command (experiments/gpu/README.md): tests, timings and evaluations on one CUDA GPU
# within --budget-s (300 by default), results into --out as they arrive. --dry-run checks it on the CPU.
# Python: $PYTHON, else the project's .venv where there is one, else the node's python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" experiments/gpu/run.py "$@"
