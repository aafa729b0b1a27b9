"""The bisect state machine: git proposes a commit, nixvmd builds and tests it and tells git, to the end.

Driven step by step (`git bisect good|bad|skip` by nixvmd, not `git bisect run`), so the
record, status and cancellation stay nixvmd's at every point:

    start ─► [next commit] ─► build ─ failed ──────────────► skip ─┐
                  ▲             └─ ok ─► run ─► classify ─► good/bad ┤
                  └──────────────────────────────────────────────────┘
    git: first bad commit ─► found      only skipped left ─► undecided
    a step's `error` (nixvmd broke) ─► error      cancelled ─► stopped
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nixvmd.bisect import git
from nixvmd.bisect.build import build_kernel
from nixvmd.bisect.record import Bisect, BisectState, BisectStore, Step, Verdict
from nixvmd.bisect.seed import seed_worktree
from nixvmd.bisect.verdict import classify
from nixvmd.errors import NixvmdError
from nixvmd.results.record import RunRecord

log = logging.getLogger("nixvmd")

RunStep = Callable[[Path, Step], Awaitable[RunRecord]]
"""Test the image a step built (the step's `run_id` is set as soon as its run has one)."""


@dataclass(frozen=True)
class BisectPlan:
    """What a bisect needs besides its record: the developer's tree, the build, where the image lands."""

    tree: Path
    build: str  # kernel.build
    image: Path  # kernel.image, relative to the tree


async def drive(
    bisect: Bisect, plan: BisectPlan, store: BisectStore, run_step: RunStep, changed: Callable[[], None]
) -> Bisect:
    """Carry `bisect` to its end in `store`'s worktree; `changed` is called whenever its record changes.

    Never raises for the bisect's own failures (they end it `error` with one sentence);
    cancellation ends it `stopped` and is raised again.
    """
    worktree = store.worktree
    try:
        if await git.own_worktree(plan.tree, worktree):
            seeded = await asyncio.to_thread(seed_worktree, plan.tree, worktree)
            log.info(
                "bisect %s: made %s, seeded with %d build file(s) (%d MiB) of %s",
                bisect.id,
                worktree,
                seeded.files,
                seeded.size >> 20,
                plan.tree,
            )
        answer = await git.start(worktree, bisect.bad, bisect.good)
        while isinstance(answer, git.NextStep):
            verdict = await _step(bisect, plan, store, run_step, changed, answer)
            if verdict is Verdict.ERROR:
                return bisect
            answer = await git.mark(worktree, verdict.value)
        _conclude(
            bisect,
            answer,
            await git.subject(worktree, answer.commit) if isinstance(answer, git.FirstBad) else "",
        )
    except asyncio.CancelledError:
        bisect.end(BisectState.STOPPED, bisect.reason or "stopped")
        raise
    except NixvmdError as exc:
        bisect.end(BisectState.ERROR, str(exc))
    finally:
        with contextlib.suppress(NixvmdError):
            await asyncio.shield(git.finish(worktree))
        store.save(bisect)
        changed()
        log.info("bisect %s %s: %s", bisect.id, bisect.state, bisect.reason)
    return bisect


async def _step(
    bisect: Bisect,
    plan: BisectPlan,
    store: BisectStore,
    run_step: RunStep,
    changed: Callable[[], None],
    proposed: git.NextStep,
) -> Verdict:
    """Build and test the commit git checked out; its verdict (an `error` has ended the bisect)."""
    number = len(bisect.steps) + 1
    build_log = store.build_log(bisect, number)
    step = Step(proposed.commit, proposed.subject, build_log=str(build_log))
    bisect.steps.append(step)
    bisect.steps_left = proposed.steps_left
    store.save(bisect)
    changed()
    log.info("bisect %s: step %d, %s %s: building", bisect.id, number, step.commit[:12], step.subject)
    status = await build_kernel(plan.build, store.worktree, build_log)
    step.build = "ok" if status == 0 else "failed"
    changed()
    record = await run_step(store.worktree / plan.image, step) if status == 0 else None
    step.verdict, step.note = classify(status == 0, record, bisect.tests)
    if status != 0:
        step.note += f" (exit status {status}; see {build_log})"
    log.info("bisect %s: step %d, %s: %s (%s)", bisect.id, number, step.commit[:12], step.verdict, step.note)
    if step.verdict is Verdict.ERROR:
        bisect.end(BisectState.ERROR, f"step {number} ({step.commit[:12]}): {step.note}")
    store.save(bisect)
    changed()
    return step.verdict


def _conclude(bisect: Bisect, answer: git.Answer, subject: str) -> None:
    if isinstance(answer, git.FirstBad):
        bisect.first_bad = answer.commit
        bisect.end(BisectState.FOUND, f"first bad commit {answer.commit[:12]} {subject}".strip())
    elif isinstance(answer, git.Undecided):
        bisect.candidates = answer.commits
        bisect.end(BisectState.UNDECIDED, answer.message)
