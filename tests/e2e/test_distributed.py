"""[distribute] engine = "nix" end to end: the daemon's shards built by Nix on a real second store.

The builder is tests/nix_builder.py's: Debian's sshd on the loopback interface, its
`nix-store --serve --write` in a mount namespace with another /nix, so the shards' closures
are really copied there and their outputs really copied back. The daemon reaches it with
`[distribute] builders` and NIX_SSHOPTS in its environment. The stand-in check runs in the
shards' sealed guests under TCG (vm.accel = "tcg"; the builder advertises `kvm`, which the
derivations require, as a real rack's would).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.distribute.on_nix import NIX_LOG, RESULT
from tests.conftest import DaemonProcess, KernelTree, SampleKernel
from tests.e2e.test_xfstests import STANDIN, _config
from tests.nix_builder import NixBuilder

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
RUN_TIMEOUT_S = 1200


Started = Callable[[str], tuple[DaemonProcess, Path]]


@pytest.fixture
def on_builder(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    loopback_builder: NixBuilder,
) -> Started:
    """Start a daemon whose xfstests runs (with these `xfstests.args`) go in two shards to the builder."""

    def start(args: str) -> tuple[DaemonProcess, Path]:
        fstests = tmp_path / "fstests"
        shutil.copytree(STANDIN, fstests)
        # The shards' derivations hold the tree: a tree of this test's own makes them new to
        # this store too, so the first run builds (an earlier session's outputs stay valid).
        (fstests / "nixvmd-test-token").write_text(secrets.token_hex(16))
        (fstests / "burn.list").write_text("burn/001 3 pass\n")
        state = tmp_path / "state"
        text = _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests, args, "shards = 2")
        machine = loopback_builder.machine
        text += f'\n[distribute]\nengine = "nix"\nbuilders = "{machine}"\nsystem_features = ["kvm"]\n'
        return daemon_factory(text), state

    return start


def _run(
    daemon: DaemonProcess, state: Path, kernel: Callable[[], None] | None = None, **args: Any
) -> tuple[dict[str, Any], Path]:
    """A run: of a new kernel when `kernel` writes one, else asked for with `args`; its record."""
    events = daemon.events()
    if kernel is not None:
        kernel()
    else:
        daemon.call("run", **args)
    end = events.run_end(RUN_TIMEOUT_S)
    run_dir = state / "runs" / end["id"]
    return json.loads((run_dir / "run.json").read_text()), run_dir


def _outputs(run_dir: Path) -> list[Path]:
    return [(run_dir / "shards" / str(k) / RESULT).resolve() for k in (0, 1)]


def _valid_here(paths: list[Path]) -> bool:
    done = subprocess.run(["nix-store", "--check-validity", *map(str, paths)], capture_output=True)
    return done.returncode == 0


def test_two_shards_built_on_the_builder_merge_into_one_record_then_cache_then_fresh(
    on_builder: Started, loopback_builder: NixBuilder, kernel_tree: KernelTree, cloud_kernel: SampleKernel
) -> None:
    # Unknown durations split these as [burn/001, generic/002] [generic/001]. After the first
    # run, burn/001's 3 s would split them [burn/001] [generic/001, generic/002], with the
    # failed generic/002 first: other shards, other derivations, unless the same kernel keeps
    # its split (distribute/splits.py).
    args = 'args = ["burn/001", "generic/001", "generic/002"]'
    daemon, state = on_builder(args)

    first, first_dir = _run(
        daemon, state, lambda: kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    )
    again, again_dir = _run(daemon, state)
    fresh, fresh_dir = _run(daemon, state, fresh=True)

    tests = {t["name"]: (t["status"], t.get("shard")) for t in first["tests"]}
    assert first["outcome"] == "failed", first["reason"]  # generic/002 fails on purpose
    assert tests == {
        "burn/001": ("pass", 0), "generic/001": ("pass", 1), "generic/002": ("fail", 0)
    }  # fmt: skip
    assert next(t["duration_s"] for t in first["tests"] if t["name"] == "burn/001") >= 3
    junit = ET.parse(first_dir / "junit.xml").getroot()
    cases = {c.get("name", ""): c for c in junit.iter("testcase")}
    assert sorted(cases) == ["burn/001", "generic/001", "generic/002"]
    assert [name for name, c in cases.items() if c.find("failure") is not None] == ["generic/002"]
    assert "cached" not in first
    built = _outputs(first_dir)
    assert all(loopback_builder.holds(out) for out in built), "both shards were built on the builder"
    assert _valid_here(built), "and the local store received them"
    assert all((first_dir / "shards" / str(k) / NIX_LOG).exists() for k in (0, 1))
    assert [h["id"] for h in daemon.call("history")][-3:] == [first["id"], again["id"], fresh["id"]]

    assert again.get("cached") is True, "the same kernel again: the same shards, nothing built"
    assert first["started_at"] < again["built_at"] < again["started_at"]
    assert {t["name"]: (t["status"], t.get("shard")) for t in again["tests"]} == tests
    assert _outputs(again_dir) == built, "the same outputs, nothing built"

    assert "cached" not in fresh and fresh["outcome"] == "failed"
    rebuilt = _outputs(fresh_dir)
    assert set(rebuilt).isdisjoint(built) and all(loopback_builder.holds(out) for out in rebuilt)


def test_a_builder_gone_mid_run_ends_the_run_error_with_nixs_message_and_no_vm_here(
    on_builder: Started, loopback_builder: NixBuilder, kernel_tree: KernelTree, cloud_kernel: SampleKernel
) -> None:
    args = 'args = ["generic/001", "hang/001"]'
    daemon, state = on_builder(args)
    events = daemon.events(["run", "test"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())

    events.wait_for(
        lambda e: e["event"] == "test" and str(e.get("state", "")).startswith("building on ssh://"),
        RUN_TIMEOUT_S,
    )
    loopback_builder.stop()
    end = events.run_end(RUN_TIMEOUT_S)

    run_dir = state / "runs" / end["id"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["outcome"] == "error", "the machinery broke, not the kernel"
    # Nix's own words follow: the build that broke, or the builder it could no longer reach.
    assert re.search(
        r"Nix could not build shard \d: (builder for '/nix/store/|cannot build on 'ssh://)", record["reason"]
    ), record["reason"]
    assert "\n" not in record["reason"]
    assert not any((run_dir / "shards" / str(k) / "qemu.log").exists() for k in (0, 1)), "no VM ran here"
