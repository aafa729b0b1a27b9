"""A shard on a Nix builder with xfstests.dev_tree: the tree goes into the store as it is, no share."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.distribute.derivation import shard_inputs
from nixvmd.watch.kernel_image import read_kernel_image
from tests.conftest import KernelTree, SampleKernel
from tests.distribute.configs import fstests_config_text


@pytest.fixture(autouse=True)
def nix_installed() -> None:
    if shutil.which("nix-store") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")


def test_the_dev_tree_is_the_shards_fstests_in_the_store_and_the_guest_mounts_nothing(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    text = fstests_config_text(kernel_tree, cloud_kernel, tmp_path, '["script/001"]', 1)
    dev = tmp_path / "xfstests-dev"
    shutil.copytree(tmp_path / "fstests", dev)
    (dev / "tests" / "script" / "001").write_text("echo edited in the dev tree\n")
    text = text.replace("[xfstests]\n", f'[xfstests]\ndev_tree = "{dev}"\n', 1)
    config = parse_config(text, name="nixvmd.toml", base=tmp_path)
    kernel = read_kernel_image(cloud_kernel.image)
    inputs = asyncio.run(shard_inputs(config, kernel, ("script/001",), 0, config.daemon.state_dir))
    (tree,) = inputs.store_trees
    assert Path(tree, "tests", "script", "001").read_text() == "echo edited in the dev tree\n"
    job = Path(inputs.job).read_bytes()
    assert tree.encode() in job  # xfstests.dir in the guest: the store copy
    assert b"nixvmd-fstests" not in job  # no share's tag to mount
