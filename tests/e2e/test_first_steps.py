"""A new user's first steps: a tree that is not there yet, then `init` on a KUnit tree and its first run."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nixvmd.ctl import init
from tests.conftest import KERNEL_CACHE, DaemonProcess

Start = Callable[[str], DaemonProcess]


def test_a_tree_that_does_not_exist_is_named_in_status(
    daemon_factory: Start, tmp_path: Path, short_tmp: Path
) -> None:
    tree = tmp_path / "linux"
    daemon = daemon_factory(
        f'[kernel]\ntree = "{tree}"\n\n[notify]\non = []\n\n'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\nsocket = "{short_tmp / "ctl.sock"}"\n'
    )

    status = daemon.status()

    assert status["kernel"] is None
    assert (
        status["kernel_error"] == f"the kernel tree {tree} does not exist (yet); create it or fix kernel.tree"
    )


def _for_this_machine(config: str, tree: Path, state: Path, sock: Path) -> str:
    """init's config with what a test host needs: TCG, a small guest, no desktop, private state."""
    for old, new in (
        ('tree = "."', f'tree = "{tree}"'),
        ('accel = "auto"', 'accel = "tcg"'),
        ('memory = "2G"', 'memory = "256M"'),
        ("cpus = 2", "cpus = 1"),
        (
            'on = ["regression", "first-regression", "fail", "crash", "timeout", "build-error", "fixed"]',
            "on = []",
        ),
    ):
        assert old in config, old
        config = config.replace(old, new, 1)
    return f'{config}\n[daemon]\nstate_dir = "{state}"\nsocket = "{sock}"\n'


@pytest.mark.vm
@pytest.mark.slow
def test_init_on_a_kunit_tree_gives_a_kunit_run_whose_progress_moves_during_boot(
    daemon_factory: Start, tmp_path: Path, short_tmp: Path
) -> None:
    image = KERNEL_CACHE / "kunit-tiny" / "bzImage"
    dot_config = KERNEL_CACHE / "kunit-tiny" / "src" / ".config"
    if not image.is_file() or not dot_config.is_file():
        pytest.fail(f"no KUnit kernel in {image.parent}: run scripts/build-kunit-kernel.sh first")
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "Kbuild").write_text("")
    shutil.copy(dot_config, tree / ".config")
    target, _ = init.write_config(tree)
    assert 'kind = "kunit"' in target.read_text()
    daemon = daemon_factory(
        _for_this_machine(target.read_text(), tree, tmp_path / "state", short_tmp / "ctl.sock")
    )
    events = daemon.events(["state", "test", "run"])

    shutil.copy(image, tree / "arch/x86/boot/bzImage")
    end = events.run_end(300)

    assert end["outcome"] == "passed", daemon.text_log()
    state = "idle"
    progress: list[dict[str, Any]] = []
    for event in events.seen:
        if event["event"] == "state":
            state = event["state"]
        elif event["event"] == "test" and event["done"] > 0:
            # KUnit's results come while the kernel boots: that is the suite running.
            assert state == "testing", (event, state)
            progress.append(event)
    record = daemon.call("results", run_id=end["run_id"])
    assert len({e["done"] for e in progress}) > 10, "the count moves as results stream in"
    assert progress[-1]["done"] == len(record["tests"])
    names = {e["test"] for e in progress} - {None}
    assert any("." not in name for name in names), "the running suite is named"
    assert not [name for name in names if re.search(r"(^|\.)#\d+$", name)], "a number is no name"
