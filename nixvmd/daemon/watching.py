"""What the daemon watches (kernel image, config file, the backend's inputs) and what a change means."""

from __future__ import annotations

import logging
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.daemon.fstests_watch import FstestsWatch
from nixvmd.daemon.state import Touched
from nixvmd.image.backend import Backend
from nixvmd.watch.inotify import ChangeKind, DirectoryWatch, FileChange

log = logging.getLogger("nixvmd")


def arm(
    watch: DirectoryWatch,
    config: Config,
    config_path: Path | None,
    backend: Backend,
    fstests: FstestsWatch | None = None,
) -> None:
    """Watch everything that matters, every watch looked up again (the fstests tree's files and
    trees too, watched for quietly while they are missing).

    A path whose directory is missing is watched for: it is picked up when it appears.
    """
    inputs, trees = backend.watch_targets()
    files = [config.kernel_image, *([config_path] if config_path is not None else []), *sorted(inputs)]
    more = fstests.targets(config) if fstests is not None else ([], [])
    quiet = {*more[0], *more[1]}
    for path in watch.follow(files=[*files, *more[0]], trees=[*trees, *more[1]]):
        if path not in quiet and not path.parent.exists():
            log.warning(
                "%s does not exist yet; nixvmd watches for it and picks up %s when it appears",
                path.parent,
                path.name,
            )


def note(
    change: FileChange, config: Config, config_path: Path | None, backend: Backend, touched: Touched
) -> bool:
    """Mark in `touched` what `change` touched; False when it touches nothing of ours."""
    if change.path == config.kernel_image and change.kind is ChangeKind.MISSED:
        touched.kernel_recheck = True
    elif change.path == config.kernel_image:
        touched.kernel = True
    elif config_path is not None and change.path == config_path:
        touched.config = True
    elif backend.concerns(change.path):
        touched.image = True
    else:
        return False
    return True
