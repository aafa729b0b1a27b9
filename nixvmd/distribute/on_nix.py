"""One shard of a run as a Nix derivation: instantiated here, built on a builder, replayed here.

`NixShards` is run/shards.py's `run_shard` for `[distribute] engine = "nix"`: for shard k
(its directory `shards/<k>`) it instantiates the shard's derivation, has Nix realise it on
the builders (engine.py: never here; a cache hit when the same derivation was built
before, unless `fresh`) and replays the output through the suite's own parsers into the
shard's record (same verdicts, artefacts under the shard's directory as a local run's).

While Nix builds, the shard's state is "building on <machine>" (the builder Nix chose;
"building" until Nix says) and each line of the build's log is a console line of the
shard, kept in the shard's `nix.log`; `result` links to the output that was read. The
replay then judges the console without showing it again (each line reaches `on_console`
once); a cache hit, whose build was not followed, shows it through the replay. A shard Nix
could not build ends `error` with Nix's message: the machinery failed, not the kernel. No
QEMU runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import ShardDerivation, instantiate_shard
from nixvmd.distribute.engine import realise, registered_at
from nixvmd.distribute.replay import replay_output
from nixvmd.errors import NixvmdError
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.store import RunStore
from nixvmd.run.listen import RunHooks
from nixvmd.run.shard_merge import shard_of
from nixvmd.run.shards import Launcher
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger(__name__)

NIX_LOG = "nix.log"  # in the shard's directory: every line of its build's log
RESULT = "result"  # in the shard's directory: a symlink to the build's output in the store

Instantiate = Callable[[Config, KernelImage, tuple[str, ...], int, Path], Awaitable[ShardDerivation]]
Replay = Callable[[Config, Path, Sequence[str], RunRecord, Path, RunHooks | None], RunRecord]


@dataclass(frozen=True)
class NixShards:
    """How each shard of one run goes through Nix (`fresh`: build again even when cached)."""

    fresh: bool = False
    instantiate: Instantiate = instantiate_shard
    replay: Replay = replay_output

    async def __call__(
        self,
        config: Config,
        kernel: KernelImage,
        tests: tuple[str, ...],
        record: RunRecord,
        run_dir: Path,
        launcher: Launcher,
        verdicts: AccelVerdicts,
        hooks: RunHooks | None = None,
        *,
        store: RunStore | None,
        resume_limit: int,
    ) -> RunRecord:
        """Shard `run_dir` (`shards/<k>`) of the run: its `tests` built by Nix into `record`."""
        hooks = hooks or RunHooks()
        k = shard_of(run_dir)
        try:
            record = await self._build(config, kernel, tests, k, record, run_dir, hooks)
        except asyncio.CancelledError:
            record.outcome, record.reason = Outcome.CANCELLED, record.reason or "cancelled"
            raise
        except NixvmdError as exc:
            record.outcome, record.reason = Outcome.ERROR, str(exc)
        finally:
            record.finished_at = time.time()
        return record

    async def _build(
        self,
        config: Config,
        kernel: KernelImage,
        tests: tuple[str, ...],
        k: int,
        record: RunRecord,
        run_dir: Path,
        hooks: RunHooks,
    ) -> RunRecord:
        hooks.on_phase("building")
        shard = await self.instantiate(config, kernel, tests, k, config.daemon.state_dir)
        log.info("%s: %s", record.id, shard.drv_path)
        followed = False
        with _log_file(run_dir / NIX_LOG) as kept:

            def on_log(drv: Path, line: str) -> None:
                nonlocal followed
                followed = True
                if kept is not None:
                    with contextlib.suppress(OSError):  # a full disk loses the copy, not the build
                        kept.write(line + "\n")
                hooks.on_console(line)

            def on_machine(drv: Path, machine: str) -> None:
                hooks.on_phase(f"building on {machine}" if machine else "building here")

            [done] = await realise(
                [shard.drv_path], config, fresh=self.fresh, on_log=on_log, on_machine=on_machine
            )
        if done.out is None:
            record.outcome = Outcome.ERROR
            record.reason = f"Nix could not build shard {k}: {done.error}"
            return record
        _link(run_dir / RESULT, done.out)
        hooks.on_phase("reporting")
        if followed:  # the build's log carried the console (builder.sh tees it): shown once
            hooks = dataclasses.replace(hooks, on_console=_unshown)
        record = self.replay(config, done.out, tests, record, run_dir, hooks)
        record.cached = done.cached
        record.built_at = await registered_at(done.out) if done.cached else None
        return record


def _unshown(line: str) -> None:
    return None


def _link(link: Path, out: Path) -> None:
    """`link` -> `out` (like nix-build's result), so the run says which output it read."""
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(out)
    except OSError as exc:
        log.warning("cannot link %s to %s: %s", link, out, exc)


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[IO[str] | None]:
    """`path` open for appending; None when it cannot be (the log is then only followed)."""
    try:
        f = path.open("a", encoding="utf-8", errors="replace")
    except OSError as exc:
        log.warning("cannot keep the build's log in %s: %s", path, exc)
        yield None
        return
    with f:
        yield f
