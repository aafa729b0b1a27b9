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
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.errors import NixvmdError, StateSpaceError, SuiteError, VMError
from nixvmd.results.record import Outcome, RunRecord, TestStatus
from nixvmd.results.store import RunStore
from nixvmd.run.decide import Ending, decide
from nixvmd.run.guest_time import GuestTime, first_set
from nixvmd.run.listen import Listener, RunHooks
from nixvmd.run.space import check_run_space
from nixvmd.run.ssh_access import ssh_announced
from nixvmd.run.vmcore import dump_if_wanted
from nixvmd.run.workspace import Workspace, open_workspace
from nixvmd.suite.base import SuiteRun
from nixvmd.vm.accel import PROBE_SECONDS, AccelVerdicts
from nixvmd.vm.cmdline import Launch, MachineSpec
from nixvmd.vm.gdbstub import GdbMode, GdbStub
from nixvmd.vm.machine import Machine
from nixvmd.vm.usb import usb_options
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger(__name__)

PANIC_GRACE = 3.0

__all__ = ["PrepareLaunch", "RunHooks", "execute_run", "finish_record"]

# Launch preparation is the backend's business: given the machine spec and the run's
# workspace (initrd, runner work dir), return how to start QEMU.
PrepareLaunch = Callable[[MachineSpec, Workspace], Launch]


class RunTimeout(Exception):
    pass


