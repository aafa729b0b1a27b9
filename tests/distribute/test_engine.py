"""realise: Nix builds shard derivations on a real second store over SSH, never here.

Each test has a loopback builder of its own (tests/nix_builder.py) and trivial derivations
(a static busybox as the builder) that require the `kvm` feature, so only the builder may
build them (`--max-jobs 0`), with a name no earlier test run used.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.distribute.engine import Realised, realise, valid_paths
from tests.nix_builder import NixBuilder, probe_derivation, wait_gone

TIMEOUT_S = 180.0


def engine_config(tmp_path: Path, builders: str, *, build_here: bool = False) -> Config:
    state = tmp_path / "state"
    text = f'[daemon]\nstate_dir = "{state}"\n[distribute]\nengine = "nix"\nbuilders = "{builders}"\n'
    text += f"build_here = {str(build_here).lower()}\n"
    return parse_config(text, name="nixvmd.toml", base=tmp_path)


def unique(name: str) -> str:
    return f"nixvmd-{name}-{secrets.token_hex(4)}"


class Told:
    """What realise told: each derivation's log lines and the machines it built on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.machines: list[str] = []
        self.started = asyncio.Event()

    def on_log(self, drv: Path, line: str) -> None:
        self.lines.append(line)
        if line.strip() == "started":
            self.started.set()

    def on_machine(self, drv: Path, machine: str) -> None:
        self.machines.append(machine)


async def realise_one(drv: Path, config: Config, told: Told, *, fresh: bool = False) -> Realised:
    [done] = await asyncio.wait_for(
        realise([drv], config, fresh=fresh, on_log=told.on_log, on_machine=told.on_machine), TIMEOUT_S
    )
    return done


def test_a_derivation_that_needs_kvm_is_built_on_the_builder_and_copied_back(
    loopback_builder: NixBuilder, tmp_path: Path
) -> None:
    drv = probe_derivation(tmp_path, unique("probe"), "echo built by busybox; echo ok > $out")
    told = Told()

    done = asyncio.run(realise_one(drv, engine_config(tmp_path, loopback_builder.machine), told))

    assert done.error is None and done.out is not None and not done.cached
    assert loopback_builder.holds(done.out), "the builder's own store has the output: it was built there"
    assert done.out.read_text() == "ok\n"  # and the local store received it
    assert "built by busybox" in told.lines
    assert told.machines == [loopback_builder.machine.split()[0]]
    assert (tmp_path / "state" / "distribute" / "roots" / done.out.name[33:]).resolve() == done.out


def test_this_host_builds_a_shard_only_with_build_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIX_CONFIG", "builders =")  # no builder at all, whatever nix.conf says
    drv = probe_derivation(tmp_path, unique("here"), "echo built here; echo ok > $out", features=())
    nowhere, here = Told(), Told()

    refused = asyncio.run(realise_one(drv, engine_config(tmp_path, ""), nowhere))
    built = asyncio.run(realise_one(drv, engine_config(tmp_path, "", build_here=True), here))

    assert refused.out is None and refused.error is not None and nowhere.lines == []
    assert "unable to start any build" in refused.error, refused.error
    assert (built.error, built.cached) == (None, False) and "built here" in here.lines
    assert built.out is not None and built.out.read_text() == "ok\n"


def test_the_same_derivation_again_is_a_cache_hit_and_fresh_builds_it_again(
    loopback_builder: NixBuilder, tmp_path: Path
) -> None:
    drv = probe_derivation(tmp_path, unique("cached"), "echo building; echo same > $out")
    config = engine_config(tmp_path, loopback_builder.machine)
    first, again, fresh = Told(), Told(), Told()

    built = asyncio.run(realise_one(drv, config, first))
    cached = asyncio.run(realise_one(drv, config, again))
    rebuilt = asyncio.run(realise_one(drv, config, fresh, fresh=True))

    assert (built.cached, built.error, "building" in first.lines) == (False, None, True)
    assert (cached.cached, cached.out, again.lines, again.machines) == (True, built.out, [], [])
    assert (rebuilt.cached, rebuilt.error) == (False, None)
    assert "building" in fresh.lines, "--fresh ran the builder again"
    assert rebuilt.out is not None and rebuilt.out != built.out and loopback_builder.holds(rebuilt.out)
    assert rebuilt.out.read_text() == "same\n"


def test_a_builder_that_goes_away_mid_build_leaves_nixs_error_and_nothing_built_here(
    loopback_builder: NixBuilder, tmp_path: Path
) -> None:
    drv = probe_derivation(tmp_path, unique("lost"), "echo started; exec $bb sleep 3600")
    config = engine_config(tmp_path, loopback_builder.machine)
    told = Told()

    async def scenario() -> tuple[Realised, set[Path]]:
        building = asyncio.create_task(realise_one(drv, config, told))
        await asyncio.wait_for(told.started.wait(), TIMEOUT_S)
        await asyncio.to_thread(loopback_builder.stop)
        done = await building
        return done, await valid_paths([Path(p) for p in _outputs(drv)])

    done, valid = asyncio.run(scenario())

    assert done.out is None and not done.cached
    assert done.error is not None and "\n" not in done.error
    assert done.error.startswith(f"builder for '{drv}' failed") and "end-of-file" in done.error, done.error
    assert told.machines == [loopback_builder.machine.split()[0]] and valid == set()


def test_cancelling_realise_ends_nix_and_its_build(loopback_builder: NixBuilder, tmp_path: Path) -> None:
    drv = probe_derivation(tmp_path, unique("cancelled"), "echo started; exec $bb sleep 3600")
    config = engine_config(tmp_path, loopback_builder.machine)
    told = Told()

    async def scenario() -> tuple[list[int], list[int]]:
        building = asyncio.create_task(realise_one(drv, config, told))
        await asyncio.wait_for(told.started.wait(), TIMEOUT_S)
        nix, remote = _processes_naming(drv.name), loopback_builder.sessions()
        building.cancel()
        with pytest.raises(asyncio.CancelledError):
            await building
        return nix, remote

    nix, remote = asyncio.run(scenario())

    assert nix and len(remote) >= 2, (
        "nix-store --realise ran, and on the builder nix-store --serve and the build"
    )
    assert not set(nix) & set(_processes_naming(drv.name)), "nix-store is gone"
    assert wait_gone(remote, TIMEOUT_S) == [], "the builder's side ended when its client went"


def _outputs(drv: Path) -> list[str]:
    import subprocess

    done = subprocess.run(["nix-store", "--query", "--outputs", str(drv)], capture_output=True, text=True)
    return done.stdout.split()


def _processes_naming(text: str) -> list[int]:
    """Live processes whose command line names `text` (zombies are gone in all but name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in argv and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
