#!/usr/bin/env bash
# Create .venv (once) and install pyflink-triton with its test and bench extras into it.
# Reinstalls only when pyproject.toml changes. Needs Python 3.10-3.12, Java 11+ and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
        'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
      echo "$candidate"; return
    fi
  done
  echo "pyflink-triton needs Python 3.10, 3.11 or 3.12 (apache-flink 2.3 has no wheels for others)" >&2
  exit 1
}

command -v java >/dev/null || { echo "PyFlink needs Java 11 or newer on PATH" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "Installing pyflink-triton[test,bench] into .venv (first run: a few minutes)..."
  # pip's notes about this machine's extra package folders are noise; errors still show.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]' \
    2> >(grep -v '^WARNING: Location' >&2)
  # Older setups installed nvidia-pytriton here; its tritonclient~=2.50 pin fails pip check.
  # The local Triton launcher now keeps its own copy of that wheel's files in its cache.
  if .venv/bin/python -m pip show --quiet nvidia-pytriton >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes nvidia-pytriton
  fi
  .venv/bin/python -m pip check
  rm -f .venv/.installed-*
  touch "$stamp"
fi
