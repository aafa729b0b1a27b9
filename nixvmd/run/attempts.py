"""Crash resume's decisions, pure: the test a guest stopped in, its verdict, what is left, the outcome.

A run that resumes (nixvmd.run.resume) is several VMs, each an `Attempt` over the tests not
yet run. These functions take what one attempt left behind (its record, the test running
when it ended, its console) and say what the merged record keeps; they touch no VM and no
file, so tests/run/test_attempts.py checks them without one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace

from nixvmd.results.record import Attempt, Outcome, RunRecord, TestResult, TestStatus, cut

STOPPING = {Outcome.CRASHED: TestStatus.CRASHED, Outcome.TIMEOUT: TestStatus.TIMEOUT}
"""The endings that stop a guest inside a test, and the verdict that test gets."""
EXCERPT_BEFORE = 5
"""Console lines kept before a crash's first splat in the crashed test's message."""
EXCERPT_AFTER = 25
"""... and from that splat on; without a splat (a hang, a halt), the console's last lines."""
EXCERPT_LINE = 240
"""A console line in an excerpt is cut to this many characters."""


def plain_name(name: str) -> str:
    """A test's name without its section (``xfs:generic/001`` → ``generic/001``)."""
    return name.rpartition(":")[2]


def stopped_in(outcome: Outcome | None, running: str | None) -> str | None:
    """The test the guest stopped in: the one running when it crashed, halted or hung; else None."""
    return running if outcome in STOPPING and running else None


def remaining(tests: Sequence[str], results: Iterable[TestResult], stopped: str | None) -> tuple[str, ...]:
    """The tests of `tests` (in order, once each) with no verdict in `results` and not `stopped`."""
    done = {plain_name(r.name) for r in results}
    if stopped is not None:
        done.add(stopped)
    return tuple(t for t in dict.fromkeys(tests) if t not in done)


def console_excerpt(lines: Sequence[str], anchor: str | None) -> tuple[str, ...]:
    """The console around the first line holding `anchor` (a crash's first splat); the tail without."""
    at = next((i for i, line in enumerate(lines) if anchor and anchor in line), None)
    chosen = lines[-EXCERPT_AFTER:] if at is None else lines[max(0, at - EXCERPT_BEFORE) : at + EXCERPT_AFTER]
    return tuple(cut(line.rstrip(), EXCERPT_LINE) for line in chosen)


def stop_anchor(part: RunRecord, test: str) -> str | None:
    """The console text to centre the excerpt on: the first splat the crashed test caused."""
    return next((s.line for s in part.splats if s.test == test), None)


def stop_verdict(part: RunRecord, test: str, excerpt: Sequence[str], console: str) -> TestResult:
    """`test`'s verdict after the guest stopped in it: crashed or timeout, the why first.

    The message is the attempt's reason (the panic, the oops, the hang limit), the splats
    attributed to the test, then the console excerpt; `console` (the attempt's console.log,
    relative to the run) joins the artefacts the suite already had for it.
    """
    assert part.outcome in STOPPING, part.outcome
    known = next((t for t in part.tests if plain_name(t.name) == test), None)
    lines = [part.reason or f"the guest stopped in {test}"]
    lines += [f"{s.kind}: {s.line}" for s in part.splats if s.test == test]
    if excerpt:
        lines += [f"console ({console}):", *(f"  {line}" for line in excerpt)]
    artefacts = (*known.artefacts, console) if known is not None else (console,)
    return TestResult(
        name=known.name if known is not None else test,
        status=STOPPING[part.outcome],
        message="\n".join(lines),
        artefacts=tuple(dict.fromkeys(artefacts)),
        collection=known.collection if known is not None else "",
    )


def with_verdict(tests: Sequence[TestResult], verdict: TestResult) -> list[TestResult]:
    """`tests` with `verdict` in place of the result of the same test (the suite's "did not finish")."""
    out, placed = [], False
    for test in tests:
        if plain_name(test.name) == plain_name(verdict.name):
            if not placed:
                out.append(verdict)
            placed = True
        else:
            out.append(test)
    return out if placed else [*out, verdict]


def relocated(tests: Iterable[TestResult], directory: str) -> list[TestResult]:
    """`tests` with their relative artefact paths under `directory` (an attempt's, inside the run)."""
    if not directory:
        return list(tests)
    return [
        replace(t, artefacts=tuple(a if os.path.isabs(a) else f"{directory}/{a}" for a in t.artefacts))
        for t in tests
    ]


def not_run(tests: Iterable[str], why: str) -> list[TestResult]:
    """The tests a stopped run never reached: skipped, "not run: <why>" (never a failure)."""
    return [TestResult(name, TestStatus.SKIP, None, f"not run: {why}") for name in tests]


def naming(reason: str, test: str | None) -> str:
    """`reason`, saying which test it happened in when it does not already."""
    if test is None or test in reason:
        return reason
    return f"{reason} (in {test})"


def resume_note(attempt: Attempt, left: int, restart: int, limit: int) -> str:
    """What the log and the `resume` event say before a fresh VM takes the tests left."""
    what = "hung" if attempt.outcome is Outcome.TIMEOUT else "crashed"
    tests = f"{left} test{'' if left == 1 else 's'}"
    return f"guest {what} in {attempt.stopped_in}; resuming {tests} in a fresh VM ({restart}/{limit})"


def why_not_run(last: Attempt, limit: int) -> str:
    """Why the tests left after the last attempt never ran."""
    if last.stopped_in is not None:
        return f"suite.resume_limit ({limit}) reached after the guest stopped in {last.stopped_in}"
    return f"the guest {last.outcome} outside any test: {last.reason}"


def merged_outcome(attempts: Sequence[Attempt]) -> tuple[Outcome, str]:
    """The run's outcome over its attempts.

    Cancelled when one was; `error` when the last one broke (the machinery failed: never
    the kernel's fault); else the first crash or hang, naming the test it happened in;
    else (no attempt stopped early) the only attempt's.
    """
    if not attempts:
        return Outcome.ERROR, "no VM was started"
    last = attempts[-1]
    if any(a.outcome is Outcome.CANCELLED for a in attempts):
        return Outcome.CANCELLED, "cancelled"
    if last.outcome is Outcome.ERROR:
        place = f" (resume attempt {len(attempts) - 1})" if len(attempts) > 1 else ""
        return Outcome.ERROR, last.reason + place
    for attempt in attempts:
        if attempt.outcome in STOPPING:
            return attempt.outcome, naming(attempt.reason, attempt.stopped_in)
    return last.outcome, last.reason
