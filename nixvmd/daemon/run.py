"""One run: boot a kernel, run a suite in the guest, and keep the record. Callable on its own.

`execute_run` is the unit the daemon loops over (and that bisect or shards can call):
given a config, a checked kernel image and a run directory, it returns the finished
RunRecord, whatever happened to the guest, and leaves no QEMU behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixvmd.config.schema import Config
from nixvmd.daemon.space import check_run_space, guest_disk_full
from nixvmd.errors import NixvmdError, StateSpaceError, SuiteError, VMError
from nixvmd.guest.protocol import FrameFilter, parse_frame
from nixvmd.image.disks import prepare_disks
from nixvmd.results.record import Outcome, RunRecord, TestStatus
from nixvmd.results.store import RunStore
from nixvmd.suite.base import Progress, SuiteRun
from nixvmd.suite.splats import SplatScanner
from nixvmd.vm.accel import PROBE_SECONDS, AccelVerdicts
from nixvmd.vm.cmdline import Disk, Launch, MachineSpec, Sockets
from nixvmd.vm.machine import Machine, release_socket_dir, socket_dir
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger(__name__)

PANIC_MARKERS = ("Kernel panic - not syncing", "Attempted to kill init")
OOPS_MARKERS = ("Oops: ", "BUG: ", "general protection fault")
# What the kernel prints as it halts or powers off (kernel/reboot.c). The agent never does
# either, so after one of these nothing more will come: the guest stopped running.
HALT_MARKERS = ("reboot: System halted", "reboot: Power down")
PANIC_GRACE = 3.0


@dataclass
class RunHooks:
    """How a run talks back to its owner while it goes (all optional)."""

    on_phase: Callable[[str], None] = lambda phase: None
    on_console: Callable[[str], None] = lambda line: None
    on_progress: Callable[[Progress], None] = lambda progress: None
    on_machine: Callable[[Machine | None], None] = lambda machine: None  # running / gone
    on_console_bytes: Callable[[bytes], None] = lambda chunk: None  # raw, for attached terminals
    on_space_error: Callable[[StateSpaceError], None] = lambda error: None  # state_dir had no room


# Launch preparation is the backend's business: given the machine spec, the run dir and
# the job, return how to start QEMU.
PrepareLaunch = Callable[[MachineSpec, Path], Launch]


@dataclass
class _Guest:
    """What the guest has said so far, as events the run waits on."""

    frames: FrameFilter
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    crashed: asyncio.Event = field(default_factory=asyncio.Event)
    halted: asyncio.Event = field(default_factory=asyncio.Event)
    broken: asyncio.Event = field(default_factory=asyncio.Event)  # the machinery, not the kernel
    exit_status: int | None = None
    release: str = ""
    panic_line: str = ""
    oops_line: str = ""
    shutdown_reason: str = ""
    halt_line: str = ""
    machinery_error: str = ""
    errors: list[str] = field(default_factory=list)
    module_errors: list[str] = field(default_factory=list)
    machine: Machine | None = None
    state_dir: Path = Path(".")
    disks: tuple[Disk, ...] = ()
    space_error: StateSpaceError | None = None  # a guest write found the host disk full
    progress: tuple[str | None, int, int | None] = (None, 0, None)  # last published: test, done, total
    testing: bool = False  # the phase "testing" was announced


class RunTimeout(Exception):
    pass


async def execute_run(
    config: Config,
    kernel: KernelImage,
    suite: SuiteRun,
    record: RunRecord,
    run_dir: Path,
    prepare: PrepareLaunch,
    verdicts: AccelVerdicts,
    hooks: RunHooks | None = None,
    *,
    store: RunStore | None = None,
) -> RunRecord:
    """Run `suite` against `kernel` and fill `record`; cancellation ends it as `cancelled`."""
    hooks = hooks or RunHooks()
    t0 = time.monotonic()
    last = [t0]

    def phase_done(name: str) -> None:
        now = time.monotonic()
        record.phases[name] = round(now - last[0], 4)
        last[0] = now

    guest = _Guest(FrameFilter(suite.job().nonce), state_dir=config.daemon.state_dir)
    guest.progress = _progress_key(suite.progress())
    splats = SplatScanner()
    console_log = run_dir / "console.log"
    try:
        if store is not None:
            store.begin(record)
        check_run_space(config, kernel, run_dir)
        disks = guest.disks = prepare_disks(config.vm.disks, config.daemon.state_dir / "disks")
        choice = verdicts.choose(config.vm.accel)
        while True:
            record.accel = choice.accel
            hooks.on_phase("booting")
            sockets_dir = socket_dir()
            sockets = Sockets(sockets_dir / "qmp", sockets_dir / "agent")
            spec = MachineSpec(
                choice.accel,
                config.vm.memory,
                config.vm.cpus,
                sockets,
                console_log,
                disks,
                tuple(config.vm.qemu_options),
            )
            try:
                launch = prepare(spec, run_dir)
            except BaseException:
                release_socket_dir(sockets_dir)
                raise
            phase_done("prepare")
            record.command = list(launch.argv)
            record.environment = dict(launch.env or ())
            if store is not None:
                store.save(record)  # still running: the record now says how QEMU was started
            machine = Machine(
                launch.argv,
                sockets=sockets,
                console_log=console_log,
                env=dict(launch.env) if launch.env is not None else None,
                cwd=launch.cwd,
                stderr_log=run_dir / "qemu.log",
                on_console=lambda line: _console(line, guest, suite, hooks, splats),
                on_agent=lambda line: _agent(line, guest, suite, hooks),
                on_event=lambda name, data: _qmp_event(name, data, guest),
            )
            guest.machine = machine
            machine.on_console_bytes = hooks.on_console_bytes
            async with machine:
                hooks.on_machine(machine)
                try:
                    await machine.start()
                    started = True
                except VMError:
                    if not choice.probe:
                        raise
                    started = False  # QEMU itself can die of a broken KVM (MSR asserts)
                phase_done("qemu_start")
                if choice.probe and not (started and await _progress_within(machine, PROBE_SECONDS)):
                    verdicts.kvm_failed()
                    choice = verdicts.choose(config.vm.accel)
                    console_log.unlink(missing_ok=True)
                    (run_dir / "qemu.log").unlink(missing_ok=True)
                    record.phases.clear()
                    last[0] = time.monotonic()
                    continue
                if choice.probe:
                    verdicts.remember(True)
                await _drive(config, machine, guest, suite, record, hooks, phase_done)
                await machine.quit()
                phase_done("teardown")
            break
    except asyncio.CancelledError:
        hooks.on_machine(None)
        record.outcome = Outcome.CANCELLED
        record.reason = record.reason or "cancelled"
        _finish(record, suite, guest, run_dir, store, splats, complete=False, hooks=hooks)
        raise
    except NixvmdError as exc:
        record.outcome = Outcome.ERROR
        record.reason = str(exc)
        if isinstance(exc, StateSpaceError):
            hooks.on_space_error(exc)
    except RunTimeout as exc:
        record.outcome = Outcome.TIMEOUT
        record.reason = str(exc)
    except Exception as exc:
        # A bug in nixvmd: still leave a record and the console log behind.
        log.exception("run %s failed inside nixvmd", record.id)
        record.outcome = Outcome.ERROR
        record.reason = f"internal error in nixvmd: {exc!r}"
    hooks.on_machine(None)
    _finish(record, suite, guest, run_dir, store, splats, complete=guest.finished.is_set(), hooks=hooks)
    phase_done("record")
    _save(record, store, hooks)
    return record


def _console(line: str, guest: _Guest, suite: SuiteRun, hooks: RunHooks, splats: SplatScanner) -> None:
    suite.console_line(line)
    hooks.on_console(line)
    frame = guest.frames.accept(parse_frame(line))
    if frame is not None:
        _frame(frame.event, frame.argument, guest, suite)
    elif any(m in line for m in PANIC_MARKERS) and not guest.panic_line:
        guest.panic_line = line.strip()
        guest.crashed.set()
    elif any(m in line for m in OOPS_MARKERS) and not guest.oops_line:
        guest.oops_line = line.strip()
    elif any(m in line for m in HALT_MARKERS) and not guest.halt_line:
        guest.halt_line = next(m for m in HALT_MARKERS if m in line)
        guest.halted.set()
    splats.set_test(_publish_progress(guest, suite, hooks).test)
    splats.feed(line)


def _agent(line: str, guest: _Guest, suite: SuiteRun, hooks: RunHooks) -> None:
    frame = guest.frames.accept(parse_frame(line))
    if frame is None:
        return
    if frame.event == "hello":
        if guest.machine is not None:
            guest.machine.write_agent(suite.job().to_wire())
        return
    _frame(frame.event, frame.argument, guest, suite)
    _publish_progress(guest, suite, hooks)  # a start or exit frame moves a command suite on


def _progress_key(progress: Progress) -> tuple[str | None, int, int | None]:
    # The ETA moves with the clock; only a new test or count is news worth an event.
    return (progress.test, progress.done, progress.total)


def _publish_progress(guest: _Guest, suite: SuiteRun, hooks: RunHooks) -> Progress:
    """The suite's progress, told to the owner when it moved, whichever channel moved it."""
    progress = suite.progress()
    key = _progress_key(progress)
    if key != guest.progress:
        guest.progress = key
        # KUnit's tests run during boot, before the agent is ready: their first result is the start.
        _testing(guest, hooks)
        hooks.on_progress(progress)
    return progress


