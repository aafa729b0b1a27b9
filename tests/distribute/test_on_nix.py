"""NixShards in execute_sharded: each shard built by Nix on a real builder, merged as local shards are.

The builder is a loopback sshd serving a store of its own (tests/nix_builder.py). The shard
derivations here are trivial ones (busybox writes the shard's tests as passed) standing in
for the VM derivation, and their replay reads that list back: what is under test is the
engine's part — instantiate, realise on the builder, cache hits, --fresh, a builder that
goes away, the merged record — with real Nix, ssh and stores.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import ShardDerivation
from nixvmd.distribute.engine import output_of, valid_paths
from nixvmd.distribute.on_nix import NIX_LOG, RESULT, NixShards
from nixvmd.results.record import Outcome, RunRecord, TestResult, TestStatus
from nixvmd.run.execute import PrepareLaunch
from nixvmd.run.listen import RunHooks
from nixvmd.run.shards import ShardHooks, execute_sharded
from nixvmd.suite.base import SuiteRun
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.watch.kernel_image import KernelImage
from tests.distribute.test_engine import engine_config
from tests.nix_builder import NixBuilder, probe_derivation

TIMEOUT_S = 240.0
SHARDS = (("generic/001", "generic/002"), ("generic/003",))


class ProbeShards:
    """Trivial shard derivations: shard k writes its tests to $out/passed (`waits`: shard k never ends)."""

    def __init__(self, directory: Path, waits: int | None = None) -> None:
        self.directory = directory
        self.token = secrets.token_hex(4)
        self.waits = waits
        self.drvs: dict[int, Path] = {}

    async def instantiate(
        self, config: Config, kernel: KernelImage, tests: tuple[str, ...], shard: int, state_dir: Path
    ) -> ShardDerivation:
        names = " ".join(tests)
        script = (
            f"echo started; $bb mkdir $out; echo started > $out/console; "
            f"for t in {names}; do echo $t >> $out/passed; done"
        )
        if shard == self.waits:
            script = "echo started; exec $bb sleep 3600"
        drv = await asyncio.to_thread(
            probe_derivation, self.directory, f"nixvmd-shard-{shard}-{self.token}", script
        )
        self.drvs[shard] = drv
        return ShardDerivation(drv, "out", tests)

    def replay(
        self,
        config: Config,
        out: Path,
        tests: Sequence[str],
        record: RunRecord,
        run_dir: Path,
        hooks: RunHooks | None = None,
    ) -> RunRecord:
        for line in (out / "console").read_text().splitlines():  # as the replay feeds the console
            (hooks or RunHooks()).on_console(line)
        record.tests = [TestResult(name, TestStatus.PASS) for name in (out / "passed").read_text().split()]
        record.outcome = Outcome.PASSED
        return record


def _quiet(k: int) -> Callable[[str], None]:
    return lambda line: None


def _never(config: Config, suite: SuiteRun) -> PrepareLaunch:
    raise AssertionError("a shard on Nix launched a VM here")


def _run(
    config: Config,
    tmp_path: Path,
    name: str,
    shards: NixShards,
    on_console: Callable[[int], Callable[[str], None]],
) -> RunRecord:
    kernel = KernelImage(tmp_path / "bzImage", "6.1.0 #1", 0, 0.0, "digest")
    record = RunRecord(name, "xfstests", str(kernel.path), "6.1.0", "direct", time.time())
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    hooks = ShardHooks(lambda k: RunHooks(on_console=on_console(k)))
    verdicts = AccelVerdicts(tmp_path / "state", "qemu-system-x86_64")
    run = execute_sharded(config, kernel, SHARDS, record, run_dir, _never, verdicts, hooks, run_shard=shards)
    return asyncio.run(asyncio.wait_for(run, TIMEOUT_S))


def test_two_shards_are_built_on_the_builder_then_reused_then_built_fresh(
    loopback_builder: NixBuilder, tmp_path: Path
) -> None:
    config = engine_config(tmp_path, loopback_builder.machine)
    probes = ProbeShards(tmp_path)
    consoles: dict[int, list[str]] = {}
    cached_consoles: dict[int, list[str]] = {}

    def keep(k: int) -> Callable[[str], None]:
        return consoles.setdefault(k, []).append

    def keep_cached(k: int) -> Callable[[str], None]:
        return cached_consoles.setdefault(k, []).append

    first = _run(config, tmp_path, "first", NixShards(False, probes.instantiate, probes.replay), keep)
    built = [asyncio.run(output_of(probes.drvs[k])) for k in (0, 1)]
    again = _run(config, tmp_path, "again", NixShards(False, probes.instantiate, probes.replay), keep_cached)
    fresh = _run(config, tmp_path, "fresh", NixShards(True, probes.instantiate, probes.replay), _quiet)

    assert (first.outcome, first.cached) == (Outcome.PASSED, False), first.reason
    assert [(t.name, t.shard) for t in first.tests] == [
        ("generic/001", 0), ("generic/002", 0), ("generic/003", 1)
    ]  # fmt: skip
    assert all("started" in consoles[k] for k in (0, 1)), "each build's log is its shard's console"
    assert all(consoles[k].count("started") == 1 for k in (0, 1)), "followed live, not shown again"
    assert cached_consoles == {0: ["started"], 1: ["started"]}, "a cache hit's console: from the replay"
    assert all((tmp_path / "runs" / "first" / "shards" / str(k) / NIX_LOG).read_text() for k in (0, 1))
    assert all(loopback_builder.holds(out) for out in built), "both shards were built on the builder"
    shard_dirs = [tmp_path / "runs" / "first" / "shards" / str(k) for k in (0, 1)]
    assert [(d / RESULT).resolve() for d in shard_dirs] == built, "each shard names the output it read"
    assert (again.outcome, again.cached, len(again.tests)) == (Outcome.PASSED, True, 3)
    assert again.built_at is not None and again.built_at <= again.started_at
    assert (fresh.outcome, fresh.cached, len(fresh.tests)) == (Outcome.PASSED, False, 3)
    outputs = [p for p in loopback_builder.store.glob("*-nixvmd-shard-*") if not p.name.endswith(".drv")]
    assert len(outputs) == 4, "--fresh built both shards again, on the builder"


def test_a_builder_gone_mid_run_makes_the_shard_and_run_error_with_nixs_message(
    loopback_builder: NixBuilder, tmp_path: Path
) -> None:
    config = engine_config(tmp_path, loopback_builder.machine)
    probes = ProbeShards(tmp_path, waits=1)
    stopping = threading.Thread(target=loopback_builder.stop)

    def on_console(k: int) -> Callable[[str], None]:
        def seen(line: str) -> None:
            if k == 1 and line == "started" and not stopping.is_alive():
                stopping.start()  # from a thread: the run's loop goes on meanwhile

        return seen

    shards = NixShards(False, probes.instantiate, probes.replay)
    record = _run(config, tmp_path, "lost", shards, on_console)
    stopping.join()

    assert record.outcome is Outcome.ERROR, "the machinery broke, not the kernel"
    # Shard 0 may still be building too when the builder goes: then it breaks as well.
    # Nix names the build that broke, or the builder it could no longer reach (timing decides).
    assert re.match(
        r"shard (\d): Nix could not build shard \1: (builder for '/nix/store/|cannot build on 'ssh://)",
        record.reason,
    ), record.reason
    assert "\n" not in record.reason
    outputs = asyncio.run(output_of(probes.drvs[1]))
    assert asyncio.run(valid_paths([outputs])) == set(), "nothing was built here"
