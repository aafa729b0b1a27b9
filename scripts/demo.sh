#!/bin/bash
# The loop once on built-in defaults: Debian's cloud kernel, the direct backend, the smoke
# suite. Installs what it needs first. Exit status as `nixvmd --once`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/python.sh
# Built-in defaults apply when no config file is found: run from an empty directory.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
XDG_CONFIG_HOME="$work" exec "$PY" -m nixvmd.daemon.main --once
