#!/bin/sh
# Creates .venv with the Python packages the tests use (tests/requirements.txt:
# PyPI `tokenizers` to compare the tokenizer against, `selenium` to drive the
# headless browser, `schemathesis` to check the HTTP API against its OpenAPI
# document), only if one is missing. Python is test tooling only: jobmatch
# itself never runs it. The browser test also needs Debian's chromium and
# chromium-driver, installed here when absent (needs root or sudo).
set -eu
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
    echo "install-test-deps: installing chromium chromium-driver wrk" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium chromium-driver wrk >/dev/null
fi
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import tokenizers, selenium, schemathesis' 2>/dev/null; then
    exit 0
fi
echo "install-test-deps: creating .venv with tests/requirements.txt" >&2
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
