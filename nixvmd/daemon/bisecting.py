"""The daemon's bisect: one at a time, its steps run as the daemon's runs, its news in status and events.

While a bisect goes, it has the VM: the planner keeps every change (a new kernel, `nixvmctl
run`) as it does while paused, and they take effect when the bisect ends (unless the daemon
is paused). Starting one cancels the run going on. Each step's run is a run record of suite
"<suite>-bisect" with `bisect` set: never compared with the tree's runs, never remembered
as tested, never a baseline for regressions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixvmd.bisect.driver import BisectPlan, drive
from nixvmd.bisect.git import BisectError, resolve
from nixvmd.bisect.record import Bisect, BisectState, BisectStore, Step
from nixvmd.config.schema import Config
from nixvmd.daemon import arguments
from nixvmd.daemon.live_run import LiveRun
from nixvmd.daemon.runs import new_record, prepare_launch
from nixvmd.daemon.state import Phase
from nixvmd.errors import ConfigError, ControlError, NixvmdError
from nixvmd.plan.planner import Changes
from nixvmd.report.notification import Notification, Urgency
from nixvmd.report.reporter import DesktopChannel
from nixvmd.results.record import RunRecord, TestStatus
from nixvmd.results.store import RunStore
from nixvmd.run.execute import execute_run
from nixvmd.suite.registry import make_suite, suite_name, with_tests
from nixvmd.watch.kernel_image import read_kernel_image

if TYPE_CHECKING:
    from nixvmd.daemon.loop import Daemon

log = logging.getLogger("nixvmd")

# How far back `[bisect] auto` looks for a run that passed the regressed tests.
KNOWN_GOOD_RUNS = 50


class Bisecting:
    """The daemon's one bisect at a time: start, stop, status, and the steps' runs."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.store = BisectStore(daemon.config.daemon.state_dir)
        self.bisect: Bisect | None = None
        self._task: asyncio.Task[Bisect] | None = None
        self._recover()

    def _recover(self) -> None:
        """The last bisect is status's until the next; one found running was a dead daemon's: `error`."""
        left = self.bisect = self.store.latest()
        if left is not None and left.state is BisectState.RUNNING:
            left.end(BisectState.ERROR, "nixvmd stopped during this bisect")
            with contextlib.suppress(NixvmdError, OSError):
                self.store.save(left)

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any] | None:
        """Status's `bisect`: the one going on, or the last one."""
        return self.bisect.status() if self.bisect is not None else None

    def status_line(self) -> str:
        """The bisect going on in words: "bisecting: step 3 (about 2 left), testing 1a2b3c4d5e6f"."""
        bisect = self.bisect
        if bisect is None or bisect.current is None:
            return "bisecting"
        current = bisect.current
        left = "" if bisect.steps_left is None else f" (about {bisect.steps_left} left)"
        doing = "building" if not current.build else "testing"
        return f"bisecting: step {len(bisect.steps)}{left}, {doing} {current.commit[:12]}"

    def record(self) -> dict[str, Any]:
        """`nixvmctl bisect --status`: the latest bisect's record, every step."""
        bisect = self.bisect
        if bisect is None:
            raise BisectError("no bisect yet; nixvmctl bisect --good REV starts one")
        return bisect.to_json()

    async def start(
        self, good: str, bad: str | None, tests: tuple[str, ...], started_by: str = "nixvmctl bisect"
    ) -> Bisect:
        """Resolve the bounds, choose the tests, and start driving; BisectError in one sentence."""
        if self.active:
            raise BisectError("a bisect is going on already (nixvmctl bisect --status; --stop ends it)")
        config = self.daemon.config
        plan = bisect_plan(config)
        good_commit = await resolve(plan.tree, good)
        bad_commit = await resolve(plan.tree, bad or "HEAD")
        tests = tests or default_tests(self.daemon.store, config)
        if self.active:  # another request started one while git answered
            raise BisectError("a bisect is going on already (nixvmctl bisect --status; --stop ends it)")
        bisect = self.store.new(good_commit, bad_commit, tests, started_by)
        self.bisect = bisect
        log.info(
            "bisect %s: %s (good) .. %s (bad), tests %s",
            bisect.id,
            good_commit[:12],
            bad_commit[:12],
            ", ".join(tests) or "(the whole suite)",
        )
        self._task = asyncio.create_task(self._go(bisect, plan, config))
        return bisect

    async def stop(self, reason: str = "stopped by nixvmctl bisect --stop") -> Bisect | None:
        """End the bisect going on (its build or run is cancelled, nothing outlives it)."""
        task = self._task
        if task is None or task.done() or self.bisect is None:
            return None
        self.bisect.reason = reason
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return self.bisect

    async def _go(self, bisect: Bisect, plan: BisectPlan, config: Config) -> Bisect:
        daemon = self.daemon
        await daemon.cancel_run("cancelled: a bisect takes the VM")
        daemon.set_state(Phase.BUILDING)
        try:
            return await drive(
                bisect,
                plan,
                self.store,
                lambda image, step: self._run_step(bisect, config, image, step),
                lambda: self._changed(bisect),
            )
        finally:
            daemon.rest()
            daemon.spawn(self._notify(bisect, config))
            kept, daemon.kept = daemon.kept, Changes()
            if kept and not daemon.paused and not daemon.stopped.is_set():
                log.info("bisect over: what waited for it goes on")
                daemon.request(kept)
            elif kept:
                daemon.kept = kept

    def _changed(self, bisect: Bisect) -> None:
        current = bisect.current
        if current is not None and not current.build:
            self.daemon.set_state(Phase.BUILDING)
        self.daemon.events.publish("bisect", **bisect.status())

    async def _run_step(self, bisect: Bisect, config: Config, image: Path, step: Step) -> RunRecord:
        """Run the suite on the image a step built: a run record of its own, marked as the bisect's."""
        daemon = self.daemon
        # Snapshots of its own: the steps' kernels must not push the developer's out of `kernels/`.
        kernel = read_kernel_image(image, self.store.root / "kernels", tree=self.store.worktree)
        try:
            narrowed, tests = with_tests(config, bisect.tests), bisect.tests
        except ConfigError:  # e.g. KUnit takes one glob: the whole suite runs, the tests judge
            narrowed, tests = config, ()
        suite = make_suite(narrowed, tests)
        run_id, run_dir = daemon.store.new_run_dir()
        record = new_record(
            config,
            kernel,
            run_id,
            f"{suite_name(config)}-bisect",
            tests,
            git={"commit": step.commit, "dirty": False},
            bisect=bisect.id,
        )
        step.run_id = run_id
        self._changed(bisect)
        live = LiveRun(daemon, record)
        daemon.current_record = record
        daemon.events.publish("run", phase="start", run_id=run_id, kernel_version=record.kernel_version)
        log.info("run %s: bisect %s step %d on %s", run_id, bisect.id, len(bisect.steps), record.build)
        try:
            await execute_run(
                narrowed,
                kernel,
                suite,
                record,
                run_dir,
                prepare_launch(daemon, narrowed, suite, kernel=kernel),
                daemon.verdicts,
                live.hooks(),
                store=daemon.store,
            )
        finally:
            daemon.current = None
            daemon.current_record = None
            daemon.set_state(Phase.BUILDING)
            daemon.events.publish("run", phase="end", run_id=run_id, **record.summary())
        return record

    async def _notify(self, bisect: Bisect, config: Config) -> None:
        """The desktop hears how a bisect ended, when notifications are on at all."""
        if not config.notify.on:
            return
        urgency = Urgency.NORMAL if bisect.state is BisectState.FOUND else Urgency.CRITICAL
        note = Notification(f"bisect {bisect.state}", bisect.reason, urgency)
        for channel in self.daemon.reporter.channels:
            if isinstance(channel, DesktopChannel):
                await channel.notifier.notify(note, key="bisect")

    async def after_run(self, record: RunRecord, config: Config) -> None:
        """`[bisect] auto`: new regressions on a clean commit are bisected from a known good commit."""
        if not config.bisect.auto or not record.regressions or record.bisect or self.active:
            return
        if not record.git or record.git.get("dirty"):
            log.info("run %s: regressions, but the tree was not a clean commit: no bisect", record.id)
            return
        good = known_good(self.daemon.store, record)
        if good is None:
            log.info(
                "run %s: no earlier run of a clean commit passed %s: no bisect",
                record.id,
                ", ".join(record.regressions),
            )
            return
        try:
            await self.start(good, str(record.git["commit"]), tuple(record.regressions), f"run {record.id}")
        except NixvmdError as exc:
            log.warning("run %s: no bisect: %s", record.id, exc)


