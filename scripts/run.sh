#!/usr/bin/env bash
# Set up and run Proxilion on its embedded defaults: proxy on :8787, admin on :8788,
# SQLite analytics in ./proxilion-data, in-memory rate limits, the shipped policy.
# Extra arguments go to the proxy, e.g. scripts/run.sh --upstream openai=http://127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# shellcheck source=scripts/python.sh
. scripts/python.sh
pick_python
if [ -n "$VENV_PKG" ]; then
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $VENV_PKG
fi
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .

exec .venv/bin/twistd --nodaemon --pidfile= proxilion "$@"
