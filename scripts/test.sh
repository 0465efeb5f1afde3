#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and integration tests that start a real Triton
# server and run real PyFlink jobs. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
