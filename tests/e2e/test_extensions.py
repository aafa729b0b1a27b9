"""A backend and a suite kind from a plugin module, through the real daemon (issue 9, acceptance 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, KernelTree, SampleKernel, direct_config

pytestmark = pytest.mark.vm

Start = Callable[[str], DaemonProcess]

# tests/toy_ext.py's mark; not imported here: registering its names in the test process
# would leak them into other tests' configs.
USED_MARK = "toy-backend.txt"


def test_a_plugin_backend_and_suite_kind_run_through_the_daemon(
    daemon_factory: Start,
    kernel_tree: KernelTree,
    cloud_kernel: SampleKernel,
    tmp_path: Path,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIXVMD_PLUGINS", "tests.toy_ext")
    # The daemon runs in its own working directory: the checkout must be on its path for
    # `tests.toy_ext` to import, as a user's plugin directory would be.
    checkout = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")])))
    state = tmp_path / "state"
    config = direct_config(
        kernel_tree, cloud_kernel, state, short_tmp / "ctl.sock", command="echo one; echo two; echo three"
    )
    config = config.replace('kind = "command"', 'kind = "lines"') + '\n[image]\nbackend = "toy"\n'
    daemon = daemon_factory(config)
    assert daemon.status()["image"] == {"backend": "toy", "path": None, "toy": True}
    events = daemon.events(["run"])

    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    end = events.run_end()

    assert end["outcome"] == "passed", daemon.text_log()
    run_dir = state / "runs" / end["run_id"]
    assert (run_dir / USED_MARK).read_text() == f"{cloud_kernel.release}\n"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["suite"] == "lines"
    assert record["backend"] == "toy"
    assert [t["name"] for t in record["tests"]] == ["lines=3"]


def test_a_plugin_that_cannot_be_imported_is_one_sentence(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, short_tmp: Path
) -> None:
    config = tmp_path / "nixvmd.toml"
    config.write_text(direct_config(kernel_tree, cloud_kernel, tmp_path / "state", short_tmp / "ctl.sock"))
    done = subprocess.run(
        [sys.executable, "-m", "nixvmd.daemon.main", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        env=dict(os.environ, NIXVMD_PLUGINS="tests.no_such_plugin"),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("nixvmd: NIXVMD_PLUGINS names 'tests.no_such_plugin', which cannot")
    assert "Traceback" not in done.stderr
