"""What a desktop notification says about a run, how urgent it is, and which runs make one.

Most are about a finished run (`describe_run`); one comes while a run goes on, at its first
regression (`describe_first_regression`), and the run's end replaces it (desktop.py keeps
one notification per key).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nixvmd.config.schema import NotifyEvent
from nixvmd.errors import ConfigError
from nixvmd.results.first_regression import FirstRegression

_LIST_AT_MOST = 3
_BODY_LINE = 160
"""A failure's line in the body is cut here: servers show a few short lines, not a log."""


class Urgency(enum.IntEnum):
    """The freedesktop `urgency` hint; servers keep CRITICAL on screen until dismissed."""

    LOW = 0
    NORMAL = 1
    CRITICAL = 2


EventKind = NotifyEvent
"""What about a run can trigger a notification; declared with the config, which checks `notify.on`."""

DEFAULT_TRIGGERS = frozenset(EventKind) - {EventKind.PASS}

_OUTCOME_EVENT = {
    "passed": EventKind.PASS,
    "failed": EventKind.FAIL,
    "crashed": EventKind.CRASH,
    "timeout": EventKind.TIMEOUT,
    "error": EventKind.BUILD_ERROR,
}


@dataclass(frozen=True)
class Notification:
    """One desktop notification: a one-line summary, a plain-text body and an urgency."""

    summary: str
    body: str
    urgency: Urgency


def parse_triggers(on: Iterable[str]) -> frozenset[EventKind]:
    """The event kinds of a config `on` list; ConfigError naming the valid ones otherwise."""
    kinds = set()
    for name in on:
        try:
            kinds.add(EventKind(name))
        except ValueError:
            valid = ", ".join(f'"{kind}"' for kind in EventKind)
            raise ConfigError([f'notify: unknown event "{name}" in `on`; use some of {valid}']) from None
    return frozenset(kinds)


def run_events(run: Mapping[str, Any]) -> frozenset[EventKind]:
    """Everything a run summary (status JSON `last_run`) is an instance of.

    A cancelled run was superseded by a newer kernel, so it is nothing to tell anyone about.
    Known failures are no event: a run whose only failures are known ones is `passed`.
    A run nixvmd could not carry out (`error`) is a build-error, never a regression or a fix,
    whatever its record says: the machinery's failure is not the kernel's.
    """
    outcome = run.get("outcome")
    if outcome not in _OUTCOME_EVENT:
        return frozenset()
    kinds = {_OUTCOME_EVENT[outcome]}
    if outcome == "error":
        return frozenset(kinds)
    if run.get("regressions"):
        kinds.add(EventKind.REGRESSION)
    if run.get("fixes"):
        kinds.add(EventKind.FIXED)
    return frozenset(kinds)


def triggered_events(
    run: Mapping[str, Any], on: Collection[EventKind] = DEFAULT_TRIGGERS
) -> frozenset[EventKind]:
    """The events of `run` the user asked to hear about; notify when this is not empty."""
    return run_events(run) & frozenset(on)


def describe_run(run: Mapping[str, Any]) -> Notification:
    """The notification text for a run summary, e.g. "6.8.0-rc3 #7 a1b2c3d: 2 regressions — generic/475".

    The kernel is named by its build (release, build number, commit) so that two builds of
    one release can be told apart. The body counts the tests and names the first failed ones
    with their headlines (the summary's `failures`, regressions first), so the notification
    says why without a click. Urgency is critical for a crash or a regression, normal for
    other failures, low otherwise.
    """
    kernel = run.get("build") or run.get("kernel_version") or "kernel"
    outcome = run.get("outcome") or "unknown"
    reason = str(run.get("reason") or "")
    regressions = list(run.get("regressions") or [])
    fixes = list(run.get("fixes") or [])
    passed, failed = int(run.get("passed") or 0), int(run.get("failed") or 0)
    skipped = int(run.get("skipped") or 0)

    because = f" ({reason})" if reason else ""
    urgency = Urgency.NORMAL
    if outcome == "error":
        summary = f"nixvmd could not test {kernel}{because}"
        regressions, fixes = [], []
    elif outcome == "crashed":
        summary, urgency = f"{kernel}: crashed{because}", Urgency.CRITICAL
    elif regressions:
        summary = f"{kernel}: {_plural(len(regressions), 'regression')} — {_names(regressions)}"
        urgency = Urgency.CRITICAL
    elif outcome == "failed":
        summary = f"{kernel}: {_plural(failed, 'test')} failed"
    elif outcome == "timeout":
        summary = f"{kernel}: timed out{because}"
    elif outcome == "passed":
        summary = f"{kernel}: passed ({_plural(passed, 'test')})"
        if fixes:
            summary = f"{kernel}: passed, {len(fixes)} fixed — {_names(fixes)}"
        urgency = Urgency.LOW
    else:
        summary, urgency = f"{kernel}: {outcome}", Urgency.LOW

    lines = [f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")]
    if regressions:
        lines.append("Regressions: " + ", ".join(regressions))
    if fixes:
        lines.append("Fixed: " + ", ".join(fixes))
    if outcome != "error":
        lines += _failure_lines(run.get("failures") or [], failed)
    if reason and reason not in summary:
        lines.append(reason)
    if run.get("id"):
        lines.append(f"nixvmctl results {run['id']}")
    return Notification(summary=summary, body="\n".join(lines), urgency=urgency)


def describe_first_regression(found: FirstRegression) -> Notification:
    """The notification at a run's first regression, e.g. "first regression: generic/475 on
    6.13-rc2 #7, run continues", with the test's headline in the body; critical."""
    kernel = found.build or "the kernel"
    lines = [failure_line(found.test, found.headline), "The run continues; its end lists every regression."]
    lines.append(f"nixvmctl watch (run {found.run_id})")
    return Notification(
        summary=f"first regression: {found.test} on {kernel}, run continues",
        body="\n".join(lines),
        urgency=Urgency.CRITICAL,
    )


def failure_line(name: str, headline: str) -> str:
    """`name: headline` (cut to a body line), or the name alone when the test said nothing."""
    line = f"{name}: {headline}" if headline else name
    return line if len(line) <= _BODY_LINE else line[: _BODY_LINE - 1] + "…"


def _failure_lines(failures: Sequence[Mapping[str, Any]], failed: int) -> list[str]:
    """`name: headline` for the first few failures, and how many more there are."""
    shown = list(failures)[:_LIST_AT_MOST]
    lines = []
    for failure in shown:
        lines.append(failure_line(str(failure.get("name") or "?"), str(failure.get("headline") or "")))
    more = max(failed, len(failures)) - len(shown)
    if shown and more > 0:
        lines.append(f"and {more} more")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LIST_AT_MOST])
    rest = len(names) - _LIST_AT_MOST
    return shown + (f" and {rest} more" if rest > 0 else "")
