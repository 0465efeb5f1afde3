#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and integration tests that start a real Triton
# server and run real PyFlink jobs. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The TLS tests put a real nginx in front of Triton (tests/nginx.py). Debian's package 'nginx'
# is the smallest with the ssl, http2 and grpc modules (in bookworm, nginx-light is a
# metapackage of it). Its install would also start the system's nginx on port 80, unless a
# policy-rc.d refuses, as in Debian's container images: one is put there for the install.
install_nginx() {
  local policy=/usr/sbin/policy-rc.d added="" status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends nginx >/dev/null; } || status=$?
  if [ -n "$added" ]; then rm -f "$policy"; fi
  return "$status"
}
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "Installing nginx for the TLS tests..."
    install_nginx
  else
    echo "WARNING: nginx is missing and cannot be installed here (that needs root and" \
         "apt-get): the TLS tests will fail. Install nginx." >&2
  fi
fi

.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
