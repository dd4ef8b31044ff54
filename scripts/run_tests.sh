#!/usr/bin/env bash
# Sets up everything and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
# Two test processes (pytest-xdist), each file in one of them so that its
# module fixtures are built once.
python3 -m pytest -q -n "${TEST_PROCESSES:-2}" --dist=loadfile "$@"
