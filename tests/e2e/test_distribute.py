"""One shard built by Nix on this host, then replayed: the derivation really boots, the parsers work.

`nix-store --realise` runs the shard's builder here (distribute.system_features = [], so
this host may build it, under TCG): the static busybox from the store assembles the initrd,
boots the QEMU bundle from the store and keeps the console; the host then replays that
output into a record as a local run would make it. The remote part (builders, the loopback
SSH store) is the engine's (tests/e2e/test_engine*.py).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import instantiate_shard
from nixvmd.distribute.jobset import jobset_shards
from nixvmd.distribute.replay import replay_output
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.watch.kernel_image import read_kernel_image
from tests.conftest import KernelTree, SampleKernel
from tests.distribute.configs import command_config, fstests_config_text

pytestmark = pytest.mark.vm


@pytest.fixture(autouse=True)
def nix_installed() -> None:
    if shutil.which("nix-store") is None:
        pytest.skip("Nix is not installed (run scripts/setup-nix.sh as root)")


def _realise(
    config: Config, sample: SampleKernel, tests: tuple[str, ...]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Instantiate the shard and realise it with Nix here: its .drv and how Nix ended."""
    kernel = read_kernel_image(sample.image)
    shard = asyncio.run(instantiate_shard(config, kernel, tests, 0, config.daemon.state_dir))
    done = subprocess.run(
        ["nix-store", "--realise", str(shard.drv_path), "--no-build-output"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return shard.drv_path, done


def _build_and_replay(
    config: Config, sample: SampleKernel, tests: tuple[str, ...], run_dir: Path
) -> RunRecord:
    """Instantiate the shard, realise it with Nix here, replay its output into a record."""
    _, done = _realise(config, sample, tests)
    assert done.returncode == 0, done.stderr[-3000:]
    out = Path(done.stdout.split()[-1])
    assert out.is_relative_to("/nix/store")
    record = RunRecord("r1/shard-0", str(config.suite.kind), str(sample.image), "", "direct", time.time())
    return replay_output(config, out, tests, record, run_dir)


def test_the_smoke_suite_built_by_nix_passes_on_the_sample_kernel(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    config = command_config(kernel_tree, cloud_kernel, tmp_path, fresh=True)
    record = _build_and_replay(config, cloud_kernel, (), tmp_path / "run")
    assert (record.outcome, record.reason) == (Outcome.PASSED, ""), (record.reason, record.tests)
    assert [t.status.value for t in record.tests] == ["pass"]
    assert record.kernel_version == cloud_kernel.release
    assert record.accel == "tcg"
    console = (tmp_path / "run" / "console.log").read_text(errors="replace")
    assert "Linux version" in console and "@@NIXVMD@@" in console


def test_fstests_built_by_nix_give_every_test_its_verdict(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    """The stand-in check from the store, with bash and the real mkfs.xfs in the guest."""
    args = '["generic/001", "generic/002", "generic/003", "generic/004"]'
    text = fstests_config_text(kernel_tree, cloud_kernel, tmp_path, args, 1)
    config = parse_config(text, name="nixvmd.toml", base=tmp_path)
    tests = ("generic/001", "generic/002", "generic/003", "generic/004")
    record = _build_and_replay(config, cloud_kernel, tests, tmp_path / "run")
    verdicts = {t.name: t for t in record.tests}
    assert {name: t.status.value for name, t in verdicts.items()} == {
        "generic/001": "pass",
        "generic/002": "fail",
        "generic/003": "skip",
        "generic/004": "pass",
    }, (record.reason, (tmp_path / "run" / "console.log").read_text(errors="replace")[-3000:])
    assert record.outcome is Outcome.FAILED
    assert "+unexpected output" in verdicts["generic/002"].message
    # The results came back from the guest's results disk through the build's output.
    assert "results/xfs/generic/002.out.bad" in verdicts["generic/002"].artefacts
    assert (tmp_path / "run" / "results" / "xfs" / "generic" / "002.out.bad").is_file()


def _fstests(kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path, **options: str) -> Config:
    text = fstests_config_text(kernel_tree, cloud_kernel, tmp_path, "[]", 1, **options)
    return parse_config(text, name="nixvmd.toml", base=tmp_path)


def test_a_panic_in_the_builder_is_a_result_the_test_crashed(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    config = _fstests(kernel_tree, cloud_kernel, tmp_path)
    tests = ("generic/001", "crash/001", "generic/004")
    record = _build_and_replay(config, cloud_kernel, tests, tmp_path / "run")
    assert record.outcome is Outcome.CRASHED, record.reason
    assert record.reason.startswith("kernel panic: ") and "crash/001" in record.reason
    verdicts = {t.name: t for t in record.tests}
    assert verdicts["generic/001"].status.value == "pass"
    assert verdicts["crash/001"].status.value == "crashed"
    assert verdicts["crash/001"].message.startswith("kernel panic: ")
    assert "console (console.log):" in verdicts["crash/001"].message
    # One VM per build: the test after the crash is recorded as not run, not lost.
    assert verdicts["generic/004"].status.value == "skip"
    assert verdicts["generic/004"].message.startswith("not run: the guest stopped in crash/001")


def test_a_guest_past_the_builders_deadline_is_a_timeout(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    config = _fstests(kernel_tree, cloud_kernel, tmp_path, timeout="5s", boot_timeout="30s")
    record = _build_and_replay(config, cloud_kernel, ("generic/001", "hang/001"), tmp_path / "run")
    assert record.outcome is Outcome.TIMEOUT, record.reason
    assert "suite.timeout" in record.reason
    verdicts = {t.name: t for t in record.tests}
    assert verdicts["generic/001"].status.value == "pass"
    assert verdicts["hang/001"].status.value == "timeout"
    assert "run fstests hang/001 at " in (tmp_path / "run" / "console.log").read_text(errors="replace")


def test_qemu_that_cannot_start_fails_the_build_with_one_sentence(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    """Machinery, not the kernel: no output is kept (nothing cached), Nix says why."""
    options = ("-no-such-option",)
    config = command_config(kernel_tree, cloud_kernel, tmp_path, qemu_options=options, fresh=True)
    _, done = _realise(config, cloud_kernel, ())
    assert done.returncode != 0
    assert "nixvmd builder: QEMU did not start (exit status 1)" in done.stderr
    assert "-no-such-option" in done.stderr


def test_a_jobset_builds_with_nix_build_and_its_shards_together_have_every_test(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    """nixvmctl export --jobset, then plain nix-build DIR: what a lab without the daemon does."""
    kernel_tree.write_in_place(cloud_kernel.image.read_bytes())
    args = '["generic/001", "generic/002", "generic/004"]'
    config_file = tmp_path / "nixvmd.toml"
    config_file.write_text(fstests_config_text(kernel_tree, cloud_kernel, tmp_path, args, 2))
    jobset = tmp_path / "jobset"
    ctl = [sys.executable, "-m", "nixvmd.ctl.main", "--config", str(config_file)]
    subprocess.run([*ctl, "export", "--jobset", str(jobset)], check=True, capture_output=True, timeout=300)
    config = parse_config(config_file.read_text(), name="nixvmd.toml", base=tmp_path)
    shards = jobset_shards(config)
    assert len(shards) == 2
    done = subprocess.run(
        ["nix-build", str(jobset), "--no-out-link", "--no-build-output"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outs = [Path(line) for line in done.stdout.split()]
    assert len(outs) == 2
    verdicts: dict[str, str] = {}
    for k, (out, tests) in enumerate(zip(outs, shards, strict=True)):
        record = RunRecord(f"r1/shard-{k}", "xfstests", "bzImage", "", "direct", time.time())
        replay_output(config, out, tests, record, tmp_path / f"shard-{k}")
        verdicts |= {t.name: t.status.value for t in record.tests}
    assert verdicts == {"generic/001": "pass", "generic/002": "fail", "generic/004": "pass"}


def test_the_build_log_carries_the_guests_console_as_it_goes(
    kernel_tree: KernelTree, cloud_kernel: SampleKernel, tmp_path: Path
) -> None:
    """What an engine follows for the live console: the same lines as $out/console.log."""
    config = command_config(kernel_tree, cloud_kernel, tmp_path, command="echo from-the-guest", fresh=True)
    drv, done = _realise(config, cloud_kernel, ())
    assert done.returncode == 0, done.stderr[-3000:]
    out = Path(done.stdout.split()[-1])
    log = subprocess.run(["nix-store", "--read-log", str(drv)], capture_output=True, text=True, check=True)
    console = (out / "console.log").read_text(errors="replace")
    assert "from-the-guest" in console
    assert console.replace("\r", "").strip() in log.stdout.replace("\r", "")
