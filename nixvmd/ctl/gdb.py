"""`nixvmctl gdb`: the gdb command that attaches to the running `--gdb` run's guest, printed or exec-ed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from nixvmd.ctl.client import Client
from nixvmd.errors import NixvmdError

NO_GDB_RUN = "no run with a gdbstub is going on; nixvmctl run --gdb starts one"


def gdb_of(status: dict[str, Any]) -> dict[str, Any]:
    """`current.gdb` of a status object; NixvmdError in one sentence when there is none."""
    gdb = (status.get("current") or {}).get("gdb")
    if not isinstance(gdb, dict):
        raise NixvmdError(NO_GDB_RUN)
    return gdb


def gdb(client: Client, *, exec_it: bool) -> int:
    """Print the command (0), or become gdb with it (`--exec`)."""
    found = gdb_of(client.call("status"))
    argv = [str(a) for a in found["argv"]]
    if not Path(argv[1]).is_file():
        print(f"nixvmctl: warning: no {argv[1]}: gdb has no symbols (is the tree built?)", file=sys.stderr)
    if not exec_it:
        print(found["command"])
        return 0
    if shutil.which(argv[0]) is None:
        raise NixvmdError(
            f"{argv[0]} is not installed (Debian: apt-get install gdb); the command is: {found['command']}"
        )
    client.close()
    sys.stdout.flush()
    os.execvp(argv[0], argv)