def _testing(guest: _Guest, hooks: RunHooks) -> None:
    if not guest.testing:
        guest.testing = True
        hooks.on_phase("testing")


def _frame(event: str, argument: str, guest: _Guest, suite: SuiteRun) -> None:
    suite.guest_event(event, argument)
    if event == "ready":
        guest.release = argument
        guest.ready.set()
    elif event == "exit":
        with contextlib.suppress(ValueError):
            guest.exit_status = int(argument)
        guest.finished.set()
    elif event == "module_error":
        # A module that will not load: the guest cannot run the suite as configured.
        guest.module_errors.append(argument)
        guest.crashed.set()
    elif event == "error":
        guest.errors.append(argument)
        log.warning("guest agent: %s", argument)
        guest.crashed.set()


def _qmp_event(name: str, data: dict[str, Any], guest: _Guest) -> None:
    if name == "GUEST_PANICKED":
        guest.panic_line = guest.panic_line or "QEMU reported a guest panic (pvpanic)"
        guest.crashed.set()
    elif name == "SHUTDOWN":
        guest.shutdown_reason = str(data.get("reason", ""))
    elif name == "BLOCK_IO_ERROR" and data.get("action") == "stop" and not guest.machinery_error:
        # QEMU paused the guest because a disk image write failed on the host (werror):
        # with `nospace`, the host's file system is full. Not the kernel's doing.
        if data.get("nospace"):
            guest.space_error = guest_disk_full(data, guest.disks, guest.state_dir)
            guest.machinery_error = str(guest.space_error)
        else:
            device = data.get("device") or data.get("node-name") or "a disk"
            cause = str(data.get("reason", ""))
            guest.machinery_error = (
                f"QEMU paused the guest: a {data.get('operation', 'write')} to {device} failed on the host"
                + (f" ({cause})" if cause else "")
            )
        guest.broken.set()


