#!/bin/sh
# Creates .venv with the Python packages the tests compare against (PyPI
# `tokenizers`, a few MB), only if it is missing or incomplete. Python is test
# tooling only: jobmatch itself never runs it.
set -eu
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import tokenizers' 2>/dev/null; then
    exit 0
fi
echo "install-test-deps: creating .venv with tests/requirements.txt" >&2
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
