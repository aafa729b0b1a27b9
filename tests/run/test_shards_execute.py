"""execute_sharded when a shard breaks: the others are cancelled, their QEMU gone, the run `error`.

Shard 0 is a real guest waiting on its console; shard 1's "QEMU" is a stand-in process
that exits (QEMU did not come up: nixvmd's or the host's trouble, `error`) once shard 0
waits, so the cancel finds a running guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from nixvmd.config.schema import Config
from nixvmd.image.direct import prepare_direct
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.run.execute import PrepareLaunch
from nixvmd.run.listen import RunHooks
from nixvmd.run.shards import ShardHooks, execute_sharded
from nixvmd.run.workspace import Workspace
from nixvmd.suite.base import SuiteRun
from nixvmd.vm.cmdline import Launch, MachineSpec
from tests.conftest import KernelTree, SampleKernel
from tests.run.direct import direct_run

pytestmark = pytest.mark.vm

WAIT = "exec sh -c 'echo waiting; read go; test \"$go\" = go' </dev/ttyS0 >/dev/ttyS0 2>&1"


def test_a_shard_that_breaks_cancels_the_others_and_the_run_is_error(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    setup = direct_run(kernel_tree, cloud_kernel, tmp_path, short_tmp, WAIT, "300s")
    state, config, kernel, store = setup.state, setup.config, setup.kernel, setup.store
    fifo = tmp_path / "shard-1-goes"
    os.mkfifo(fifo)

    def launcher(shard_config: Config, suite: SuiteRun) -> PrepareLaunch:
        def prepare(spec: MachineSpec, workspace: Workspace) -> Launch:
            if dict(suite.job().env).get("NIXVMD_TESTS") == "b":
                return Launch(("sh", "-c", f"read go <{fifo}; exit 3"))
            launch, _ = prepare_direct(
                shard_config, kernel, suite.job(), spec, workspace.initrd, state / "initramfs"
            )
            return launch

        return prepare

    async def run() -> RunRecord:
        waiting = asyncio.Event()

        def hooks(k: int) -> RunHooks:
            return RunHooks(
                on_console=lambda line: waiting.set() if k == 0 and line.strip() == "waiting" else None
            )

        run_id, run_dir = store.new_run_dir()
        record = RunRecord(run_id, "command", str(kernel.path), cloud_kernel.release, "direct", time.time())
        sharded = asyncio.ensure_future(
            execute_sharded(
                config,
                kernel,
                [("a",), ("b",)],
                record,
                run_dir,
                launcher,
                setup.verdicts,
                ShardHooks(hooks),
                store=store,
            )
        )
        await asyncio.wait(
            [sharded, asyncio.ensure_future(waiting.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        assert waiting.is_set(), "the sharded run ended before shard 0's guest waited"
        with contextlib.suppress(OSError):  # no reader: shard 1's stand-in is gone already
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
        return await asyncio.wait_for(sharded, 120)

    record = asyncio.run(run())

    assert record.outcome is Outcome.ERROR
    assert record.reason.startswith("shard 1: QEMU did not come up (exit status 3)"), record.reason
    run_dir = store.path(record.id)
    shard_0 = json.loads((run_dir / "shards" / "0" / "shard.json").read_text())
    assert shard_0["outcome"] == "cancelled"
    assert "waiting" in (run_dir / "shards" / "0" / "console.log").read_text()
    assert json.loads((run_dir / "run.json").read_text())["outcome"] == "error"
    for k in (0, 1):
        assert not (run_dir / "shards" / str(k) / "scratch").exists()
