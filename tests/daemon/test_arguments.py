"""A request's yes/no argument: absent or null is no, a non-boolean is one sentence back."""

from __future__ import annotations

import pytest

from nixvmd.daemon import arguments
from nixvmd.errors import ControlError
from nixvmd.vm.gdbstub import GdbMode


def test_a_flag_is_true_false_or_absent_and_nothing_else() -> None:
    assert arguments.flag({"cmd": "run", "fresh": True}, "fresh") is True
    assert arguments.flag({"cmd": "run", "fresh": None}, "fresh") is False
    assert arguments.flag({"cmd": "run"}, "fresh") is False
    with pytest.raises(ControlError, match="run: fresh must be true or false, not 'yes'"):
        arguments.flag({"cmd": "run", "fresh": "yes"}, "fresh")


def test_gdb_is_wait_nowait_or_absent_and_nothing_else() -> None:
    assert arguments.gdb_mode({"cmd": "run", "gdb": "wait"}, "gdb") is GdbMode.WAIT
    assert arguments.gdb_mode({"cmd": "run", "gdb": "nowait"}, "gdb") is GdbMode.NOWAIT
    assert arguments.gdb_mode({"cmd": "run"}, "gdb") is None
    with pytest.raises(ControlError, match="run: gdb must be one of wait, nowait, not 'yes'"):
        arguments.gdb_mode({"cmd": "run", "gdb": "yes"}, "gdb")
    with pytest.raises(ControlError, match="run: gdb must be a string, not True"):
        arguments.gdb_mode({"cmd": "run", "gdb": True}, "gdb")
