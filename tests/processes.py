"""Waiting for processes that are not the test's children to end."""

from __future__ import annotations

import os
import select


def exits_within(pid: int, timeout_s: float) -> bool:
    """Whether `pid` has ended, or ends within `timeout_s` (a pidfd turns readable then; a zombie counts).

    A SIGKILL is delivered when the victim next runs, so on a busy machine a process killed a
    moment ago may still be there: wait for its end instead of looking once.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout_s)[0])
    finally:
        os.close(pidfd)
