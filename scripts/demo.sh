#!/usr/bin/env bash
# The demo, end to end: install, start a local Triton, run a PyFlink job (parallelism 2)
# that calls the stateful model with sequence-ID auto-increment, print what Triton saw.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python examples/demo.py
