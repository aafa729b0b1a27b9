"""The nix backend: the last good build, which paths to watch, whether a build is due.

Deciding runs no Nix: `is_current` and the content fingerprints read files only. Nix runs
in `build()` (nix-build/nix build, then nix-instantiate to learn the inputs) and in
`rediscover()` after a failed build, to learn which files the broken evaluation read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import ImageBuildError
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.backend import Backend, BuildHooks, RunFiles
from nixvmd.image.dev_tree import kernel_modules_root, tree_share
from nixvmd.image.nix import NixImage, NixImageSpec
from nixvmd.image.nix_inputs import (
    ImageState,
    build_and_record,
    discover_inputs,
    fingerprint,
    is_current,
    load_state,
)
from nixvmd.image.nix_launch import prepare_nix, runner_shares_memory
from nixvmd.plan.planner import Plan, Step
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.vm.virtiofsd import virtiofs_launch
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger("nixvmd")


def image_spec(config: Config, config_path: Path | None) -> NixImageSpec:
    """The build nixvmd makes for `config`: Nix runs in the config file's directory."""
    image = config.image
    return NixImageSpec(
        nix_file=None if image.flake else image.nix_file,
        flake=image.flake,
        nix_args=image.nix_args,
        inputs=image.inputs,
        workdir=config_path.resolve().parent if config_path is not None else None,
    )


