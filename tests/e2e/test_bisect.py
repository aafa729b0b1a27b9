"""Bisect by itself (issue 13, acceptance 3): git bisect over a real kernel tree, built and booted by nixvmd.

The developer's tree is the KUnit kernel scripts/build-kunit-kernel.sh built, hard-linked
(instant; every edit below writes a new file, so the cache is never changed), with its build
records made to name their new place (as if it had been built there), and 8 commits: c3 does
not build, c5 breaks a KUnit expectation. nixvmd's worktree is seeded with the tree's build,
so each step rebuilds only what the commit changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KERNEL_CACHE, DaemonProcess, KernelTree, SampleKernel, direct_config

pytestmark = pytest.mark.vm

TEST = "example.example_simple_test"
HEADLINE = r"EXPECTATION FAILED at lib/kunit/kunit-example-test\.c:\d+: Expected 1 \+ 1 == 3, but 1 \+ 1 == 2"
EXAMPLE = Path("lib/kunit/kunit-example-test.c")
EXPECTATION = "KUNIT_EXPECT_EQ(test, 1 + 1, 2);"
# Debian's linux-source ignores the whole top level (its packaging repository's view).
DEBIAN_IGNORE = ("/*\n", "!/debian/\n")


def _git(tree: Path, *args: str) -> str:
    # No optional locks: the test's own `git status` must not refresh the index it watches.
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    done = subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def _rewrite(path: Path, text: str) -> None:
    """A new file in `path`'s place (an editor's save): a hard link to the cache is left alone."""
    path.unlink()
    path.write_text(text)


def _relocate_build_records(tree: Path, built_in: Path) -> None:
    """The records that name the tree where it was built name it here, times kept: built here."""
    old, new = os.fsencode(built_in), os.fsencode(tree)
    for directory, _, names in os.walk(tree):
        for name in names:
            if not name.endswith((".cmd", ".d")):
                continue
            path = Path(directory) / name
            data = path.read_bytes()
            if old in data:
                times = path.stat()
                path.unlink()
                path.write_bytes(data.replace(old, new))
                os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def _commit(tree: Path, message: str, edit: str | None = None) -> str:
    if edit is not None:
        _rewrite(tree / EXAMPLE, edit)
    _git(tree, "add", "-A")
    _git(tree, "-c", "core.compression=0", "-c", "core.looseCompression=0", "commit", "-q", "-m", message)
    return _git(tree, "rev-parse", "HEAD")


def _developer_tree(tree: Path) -> list[str]:
    """The KUnit kernel's built tree as a git repository of 8 commits; their ids, oldest first."""
    src = KERNEL_CACHE / "kunit-tiny" / "src"
    if not (src / "arch/x86/boot/bzImage").is_file():
        pytest.fail(f"no KUnit kernel tree in {src}: run scripts/build-kunit-kernel.sh first")
    subprocess.run(["cp", "-al", str(src), str(tree)], check=True)
    _relocate_build_records(tree, src)
    (tree / "arch/x86/boot/bzImage").unlink()  # nothing for the daemon to run before the bisect
    ignore = (tree / ".gitignore").read_text()
    for line in DEBIAN_IGNORE:
        ignore = ignore.replace(line, "")
    _rewrite(tree / ".gitignore", ignore)
    _git(tree, "init", "-q")
    commits = [_commit(tree, "c0 the tree as built")]
    source = (tree / EXAMPLE).read_text()
    assert EXPECTATION in source

    def noted(text: str, n: int) -> str:
        return text + f"/* c{n}: a harmless change */\n"

    unbuildable = source.replace(EXPECTATION, f'{EXPECTATION}\n#error "c3 does not build"', 1)
    broken = source.replace(EXPECTATION, "KUNIT_EXPECT_EQ(test, 1 + 1, 3);", 1)
    for n, (message, text) in enumerate(
        [
            ("c1 harmless", noted(source, 1)),
            ("c2 harmless", noted(source, 2)),
            ("c3 does not build", unbuildable),
            ("c4 builds again", noted(source, 4)),
            ("c5 breaks example_simple_test", broken),
            ("c6 harmless", noted(broken, 6)),
            ("c7 harmless", noted(broken, 7)),
        ],
        1,
    ):
        commits.append(_commit(tree, message, text))
        assert _git(tree, "log", "-1", "--format=%s").startswith(f"c{n}")
    return commits


def _checkout(tree: Path) -> tuple[str, str, int]:
    """What a bisect must leave as it was: HEAD, `git status`, the index's mtime."""
    index = (tree / ".git" / "index").stat().st_mtime_ns
    return _git(tree, "rev-parse", "HEAD"), _git(tree, "status", "--porcelain"), index


