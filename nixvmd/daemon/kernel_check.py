"""The watched kernel image checked: a good one becomes the daemon's kernel, a bad one is refused."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nixvmd.errors import KernelImageError, StateSpaceError
from nixvmd.plan.planner import Changes
from nixvmd.watch.kernel_image import read_kernel_image

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")


def check_kernel(
    daemon: Daemon, *, announce: bool, unless_same: bool = False, unless_tested: bool = True
) -> Changes:
    """Check the kernel image; a bad one is refused and the last good one kept.

    `unless_same`: an unchanged image (or the same complaint again) is no news.
    `unless_tested`: a kernel already judged with this config and image, or being tested
    now, starts no run; the log says why (`nixvmctl run` runs it anyway).
    """
    path = daemon.config.kernel_image
    try:
        kernel = read_kernel_image(
            path, daemon.config.daemon.state_dir / "kernels", tree=daemon.config.kernel.tree
        )
    except KernelImageError as exc:
        error = str(exc)
        if daemon.kernel is not None and not path.exists():
            error = (
                f"{path} is gone; the last good kernel ({daemon.kernel.release}) "
                "stays for `nixvmctl run` until a new one is built there"
            )
        if unless_same and error == daemon.kernel_error:
            return Changes()
        daemon.kernel_error = error
        if path.exists():
            log.error("kernel refused: %s", error)
        else:
            log.warning("%s", error)
        daemon.events.publish("kernel", ok=False, error=error)
        return Changes()
    except StateSpaceError as exc:
        # The image is good but has no room for its snapshot: taken on the next change or run.
        daemon.kernel_space_error = exc
        daemon.no_space(exc)
        daemon.events.publish("kernel", ok=False, error=str(exc))
        return Changes()
    daemon.kernel_space_error = None
    daemon.room_again()
    last = daemon.kernel
    same = daemon.kernel_error is None and last is not None and last.digest == kernel.digest
    if unless_same and same:
        return Changes()
    daemon.kernel, daemon.kernel_error = kernel, None
    daemon.builds.git(kernel, daemon.config.kernel.tree)  # read while the build is fresh
    daemon.events.publish("kernel", ok=True, version=kernel.version, path=str(path))
    why_not = daemon.why_not_run(kernel) if unless_tested else None
    if why_not is not None:
        log.info("%s", why_not)
        return Changes()
    if announce and not same:
        daemon.spawn(daemon.builds.announce(kernel, daemon.config.kernel.tree))
    return Changes(kernel=True)
