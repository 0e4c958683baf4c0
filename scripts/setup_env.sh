#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs the package with the extras
# given as arguments, e.g. `scripts/setup_env.sh test`. Safe to run again: it only installs what is
# missing. Override the interpreter with PYTHON=... and the location with VENV=...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras=$(IFS=,; echo "$*")
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# torch and torchvision first, pinned: the versions this project is tested with.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, torchvision, ignite, ignite_pseudolabel" \
  || { echo "setup_env.sh: the environment in $VENV is incomplete" >&2; exit 1; }