class _PhaseClock:
    """Seconds per phase into `record.phases`, each from the end of the one before."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.record.phases[name] = round(now - self.last, 4)
        self.last = now

    def restart(self) -> None:
        self.record.phases.clear()
        self.last = time.monotonic()


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
    gdb: GdbMode | None = None,
) -> RunRecord:
    """Run `suite` against `kernel` and fill `record`; cancellation ends it as `cancelled`.

    Everything the run writes besides its record and logs (disks, initrd, sockets, the
    nix runner's work dir) is in its own workspace under `run_dir`, gone when it returns:
    several runs may go at once on one state_dir. `gdb`: QEMU's gdbstub on a socket in
    the workspace (`hooks.on_gdb` says where), the guest held until gdb lets it go unless
    NOWAIT; the run's timeouts count only while the guest runs (run/guest_time.py).
    """
    hooks = hooks or RunHooks()
    clock = _PhaseClock(record)
    listener = Listener(suite, hooks, config.daemon.state_dir)
    with contextlib.ExitStack() as owned:
        try:
            if store is not None:
                store.begin(record)
            check_run_space(config, kernel, run_dir)
            workspace = owned.enter_context(open_workspace(run_dir, config.vm.disks))
            listener.disks = workspace.disks
            stub = GdbStub(workspace.gdb_socket, gdb) if gdb is not None else None
            await _boot(config, workspace, listener, record, prepare, verdicts, clock, store, stub)
        except asyncio.CancelledError:
            hooks.on_machine(None)
            record.outcome = Outcome.CANCELLED
            record.reason = record.reason or "cancelled"
            finish_record(record, listener, run_dir, store, complete=False)
            raise
        except NixvmdError as exc:
            record.outcome = Outcome.ERROR
            record.reason = str(exc)
            if isinstance(exc, StateSpaceError):
                hooks.on_space_error(exc)
        except Exception as exc:
            # A bug in nixvmd: still leave a record and the console log behind.
            log.exception("run %s failed inside nixvmd", record.id)
            record.outcome = Outcome.ERROR
            record.reason = f"internal error in nixvmd: {exc!r}"
        hooks.on_machine(None)
        # The suite reads what it needs from the workspace (xfstests: its results disk) here.
        finish_record(record, listener, run_dir, store, complete=listener.events[Ending.FINISHED].is_set())
    clock.done("record")
    _save(record, store, hooks)
    return record


async def _boot(
    config: Config,
    workspace: Workspace,
    listener: Listener,
    record: RunRecord,
    prepare: PrepareLaunch,
    verdicts: AccelVerdicts,
    clock: _PhaseClock,
    store: RunStore | None,
    gdb: GdbStub | None = None,
) -> None:
    """Start QEMU (again under TCG when a KVM probe makes no progress) and drive the run."""
    hooks = listener.hooks
    choice = verdicts.choose(config.vm.accel)
    extra = (*usb_options(config.vm.usb), *config.vm.qemu_options)
    while True:
        record.accel = choice.accel.value
        held = gdb is not None and gdb.waits
        hooks.on_phase(WAITING_FOR_GDB if held else "booting")
        listener.guest = GuestTime(running=not held)
        spec = MachineSpec(
            choice.accel,
            config.vm.memory,
            config.vm.cpus,
            workspace.sockets,
            workspace.console_log,
            workspace.disks,
            extra,
            config.vm.network,
            gdb,
        )
        launch = prepare(spec, workspace)
        clock.done("prepare")
        record.command = list(launch.argv)
        record.environment = dict(launch.env or ())
        if store is not None:
            store.save(record)  # still running: the record now says how QEMU was started
        machine = Machine(
            launch.argv,
            sockets=workspace.sockets,
            console_log=workspace.console_log,
            env=dict(launch.env) if launch.env is not None else None,
            cwd=launch.cwd,
            stderr_log=workspace.qemu_log,
            on_console=listener.console,
            on_agent=listener.agent,
            on_event=listener.qmp_event,
        )
        listener.attach(machine)
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
            clock.done("qemu_start")
            if started and gdb is not None:
                await _await_debugger(machine, listener, gdb)
            if choice.probe and not (started and await _progress_within(machine, PROBE_SECONDS)):
                verdicts.kvm_failed()
                choice = verdicts.choose(config.vm.accel)
                workspace.console_log.unlink(missing_ok=True)
                workspace.qemu_log.unlink(missing_ok=True)
                clock.restart()
                continue
            if choice.probe:
                verdicts.remember(True)
            async with ssh_announced(config, machine, record, hooks):
                await _drive(config, machine, listener, record, clock)
            # A crashed guest's memory, while QEMU still holds it (debug.dump).
            if await dump_if_wanted(config, machine, listener.transcript, record, workspace.run_dir):
                clock.done("dump")
            await machine.quit()
            clock.done("teardown")
        return


WAITING_FOR_GDB = "waiting for gdb"


async def _await_debugger(machine: Machine, listener: Listener, gdb: GdbStub) -> None:
    """Say where the gdbstub is and, while QEMU holds the guest for gdb, wait until it first runs."""
    listener.guest.qmp_status(await machine.execute("query-status"))
    listener.hooks.on_gdb(gdb)
    if not listener.guest.running:
        await first_set({"ran": listener.guest.ran, "exited": machine.exited}, None)
        listener.hooks.on_phase("booting")


async def _progress_within(machine: Machine, seconds: float) -> bool:
    """True when the guest printed anything on its console within `seconds` (and QEMU lives)."""
    await first_set({"console": machine.console_seen, "exited": machine.exited}, seconds)
    return machine.console_seen.is_set()


HANG_RECHECK = 5.0


async def _wait_suite(listener: Listener, events: dict[str, asyncio.Event], timeout: float) -> str:
    """Wait for one of `events` within `timeout` of the guest's running time; else RunTimeout.

    The suite's `deadline()` (xfstests: per-test hang limits) may end the wait sooner: it
    returns (time.monotonic() limit, reason) or None, and is asked again at least every
    HANG_RECHECK seconds, since the running test changes as the suite goes. A limit is
    pushed back by the time the guest spent stopped (gdb) after it was set.
    """
    suite, guest = listener.suite, listener.guest
    spent = guest.stopwatch()
    while True:
        now = time.monotonic()
        limit = min(timeout - spent(), HANG_RECHECK)
        hang = suite.deadline()
        if hang is not None and guest.running:
            at = guest.pushed_back(hang[0])
            if at <= now:
                raise RunTimeout(hang[1])
            limit = min(limit, at - now)
        if limit <= 0 and guest.running:
            raise RunTimeout(
                f"the suite did not finish within suite.timeout ({timeout:g}s); {listener.where_it_stopped()}"
            )
        got = await guest.wait(events, max(limit, 0.0))
        if got is not None:
            return got


async def _drive(
    config: Config, machine: Machine, listener: Listener, record: RunRecord, clock: _PhaseClock
) -> None:
    """Wait for the agent, then for the suite, then decide the outcome from the transcript."""
    transcript = listener.transcript
    ended = {e.value: listener.events[e] for e in Ending if e is not Ending.FINISHED}
    try:
        got = await listener.guest.wait({"ready": listener.ready, **ended}, config.vm.boot_timeout)
        clock.done("boot")
        if got is None:
            raise RunTimeout(
                f"the guest agent did not report ready within vm.boot_timeout "
                f"({config.vm.boot_timeout:g}s); {listener.where_it_stopped()}; see console.log"
            )
        if got == "ready":
            listener.announce_testing()
            try:
                finished = {Ending.FINISHED.value: listener.events[Ending.FINISHED], **ended}
                got = await _wait_suite(listener, finished, config.suite.timeout)
            finally:
                clock.done("suite")
        transcript.ending = Ending(got)
    except RunTimeout as exc:
        transcript.timeout = str(exc)
    if transcript.ending is Ending.CRASHED:
        # Let the rest of the panic reach the console log: until the guest reboots (QEMU then
        # pauses it: -action reboot=shutdown,shutdown=pause) or QEMU goes.
        stopped = listener.events[Ending.STOPPED]
        await first_set({"exited": machine.exited, "stopped": stopped}, PANIC_GRACE)
    transcript.qemu_returncode = machine.returncode
    if not (transcript.timeout or transcript.space_error):
        listener.hooks.on_phase("reporting")
    record.outcome, record.reason = decide(transcript)
    if record.outcome in (Outcome.PASSED, Outcome.FAILED):
        record.exit_status = transcript.exit_status
    if listener.space_error is not None:
        listener.hooks.on_space_error(listener.space_error)


def finish_record(
    record: RunRecord, listener: Listener, run_dir: Path, store: RunStore | None, *, complete: bool
) -> None:
    """The record's end once the guest is gone: the suite's results, splats, and what they change.

    Also the end of a run replayed from a Nix build's output (nixvmd.distribute.replay).
    """
    suite, hooks, transcript = listener.suite, listener.hooks, listener.transcript
    record.finished_at = time.time()
    record.splats = list(listener.splats.splats)
    if not record.kernel_version and transcript.release:
        record.kernel_version = transcript.release
    try:
        record.tests = suite.results(transcript.exit_status, run_dir, complete)
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
    record.suspect_lines = list(suite.suspect_lines)
    if record.outcome is Outcome.CANCELLED:
        # Tests cut short by the cancel say nothing about the kernel.
        record.tests = [t for t in record.tests if t.status is not TestStatus.ERROR]
    if record.outcome is Outcome.PASSED and any(t.status.failing for t in record.tests):
        record.outcome = Outcome.FAILED
        record.reason = record.reason or "tests failed"
    if record.outcome is Outcome.PASSED and record.splats:
        kinds = ", ".join(sorted({s.kind for s in record.splats}))
        record.reason = f"the tests passed but the kernel logged {len(record.splats)} splat(s): {kinds}"
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
