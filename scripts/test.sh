#!/bin/bash
# The test command: installs what the tests need, then ruff, mypy --strict and pytest
# (all tiers; pass extra pytest arguments, e.g. -m "not slow" for the quick tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/python.sh
if [[ " $* " != *" -m "* ]]; then
    # The slow tier builds a KUnit kernel from Debian's linux-source-6.1 (a few minutes).
    bash scripts/build-kunit-kernel.sh >/dev/null
fi
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy --strict nixvmd tests bench
"$PY" -m pytest -q -p no:cacheprovider "$@"