class NixImageKeeper:
    """The current nix image of a daemon, its builds, and the bookkeeping that avoids needless ones.

    One build at a time; changes during a build ask for one follow-up (`follow_up`), and
    changes that only want a run (`run_after`) get one after the build even if it failed.
    """

    name = "nix"
    builds = True

    def __init__(self, spec: NixImageSpec, state_dir: Path, hooks: BuildHooks) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.hooks = hooks
        self.task: asyncio.Task[None] | None = None
        self.follow_up = False
        self.run_after = False
        self.state: ImageState | None = load_state(state_dir)
        self.error: str | None = None
        self.building_since: float | None = None
        self.discovered: frozenset[Path] = frozenset()
        # The inputs' content when last looked at; a build's record holds it as it was when
        # that build started, so an edit during a build still counts afterwards.
        self._seen = self.state.fingerprint if self.state is not None else self._fingerprint()

    @property
    def image(self) -> NixImage | None:
        return self.state.image if self.state is not None else None

    @property
    def ready(self) -> bool:
        return self.image is not None

    def identity(self, config: Config, kernel: KernelImage) -> str | None:
        """The built image's store path; None before the first good build."""
        return str(self.image.out_path) if self.image is not None else None

    def inputs(self) -> set[Path]:
        """Every path the image is known to depend on."""
        paths = {Path(os.path.abspath(self.spec.cwd() / p)) for p in self.spec.inputs}
        if not self.spec.is_flake:
            paths.add(self.spec.configuration())
        if self.state is not None:
            paths |= set(self.state.inputs)
        return paths | set(self.discovered)

    def watch_targets(self) -> tuple[set[Path], set[Path]]:
        """(files to watch, directories to watch as whole trees); a missing input counts as a file."""
        files: set[Path] = set()
        trees: set[Path] = set()
        for path in self.inputs():
            if path.is_dir():
                trees.add(path)
            else:
                files.add(path)
        return files, trees

    def concerns(self, path: Path) -> bool:
        """True when a change of `path` may change an input."""
        path = Path(os.path.abspath(path))
        return any(path == p or p in path.parents for p in self.inputs())

    def is_current(self) -> bool:
        """True when the recorded image is what a build would give now (no Nix run)."""
        return is_current(self.state, self.spec, self.state_dir)

    def inputs_changed(self) -> bool:
        """True when the inputs' content differs from when this was last asked (or built).

        `touch vm.nix` or saving identical bytes is no change.
        """
        now = self._fingerprint()
        changed, self._seen = now != self._seen, now
        return changed

    def _fingerprint(self) -> str:
        return fingerprint(self.inputs())

    def elapsed(self) -> float | None:
        """Seconds since the running build started; None when none runs."""
        if self.building_since is None:
            return None
        return round(time.monotonic() - self.building_since, 1)

    @property
    def building(self) -> bool:
        return self.task is not None and not self.task.done()

    def take(self, decision: Plan) -> None:
        """Carry out the image steps of the planner's `decision`."""
        if Step.BUILD_IMAGE in decision:
            self.start_build()
        elif Step.FOLLOW_UP_BUILD in decision:
            self.follow_up = True
        elif self.building:
            self.run_after = True

    def start_build(self) -> None:
        """Build in a task of its own; `hooks.after` decides what follows."""
        self.follow_up = False
        task = asyncio.create_task(self._build_and_follow())
        self.task = task
        self.hooks.tasks.add(task)
        task.add_done_callback(self.hooks.tasks.discard)

    async def _build_and_follow(self) -> None:
        publish = self.hooks.publish
        self.hooks.on_building(True)
        publish("build", phase="start")
        log.info("building the nix image")

        def on_line(line: str) -> None:
            publish("build", phase="output", line=line)
            log.info("nix: %s", line)

        try:
            state: ImageState | None = await self.build_state(on_line)
        except ImageBuildError as exc:
            state = None
            self.error = str(exc)
            log.error("nix image build failed; keeping the last good image:\n%s", exc)
            await self.hooks.failed(self.error)
            with contextlib.suppress(ImageBuildError):
                await self.rediscover()
        finally:
            self.task = None
            self.hooks.on_building(False)
        if state is None:
            publish("build", phase="end", ok=False, error=self.error)
        else:
            log.info("nix image built: %s", state.image.out_path)
            publish("build", phase="end", ok=True, path=str(state.image.out_path))
        if self.follow_up:
            log.info("image inputs changed during the build: building once more")
            self.start_build()
            return
        run, self.run_after = state is not None or self.run_after, False
        await self.hooks.after(run)

    async def build(self, on_line: Callable[[str], None]) -> None:
        """Build, record the result as the last good image; ImageBuildError keeps the old one."""
        await self.build_state(on_line)

    async def build_state(self, on_line: Callable[[str], None]) -> ImageState:
        """`build`, giving the recorded build."""
        self.building_since = time.monotonic()
        self._seen = self._fingerprint()
        try:
            state = await build_and_record(self.spec, self.state_dir, on_line, previous=self.state)
        finally:
            self.building_since = None
        self.state, self.error, self.discovered = state, None, frozenset()
        self._seen = state.fingerprint
        return state

    async def rediscover(self) -> None:
        """After a failed build: learn which files the (broken) evaluation read, to watch them."""
        self.discovered = await discover_inputs(self.spec)
        self._seen = self._fingerprint()

    def prepare(
        self, config: Config, kernel: KernelImage, job: GuestJob, spec: MachineSpec, files: RunFiles
    ) -> Launch:
        """The launch of a run on the current image (no Nix: the image is built already).

        The job is not in the image: the guest agent fetches it with `hello`.
        """
        image = self.image
        if image is None:
            raise ImageBuildError("no nix image has been built yet: fix the build and try again")
        memory = None if runner_shares_memory(image.runner) else spec.memory
        tree = tree_share(config, spec, kernel_modules_root(config, kernel), memory=memory)
        if tree is not None:
            spec = dataclasses.replace(spec, extra=(*tree.options, *spec.extra))
        launch = prepare_nix(
            image,
            kernel.bootable,
            config.kernel.cmdline,
            spec,
            files.run_dir,
            files.runner_dir,
            modules=config.kernel.modules,
        )
        if tree is None or not tree.exports:
            return launch
        return dataclasses.replace(launch, argv=tuple(virtiofs_launch(launch.argv, tree.exports)))

    def status(self) -> dict[str, object]:
        """The nix part of status's `image` object."""
        image = self.image
        return {
            "path": str(image.out_path) if image else None,
            "runner": str(image.runner) if image else None,
            "system_name": image.host_name if image else None,
            "kernel_variable": image.kernel_env_var if image else None,
            "building": self.building_since is not None,
            "build_elapsed_s": self.elapsed(),
            "error": self.error,
        }


def nix_backend(
    config: Config, config_path: Path | None, current: Backend | None, hooks: BuildHooks
) -> Backend:
    """The registry's factory: `current` when it builds the same image, else a new keeper."""
    spec = image_spec(config, config_path)
    if isinstance(current, NixImageKeeper) and current.spec == spec:
        return current
    return NixImageKeeper(spec, config.daemon.state_dir, hooks)
