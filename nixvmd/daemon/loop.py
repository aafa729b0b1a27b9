"""The daemon's loop: one asyncio task owns the state, turns changes into runs, reports them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from nixvmd.config.load import load_config
from nixvmd.config.schema import Config
from nixvmd.daemon import kernel_check, watching
from nixvmd.daemon.bisecting import Bisecting
from nixvmd.daemon.builds import BuildNames
from nixvmd.daemon.failed_build import record_failed_build
from nixvmd.daemon.fstests_watch import REQUESTED, FstestsWatch, next_run, queued, taken_since, tree_settled
from nixvmd.daemon.runs import retrieve_run, run_once
from nixvmd.daemon.state import Phase, Touched
from nixvmd.daemon.status import status_line, status_object
from nixvmd.daemon.tested import TestedKernels, key_of
from nixvmd.errors import ConfigError, StateSpaceError
from nixvmd.image.backend import BuildHooks
from nixvmd.image.registry import backend_for
from nixvmd.plan.planner import Changes, LoopState, Plan, Step, classify_config_change, plan
from nixvmd.report.events import EventBus
from nixvmd.report.log_buffer import LogBuffer
from nixvmd.report.reporter import build_reporter
from nixvmd.report.sdnotify import SystemdNotifier
from nixvmd.results.record import Outcome, RunRecord
from nixvmd.results.store import RunStore
from nixvmd.suite.registry import with_tests
from nixvmd.vm.accel import AccelVerdicts
from nixvmd.vm.gdbstub import GdbMode
from nixvmd.vm.machine import Machine, remove_stale_socket_dirs
from nixvmd.watch.inotify import DirectoryWatch, FileChange
from nixvmd.watch.kernel_image import KernelImage

log = logging.getLogger("nixvmd")

REPORT_GRACE = 10.0  # seconds a stopping daemon waits for pending notifications and hooks


class Daemon:
    """The loop's state and the steps that change it; all on one event loop."""

    def __init__(
        self, config: Config, config_path: Path | None, *, notifier: SystemdNotifier | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.events = EventBus()
        self.logs = LogBuffer(self.events)
        logging.getLogger().addHandler(self.logs)
        self.sd = notifier or SystemdNotifier({})
        self.reporter = build_reporter()
        self.store = RunStore(config.daemon.state_dir)
        self.store.recover()  # runs of a daemon that was killed become `error`
        remove_stale_socket_dirs()
        self.verdicts = AccelVerdicts(config.daemon.state_dir, config.vm.qemu)
        self.state = Phase.IDLE
        self.paused = False
        self.kernel: KernelImage | None = None
        self.kernel_error: str | None = None
        self.config_error: str | None = None
        self.space_error: str | None = None  # state_dir had no room for a write; cleared when one fits
        self.kernel_space_error: StateSpaceError | None = None  # the kernel on disk waits for room
        self.current: dict[str, Any] | None = None
        self.last_run: RunRecord | None = self.store.latest()
        self.tested = TestedKernels(config.daemon.state_dir)
        self.testing: tuple[str, RunRecord] | None = None  # the run going on: its run key, record
        self.builds = BuildNames(self.spawn)
        self.kept = Changes()
        self.after_run = Changes()  # a tests-only tree change waiting for the full run in flight
        self._pending = Changes()
        self._touched = Touched()
        self._settle: asyncio.TimerHandle | None = None
        self._run_task: asyncio.Task[RunRecord] | None = None
        self.next_tests: tuple[str, ...] = ()  # nixvmctl run --tests, for the next run only
        self.fstests = FstestsWatch(lambda change: tree_settled(self, change))  # the fstests tree
        self.next_fresh = False  # nixvmctl run --fresh, for the next run only
        self.next_gdb: GdbMode | None = None  # nixvmctl run --gdb, for the next run only
        self.machines: dict[int, Machine] = {}  # the running VMs by shard (0 without), for `nixvmctl console`
        self.current_record: RunRecord | None = None  # the running run's record
        self._apply_lock = asyncio.Lock()
        self._watch: DirectoryWatch | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopped = asyncio.Event()
        self._hooks = BuildHooks(
            self.events.publish, self._building, self._after_build, self._failed, self._tasks
        )
        self.backend = backend_for(config, config_path, None, self._hooks)
        self.bisecting = Bisecting(self)

    def close(self) -> None:
        logging.getLogger().removeHandler(self.logs)

    def set_state(self, state: Phase) -> None:
        if state != self.state:
            self.state = state
            self.events.publish("state", state=state)
        self.sd.status(self.status_line())

    def status_line(self) -> str:
        """The phase in words, for systemd's STATUS= and `nixvmctl status`."""
        return status_line(self)

    def arm_watches(self) -> None:
        """Watch everything that matters, every watch looked up again."""
        assert self._watch is not None
        watching.arm(self._watch, self.config, self.config_path, self.backend, self.fstests)

    def on_file_change(self, change: FileChange) -> None:
        if watching.note(change, self.config, self.config_path, self.backend, self._touched):
            self._schedule()
        else:
            self.fstests.note(change)

    def _schedule(self) -> None:
        """Coalesce a burst of events into one decision after `daemon.settle`."""
        if self._settle is not None:
            self._settle.cancel()
        self._settle = asyncio.get_running_loop().call_later(self.config.daemon.settle, self._decide)

    def _decide(self) -> None:
        self._settle = None
        changes, self._pending = self._pending, Changes()
        touched = self._touched.take()
        if touched.config:
            changes = changes | self.reload_config()
        if touched.kernel or touched.kernel_recheck:
            changes = changes | self.check_kernel(announce=True, unless_same=not touched.kernel)
        if touched.image:
            if self.backend.inputs_changed():
                changes = changes | Changes(image_inputs=True)
            else:
                log.info("image inputs touched, content unchanged: no build")
        self.spawn(self.apply(changes))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def request(
        self,
        changes: Changes,
        tests: tuple[str, ...] = (),
        *,
        fresh: bool = False,
        gdb: GdbMode | None = None,
    ) -> Plan:
        """Feed changes from outside (nixvmctl run [--tests] [--fresh] [--gdb], resume) to the planner."""
        if tests:
            with_tests(self.config, tests)  # a bad subset is refused now, not at run time
        self.next_tests, self.next_fresh, self.next_gdb = tests, fresh, gdb
        self.spawn(self.apply(changes))
        return plan(changes, self.loop_state())

    def rearm(self) -> None:
        """Look every watch up again, and the kernel image too: a reload's promise."""
        if self._watch is not None:
            self.arm_watches()
        self._touched.kernel_recheck = True
        self._schedule()

    def reload_config(self) -> Changes:
        """Read the config file again; a bad one is reported and the good one kept."""
        if self.config_path is None:
            self.rearm()
            return Changes()
        self.sd.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.config_error = str(exc)
            log.error("config reload failed, keeping the last good config:\n%s", exc)
            self.events.publish("config", ok=False, error=str(exc))
            self.sd.ready(self.status_line())
            self.rearm()
            return Changes()
        self.config_error = None
        old, self.config = self.config, new
        changes = classify_config_change(old, new)
        if old.image != new.image:
            self.backend = backend_for(new, self.config_path, self.backend, self._hooks)
        self.rearm()
        if old.kernel_image != new.kernel_image:
            changes = changes | self.check_kernel(announce=True)
        if old.daemon != new.daemon:
            log.warning("[daemon] settings take effect when nixvmd restarts")
        log.info(
            "config reloaded from %s%s",
            self.config_path,
            "" if changes else " (no effective change)",
        )
        self.events.publish("config", ok=True)
        self.sd.ready(self.status_line())
        return changes

    def check_kernel(
        self, *, announce: bool, unless_same: bool = False, unless_tested: bool = True
    ) -> Changes:
        """Check the kernel image (daemon/kernel_check.py); the last good one stays on a bad one."""
        return kernel_check.check_kernel(
            self, announce=announce, unless_same=unless_same, unless_tested=unless_tested
        )

    def no_space(self, error: StateSpaceError) -> None:
        """A write into state_dir found no room: say so in logs and status until one fits again."""
        log.error("%s", error)
        self.space_error = str(error)
        if self.current is None:  # a run in flight shows its own phase; it rests when it ends
            self.rest()

    def room_again(self) -> None:
        """A write into state_dir fitted: the space error is over."""
        if self.space_error is not None:
            log.info("state_dir has room again")
            self.space_error = None
            if self.state is Phase.ERROR:
                self.rest()

    def rest(self) -> None:
        """The state between runs: error while state_dir has no room, else paused or idle."""
        self.set_state(Phase.ERROR if self.space_error else Phase.PAUSED if self.paused else Phase.IDLE)

    def why_not_run(self, kernel: KernelImage) -> str | None:
        """Why `kernel` needs no run now (tested already, or being tested); None when it does."""
        running = self._run_task is not None and not self._run_task.done()
        key = key_of(self.config, kernel, self.backend)
        return self.tested.why_not_run(key, self.testing if running else None)

    def loop_state(self) -> LoopState:
        return LoopState(
            running=self._run_task is not None and not self._run_task.done(),
            building=self.backend.building,
            paused=self.paused,
            bisecting=self.bisecting.active,
            running_full=self.fstests.running == (),
            have_kernel=self.kernel is not None,
            image_builds=self.backend.builds,
            image_ready=self.backend.ready,
        )

    async def apply(self, changes: Changes) -> None:
        """Carry out the plan for `changes`, one plan at a time."""
        async with self._apply_lock:
            if self.stopped.is_set():
                return
            if taken_since(self, changes):
                return
            decision = plan(changes, self.loop_state())
            if not decision.steps:
                if changes:
                    log.info("%s", decision.reason)
                return
            log.info("%s", decision.reason)
            if Step.KEEP in decision:
                self.kept = self.kept | changes
                return
            if Step.AFTER_RUN in decision:
                self.after_run = self.after_run | changes
                self.events.publish("queued", **(queued(self) or {}))
                return
            if Step.CANCEL_RUN in decision:
                await self.cancel_run(f"cancelled by {changes.cause()}")
            self.backend.take(decision)
            if Step.START_RUN in decision or Step.AWAIT_IMAGE in decision:
                self.kept = Changes()
            if Step.START_RUN in decision:
                self.start_run(changes, cancelled=Step.CANCEL_RUN in decision)

    async def _failed(self, error: str) -> None:
        self.last_run = await record_failed_build(self.store, self.config, self.kernel, error, self.builds)

    def _building(self, building: bool) -> None:
        self.set_state(Phase.BUILDING if building else Phase.PAUSED if self.paused else Phase.IDLE)

    async def _after_build(self, run: bool) -> None:
        """After a build: watch what it read; run when it was good (or a run waited for it)."""
        if self._watch is not None:
            self.arm_watches()
        if run:
            await self.apply(Changes(build_ended=True))

    async def cancel_run(self, reason: str) -> None:
        """Cancel the running run, if any; `reason` becomes its record's reason."""
        task = self._run_task
        if task is not None and not task.done():
            record = self.current_record
            if record is not None and record.outcome in (None, Outcome.RUNNING):
                record.reason = reason
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def start_run(self, changes: Changes = REQUESTED, *, cancelled: bool = False) -> asyncio.Task[RunRecord]:
        assert self.kernel is not None
        tests, reason = next_run(self, changes, cancelled=cancelled)  # `cancelled`: in place of a run
        fresh, self.next_fresh = self.next_fresh, False
        gdb, self.next_gdb = self.next_gdb, None
        run = run_once(self, self.kernel, self.config, tests, fresh=fresh, reason=reason, gdb=gdb)
        self._run_task = asyncio.create_task(run)
        self._run_task.add_done_callback(retrieve_run)
        self._run_task.add_done_callback(lambda _: self._run_ended())
        return self._run_task

    def _run_ended(self) -> None:
        """A run ended (or was cancelled): what waited for it is decided now."""
        waiting, self.after_run = self.after_run, Changes()
        if waiting and not self.stopped.is_set():
            self.spawn(self.apply(waiting))

    async def report(self, record: RunRecord, config: Config) -> None:
        """Tell every channel (desktop, the user's hook, ...), off the loop's critical path."""
        await self.reporter.report(record, config)

    def console_write(self, data: bytes, shard: int = 0) -> bool:
        """Type `data` into the running guest's (or shard's) serial console; False when no VM runs."""
        if (machine := self.machines.get(shard)) is not None:
            machine.write_console(data)
        return machine is not None

    def pause(self) -> None:
        self.paused = True
        self.set_state(Phase.PAUSED if self.state is Phase.IDLE else self.state)
        log.info("paused: changes are noted but start nothing until resume")

    def resume(self) -> Plan | None:
        self.paused = False
        log.info("resumed")
        if self.state is Phase.PAUSED:
            self.set_state(Phase.IDLE)
        kept, self.kept = self.kept, Changes()
        return self.request(kept) if kept else None

    async def serve(self, control: Any) -> None:
        """Run until stopped: watches, control socket, systemd, reactions."""
        with DirectoryWatch(self.on_file_change) as watch:
            self._watch = watch
            self.arm_watches()
            await control.start()
            initial = self.check_kernel(announce=False)
            if not self.backend.is_current():
                initial = initial | Changes(image_inputs=True)
            if self.kernel is not None:
                log.info(
                    "watching %s (kernel %s)",
                    self.config.kernel_image,
                    self.kernel.release,
                )
            self.sd.ready(self.status_line())
            self.rest()
            watchdog = asyncio.create_task(self.sd.feed_watchdog())
            if initial:
                self.spawn(self.apply(initial))
            try:
                await self.stopped.wait()
            finally:
                self.sd.stopping()
                watchdog.cancel()
                if self._settle is not None:
                    self._settle.cancel()
                self.fstests.close()
                await self.bisecting.stop("stopped: nixvmd is stopping")
                await self.cancel_run("cancelled: nixvmd is stopping")
                # Let reports of finished runs (notifications, hooks) go out, within reason.
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=REPORT_GRACE)
                for task in list(self._tasks):
                    task.cancel()
                for task in list(self._tasks):
                    with contextlib.suppress(BaseException):
                        await task
                await control.close()
                await self.reporter.close()
                self._watch = None

    def status(self) -> dict[str, Any]:
        """The status object of `nixvmctl status --json`."""
        return status_object(self)
