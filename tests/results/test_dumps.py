"""vmcores in the run store: keep_dumps pruning, run.json's `vmcore`, and `nixvmctl dump`'s answer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nixvmd.config.schema import DumpLimit
from nixvmd.results.dump_query import run_dumps
from nixvmd.results.dumps import prune_dumps, stored_dumps
from nixvmd.results.queries import NoSuchRun
from nixvmd.results.record import Attempt, Outcome, RunRecord, Vmcore
from nixvmd.results.store import LIVE_LOCK, RunStore
from tests.results.vmcore_files import kdump_file


def _dump(runs: Path, where: str, size: int, mtime: int) -> Path:
    """A vmcore of `size` bytes at runs/`where`/vmcore, last written at `mtime`."""
    path = runs / where / "vmcore"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (mtime, mtime))
    return path


def _names(runs: Path) -> list[str]:
    return [str(dump.relative_to(runs)) for _, dump in stored_dumps(runs)]


def test_keep_dumps_as_a_count_removes_the_oldest_first_in_every_vm_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _dump(runs, "r1", 10, 100)
    _dump(runs, "r2/resume/1", 10, 200)
    _dump(runs, "r3/shards/0", 10, 300)
    _dump(runs, "r3/shards/1/resume/2", 10, 400)
    current = _dump(runs, "r4", 10, 500)

    removed = prune_dumps(runs, DumpLimit(count=3), current.parent)

    assert [str(p.relative_to(runs)) for p in removed] == ["r2/resume/1/vmcore", "r1/vmcore"]
    assert _names(runs) == ["r3/shards/0/vmcore", "r3/shards/1/resume/2/vmcore", "r4/vmcore"]


def test_keep_dumps_as_a_size_keeps_the_newest_that_fit_and_nothing_older(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _dump(runs, "r1", 10, 100)  # small enough to fit, but older than one that did not: it goes
    _dump(runs, "r2", 60, 200)
    _dump(runs, "r3", 50, 300)
    current = _dump(runs, "r4", 40, 400)

    prune_dumps(runs, DumpLimit(count=None, size=100), current.parent)

    assert _names(runs) == ["r3/vmcore", "r4/vmcore"]


def test_the_run_being_written_and_runs_still_going_keep_their_dumps_whatever_the_limit(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    _dump(runs, "r1", 10, 100)
    _dump(runs, "r2", 10, 150)
    (runs / "r2" / LIVE_LOCK).touch()  # another run, still going
    _dump(runs, "r3", 10, 200)
    _dump(runs, "r3/resume/1", 10, 300)  # this run's earlier VM, and this VM's dump
    current = _dump(runs, "r3/resume/2", 10, 400)

    removed = prune_dumps(runs, DumpLimit(count=0), current.parent)

    assert [str(p.relative_to(runs)) for p in removed] == ["r1/vmcore"]
    assert _names(runs) == ["r2/vmcore", "r3/vmcore", "r3/resume/1/vmcore", "r3/resume/2/vmcore"]


def test_a_record_keeps_its_vmcore_and_each_resumed_vms_through_run_json() -> None:
    first = Vmcore("/s/runs/r/vmcore", 123, "kdump-zlib")
    later = Vmcore("/s/runs/r/resume/1/vmcore", 456, "elf")
    record = RunRecord("r", "command", "/k", "6.1", "direct", 0.0, Outcome.CRASHED, vmcore=first)
    record.attempts = [
        Attempt(("a",), Outcome.CRASHED, vmcore=first),
        Attempt(("b",), Outcome.CRASHED, "x", "resume/1", vmcore=later),
    ]
    record.vmcore_note = "resume/2: vmcore skipped: 2.0 GiB needed, 300 MiB free on /home"

    data = json.loads(json.dumps(record.to_json()))
    back = RunRecord.from_json(data)

    assert data["vmcore"] == {"path": "/s/runs/r/vmcore", "size": 123, "format": "kdump-zlib"}
    assert record.summary()["vmcore"] == data["vmcore"]  # status's last_run shows it too
    assert back.vmcore == first and back.vmcore_note == record.vmcore_note
    assert [a.vmcore for a in back.attempts] == [first, later]
    plain = RunRecord("p", "command", "/k", "6.1", "direct", 0.0, Outcome.PASSED).to_json()
    assert "vmcore" not in plain and "vmcore_note" not in plain


def test_dump_lists_the_runs_and_its_shards_dumps_with_their_release_and_the_trees_vmlinux(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    run_id, run_dir = store.new_run_dir()
    mine = run_dir / "shards" / "1" / "vmcore"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(kdump_file(b"OSRELEASE=6.1.0-57-cloud-amd64\nPAGESIZE=4096\n"))
    gone = Vmcore(str(run_dir / "shards/0/resume/1/vmcore"), 99, "elf")
    shard0 = RunRecord(f"{run_id}/shards/0", "command", "/k", "6.1", "direct", 0.0, Outcome.CRASHED)
    shard0.attempts = [Attempt(("a",), Outcome.CRASHED, "", "resume/1", vmcore=gone)]
    shard1 = RunRecord(f"{run_id}/shards/1", "command", "/k", "6.1", "direct", 0.0, Outcome.CRASHED)
    shard1.vmcore = Vmcore(str(mine), mine.stat().st_size, "kdump-raw-zlib")
    for k, shard in enumerate((shard0, shard1)):
        (run_dir / "shards" / str(k)).mkdir(parents=True, exist_ok=True)
        (run_dir / "shards" / str(k) / "shard.json").write_text(json.dumps(shard.to_json()))
    record = RunRecord(run_id, "command", "/k", "6.1", "direct", 0.0, Outcome.CRASHED, vmcore=shard1.vmcore)
    store.save(record)
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "vmlinux").write_bytes(b"\x7fELF")

    answer = run_dumps(store, None, tree)

    assert answer["vmlinux"] == str(tree / "vmlinux")
    assert [(d["vm"], d["present"], d.get("release")) for d in answer["dumps"]] == [
        ("shards/1", True, "6.1.0-57-cloud-amd64"),
        ("shards/0/resume/1", False, None),
    ]


def test_dump_of_a_run_without_one_says_why_in_one_sentence(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id, _ = store.new_run_dir()
    record = RunRecord(run_id, "command", "/k", "6.1", "direct", 0.0, Outcome.CRASHED)
    record.vmcore_note = "vmcore skipped: 257 MiB needed, 90 MiB free on /state"
    store.save(record)

    with pytest.raises(NoSuchRun) as caught:
        run_dumps(store, run_id, tmp_path)

    assert (
        str(caught.value)
        == f"run {run_id} (crashed) has no vmcore: vmcore skipped: 257 MiB needed, 90 MiB free on /state"
    )
