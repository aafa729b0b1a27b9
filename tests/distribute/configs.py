"""Configs for the shard-derivation tests: the direct backend's guest, with a [distribute] section."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from tests.conftest import KernelTree, SampleKernel, direct_config
from tests.e2e.test_xfstests import STANDIN, _config


def command_config(
    tree: KernelTree,
    kernel: SampleKernel,
    tmp_path: Path,
    *,
    command: str = "nixvmd-smoke",
    features: str = "[]",
    accel: str = "tcg",
    qemu_options: tuple[str, ...] = (),
    fresh: bool = False,
) -> Config:
    """A command suite's config whose shards may be built here (no system features needed)."""
    text = direct_config(
        tree,
        kernel,
        tmp_path / "state",
        tmp_path / "ctl.sock",
        command=command,
        accel=accel,
        qemu_options=qemu_options,
        extra=f'[distribute]\nengine = "nix"\nsystem_features = {features}\n',
    )
    return parse_config(fresh_kernel(text) if fresh else text, name="nixvmd.toml", base=tmp_path)


def fresh_kernel(text: str) -> str:
    """`text` with a kernel parameter of its own, so its shards are new derivations Nix must build
    (an end-to-end test that found an earlier run's output in the store would boot nothing)."""
    return text.replace("[kernel]\n", f'[kernel]\ncmdline = "nixvmd.fresh={secrets.token_hex(8)}"\n', 1)


def fstests_config_text(
    tree: KernelTree,
    kernel: SampleKernel,
    tmp_path: Path,
    args: str,
    shards: int,
    timeout: str = "10m",
    boot_timeout: str = "120s",
) -> str:
    """An xfstests config over a copy of the stand-in tree, `shards` shards, built anywhere, fresh."""
    fstests = tmp_path / "fstests"
    if not fstests.exists():
        shutil.copytree(STANDIN, fstests)
    xfstests = f"args = {args}\n"
    suite = f"shards = {shards}\n"
    text = _config(tree, kernel, tmp_path / "state", tmp_path / "ctl.sock", fstests, xfstests, suite)
    text = text.replace('timeout = "10m"', f'timeout = "{timeout}"')
    text = text.replace('boot_timeout = "120s"', f'boot_timeout = "{boot_timeout}"')
    return fresh_kernel(text) + '\n[distribute]\nengine = "nix"\nsystem_features = []\n'
