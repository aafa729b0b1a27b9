"""The known failures as nixvmctl's `baseline` actions see them: list, accept, remove.

The daemon answers these over its socket and nixvmctl, when no daemon runs, calls them
itself: the same functions, so both give the same answers. Every change of the file happens
under an flock on `<state_dir>/baseline.lock`, taken by whichever of the two writes, so a
daemon that starts while nixvmctl writes (or the other way round) loses no line. They log
nothing themselves: the daemon runs them in a worker thread and logs on its loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nixvmd.config.schema import Config
from nixvmd.errors import NixvmdError
from nixvmd.results.baseline import Baseline, remove_from_baseline, unwritable, write_baseline
from nixvmd.results.queries import resolve_run
from nixvmd.results.store import RunStore

BASELINE_LOCK = "baseline.lock"
# How often a writer waiting for the lock looks again.
LOCK_POLL_S = 0.05

WaitNotice = Callable[[str], None]


class BaselineBusy(NixvmdError):
    """Another process kept the baseline lock for longer than we were willing to wait."""


@contextlib.contextmanager
def baseline_lock(state_dir: Path, wait_s: float, on_wait: WaitNotice | None = None) -> Iterator[None]:
    """Hold the baseline lock of `state_dir`, waiting at most `wait_s` seconds for it.

    `on_wait` hears one sentence when the lock is taken and we start waiting. BaselineBusy
    when it is still taken after `wait_s`. The holder's pid is written into the lock file,
    so that whoever waits can say who holds it.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / BASELINE_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if not _try_lock(fd):
            holder = _holder(fd)
            if on_wait is not None:
                on_wait(f"the baseline is being changed by {holder}; waiting up to {wait_s:g}s for it")
            deadline = time.monotonic() + wait_s
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise BaselineBusy(
                        f"the baseline is still being changed by {holder} after {wait_s:g}s "
                        f"(lock {path}); try again when it is done"
                    )
                time.sleep(LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor ends the flock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _holder(fd: int) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"process {pid} (nixvmd or nixvmctl)" if pid.isdigit() else "another nixvmd or nixvmctl"


def list_known(config: Config) -> dict[str, Any]:
    """The known failures of the configured suite, with their kernel conditions and comments."""
    path = config.baseline_path
    baseline = Baseline.load(path)
    return {
        "baseline": str(path),
        "entries": [
            {
                "test": e.test,
                "conditions": [str(c) for c in e.conditions],
                "comment": e.comment,
                "line": e.line,
            }
            for e in baseline.entries
        ],
    }


def accept_failures(
    store: RunStore,
    config: Config,
    run_id: str | None,
    *,
    wait_s: float,
    on_wait: WaitNotice | None = None,
) -> dict[str, Any]:
    """Add the failures of run `run_id` (default: the latest) to the baseline file.

    The reply says which were added (`accepted`), which the file already expected
    (`already_known`) and which its format cannot name (`left_out`), so none goes missing
    unsaid.
    """
    run_id = resolve_run(store, run_id)
    record = store.load(run_id)
    failures = list(dict.fromkeys(t.name for t in record.tests if t.status.failing))
    path = config.baseline_path
    with baseline_lock(config.daemon.state_dir, wait_s, on_wait):
        before = Baseline.load(path)
        left_out = [t for t in failures if unwritable(t)]
        known = [t for t in failures if t not in left_out and before.applies(t, record.kernel_version)]
        write_baseline(path, failures, record.kernel_version, before)
    accepted = [t for t in failures if t not in left_out and t not in known]
    return {
        "baseline": str(path),
        "run_id": run_id,
        "accepted": accepted,
        "already_known": known,
        "left_out": left_out,
    }


def remove_known(
    config: Config, tests: list[str], *, wait_s: float, on_wait: WaitNotice | None = None
) -> dict[str, Any]:
    """Take the entries for `tests` out of the baseline file (all of them, or none)."""
    if not tests:
        raise NixvmdError("name the known failures to remove (see nixvmctl baseline list)")
    path = config.baseline_path
    with baseline_lock(config.daemon.state_dir, wait_s, on_wait):
        remove_from_baseline(path, tests)
    return {"baseline": str(path), "removed": list(dict.fromkeys(tests))}