async def _progress_within(machine: Machine, seconds: float) -> bool:
    """True when the guest printed anything on its console within `seconds` (and QEMU lives)."""
    await _first({"console": machine.console_seen, "exited": machine.exited}, seconds)
    return machine.console_seen.is_set()


async def _first(events: dict[str, asyncio.Event], timeout: float | None) -> str | None:
    """Wait until one of `events` is set; its name, or None on timeout."""
    for name, event in events.items():
        if event.is_set():
            return name
    waiters = {asyncio.create_task(e.wait()): name for name, e in events.items()}
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
    return waiters[next(iter(done))] if done else None


HANG_RECHECK = 5.0


async def _wait_suite(suite: SuiteRun, events: dict[str, asyncio.Event], timeout: float) -> str:
    """Wait for one of `events` within `timeout`; RunTimeout when that passes.

    A suite with a `deadline()` method (xfstests: per-test hang limits) may end the wait
    sooner: it returns (time.monotonic() limit, reason) or None, and is asked again at
    least every HANG_RECHECK seconds, since the running test changes as the suite goes.
    """
    end = time.monotonic() + timeout
    deadline: Callable[[], tuple[float, str] | None] | None = getattr(suite, "deadline", None)
    while True:
        now = time.monotonic()
        limit = end - now
        if deadline is not None:
            hang = deadline()
            if hang is not None and hang[0] <= now:
                raise RunTimeout(hang[1])
            limit = min(limit, HANG_RECHECK, *([hang[0] - now] if hang is not None else []))
        if limit <= 0:
            raise RunTimeout(f"the suite did not finish within suite.timeout ({timeout:g}s)")
        got = await _first(events, limit)
        if got is not None:
            return got


async def _drive(
    config: Config,
    machine: Machine,
    guest: _Guest,
    suite: SuiteRun,
    record: RunRecord,
    hooks: RunHooks,
    phase_done: Callable[[str], None],
) -> None:
    """Wait for the agent, then for the suite, then decide the outcome."""
    ended = {
        "crashed": guest.crashed,
        "halted": guest.halted,
        "broken": guest.broken,
        "exited": machine.exited,
    }
    got = await _first({"ready": guest.ready, **ended}, config.vm.boot_timeout)
    if got is None:
        phase_done("boot")
        raise RunTimeout(
            f"the guest agent did not report ready within vm.boot_timeout "
            f"({config.vm.boot_timeout:g}s); see console.log"
        )
    phase_done("boot")
    if got == "ready":
        _testing(guest, hooks)
        try:
            got = await _wait_suite(suite, {"finished": guest.finished, **ended}, config.suite.timeout)
        finally:
            phase_done("suite")
    if guest.space_error is not None:
        raise guest.space_error
    if got == "crashed":
        # Let the rest of the panic reach the console log before QEMU goes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(machine.exited.wait(), PANIC_GRACE)
    hooks.on_phase("reporting")
    _decide(got, guest, machine, record)


