# Sourced by the other scripts: PY is the Python interpreter itself, not a version
# manager's shim. pyenv's shim runs `pyenv rehash` after `pip install` and fails the
# install when its lock file is held or left behind; the scripts run every tool as
# `"$PY" -m <tool>`, so nothing here depends on shims being rehashed.
PY=$(python3 -c 'import sys; print(sys.executable)')
