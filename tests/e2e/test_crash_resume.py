"""Crash resume end to end: direct backend, host root shared, the stand-in check, Debian's kernel.

The stand-in's crash/NNN tests panic the guest (sysrq c), hang/NNN never end (crash/002 and
hang/002 are in its tree as group "resume"); generic/001 passes, generic/002 fails, generic/003
is not run. A test the guest stops in gets its verdict and the tests after it go
on in a fresh VM, up to suite.resume_limit; the VMs are few, so each daemon serves several
points: one run with the limit, then one without (today's behaviour).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, KernelTree, SampleKernel, _qemu_pids
from tests.e2e.test_xfstests import _config, fstests_dir  # noqa: F401 (a fixture)

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]
TESTS = ["generic/003", "crash/001", "generic/001", "crash/002", "generic/002"]
ARGS = ["--exact-order", *TESTS]  # check sorts its tests unless told to keep the order given


def _resume_config(
    tree: KernelTree,
    kernel: SampleKernel,
    state: Path,
    sock: Path,
    fstests: Path,
    args: list[str],
    limit: int,
) -> str:
    """test_xfstests's config with `args` and suite.resume_limit = `limit` (hang limits short)."""
    xfstests = f'args = {json.dumps(args)}\nhang_floor = "2s"\nhang_ceiling = "20s"\n'
    text = _config(tree, kernel, state, sock, fstests, xfstests)
    return text.replace('timeout = "10m"', f'timeout = "10m"\nresume_limit = {limit}', 1)