def bisect_plan(config: Config) -> BisectPlan:
    """The tree, build command and image path of `config`; BisectError when the image is outside the tree."""
    image = config.kernel.image
    if image.is_absolute():
        try:
            image = image.relative_to(config.kernel.tree)
        except ValueError:
            raise BisectError(
                f"kernel.image {image} is outside kernel.tree {config.kernel.tree}; a bisect builds "
                "in its own worktree of the tree and needs the image's place in it"
            ) from None
    if not config.kernel.build.strip():
        raise BisectError("kernel.build is empty; a bisect needs the command that builds the kernel")
    return BisectPlan(config.kernel.tree, config.kernel.build, image)


def default_tests(store: RunStore, config: Config) -> tuple[str, ...]:
    """The latest run's regressions; BisectError when it had none."""
    latest = store.latest(suite_name(config))
    if latest is None:
        raise BisectError("no run to take regressions from; name the tests with --tests")
    if not latest.regressions:
        raise BisectError(f"the latest run ({latest.id}) has no regressions; name the tests with --tests")
    return tuple(latest.regressions)


def known_good(store: RunStore, record: RunRecord) -> str | None:
    """The commit of the newest earlier run of `record`'s suite (clean tree) that passed its regressions."""
    before = record.id
    for _ in range(KNOWN_GOOD_RUNS):
        earlier = store.latest(record.suite, before=before, finished_only=True)
        if earlier is None:
            return None
        before = earlier.id
        git = earlier.git or {}
        if not git.get("commit") or git.get("dirty") or git.get("commit") == (record.git or {}).get("commit"):
            continue
        statuses = {t.name: t.status for t in earlier.tests}
        if all(statuses.get(name) is TestStatus.PASS for name in record.regressions):
            return str(git["commit"])
    return None


async def bisect_request(daemon: Daemon, request: dict[str, Any]) -> dict[str, Any]:
    """The control socket's `bisect`: `action` start (good, bad, tests), status (the default) or stop."""
    bisecting = daemon.bisecting
    action = arguments.text(request, "action") or "status"
    if action == "start":
        good = arguments.text(request, "good")
        if good is None:
            raise ControlError("bisect: start needs good, a commit that passes the tests")
        tests = tuple(arguments.names(request, "tests"))
        return (await bisecting.start(good, arguments.text(request, "bad"), tests)).status()
    if action == "stop":
        stopped = await bisecting.stop()
        return {"stopped": stopped is not None, **(stopped.status() if stopped else {})}
    if action == "status":
        return bisecting.record()
    raise ControlError(f"bisect: action must be start, status or stop, not {action!r}")
