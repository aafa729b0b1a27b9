"""A timeout's reason says where the guest stopped: the console's last line (Listener.where_it_stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.run.listen import LINE_SHOWN, Listener, RunHooks
from nixvmd.suite.command import CommandSuite


def test_the_last_line_with_text_is_quoted_with_its_age_and_frames_are_not_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = CommandSuite("true")
    listener = Listener(suite, RunHooks(), tmp_path)
    assert listener.where_it_stopped() == "the console printed nothing"

    clock = iter([100.0, 130.5])
    monkeypatch.setattr("nixvmd.run.listen.time.monotonic", lambda: next(clock))
    listener.console("[    0.752852] x86: Booting SMP configuration:")
    listener.console("   ")
    listener.console(f"@@NIXVMD@@ {suite.job().nonce} 1 ready 6.1.0 @@")
    assert listener.transcript.ready  # the frame counted, as a frame
    assert listener.where_it_stopped() == (
        'the console\'s last line came 30s before: "[    0.752852] x86: Booting SMP configuration:"'
    )
    assert listener.where_it_stopped(live=False) == (
        'the console\'s last line: "[    0.752852] x86: Booting SMP configuration:"'
    )


def test_a_long_last_line_is_cut(tmp_path: Path) -> None:
    listener = Listener(CommandSuite("true"), RunHooks(), tmp_path)
    listener.console("x" * 1000)
    shown = listener.where_it_stopped(live=False).split('"')[1]
    assert len(shown) == LINE_SHOWN and shown.endswith("…")