def _record(state: Path, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((state / "runs" / run_id / "run.json").read_text())
    return record


def _rewrite(path: Path, text: str) -> None:
    """Replace the config file as an editor does (the daemon reloads it and runs again)."""
    aside = path.with_name(".nixvmd.toml.new")
    aside.write_text(text)
    os.replace(aside, path)


def test_a_crash_resumes_the_tests_left_in_a_fresh_vm_until_the_limit_and_not_at_all_with_0(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,  # noqa: F811
) -> None:
    state = tmp_path / "state"

    def config(limit: int) -> str:
        return _resume_config(
            kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, ARGS, limit
        )

    daemon = daemon_factory(config(1))
    events = daemon.events(["run", "test", "regression"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=900)
    run_dir = state / "runs" / end["run_id"]
    record = _record(state, end["run_id"])
    first = (run_dir / "console.log").read_text(errors="replace")
    second = (run_dir / "resume" / "1" / "console.log").read_text(errors="replace")

    # The run stays crashed, for the first crash, naming the test it happened in.
    assert record["outcome"] == "crashed", (record["reason"], first[-2000:], second[-2000:])
    assert record["reason"].startswith("kernel panic: ") and record["reason"].endswith("(in crash/001)")
    tests = {t["name"]: t for t in record["tests"]}
    assert [t["name"] for t in record["tests"]] == TESTS
    # The first VM: generic/003 not run by check itself, crash/001 crashed with its panic.
    assert tests["generic/003"]["status"] == "skip"
    crashed = tests["crash/001"]
    assert crashed["status"] == "crashed"
    headline, _, details = crashed["message"].partition("\n")
    assert headline.startswith("kernel panic: ") and "not syncing: sysrq triggered crash" in headline
    assert "panic: " in details and "console (console.log):" in details
    assert "console.log" in crashed["artefacts"]
    # A fresh VM ran the tests left: generic/001 passed there, then crash/002 crashed it too.
    assert "run fstests generic/001 at " not in first and "run fstests crash/002 at " not in first
    assert "run fstests generic/001 at " in second and "run fstests crash/001 at " not in second
    assert tests["generic/001"]["status"] == "pass"
    assert tests["crash/002"]["status"] == "crashed"
    assert "resume/1/console.log" in tests["crash/002"]["artefacts"]
    assert (run_dir / "resume" / "1" / "qemu.log").is_file()
    # resume_limit = 1: no third VM; the test left is recorded as not run, which is no failure.
    assert tests["generic/002"]["status"] == "skip"
    assert tests["generic/002"]["message"] == (
        "not run: suite.resume_limit (1) reached after the guest stopped in crash/002"
    )
    assert not (run_dir / "resume" / "2").exists()
    assert [(a["dir"], a["tests"], a["outcome"], a["stopped_in"]) for a in record["attempts"]] == [
        ("", TESTS, "crashed", "crash/001"),
        ("resume/1", ["generic/001", "crash/002", "generic/002"], "crashed", "crash/002"),
    ]
    assert (record["passed"], record["failed"], record["skipped"]) == (1, 2, 2)
    # Each crashed VM left its own vmcore, named by its attempt's directory; the run's is the first.
    dumps = [a.get("vmcore", {}).get("path") for a in record["attempts"]]
    assert dumps == [str(run_dir / "vmcore"), str(run_dir / "resume" / "1" / "vmcore")], record.get(
        "vmcore_note"
    )
    assert record["vmcore"]["path"] == dumps[0] and all(Path(d).is_file() for d in dumps)
    assert not (run_dir / "scratch").exists() and not (run_dir / "resume" / "1" / "scratch").exists()
    # Status and subscribers were told, and the progress counts over the whole list.
    resumes = [e for e in events.seen if e["event"] == "run" and e.get("phase") == "resume"]
    assert [e["note"] for e in resumes] == [
        "guest crashed in crash/001; resuming 3 tests in a fresh VM (1/1)"
    ]
    progress = [(e["test"], e["done"], e["total"]) for e in events.seen if e["event"] == "test"]
    assert ("crash/001", 1, 5) in progress and ("generic/001", 2, 5) in progress
    assert "resuming 3 tests in a fresh VM (1/1)" in daemon.text_log()
    # The crash was news while the run went on: its first regression, before the fresh VM.
    kinds = [(e["event"], e.get("phase")) for e in events.seen if e["event"] in ("regression", "run")]
    assert kinds[:3] == [("run", "start"), ("regression", None), ("run", "resume")]
    assert next(e for e in events.seen if e["event"] == "regression")["test"] == "crash/001"

    # resume_limit = 0: today's run, one VM that ends with the crash; the tests that crashed
    # last time go first (regressions first), so the first one ends it at once.
    _rewrite(daemon.config, config(0))
    end = events.wait_for(
        lambda e: e["event"] == "run" and e.get("phase") == "end" and e["run_id"] != record["id"], 600
    )
    again = _record(state, end["run_id"])
    assert again["outcome"] == "crashed", again["reason"]
    assert [(t["name"], t["status"]) for t in again["tests"]] == [("crash/001", "error")]
    assert "first what failed or was fixed lately: crash/001, crash/002" in daemon.text_log()
    assert "attempts" not in again
    assert not (state / "runs" / end["run_id"] / "resume").exists()
    events.close()


def test_a_hung_test_resumes_too_and_a_cancel_in_the_fresh_vm_leaves_no_qemu(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,  # noqa: F811
) -> None:
    state = tmp_path / "state"
    args = ["hang/001", "hang/002"]
    daemon = daemon_factory(
        _resume_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, args, 2)
    )
    events = daemon.events(["run", "test"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    # The second VM is running hang/002 (the first one's hang/001 ran past its limit).
    events.wait_for(lambda e: e["event"] == "test" and e["test"] == "hang/002", 600)
    assert daemon.status()["current"]["phase"] == "testing"
    assert _qemu_pids(), "the fresh VM runs"
    reply = daemon.call("stop")
    assert reply["cancelled"]
    assert not _qemu_pids(), "the cancelled run left its QEMU behind"
    end = events.run_end(timeout=60)
    record = _record(state, end["run_id"])
    assert record["outcome"] == "cancelled"
    assert record["reason"] == "cancelled by nixvmctl stop"
    tests = {t["name"]: t for t in record["tests"]}
    assert list(tests) == ["hang/001"]
    assert tests["hang/001"]["status"] == "timeout"
    assert tests["hang/001"]["message"].startswith("test hang/001 hung: still running after 20s")
    assert [(a["dir"], a["outcome"], a["stopped_in"]) for a in record["attempts"]] == [
        ("", "timeout", "hang/001"),
        ("resume/1", "cancelled", None),
    ]
    resumes = [e["note"] for e in events.seen if e["event"] == "run" and e.get("phase") == "resume"]
    assert resumes == ["guest hung in hang/001; resuming 1 test in a fresh VM (1/2)"]
    events.close()


def test_a_panic_in_one_shard_resumes_that_shards_tests_in_a_fresh_vm_and_the_other_shard_goes_on(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    fstests_dir: Path,  # noqa: F811
) -> None:
    state = tmp_path / "state"
    args = ["crash/001", "generic/001", "generic/004"]  # check's order; the split keeps it per shard
    text = _resume_config(kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", fstests_dir, args, 1)
    daemon = daemon_factory(text.replace("resume_limit = 1", "resume_limit = 1\nshards = 2", 1))
    events = daemon.events(["run"])
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end(timeout=900)
    run_dir = state / "runs" / end["run_id"]
    record = _record(state, end["run_id"])

    assert record["outcome"] == "crashed", record["reason"]
    tests = {t["name"]: t for t in record["tests"]}
    assert sorted(tests) == sorted(args)
    crashed = tests["crash/001"]
    k = crashed["shard"]
    assert crashed["status"] == "crashed"
    assert "not syncing: sysrq triggered crash" in crashed["message"].partition("\n")[0]
    assert record["reason"].startswith(f"shard {k}: kernel panic: ")
    # The crashed shard's later tests passed in a fresh VM of that shard's own.
    after = [t for t in record["tests"] if t["shard"] == k and t["name"] != "crash/001"]
    assert after, f"shard {k} had only the crashing test: {record['tests']}"
    resumed = (run_dir / "shards" / str(k) / "resume" / "1" / "console.log").read_text(errors="replace")
    for test in after:
        assert test["status"] == "pass", test
        assert f"run fstests {test['name']} at " in resumed
    assert "run fstests crash/001 at " not in resumed
    # The crashed shard's first VM left the run's vmcore in the shard's directory.
    assert record["vmcore"]["path"] == str(run_dir / "shards" / str(k) / "vmcore"), record.get("vmcore_note")
    assert not (run_dir / "shards" / str(1 - k) / "vmcore").exists()
    # The other shard never stopped: one VM, its tests passed.
    other = [t for t in record["tests"] if t["shard"] != k]
    assert other and all(t["status"] == "pass" for t in other), other
    assert not (run_dir / "shards" / str(1 - k) / "resume").exists()
    resumes = [e for e in events.seen if e["event"] == "run" and e.get("phase") == "resume"]
    plural = "s" if len(after) > 1 else ""
    note = f"guest crashed in crash/001; resuming {len(after)} test{plural} in a fresh VM (1/1)"
    assert [(e["shard"], e["note"]) for e in resumes] == [(k, note)]
    events.close()
