"""A direct-backend run's parts for tests that call execute_run or execute_sharded themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.results.store import RunStore
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.watch.kernel_image import KernelImage, read_kernel_image
from tests.conftest import KernelTree, SampleKernel, direct_config


@dataclass(frozen=True)
class DirectRun:
    """The config, checked kernel, run store and accelerator verdicts of runs on one state dir."""

    state: Path
    config: Config
    kernel: KernelImage
    store: RunStore
    verdicts: AccelVerdicts


def direct_run(
    tree: KernelTree, sample: SampleKernel, tmp_path: Path, short_tmp: Path, command: str, timeout: str
) -> DirectRun:
    """Runs of `command` in the direct backend's guest, on a fresh state dir under `tmp_path`."""
    state = tmp_path / "state"
    text = direct_config(tree, sample, state, short_tmp / "ctl.sock", command=command, timeout=timeout)
    config = parse_config(text, name="nixvmd.toml", base=tmp_path)
    kernel = read_kernel_image(sample.image, state / "kernels")
    return DirectRun(state, config, kernel, RunStore(state), AccelVerdicts(state, config.vm.qemu))
