"""The image backend interface: what the daemon asks of whatever makes the guest it boots.

A backend knows which files its image depends on (to watch), whether their content changed,
how to build (possibly nothing to build), how to turn a kernel and a run's job into a QEMU
`Launch`, what identifies its image (for "tested already"), and its part of status. The
daemon talks to this protocol only; `image/registry.py` maps `image.backend` to a factory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nixvmd.config.schema import Config
from nixvmd.guest.protocol import GuestJob
from nixvmd.plan.planner import Plan
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.watch.kernel_image import KernelImage


@dataclass(frozen=True)
class BuildHooks:
    """How a backend's builds talk back to the daemon: events, its state, what follows a build."""

    publish: Callable[..., None]  # an event: publish(kind, **fields)
    on_building: Callable[[bool], None]
    after: Callable[[bool], Awaitable[None]]  # True: a run should follow (a good build)
    failed: Callable[[str], Awaitable[None]]  # a build failed with this (trimmed) error
    tasks: set[asyncio.Task[Any]]  # the daemon's tasks, cancelled when it stops


class RunFiles(Protocol):
    """Where one run's launch may put files: the run dir (kept with the record) and scratch
    paths removed when the run ends. run/workspace.py's Workspace is one."""

    @property
    def run_dir(self) -> Path: ...

    @property
    def initrd(self) -> Path:
        """The direct backend's per-run initrd."""
        ...

    @property
    def runner_dir(self) -> Path:
        """The nix runner's TMPDIR and NIX_DISK_IMAGE."""
        ...


class Backend(Protocol):
    """One way of making the guest a kernel boots in (direct initramfs, a NixOS VM, ...)."""

    name: str

    def watch_targets(self) -> tuple[set[Path], set[Path]]:
        """(files to watch, directories to watch as whole trees) the image depends on."""
        ...

    def concerns(self, path: Path) -> bool:
        """True when a change of `path` may change the image's inputs."""
        ...

    def inputs_changed(self) -> bool:
        """True when the inputs' content differs from when this was last asked (or built)."""
        ...

    def is_current(self) -> bool:
        """True when the image is what a build would give now (nothing to build at start)."""
        ...

    @property
    def builds(self) -> bool:
        """True when this backend builds an image (its input changes are worth a build)."""
        ...

    @property
    def building(self) -> bool:
        """True while a build runs."""
        ...

    @property
    def ready(self) -> bool:
        """True when there is an image to boot (a backend that builds may have none yet)."""
        ...

    def take(self, decision: Plan) -> None:
        """Carry out the image steps of the planner's `decision` (build, follow-up, run after)."""
        ...

    async def build(self, on_line: Callable[[str], None]) -> None:
        """Make the image current now (`nixvmd --once`); ImageBuildError when that fails."""
        ...

    def identity(self, config: Config, kernel: KernelImage) -> str | None:
        """What identifies the guest image a run of `kernel` boots; None when that is unknown."""
        ...

    def prepare(
        self, config: Config, kernel: KernelImage, job: GuestJob, spec: MachineSpec, files: RunFiles
    ) -> Launch:
        """The QEMU launch of one run of `kernel` (its files where `files` says)."""
        ...

    def status(self) -> dict[str, object]:
        """This backend's part of status's `image` object (at least `path` and `building`)."""
        ...
