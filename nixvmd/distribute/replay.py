"""The host's side of a shard built by Nix: its output replayed through a local run's parsers.

The builder (builder.sh) leaves in $out what a local run reads live: console.log (the
agent's frames are on it: a sealed VM has no agent port), qemu.log, QEMU's exit status,
the seed of the job's tokens and the tar streams of the kept disks. `replay_output` feeds the console,
line by line, to the same Listener, suite and splat scanner as `execute_run`, takes the
first ending as a live run would, lets `decide` judge it and the suite read its results
(fstests: the results disk, restored into the run's scratch), into `record`; a test the
guest crashed or hung in gets its verdict as crash resume gives it, and the tests after it
are `not run` (one VM per build: no resume inside a derivation). No QEMU runs.
The builder's one deadline stands for vm.boot_timeout and suite.timeout together; the
per-test hang limits are not enforced in a builder.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.derivation import kept_disks, shard_accel
from nixvmd.errors import NixvmdError
from nixvmd.guest.protocol import pinned_tokens
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.space import make_dirs
from nixvmd.results.store import disks_dir, scratch_dir
from nixvmd.run.attempts import (
    console_excerpt,
    naming,
    not_run,
    remaining,
    stop_anchor,
    stop_verdict,
    stopped_in,
    with_verdict,
)
from nixvmd.run.decide import Ending, decide
from nixvmd.run.execute import finish_record
from nixvmd.run.listen import Listener, RunHooks
from nixvmd.suite.registry import make_suite, with_tests
from nixvmd.vm.console import LineSplitter

KILLED_AT_DEADLINE = 137  # busybox `timeout -s KILL`: 128 + SIGKILL
MACHINERY_ERROR = "machinery-error"
# Endings in the order a live run looks at them when one console line sets several.
ENDINGS = (Ending.FINISHED, Ending.CRASHED, Ending.HALTED, Ending.BROKEN)
TAIL_LINES = 400  # console lines kept for a stopped test's excerpt


def replay_output(
    config: Config,
    out: Path,
    tests: Sequence[str],
    record: RunRecord,
    run_dir: Path,
    hooks: RunHooks | None = None,
) -> RunRecord:
    """Fill `record` from the Nix output `out` of the shard of `config` that ran `tests`."""
    tests = tuple(tests)
    narrowed = with_tests(config, tests)
    record.accel = shard_accel(narrowed).value
    try:
        make_dirs(run_dir, "creating the shard's run directory")
        broken = _read(out / MACHINERY_ERROR)
        if broken is not None:
            record.outcome, record.reason = Outcome.ERROR, broken.strip() or "the Nix builder broke"
            return record
        seed = _need(out / "seed").strip()
        status = int(_need(out / "exit").strip())
        with pinned_tokens(seed):
            suite = make_suite(narrowed, tests)
        listener = Listener(suite, hooks or RunHooks(), narrowed.daemon.state_dir)
        for name in ("console.log", "qemu.log"):
            if (out / name).exists():
                shutil.copyfile(out / name, run_dir / name)
        _restore_disks(narrowed, out, run_dir)
        heard = _feed(listener, run_dir / "console.log")
    except (OSError, ValueError, NixvmdError) as exc:
        record.outcome, record.reason = Outcome.ERROR, f"cannot read the Nix build's output {out}: {exc}"
        return record
    try:
        _judge(narrowed, listener, record, heard.ending, status)
        finish_record(record, listener, run_dir, None, complete=heard.ending is Ending.FINISHED)
        _stopped(record, tests, heard)
    finally:
        shutil.rmtree(scratch_dir(run_dir), ignore_errors=True)
    return record


def _judge(config: Config, listener: Listener, record: RunRecord, ending: Ending | None, status: int) -> None:
    """The outcome from the transcript, as `execute_run` decides it."""
    t = listener.transcript
    t.qemu_returncode = status
    if ending is None and status == KILLED_AT_DEADLINE:
        stopped = listener.where_it_stopped(live=False)  # where the console was when it was killed
        if t.ready:
            suite_timeout = config.suite.timeout
            t.timeout = f"the suite did not finish within suite.timeout ({suite_timeout:g}s); {stopped}"
        else:
            t.timeout = (
                f"the guest agent did not report ready within vm.boot_timeout ({config.vm.boot_timeout:g}s); "
                f"{stopped}; see console.log"
            )
    elif ending is None:
        ending = Ending.EXITED
        if status == 0:  # -no-reboot: QEMU ends when the guest reboots or powers off by itself
            t.shutdown_reason = "guest-shutdown"
    t.ending = ending
    record.outcome, record.reason = decide(t)
    if record.outcome in (Outcome.PASSED, Outcome.FAILED):
        record.exit_status = t.exit_status


@dataclass
class _Heard:
    """What the console told: the first ending, the test running then, the last lines."""

    ending: Ending | None = None
    running: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


def _feed(listener: Listener, console: Path) -> _Heard:
    """Every console line through `listener`; the first ending the lines brought, as a live run sees it."""
    heard = _Heard()

    def line(text: str) -> None:
        listener.console(text)
        heard.tail.append(text)
        if heard.ending is None:
            heard.ending = next((e for e in ENDINGS if listener.events[e].is_set()), None)
            heard.running = listener.suite.progress().test

    splitter = LineSplitter(line)
    with console.open("rb") as stream:
        while chunk := stream.read(1 << 16):
            splitter.feed(chunk)
    splitter.end()
    return heard


def _stopped(record: RunRecord, tests: tuple[str, ...], heard: _Heard) -> None:
    """The test the guest crashed or hung in gets its verdict as crash resume gives it (run/attempts.py);
    the tests after it are `not run`: a shard built by Nix is one VM."""
    stopped = stopped_in(record.outcome, heard.running)
    if stopped is None:
        return
    excerpt = console_excerpt(list(heard.tail), stop_anchor(record, stopped))
    record.tests = with_verdict(record.tests, stop_verdict(record, stopped, excerpt, "console.log"))
    record.reason = naming(record.reason, stopped)
    left = remaining(tests, record.tests, stopped)
    record.tests += not_run(left, f"the guest stopped in {stopped} (a shard built by Nix runs in one VM)")


def _restore_disks(config: Config, out: Path, run_dir: Path) -> None:
    """The kept disks' tar streams back where the suite reads its disks (the run's scratch).

    A tar is what the guest wrote at the start of the disk; the suite reads it the same way.
    """
    for name in kept_disks(config):
        kept = out / f"{name}.tar"
        if kept.exists():
            make_dirs(disks_dir(run_dir), "restoring a shard's disk image")
            shutil.copyfile(kept, disks_dir(run_dir) / name)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def _need(path: Path) -> str:
    text = _read(path)
    if text is None:
        raise ValueError(f"{path.name} is missing")
    return text
