#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian/Ubuntu machine, then run it.
# Installs missing system packages (Redis, PostgreSQL, HAProxy, nginx, validators) with apt,
# creates .venv with Python 3.11 or newer (PYTHON=... to choose), installs Proxilion with its test extras,
# type-checks it with mypy (any error fails the run; configured in setup.cfg), and runs pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/proxy -x
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
need=()
have redis-server || need+=(redis-server)
have haproxy || need+=(haproxy)
have nginx || need+=(nginx)
have wrk || need+=(wrk)
have curl || need+=(curl)
have openssl || need+=(openssl)
have shellcheck || need+=(shellcheck)
have promtool || need+=(prometheus)
have systemd-analyze || need+=(systemd)
if ! have initdb && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
# shellcheck source=scripts/python.sh
. scripts/python.sh
pick_python
# shellcheck disable=SC2206
[ -z "$VENV_PKG" ] || need+=($VENV_PKG)

if [ "${#need[@]}" -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    $SUDO apt-get update -qq
    # Services must not start on their own: the tests start their own servers on free ports.
    echo exit 101 | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
    $SUDO rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# compat mode puts the checkout on sys.path, so twistd finds twisted/plugins/proxilion_plugin.py from anywhere.
.venv/bin/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat

# Before the tests: a type error fails the run in seconds, not after the suite.
.venv/bin/python -m mypy

exec .venv/bin/python -m pytest "$@"
