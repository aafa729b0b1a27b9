"""A plugin for tests/e2e/test_extensions.py: a toy backend and a toy suite kind.

Imported by the daemon through $NIXVMD_PLUGINS; it registers both through the registries
and touches nothing in nixvmd/daemon.
"""

from __future__ import annotations

from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.guest.protocol import GuestJob
from nixvmd.image.backend import Backend, BuildHooks, RunFiles
from nixvmd.image.direct_backend import DirectBackend
from nixvmd.image.registry import register_backend
from nixvmd.results.record import TestResult, TestStatus
from nixvmd.suite.base import SuiteRun
from nixvmd.suite.command import CommandSuite
from nixvmd.suite.registry import SuiteKindBase, register_suite_kind
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.watch.kernel_image import KernelImage

USED_MARK = "toy-backend.txt"  # written into the run directory by the toy backend's prepare


class ToyBackend(DirectBackend):
    """The direct boot through a prepare of its own, which leaves a mark in the run directory."""

    name = "toy"

    def prepare(
        self, config: Config, kernel: KernelImage, job: GuestJob, spec: MachineSpec, files: RunFiles
    ) -> Launch:
        (files.run_dir / USED_MARK).write_text(f"{kernel.release}\n")
        return super().prepare(config, kernel, job, spec, files)

    def status(self) -> dict[str, object]:
        return {**super().status(), "toy": True}


def toy_backend(
    config: Config, config_path: Path | None, current: Backend | None, hooks: BuildHooks
) -> Backend:
    return current if isinstance(current, ToyBackend) else ToyBackend(config.daemon.state_dir)


class LinesSuite(CommandSuite):
    """Runs `suite.command` and counts the lines it prints; it passes when it printed any."""

    name = "lines"

    def results(self, exit_status: int | None, run_dir: Path, complete: bool) -> list[TestResult]:
        lines = len(self.output)
        status = TestStatus.PASS if complete and lines > 0 else TestStatus.FAIL
        return [TestResult(name=f"lines={lines}", status=status, message="" if lines else "no lines")]


class LinesKind(SuiteKindBase):
    name = "lines"

    def from_config(self, config: Config, tests: tuple[str, ...] = ()) -> SuiteRun:
        return LinesSuite(config.suite.command)


register_backend("toy", toy_backend)
register_suite_kind(LinesKind())
