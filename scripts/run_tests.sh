#!/usr/bin/env bash
# Sets up everything and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m pytest -q "$@"
