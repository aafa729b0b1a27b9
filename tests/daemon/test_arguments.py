"""A request's yes/no argument: absent or null is no, a non-boolean is one sentence back."""

from __future__ import annotations

import pytest

from nixvmd.daemon import arguments
from nixvmd.errors import ControlError


def test_a_flag_is_true_false_or_absent_and_nothing_else() -> None:
    assert arguments.flag({"cmd": "run", "fresh": True}, "fresh") is True
    assert arguments.flag({"cmd": "run", "fresh": None}, "fresh") is False
    assert arguments.flag({"cmd": "run"}, "fresh") is False
    with pytest.raises(ControlError, match="run: fresh must be true or false, not 'yes'"):
        arguments.flag({"cmd": "run", "fresh": "yes"}, "fresh")