def _nixvmctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nixvmd.ctl.main", "--socket", str(daemon.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_bisect_names_the_breaking_commit_skipping_the_unbuildable_one_and_leaves_the_checkout_alone(
    daemon_factory: Callable[[str], DaemonProcess], tmp_path: Path, short_tmp: Path
) -> None:
    started = time.monotonic()
    tree = tmp_path / "linux"
    commits = _developer_tree(tree)
    made = time.monotonic()
    before = _checkout(tree)
    state = tmp_path / "state"
    daemon = daemon_factory(
        f"""
[kernel]
tree = "{tree}"
build = "nice -n 10 make -j$(nproc) bzImage"

[vm]
accel = "tcg"
memory = "256M"
cpus = 1

[suite]
kind = "kunit"
timeout = "300s"

[notify]
on = []

[daemon]
state_dir = "{state}"
socket = "{short_tmp / "ctl.sock"}"
"""
    )
    events = daemon.events(["bisect"])
    done = _nixvmctl(daemon, "bisect", "--good", commits[0][:12], "--tests", TEST)
    assert done.returncode == 0, done.stderr
    assert re.match(
        rf"bisect \S+ started: {commits[0][:12]} \(good\) \.\. {commits[-1][:12]} \(bad\)", done.stdout
    )
    end = events.wait_for(lambda e: e.get("state") not in (None, "running"), 900)
    finished = time.monotonic()

    assert end["state"] == "found", daemon.text_log()[-4000:]
    assert end["first_bad"] == commits[5]
    status = _nixvmctl(daemon, "bisect", "--status")
    assert status.returncode == 0, status.stderr
    assert f"first bad commit: {commits[5]}" in status.stdout
    record = json.loads(_nixvmctl(daemon, "bisect", "--status", "--json").stdout)
    steps = {s["commit"]: s for s in record["steps"]}
    # git's first pick is the midpoint, c3, which does not build: skipped, never run.
    assert record["steps"][0]["commit"] == commits[3]
    assert (steps[commits[3]]["build"], steps[commits[3]]["verdict"], steps[commits[3]]["run_id"]) == (
        "failed",
        "skip",
        None,
    )
    assert '#error "c3 does not build"' in Path(steps[commits[3]]["build_log"]).read_text()
    for commit, step in steps.items():
        if commit == commits[3]:
            continue
        assert step["verdict"] == ("bad" if commit in commits[5:] else "good"), step
        run = json.loads((state / "runs" / step["run_id"] / "run.json").read_text())
        assert (run["suite"], run["bisect"], run["git"]["commit"]) == ("kunit-bisect", record["id"], commit)
        statuses = {t["name"]: t["status"] for t in run["tests"]}
        assert statuses[TEST] == ("fail" if commit in commits[5:] else "pass")
        if commit in commits[5:]:  # a failing KUnit kernel through the daemon: expectation = headline
            message = next(t["message"] for t in run["tests"] if t["name"] == TEST)
            assert re.fullmatch(HEADLINE, message.splitlines()[0]), message
            junit = ET.parse(state / "runs" / step["run_id"] / "junit.xml").getroot()
            case = next(c for c in junit.iter("testcase") if c.get("name") == "example_simple_test")
            failure = case.find("failure")
            assert failure is not None, ET.tostring(case)
            assert re.fullmatch(HEADLINE, failure.get("message", "")), ET.tostring(case)
    assert daemon.status()["bisect"]["state"] == "found"

    assert _checkout(tree) == before
    assert subprocess.run(["git", "-C", str(tree), "bisect", "log"], capture_output=True).returncode != 0
    builds = [line for line in daemon.text_log().splitlines() if "bisect" in line]
    print(f"repository made in {made - started:.0f}s, bisect in {finished - made:.0f}s:", *builds, sep="\n")


def test_a_new_kernel_during_a_bisect_waits_for_its_end_then_runs(
    daemon_factory: Callable[[str], DaemonProcess],
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    tree = kernel_tree.root
    _git(tree, "init", "-q")
    (tree / ".gitignore").write_text("bzImage\n")
    commits = []
    for n in range(3):
        (tree / "version").write_text(f"{n}\n")
        commits.append(_commit(tree, f"c{n}"))
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    config = direct_config(
        kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock", command="true"
    )
    # The build waits at the gate (the bisect holds the VM meanwhile), then fails: c1 is skipped.
    daemon = daemon_factory(config.replace("[kernel]\n", f'[kernel]\nbuild = "cat {gate}; exit 1"\n', 1))
    events = daemon.events(["bisect", "run", "log"])
    done = _nixvmctl(daemon, "bisect", "--good", commits[0], "--bad", commits[2], "--tests", "true")
    assert done.returncode == 0, done.stderr
    events.wait_for(
        lambda e: e["event"] == "bisect" and (e.get("current") or {}).get("phase") == "building", 60
    )

    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    events.wait_for(lambda e: e["event"] == "log" and "a bisect has the VM" in e.get("line", ""), 60)
    assert daemon.status()["current"] is None, "no run starts while the bisect has the VM"
    assert daemon.status()["summary"].startswith("bisecting: step 1")
    with gate.open("w") as opened:
        opened.write("go\n")

    end = events.wait_for(lambda e: e["event"] == "bisect" and e.get("state") != "running", 60)
    assert end["state"] == "undecided"
    assert end["reason"].startswith(
        f"could not tell: commits {commits[1][:12]}..{commits[2][:12]} are skipped"
    )
    run = events.run_end(240)  # the kernel written during the bisect, run once it ended
    assert run["outcome"] == "passed", daemon.text_log()[-3000:]
    status = _nixvmctl(daemon, "bisect", "--status")
    assert f"1. {commits[1][:12]} skip" in status.stdout, status.stdout
    assert "could not tell" in status.stdout
