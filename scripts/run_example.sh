#!/usr/bin/env bash
# Sets up .venv (first run only) and runs the main job: the MNIST pseudo-labelling example on the
# offline embedded MNIST-5k dataset, comparing supervised, online and mined pseudo-labels.
# Extra arguments go to the example (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh examples
exec .venv/bin/python -m examples.mnist_pseudo_label "$@"
