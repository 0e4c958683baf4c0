#!/usr/bin/env bash
# Sets up .venv (first run only) and runs the test suite: unit tests, doctests of the package, the
# real-data end-to-end check and the README script. Extra arguments go to pytest. CI also runs the
# example smoke tests (-m example) and the distributed tests (-m distributed) as separate passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
exec .venv/bin/python -m pytest -m "not distributed and not example" "$@"
