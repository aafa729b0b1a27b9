"""Shards end to end: one xfstests run over two VMs at once (direct backend, the stand-in check).

The stand-in's `wait/*` tests wait for a line typed into their guest's console, so both
guests are known to be up at the same time, with no sleeps: the test types only once
both say they wait, each into its own shard's console (`nixvmctl console --shard N`),
and what it types decides each shard's verdict.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl.client import Client, Stream
from nixvmd.errors import ControlError
from tests.conftest import DaemonProcess, EventStream, KernelTree, SampleKernel, another_build
from tests.e2e.test_xfstests import STANDIN, _config

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
WAITING = ": waiting for a line on the console"
TWO_WAITING_SHARDS = ('args = ["wait/001", "wait/002"]', "shards = 2")


@pytest.fixture
def sharded(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> tuple[DaemonProcess, Path]:
    """A daemon whose xfstests runs go in two shards, each waiting for a line on its console."""
    fstests = tmp_path / "fstests"
    shutil.copytree(STANDIN, fstests)
    state = tmp_path / "state"
    xfstests, suite = TWO_WAITING_SHARDS
    text = _config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests, xfstests, suite)
    return daemon_factory(text), state


def _both_waiting(events: EventStream) -> dict[int, str]:
    """Wait until both shards' guests wait for their line; which test each shard runs."""
    waiting: dict[int, str] = {}

    def seen(event: dict[str, Any]) -> bool:
        line = event.get("line", "")
        if event["event"] == "console" and WAITING in line:
            waiting[event["shard"]] = line.split("stand-in ", 1)[1].split(WAITING)[0]
        return len(waiting) == 2

    events.wait_for(seen, 600)
    return waiting