def _decide(got: str, guest: _Guest, machine: Machine, record: RunRecord) -> None:
    if guest.panic_line:
        record.outcome = Outcome.CRASHED
        record.reason = f"kernel panic: {guest.panic_line}"
    elif guest.module_errors:
        record.outcome = Outcome.ERROR
        record.reason = "a kernel module did not load: " + "; ".join(guest.module_errors)
    elif got == "finished":
        record.exit_status = guest.exit_status
        record.outcome = Outcome.PASSED if guest.exit_status == 0 else Outcome.FAILED
        if guest.exit_status != 0:
            record.reason = f"the suite exited with status {guest.exit_status}"
    elif guest.machinery_error:
        record.outcome = Outcome.ERROR
        record.reason = guest.machinery_error
    elif got == "crashed":
        record.outcome = Outcome.CRASHED
        record.reason = "; ".join(guest.errors) or "the guest agent failed"
    elif guest.halt_line:
        record.outcome = Outcome.CRASHED
        record.reason = f"the guest halted by itself ({guest.halt_line}) before the suite ended"
    elif guest.oops_line:
        record.outcome = Outcome.CRASHED
        record.reason = f"kernel oops: {guest.oops_line}"
    elif machine.returncode == 0 and guest.shutdown_reason.startswith("guest"):
        record.outcome = Outcome.CRASHED
        record.reason = f"the guest went down by itself ({guest.shutdown_reason}) before the suite ended"
    else:
        record.outcome = Outcome.ERROR
        record.reason = (
            f"QEMU exited unexpectedly (exit status {machine.returncode}); see qemu.log and console.log"
        )


def _finish(
    record: RunRecord,
    suite: SuiteRun,
    guest: _Guest,
    run_dir: Path,
    store: RunStore | None,
    splats: SplatScanner,
    *,
    complete: bool,
    hooks: RunHooks,
) -> None:
    record.finished_at = time.time()
    record.splats = list(splats.splats)
    if not record.kernel_version and guest.release:
        record.kernel_version = guest.release
    try:
        record.tests = suite.results(guest.exit_status, run_dir, complete)
    except SuiteError as exc:
        # Nothing to judge the kernel by: a pass or fail from the exit status would mislead.
        if record.outcome in (Outcome.PASSED, Outcome.FAILED):
            record.outcome = Outcome.ERROR
            record.reason = str(exc)
    except StateSpaceError as exc:
        _no_room(record, exc, hooks)
    except OSError as exc:
        log.warning("cannot collect the suite's results: %s", exc)
    # Suites that parse names from the console (KTAP) report names they found garbled.
    record.suspect_lines = list(getattr(suite, "suspect_lines", ()))
    if record.outcome is Outcome.CANCELLED:
        # Tests cut short by the cancel say nothing about the kernel.
        record.tests = [t for t in record.tests if t.status is not TestStatus.ERROR]
    if record.outcome is Outcome.PASSED and any(
        t.status in (TestStatus.FAIL, TestStatus.ERROR) for t in record.tests
    ):
        record.outcome = Outcome.FAILED
        record.reason = record.reason or "tests failed"
    if record.outcome is Outcome.PASSED and record.splats:
        kinds = ", ".join(sorted({s.kind for s in record.splats}))
        record.reason = f"the tests passed but the kernel logged {len(record.splats)} splat(s): {kinds}"
    (run_dir / "initrd.cpio").unlink(missing_ok=True)
    _save(record, store, hooks)


def _save(record: RunRecord, store: RunStore | None, hooks: RunHooks) -> None:
    """Write the record; with no room for it the run ends `error` saying so (kept in memory)."""
    if store is None:
        return
    try:
        store.save(record)
    except StateSpaceError as exc:
        _no_room(record, exc, hooks)


def _no_room(record: RunRecord, error: StateSpaceError, hooks: RunHooks) -> None:
    """A write of the run found no room: it ends `error` saying so, unless it already ended for a reason."""
    if record.outcome not in (Outcome.ERROR, Outcome.CANCELLED):
        record.outcome, record.reason = Outcome.ERROR, str(error)
    hooks.on_space_error(error)
