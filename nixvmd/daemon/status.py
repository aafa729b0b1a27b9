"""The daemon's status as `nixvmctl status --json` shows it (DESIGN.md §2 fixes the keys)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from nixvmd.daemon.fstests_watch import queued

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon


def status_object(daemon: Daemon) -> dict[str, Any]:
    """The status object of `nixvmctl status --json`."""
    kernel = None
    if daemon.kernel is not None:
        kernel = {
            "path": str(daemon.kernel.path),
            "version": daemon.kernel.version,
            "release": daemon.kernel.release,
            "build": daemon.builds.label(daemon.kernel),
            "mtime": daemon.kernel.mtime,
            "digest": daemon.kernel.digest,
        }
    return {
        "state": daemon.state,
        "paused": daemon.paused,
        "summary": daemon.status_line(),
        "kernel": kernel,
        "kernel_error": daemon.kernel_error,
        "space_error": daemon.space_error,
        "config": {
            "path": str(daemon.config_path) if daemon.config_path else None,
            "error": daemon.config_error,
        },
        "image": {
            "backend": str(daemon.config.image.backend),
            **daemon.backend.status(),
        },
        "current": dict(daemon.current) if daemon.current else None,
        "last_run": daemon.last_run.summary() if daemon.last_run else None,
        "bisect": daemon.bisecting.status(),
        "queued": queued(daemon),
        "pid": os.getpid(),
    }


def status_line(daemon: Daemon) -> str:
    """The phase in words, for systemd's STATUS= and `nixvmctl status`."""
    version = daemon.kernel.release if daemon.kernel else "no kernel"
    if daemon.bisecting.active:
        return daemon.bisecting.status_line()
    if daemon.current and daemon.current.get("test") and daemon.state == "testing":
        total = daemon.current.get("total")
        of = f" ({daemon.current['done']}/{total})" if total else f" ({daemon.current['done']} done)"
        return f"testing {daemon.current['test']}{of} on {version}"
    if daemon.current and daemon.current.get("shards") and daemon.state == "testing":
        total = daemon.current.get("total")
        of = f" ({daemon.current['done']}/{total})" if total else f" ({daemon.current['done']} done)"
        return f"testing in {len(daemon.current['shards'])} shards{of} on {version}"
    if daemon.state == "error" and daemon.space_error:
        return f"error: {daemon.space_error}"
    if daemon.paused:
        return f"paused; kernel {version}"
    return f"{daemon.state}; kernel {version}"
