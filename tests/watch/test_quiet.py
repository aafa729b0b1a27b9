"""A burst of changes settles after a quiet period, or after the longest wait: the clock is driven."""

from __future__ import annotations

from nixvmd.watch.quiet import QuietPeriod


def test_nothing_is_due_without_a_change() -> None:
    settle = QuietPeriod(quiet=1.0, most=30.0)

    assert not settle.pending
    assert not settle.due(100.0)


def test_a_single_change_is_due_after_the_quiet_period() -> None:
    settle = QuietPeriod(quiet=1.0, most=30.0)

    assert settle.note(10.0) == 11.0
    assert not settle.due(10.9)
    assert settle.due(11.0)
    assert not settle.pending


def test_each_change_resets_the_quiet_period_so_a_burst_is_one_decision() -> None:
    settle = QuietPeriod(quiet=1.0, most=30.0)
    decisions = 0
    for step in range(300):  # a make: 300 files over 2 s
        now = 10.0 + step * 2.0 / 300
        decisions += settle.due(now)
        settle.note(now)

    assert decisions == 0
    assert not settle.due(12.5)
    assert settle.due(13.0)


def test_a_stream_that_never_goes_quiet_is_decided_after_the_longest_wait() -> None:
    settle = QuietPeriod(quiet=1.0, most=30.0)
    due_at = []
    for step in range(1000):  # an event every 0.1 s for 100 s
        now = step / 10
        if settle.due(now):
            due_at.append(now)
        settle.note(now)

    assert due_at == [30.0, 60.0, 90.0]


def test_a_change_after_the_decision_begins_a_new_burst() -> None:
    settle = QuietPeriod(quiet=1.0, most=30.0)
    settle.note(0.0)
    assert settle.due(1.0)

    assert settle.note(5.0) == 6.0
    assert settle.due(6.0)
