#!/usr/bin/env bash
# A virtualenv on another Python for `make test`'s extra runs of the suite:
#
#   bash scripts/extra-venv.sh DEST VERSION [PIP-REQUIREMENT ...]
#
# VERSION (3.10, 3.12, ...) is found as a pyenv build or `pythonVERSION` on PATH. DEST gets
# the project with its test, demo and uvloop extras, plus the given requirements (for
# example 'django>=6'). Nothing is done when DEST is newer than pyproject.toml.
set -euo pipefail

DEST="$1"
VERSION="$2"
shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MARK="$DEST/.installed"

if [ -f "$MARK" ] && [ "$MARK" -nt "$ROOT/pyproject.toml" ]; then
    exit 0
fi

PYTHON=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$VERSION".*/bin/python"$VERSION" "$(command -v "python$VERSION" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
        PYTHON="$candidate"
        break
    fi
done
if [ -z "$PYTHON" ]; then
    echo "Python $VERSION not found (no pyenv build, no python$VERSION on PATH)" >&2
    exit 1
fi

"$PYTHON" -m venv "$DEST"
"$DEST/bin/pip" install --quiet --upgrade pip
"$DEST/bin/pip" install --quiet -e "$ROOT[test,demo,uvloop]" "$@"
touch "$MARK"
