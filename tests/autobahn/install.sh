#!/usr/bin/env bash
# Install the Autobahn|Testsuite fuzzing client (`wstest`) into its own virtualenv.
#
# wstest runs only on Python 2.7 (its code uses Python 2 syntax; on Python 3 it cannot be
# imported), and only its Python 2 build pulls in what it needs (Twisted 19.10,
# autobahn 0.10.9, ...). So it gets a Python 2.7 virtualenv of its own, apart from the
# project's .venv:
#
#   bash tests/autobahn/install.sh [DEST]        (DEST defaults to .venv-autobahn)
#
# Python 2.7 is found as $PYTHON2, `python2.7` on PATH, or a pyenv 2.7 build. The stdlib
# `venv` of Python 3 cannot make a Python 2 environment and virtualenv 20.22 dropped
# Python 2, so virtualenv<20.22 is run from a throwaway Python 3 environment. Running the
# script again when the right version is installed does nothing.
set -euo pipefail

VERSION=25.10.1
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/.venv-autobahn}"
PYTHON3="${PYTHON3:-python3}"

if [ -x "$DEST/bin/wstest" ] && "$DEST/bin/wstest" --autobahnversion 2>/dev/null | grep -qx "AutobahnTestSuite $VERSION"; then
    exit 0
fi

find_python2() {
    local candidate
    for candidate in "${PYTHON2:-}" "$(command -v python2.7 || true)" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! PY2="$(find_python2)"; then
    echo "tests/autobahn/install.sh: no Python 2.7 interpreter found (tried \$PYTHON2, python2.7 on PATH," \
        "${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7*/bin/python); Autobahn|Testsuite needs one." >&2
    exit 1
fi

TOOLS="$(mktemp -d)"
trap 'rm -rf "$TOOLS"' EXIT
"$PYTHON3" -m venv "$TOOLS"
"$TOOLS/bin/pip" install --quiet --disable-pip-version-check 'virtualenv<20.22'
rm -rf "$DEST"
"$TOOLS/bin/virtualenv" --quiet -p "$PY2" "$DEST"
PYTHONWARNINGS=ignore "$DEST/bin/pip" install --quiet --disable-pip-version-check --no-python-version-warning \
    "autobahntestsuite==$VERSION"
"$DEST/bin/wstest" --autobahnversion 2>/dev/null | grep -x "AutobahnTestSuite $VERSION"