def _qemu_disks(run_dir: Path) -> dict[int, str]:
    """The live QEMUs of the run in `run_dir`: pid -> their command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        command = b" ".join(argv).decode(errors="replace")
        if b"qemu-system" in argv[0] and str(run_dir) in command:
            found[int(entry.name)] = command
    return found


def _console(daemon: DaemonProcess, shard: int) -> Stream:
    stream = Client(daemon.socket).open_stream("console", shard=shard)
    assert stream.result["shard"] == shard
    return stream


def _until_run_end(stream: Stream) -> str:
    """What a console session showed until its run ended."""
    text = ""
    while (message := stream.read(120)) is not None:
        if message["event"] == "console-bytes":
            text += message["text"]
        elif message["event"] == "run":
            return text
    raise AssertionError(f"the console session saw no run end; it showed {text[-2000:]!r}")


def test_two_shards_run_at_once_each_in_its_own_vm_with_its_own_disks_into_one_record(
    sharded: tuple[DaemonProcess, Path], kernel_tree: KernelTree, cloud_kernel: SampleKernel
) -> None:
    daemon, state = sharded
    events = daemon.events(["run", "test", "console"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 60)
    run_dir = state / "runs" / started["run_id"]

    tests = _both_waiting(events)
    # Both guests are up at once, each QEMU with the disks of its own shard.
    assert sorted(tests.values()) == ["wait/001", "wait/002"]
    current = daemon.status()["current"]
    assert [(s["index"], s["state"], s["test"]) for s in current["shards"]] == [
        (0, "testing", tests[0]),
        (1, "testing", tests[1]),
    ]
    qemus = list(_qemu_disks(run_dir).values())
    assert len(qemus) == 2
    for k in (0, 1):
        disk = f"file={run_dir}/shards/{k}/scratch/disks/xfstests-scratch.img,"
        assert sum(disk in command for command in qemus) == 1, (disk, qemus)

    # Attached now, the sessions need no reading while both guests boot.
    consoles = [_console(daemon, 0), _console(daemon, 1)]
    consoles[0].send({"input": "go\r"})
    consoles[1].send({"input": "no\r"})
    shown = [_until_run_end(c) for c in consoles]
    end = events.run_end(600)
    record: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    assert record["outcome"] == "failed", record["reason"]
    assert record["reason"].startswith("shard 1: ")

    # One record: every test carries its shard; the answer typed into each console decided it.
    by_name = {t["name"]: t for t in record["tests"]}
    assert {name: t["shard"] for name, t in by_name.items()} == {tests[0]: 0, tests[1]: 1}
    assert by_name[tests[0]]["status"] == "pass"
    assert by_name[tests[1]]["status"] == "fail"
    assert "+answer: no" in by_name[tests[1]]["message"]
    assert '<property name="shard" value="1" />' in (run_dir / "junit.xml").read_text()
    assert (end["passed"], end["failed"]) == (1, 1)
    # Each console session showed its own shard's guest only: check's closing lines.
    assert f"Ran: {tests[0]}\r\n" in shown[0] and tests[1] not in shown[0]
    assert f"Ran: {tests[1]}\r\n" in shown[1] and "+answer: no" in shown[1] and tests[0] not in shown[1]

    # Each shard's results under results/<k>/, its logs and record under shards/<k>/.
    artefacts = by_name[tests[1]]["artefacts"]
    assert any(a.startswith("results/1/") and a.endswith(f"{tests[1]}.out.bad") for a in artefacts), artefacts
    for artefact in artefacts:
        assert (run_dir / artefact).is_file(), artefact
    for k, answer in ((0, "go"), (1, "no")):
        standin = (run_dir / "results" / str(k) / "standin-check.log").read_text()
        assert f"args: -R xunit --exact-order {tests[k]}\n" in standin
        # The scratch disk kept the test's own mark while the other VM ran: not shared.
        assert f"{tests[k]}: answer '{answer}', scratch '{tests[k]}' on /dev/vd" in standin
        shard_dir = run_dir / "shards" / str(k)
        assert (shard_dir / "console.log").is_file() and (shard_dir / "qemu.log").is_file()
        assert not (shard_dir / "scratch").exists()
        shard_record = json.loads((shard_dir / "shard.json").read_text())
        assert f"file={shard_dir}/scratch/disks/xfstests-test.img," in " ".join(shard_record["command"])
    # Both shards' durations were kept for the next split.
    times = (state / "xfstests" / "check.time").read_text()
    assert f"{tests[0]} 1\n" in times and f"{tests[1]} 1\n" in times

    progress = {(e["shard"], e["state"]) for e in events.seen if e["event"] == "test"}
    assert {(0, "testing"), (1, "testing"), (0, "passed"), (1, "failed")} <= progress
    events.close()


def test_a_new_kernel_during_a_sharded_run_cancels_every_shard_and_the_next_run_starts(
    sharded: tuple[DaemonProcess, Path], kernel_tree: KernelTree, cloud_kernel: SampleKernel
) -> None:
    daemon, state = sharded
    # Durations from earlier runs: each shard has an ETA, the run's is the slower shard's.
    (state / "xfstests").mkdir(parents=True)
    (state / "xfstests" / "check.time").write_text("wait/001 100\nwait/002 1000\n")
    events = daemon.events(["run", "test", "console"])
    image = cloud_kernel.image.read_bytes()
    kernel_tree.write_in_place(image)
    started = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 60)
    run_dir = state / "runs" / started["run_id"]
    _both_waiting(events)
    assert len(_qemu_disks(run_dir)) == 2
    status = daemon.status()
    assert status["summary"].startswith("testing in 2 shards (0/2) on ")
    assert 100 < status["current"]["eta_s"] <= 1000
    with pytest.raises(ControlError, match=r"has 2 shards \(0 to 1\); there is no shard 2$"):
        _console(daemon, 2)

    kernel_tree.replace_atomically(another_build(image, 2))
    cancelled = events.run_end(120)
    assert (cancelled["run_id"], cancelled["outcome"]) == (started["run_id"], "cancelled")
    # The run ended only once both shards' QEMUs were gone.
    assert _qemu_disks(run_dir) == {}
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["outcome"], record["reason"]) == ("cancelled", "cancelled by a new kernel")
    for k in (0, 1):
        assert json.loads((run_dir / "shards" / str(k) / "shard.json").read_text())["outcome"] == "cancelled"

    following = events.wait_for(lambda e: e["event"] == "run" and e["phase"] == "start", 60)
    assert following["run_id"] != started["run_id"]
    assert daemon.call("stop") == {"cancelled": True, "run_id": following["run_id"]}
    assert events.run_end(120)["outcome"] == "cancelled"
    events.close()
