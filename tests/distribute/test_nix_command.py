"""distribute/nix_command.py with Debian's Nix: an answer, or which step failed in Nix's words."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nixvmd.distribute.nix_command import nix_stdout
from nixvmd.distribute.store import add_bytes, is_valid
from nixvmd.errors import DistributeError


def test_an_evaluation_error_is_one_sentence_with_nixs_headline(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nix"
    bad.write_text("let x = 1; in y\n")
    with pytest.raises(DistributeError) as caught:
        asyncio.run(nix_stdout(["nix-instantiate", str(bad)], "instantiating shard 2"))
    assert str(caught.value) == "instantiating shard 2: nix-instantiate said undefined variable 'y'"


def test_a_command_that_says_nothing_names_its_exit_status() -> None:
    with pytest.raises(DistributeError) as caught:
        asyncio.run(nix_stdout(["/bin/sh", "-c", "exit 3"], "checking store paths"))
    assert str(caught.value) == "checking store paths: /bin/sh said nothing and exited with status 3"


def test_a_missing_or_unrunnable_program_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DistributeError, match=r"^nix-stroe is not installed or not on PATH: install Nix"):
        asyncio.run(nix_stdout(["nix-stroe", "--version"], "reading"))
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)  # no execute bit: not even root may run it
    with pytest.raises(DistributeError) as caught:
        asyncio.run(nix_stdout([str(script)], "reading the outputs"))
    assert str(caught.value) == f"reading the outputs: cannot run {script} (Permission denied)"


def test_added_bytes_are_a_valid_store_path_and_a_made_up_one_is_not() -> None:
    path = asyncio.run(add_bytes(b"nixvmd test\n", "nixvmd-nix-command-test"))
    assert path.startswith("/nix/store/") and path.endswith("-nixvmd-nix-command-test") and "\n" not in path
    assert asyncio.run(is_valid(path))
    assert not asyncio.run(is_valid("/nix/store/00000000000000000000000000000000-nixvmd-never-added"))
