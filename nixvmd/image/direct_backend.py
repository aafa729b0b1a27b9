"""The direct backend behind the `Backend` interface: nothing to build, nothing to watch.

The kernel boots a busybox initramfs made per run (image/direct.py); its identity is the
digest of what goes into that initramfs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import NixvmdError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.backend import Backend, BuildHooks, RunFiles
from nixvmd.image.direct import guest_ssh_keys, image_digest, prepare_direct
from nixvmd.plan.planner import Plan
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.watch.kernel_image import KernelImage


class DirectBackend:
    """The kernel with nixvmd's initramfs: no image inputs, no builds, always ready."""

    name = "direct"
    builds = False
    building = False
    ready = True

    def __init__(self, state_dir: Path) -> None:
        self.cache_dir = state_dir / "initramfs"
        self.image_path: Path | None = None  # the base initramfs the last run booted

    def watch_targets(self) -> tuple[set[Path], set[Path]]:
        return set(), set()

    def concerns(self, path: Path) -> bool:
        return False

    def inputs_changed(self) -> bool:
        return False

    def is_current(self) -> bool:
        return True

    def take(self, decision: Plan) -> None:
        """Nothing to build: the initramfs is made (or found in its cache) by each run."""

    async def build(self, on_line: Callable[[str], None]) -> None:
        """Nothing to build."""

    def identity(self, config: Config, kernel: KernelImage) -> str | None:
        try:
            return image_digest(config, kernel)
        except (NixvmdError, OSError):
            return None  # the run itself will say what is wrong

    def prepare(
        self, config: Config, kernel: KernelImage, job: GuestJob, spec: MachineSpec, files: RunFiles
    ) -> Launch:
        keys = guest_ssh_keys(config)
        launch, base = prepare_direct(config, kernel, job, spec, files.initrd, self.cache_dir, keys)
        self.image_path = base.path
        return launch

    def status(self) -> dict[str, object]:
        return {"path": str(self.image_path) if self.image_path else None}


def direct_backend(
    config: Config, config_path: Path | None, current: Backend | None, hooks: BuildHooks
) -> Backend:
    """The registry's factory: the current direct backend stays (it remembers its last image)."""
    if isinstance(current, DirectBackend):
        return current
    return DirectBackend(config.daemon.state_dir)
