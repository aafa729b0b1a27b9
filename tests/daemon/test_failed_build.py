"""A failed image build's `error` record names the kernel tree's commit, like a run's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.daemon.builds import BuildNames
from nixvmd.daemon.failed_build import record_failed_build
from nixvmd.results.record import Outcome
from nixvmd.results.store import RunStore
from nixvmd.watch.kernel_image import KernelImage
from tests.git_trees import one_commit_tree


def _config(tmp_path: Path) -> Config:
    text = f'[kernel]\ntree = "{tmp_path / "linux"}"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
    return parse_config(text, name="test.toml", base=tmp_path)


@pytest.mark.parametrize("with_kernel", [True, False], ids=["kernel", "no-kernel-yet"])
def test_a_failed_build_in_a_git_tree_records_its_commit_and_dirty_flag(
    tmp_path: Path, with_kernel: bool
) -> None:
    commit = one_commit_tree(tmp_path / "linux")
    (tmp_path / "linux" / "Makefile").write_text("VERSION = 7\n")  # an edit not committed yet
    config = _config(tmp_path)
    store = RunStore(config.daemon.state_dir)
    image = tmp_path / "linux" / "arch" / "x86" / "boot" / "bzImage"
    kernel = KernelImage(image, "6.1.0 (t@h) #3", 512, 0.0, "digest") if with_kernel else None

    async def fail() -> Outcome | None:
        record = await record_failed_build(
            store, config, kernel, "nix: error", BuildNames(asyncio.ensure_future)
        )
        return record.outcome

    assert asyncio.run(fail()) is Outcome.ERROR
    saved = store.latest()
    assert saved is not None and saved.outcome is Outcome.ERROR
    assert saved.git == {"commit": commit, "dirty": True}
    assert saved.build.endswith(f"{commit[:7]}-dirty")
