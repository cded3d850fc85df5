# shellcheck shell=bash disable=SC2034  # VENV_PKG is read by the script that sources this file
# Sourced by run.sh and test.sh: choose a Python >= 3.11 to build .venv with.
# PYTHON from the environment wins; otherwise python3 when it is 3.11+ (the system's, whose venv
# module apt provides), else the first of python3.13, python3.12, python3.11 on PATH.
# Prints nothing; sets PYTHON, and VENV_PKG to the apt package that provides its venv module
# when that module is missing (Debian and Ubuntu ship it separately).
pick_python() {
    if [ -z "${PYTHON:-}" ]; then
        for candidate in python3 python3.13 python3.12 python3.11; do
            if command -v "$candidate" >/dev/null 2>&1 \
                && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                PYTHON=$candidate
                break
            fi
        done
    fi
    VENV_PKG=""
    if [ -z "${PYTHON:-}" ]; then
        # No Python 3.11+ at all: Debian 12 ships 3.11 as python3.
        PYTHON=python3
        VENV_PKG="python3 python3-venv"
    elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        VENV_PKG="$("$PYTHON" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])') python3-venv"
    fi
}
