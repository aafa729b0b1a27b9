"""A shard's derivation as Nix sees it: inputs from the store only, the configured features, by content.

Acceptance 4 (nix show-derivation lists no input outside /nix/store and the configured
requiredSystemFeatures) and 5 (`nixvmctl export --jobset DIR` evaluates with
nix-instantiate to one derivation per shard). Real Nix, real store, no VM.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import ShardDerivation, instantiate_shard
from nixvmd.watch.kernel_image import read_kernel_image
from tests.conftest import KernelTree, SampleKernel
from tests.distribute.configs import command_config, fstests_config_text


@pytest.fixture(autouse=True)
def nix_installed() -> None:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")


def _instantiate(config: Config, sample: SampleKernel) -> ShardDerivation:
    kernel = read_kernel_image(sample.image)
    return asyncio.run(instantiate_shard(config, kernel, (), 0, config.daemon.state_dir))


def _show(drv: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command", "show-derivation", str(drv)],
        capture_output=True,
        text=True,
        check=True,
    )
    shown: dict[str, Any] = json.loads(done.stdout)[str(drv)]
    return shown


def test_a_shards_derivation_names_only_store_paths_and_its_features(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    features = '["kvm", "nixos-test"]'
    config = command_config(kernel_tree, cloud_kernel, tmp_path, features=features, accel="auto")
    shard = _instantiate(config, cloud_kernel)
    drv = _show(shard.drv_path)
    _assert_sealed(drv, [tmp_path, cloud_kernel.image.parent])
    assert len(drv["inputSrcs"]) >= 6  # busybox, builder.sh, kernel, initramfs, job, QEMU
    assert drv["env"]["requiredSystemFeatures"] == "kvm nixos-test"
    # "auto" with the kvm feature: the builder's QEMU uses KVM.
    assert "-accel kvm" in drv["env"]["qemuArgs"]
    assert list(drv["outputs"]) == [shard.out_name]


def test_an_fstests_shards_derivation_and_its_job_name_no_host_path(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    args = '["generic/001", "generic/002", "generic/004"]'
    text = fstests_config_text(kernel_tree, cloud_kernel, tmp_path, args, 2)
    config = parse_config(text, name="nixvmd.toml", base=tmp_path)
    kernel = read_kernel_image(cloud_kernel.image)
    tests = ("generic/001", "generic/004")
    shard = asyncio.run(instantiate_shard(config, kernel, tests, 1, config.daemon.state_dir))
    drv = _show(shard.drv_path)
    hosts = [
        tmp_path,
        config.daemon.state_dir,
        config.xfstests.dir,
        cloud_kernel.image.parent,
        cloud_kernel.modules,
    ]
    _assert_sealed(drv, hosts)
    # The fstests tree, the guest's programs and the results disk come from the store and back.
    env = drv["env"]
    assert env["storeTrees"] in drv["inputSrcs"] and env["rootTrees"] in drv["inputSrcs"]
    assert env["keepDisks"] == "xfstests-results.img"
    # The job the guest runs: the shard's tests, the tree at its store path, no host path.
    job = Path(env["job"]).read_bytes()
    assert env["job"] in drv["inputSrcs"] and env["storeTrees"].encode() in job
    assert all(test.encode() in job for test in tests) and b"generic/002" not in job
    for host in hosts:
        assert str(host).encode() not in job, host


def _assert_sealed(drv: dict[str, Any], hosts: list[Path]) -> None:
    """`drv` names store paths only: its inputs, builder and arguments, and no host path (of
    `hosts`, or the host's system directories) inside any value of its environment."""
    inputs = [*drv["inputSrcs"], *drv["inputDrvs"], drv["builder"], *drv["args"][1:]]
    assert all(path.startswith("/nix/store/") for path in inputs), inputs
    for name, value in drv["env"].items():
        for host in [*map(str, hosts), "/usr/", "/var/", "/etc/"]:
            assert host not in value, (name, host, value)


def test_the_same_inputs_give_the_same_derivation_and_other_tests_another(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    config = command_config(kernel_tree, cloud_kernel, tmp_path, accel="auto")
    first = _instantiate(config, cloud_kernel)
    again = _instantiate(config, cloud_kernel)
    other_config = command_config(kernel_tree, cloud_kernel, tmp_path, command="true", accel="auto")
    other = _instantiate(other_config, cloud_kernel)
    assert first.drv_path == again.drv_path
    # Host paths that never reach the guest (kernel tree, state dir) change nothing.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = command_config(KernelTree(elsewhere / "linux"), cloud_kernel, elsewhere, accel="auto")
    assert _instantiate(moved, cloud_kernel).drv_path == first.drv_path
    assert other.drv_path != first.drv_path
    # No system features: any builder (this host too) may build it; "auto" is then TCG.
    drv = _show(first.drv_path)
    assert drv["env"]["requiredSystemFeatures"] == ""
    assert "-accel tcg" in drv["env"]["qemuArgs"]


def test_export_jobset_evaluates_to_one_derivation_per_shard(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    args = '["generic/001", "generic/002", "generic/004"]'
    config_file = tmp_path / "nixvmd.toml"
    config_file.write_text(fstests_config_text(kernel_tree, cloud_kernel, tmp_path, args, 2))
    jobset = tmp_path / "jobset"
    ctl = [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(config_file)]
    done = subprocess.run(
        [*ctl, "export", "--jobset", str(jobset)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "2 shard(s)" in done.stdout
    listed = subprocess.run(
        ["nix-instantiate", "--quiet", str(jobset)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(listed) == 2 and len(set(listed)) == 2
    assert all(path.startswith("/nix/store/") and path.endswith(".drv") for path in listed)
    shards = [_show(Path(path)) for path in listed]
    # Each shard carries the fstests tree from the store and the host programs its guest needs.
    for drv in shards:
        tree = drv["env"]["storeTrees"]
        assert tree.startswith("/nix/store/") and tree.endswith("-fstests")
        assert drv["env"]["rootTrees"].endswith("-nixvmd-guest-programs")
        assert drv["env"]["keepDisks"] == "xfstests-results.img"
