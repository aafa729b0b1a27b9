"""Test names one character off a known one: a console slip, not a new test.

A serial console that loses or repeats bytes (QEMU's 8250 on a socket whose reader lags:
docs/console.md) turns `kunit-resource-test` into `kunit-resurce-test`. Taken at its
word, that is a new test plus a vanished one: a phantom regression and a phantom fix.
nixvmd's console no longer slips, but names parsed from a console are still checked:

- `console_slip(seen, known)` says whether `seen` is `known` with one character doubled,
  one dropped, or one overwritten by a second copy of the character before it (the three
  ways a byte stream garbles text), and which.
- `reconcile_names(tests, previous)` keeps the previous run's name for a test whose name
  is a slip of a name that the previous run had and this run lacks, and lists it as a
  suspect line. A spelling that a previous run already reported as suspect is taken as
  real: a test renamed on purpose (a typo fixed) gets its new name from its second run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from nixvmd.results.record import SuspectName, TestResult


def console_slip(seen: str, known: str) -> str | None:
    """How `seen` garbles `known` ("a doubled 'o'", ...), or None when it is not one slip."""
    if seen == known:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(seen, known, strict=False)) if a != b), min(len(seen), len(known))
    )
    if len(seen) == len(known) + 1 and seen[:at] + seen[at + 1 :] == known:
        extra = seen[at]
        neighbours = seen[at - 1 : at] + seen[at + 1 : at + 2]
        return f"a doubled {extra!r}" if extra in neighbours else None
    if len(seen) + 1 == len(known) and known[:at] + known[at + 1 :] == seen:
        return f"a dropped {known[at]!r}"
    if len(seen) == len(known) and at > 0 and seen[at + 1 :] == known[at + 1 :] and seen[at] == seen[at - 1]:
        return f"{known[at]!r} overwritten by a second {seen[at]!r}"
    return None


def reconcile_names(
    tests: Sequence[TestResult],
    previous: Sequence[TestResult] | None,
    reported_before: Collection[str] = (),
) -> tuple[list[TestResult], list[SuspectName]]:
    """`tests` with console slips of the previous run's names put right, and what was put right.

    A test is renamed only when its name is new, exactly one name of the previous run that
    this run lacks is a slip away from it, and the spelling is not in `reported_before`
    (the `seen` names of the previous run's suspect lines: seen twice, it is real).
    """
    if not previous:
        return list(tests), []
    before = {t.name for t in previous}
    vanished = before - {t.name for t in tests}
    kept: list[TestResult] = []
    suspects: list[SuspectName] = []
    for test in tests:
        if test.name in before or test.name in reported_before or not vanished:
            kept.append(test)
            continue
        matches = [(name, slip) for name in sorted(vanished) if (slip := console_slip(test.name, name))]
        if len(matches) != 1:
            kept.append(test)
            continue
        known, slip = matches[0]
        vanished.discard(known)
        note = f"{slip}; kept the previous run's name {known!r}"
        message = f"the console named this test {test.name!r} ({note})"
        kept.append(
            dataclasses.replace(test, name=known, message="\n".join(m for m in (test.message, message) if m))
        )
        suspects.append(SuspectName(test.name, known, note))
    return kept, suspects
