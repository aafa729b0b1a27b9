"""Two execute_run calls at once on one state_dir: each with its own workspace, both passing (real QEMU)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nixvmd.image.direct import prepare_direct
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.run.execute import RunHooks, execute_run
from nixvmd.run.workspace import Workspace
from nixvmd.suite.command import CommandSuite
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.vm.machine import Machine
from tests.conftest import KernelTree, SampleKernel
from tests.run.direct import direct_run

pytestmark = pytest.mark.vm

# Each guest checks its scratch disk is fresh, marks it, says it waits and reads a line
# from its console: the test types `go` only once both guests wait, so both VMs run at once.
COMMAND = (
    "exec sh -c 'head -c 4 /dev/vda | grep -q MARK && exit 1; "
    'echo MARK | dd of=/dev/vda conv=fsync 2>/dev/null; echo waiting; read go; test "$go" = go\' '
    "</dev/ttyS0 >/dev/ttyS0 2>&1"
)


@dataclass
class Seen:
    """What one run showed of itself while it went."""

    workspace: Workspace | None = None
    spec: MachineSpec | None = None
    base_initramfs: Path | None = None
    machine: Machine | None = None
    waiting: asyncio.Event = field(default_factory=asyncio.Event)


def test_two_runs_at_once_on_one_state_dir_share_nothing_but_read_only_caches(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    run = direct_run(kernel_tree, cloud_kernel, tmp_path, short_tmp, COMMAND, "300s")
    state, config, kernel, store, verdicts = run.state, run.config, run.kernel, run.store, run.verdicts
    seen = [Seen(), Seen()]

    async def one(index: int) -> RunRecord:
        mine = seen[index]
        suite = CommandSuite(config.suite.command, ())
        run_id, run_dir = store.new_run_dir()
        record = RunRecord(run_id, suite.name, str(kernel.path), cloud_kernel.release, "direct", time.time())

        def prepare(spec: MachineSpec, workspace: Workspace) -> Launch:
            launch, base = prepare_direct(
                config, kernel, suite.job(), spec, workspace.initrd, state / "initramfs"
            )
            mine.workspace, mine.spec, mine.base_initramfs = workspace, spec, base.path
            return launch

        def on_console(line: str) -> None:
            if line.strip() == "waiting":
                mine.waiting.set()

        def on_machine(machine: Machine | None) -> None:
            mine.machine = machine or mine.machine

        hooks = RunHooks(on_console=on_console, on_machine=on_machine)
        return await execute_run(
            config, kernel, suite, record, run_dir, prepare, verdicts, hooks, store=store
        )

    async def both() -> list[RunRecord]:
        runs = asyncio.ensure_future(asyncio.gather(one(0), one(1)))
        # Both guests wait at the same time (a run that ends first stops the wait, and fails below).
        waiting = asyncio.ensure_future(asyncio.gather(*(s.waiting.wait() for s in seen)))
        runs.add_done_callback(lambda _: waiting.cancel())
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert not runs.done(), [r.reason for r in runs.result()]
        for s in seen:
            assert s.machine is not None
            s.machine.write_console(b"go\r")
        return list(await asyncio.wait_for(runs, 600))

    first, second = asyncio.run(both())
    assert (first.outcome, second.outcome) == (Outcome.PASSED, Outcome.PASSED), (first.reason, second.reason)

    a, b = (s.workspace for s in seen)
    assert a is not None and b is not None
    # Nothing written is shared: run dirs, sockets, disks, initrds, console logs all differ.
    assert a.run_dir != b.run_dir
    assert a.sockets.qmp.parent != b.sockets.qmp.parent
    assert a.sockets.agent != b.sockets.agent
    assert [d.path for d in a.disks] != [d.path for d in b.disks]
    assert all(d.path.is_relative_to(a.scratch) for d in a.disks)
    assert all(d.path.is_relative_to(b.scratch) for d in b.disks)
    assert a.initrd != b.initrd
    assert a.console_log != b.console_log
    assert "waiting" in a.console_log.read_text() and "waiting" in b.console_log.read_text()
    # Read-only caches are the same files: the base initramfs and the kernel snapshot.
    assert seen[0].base_initramfs == seen[1].base_initramfs
    assert " ".join(first.command).count(str(kernel.bootable)) == 1
    assert f"-kernel {kernel.bootable} " in " ".join(second.command)
    # Each run's scratch and sockets went with it; its record and console stay.
    for workspace in (a, b):
        assert not workspace.scratch.exists()
        assert not workspace.sockets.qmp.parent.exists()
        assert (workspace.run_dir / "run.json").is_file()
