"""The run going on as status and subscribers see it: `current`, the events, its VMs, per shard.

A run's hooks (run/listen.py `RunHooks`) land here. A run with shards has one set of
hooks per shard: each shard's test, count and state are `current.shards[k]` (DESIGN §2a),
its `test` and `console` events carry `shard`, and the run's own phase, count and ETA
are made of the shards' (testing while any shard tests; the ETA of the slowest).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nixvmd.config.schema import Engine, Network
from nixvmd.daemon.state import Phase
from nixvmd.errors import StateSpaceError
from nixvmd.results.record import RunRecord, TestResult
from nixvmd.run.execute import WAITING_FOR_GDB
from nixvmd.run.listen import RunHooks
from nixvmd.suite.base import Progress
from nixvmd.vm.gdbstub import GdbStub, gdb_status, vmlinux_of
from nixvmd.vm.machine import Machine

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")

# A shard's state while its VM goes (the phases, and "resuming" between a stopped VM and a
# fresh one, which counts as booting for the run; on Nix "building on <machine>", building
# for the run), then its outcome.
_RUN_PHASE_ORDER = ("testing", "booting", "building")
_GOING = (*_RUN_PHASE_ORDER, "resuming")


def _run_phase_of(state: str) -> str:
    """What shard state `state` counts as for the run's phase."""
    if state == "resuming":
        return "booting"
    return "building" if state.startswith("building") else state


class LiveRun:
    """The daemon's side of one run while it goes; `hooks(k)` are shard k's (None: the run's own)."""

    def __init__(
        self,
        daemon: Daemon,
        record: RunRecord,
        shards: Sequence[tuple[str, ...]] = (),
        on_verdict: Callable[[TestResult], None] = lambda result: None,
    ) -> None:
        self.daemon = daemon
        self.on_verdict = on_verdict  # every shard's: the run has one first regression
        self.run_id = record.id
        self.space_errors: list[StateSpaceError] = []
        self.current: dict[str, Any] = {
            "run_id": record.id,
            "test": None,
            "done": 0,
            "total": None,
            "phase": "booting",
            "started_at": record.started_at,
            "reason": record.cause,
        }
        self.shards: list[dict[str, Any]] = [
            {"index": k, "test": None, "done": 0, "total": None, "state": "booting"}
            for k in range(len(shards))
        ]
        self._eta: list[float | None] = [None] * len(shards)
        if self.shards:
            self.current["shards"] = self.shards
        config = daemon.config
        if config.vm.network is Network.USER and config.distribute.engine is Engine.LOCAL:
            for holder in self.shards or [self.current]:
                holder["ssh"] = {"port": None, "ready": False, "error": None}  # until QEMU is up
        daemon.current = self.current

    def hooks(self, shard: int | None = None) -> RunHooks:
        """The hooks of the run (`shard` None) or of one of its shards."""
        return RunHooks(
            on_phase=functools.partial(self.phase, shard),
            on_console=functools.partial(self.console, shard),
            on_progress=functools.partial(self.progress, shard),
            on_machine=functools.partial(self.machine, shard),
            on_console_bytes=functools.partial(self.console_bytes, shard),
            on_space_error=self.space_error,
            on_resume=functools.partial(self.resume, shard),
            on_verdict=self.on_verdict,
            on_ssh=functools.partial(self.ssh, shard),
            on_gdb=self.gdb,
        )

    def phase(self, shard: int | None, phase: str) -> None:
        if shard is not None:
            self.shards[shard]["state"] = phase
            self._publish_shard(shard)
            phase = self._run_phase()
        self.current["phase"] = phase
        self.daemon.set_state(Phase.BOOTING if phase == WAITING_FOR_GDB else Phase(phase))

    def gdb(self, stub: GdbStub) -> None:
        """The run's gdbstub is up: `current.gdb` says how to attach (the tree's vmlinux)."""
        kernel = self.daemon.config.kernel
        self.current["gdb"] = gdb_status(stub, vmlinux_of(kernel.tree, self.daemon.config.kernel_image))
        self.daemon.events.publish("run", phase="gdb", run_id=self.run_id, **self.current["gdb"])
        held = "the guest waits for gdb" if stub.waits else "gdb may attach"
        log.info("run %s: %s: %s", self.run_id, held, self.current["gdb"]["command"])

    def _run_phase(self) -> str:
        """Testing while any shard tests, booting while any boots, then reporting."""
        states = {_run_phase_of(str(s["state"])) for s in self.shards}
        return next((p for p in _RUN_PHASE_ORDER if p in states), "reporting")

    def progress(self, shard: int | None, progress: Progress) -> None:
        if shard is None:
            self.current.update(
                test=progress.test, done=progress.done, total=progress.total, eta_s=progress.eta_s
            )
            self.daemon.events.publish(
                "test",
                run_id=self.run_id,
                test=progress.test,
                done=progress.done,
                total=progress.total,
                eta_s=progress.eta_s,
            )
        else:
            self.shards[shard].update(test=progress.test, done=progress.done, total=progress.total)
            self._eta[shard] = progress.eta_s
            self._sum()
            self._publish_shard(shard)
        self.daemon.sd.status(self.daemon.status_line())

    def _sum(self) -> None:
        """The run's count, total and ETA from its shards' (the ETA: the last shard to end)."""
        totals = [s["total"] for s in self.shards]
        self.current["done"] = sum(s["done"] for s in self.shards)
        self.current["total"] = None if None in totals else sum(totals)
        going = [
            eta
            for s, eta in zip(self.shards, self._eta, strict=True)
            if _run_phase_of(str(s["state"])) in _GOING
        ]
        self.current["eta_s"] = None if not going or None in going else max(e for e in going if e is not None)

    def shard_end(self, shard: int, record: RunRecord) -> None:
        """Shard `shard` is over: its state is its outcome."""
        self.shards[shard].update(test=None, state=str(record.outcome or "error"))
        self._eta[shard] = 0.0
        self._sum()
        self._publish_shard(shard)
        self.phase(None, self._run_phase())

    def _publish_shard(self, shard: int) -> None:
        s = self.shards[shard]
        self.daemon.events.publish(
            "test",
            run_id=self.run_id,
            shard=shard,
            state=s["state"],
            test=s["test"],
            done=s["done"],
            total=s["total"],
            eta_s=self._eta[shard],
        )

    def resume(self, shard: int | None, note: str) -> None:
        """The guest stopped inside a test; the tests left go on in a fresh VM (`note`: why, how many)."""
        extra: dict[str, Any] = {}
        if shard is None:
            self.current["phase"] = "resuming"
        else:
            self.shards[shard]["state"] = "resuming"
            self._publish_shard(shard)
            extra["shard"] = shard
        self.daemon.events.publish("run", phase="resume", run_id=self.run_id, note=note, **extra)

    def ssh(self, shard: int | None, news: dict[str, Any]) -> None:
        """What is known about reaching the VM by ssh (port, sshd up): `current.ssh` or the shard's."""
        holder = self.current if shard is None else self.shards[shard]
        access: dict[str, Any] = {**(holder.get("ssh") or {}), **news}
        holder["ssh"] = access
        extra = {} if shard is None else {"shard": shard}
        self.daemon.events.publish("ssh", run_id=self.run_id, **extra, **access)

    def console(self, shard: int | None, line: str) -> None:
        extra = {} if shard is None else {"shard": shard}
        self.daemon.events.publish("console", run_id=self.run_id, line=line, **extra)

    def machine(self, shard: int | None, machine: Machine | None) -> None:
        """Shard `shard`'s VM (or the run's, as shard 0) for `nixvmctl console`; None: it is gone."""
        index = shard or 0
        if machine is None:
            self.daemon.machines.pop(index, None)
        else:
            self.daemon.machines[index] = machine

    def console_bytes(self, shard: int | None, chunk: bytes) -> None:
        if self.daemon.events.subscribers:
            text = chunk.decode("utf-8", "surrogateescape")
            extra = {} if shard is None else {"shard": shard}
            self.daemon.events.publish("console-bytes", run_id=self.run_id, text=text, **extra)

    def space_error(self, error: StateSpaceError) -> None:
        self.space_errors.append(error)
        self.daemon.no_space(error)
