"""`nixvmctl install-service`: the unit starts nixvmd with the config it would use, or says why not."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from nixvmd.config.load import load_config
from nixvmd.ctl import service
from nixvmd.ctl.main import main
from tests.report.test_unit_file import user_home, verify


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own: the unit goes to its ~/.config/systemd/user, no config anywhere yet."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def exec_start(home: Path) -> str:
    unit = (home / ".config/systemd/user/nixvmd.service").read_text()
    match = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert match is not None and unit.count("\nExecStart=") == 1
    return match.group(1)


def test_after_init_the_unit_uses_the_trees_config(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Kbuild").write_text("")
    monkeypatch.chdir(tree)
    assert main(["init"]) == 0
    capsys.readouterr()

    assert main(["install-service"]) == 0

    assert exec_start(home).endswith(f" --config {tree / 'nixvmd.toml'}")
    out, err = capsys.readouterr()
    assert err == ""
    assert f"--config {tree / 'nixvmd.toml'}" in out
    load_config(tree / "nixvmd.toml")


def test_a_config_that_does_not_exist_is_warned_about(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["install-service"]) == 0

    assert exec_start(home).endswith(" --config %E/nixvmd/config.toml")
    err = capsys.readouterr().err
    default = home / ".config/nixvmd/config.toml"
    assert err.startswith(f"nixvmctl: warning: {default} does not exist, so the service would exit")
    assert "nixvmctl init" in err and "--config PATH" in err
    assert len(err.strip().splitlines()) == 1


def test_the_user_config_found_is_written_as_an_absolute_path(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user_config = home / ".config/nixvmd/config.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(f'[kernel]\ntree = "{tmp_path}"\n')
    monkeypatch.chdir(tmp_path)

    assert main(["install-service"]) == 0

    assert exec_start(home).endswith(f" --config {user_config}")
    assert capsys.readouterr().err == ""


def test_config_option_is_made_absolute_and_checked(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nixvmd.toml").write_text("")  # found here, but --config wins

    assert main(["install-service", "--config", "elsewhere/my.toml"]) == 0

    assert exec_start(home).endswith(f" --config {tmp_path / 'elsewhere/my.toml'}")
    assert f"{tmp_path / 'elsewhere/my.toml'} does not exist" in capsys.readouterr().err


def test_dry_run_warns_too_and_writes_nothing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["install-service", "--dry-run", "--config", "missing.toml"]) == 0

    out, err = capsys.readouterr()
    assert f"--config {tmp_path / 'missing.toml'}\n" in out
    assert "does not exist" in err
    assert not (home / ".config/systemd").exists()


def test_odd_config_paths_are_quoted_and_escaped_for_systemd() -> None:
    template = service.unit_template()
    text = service.unit_text(template, Path("/usr/bin/nixvmd"), Path("/home/a b/100%/$HOME/x.toml"))
    assert 'ExecStart=/usr/bin/nixvmd --config "/home/a b/100%%/$$HOME/x.toml"\n' in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_written_unit_verifies(tmp_path: Path) -> None:
    fake_home = user_home(tmp_path)
    config = tmp_path / "my tree" / "nixvmd.toml"
    text = service.unit_text(service.unit_template(), fake_home / ".local/bin/nixvmd", config)
    unit = fake_home / ".config/systemd/user/nixvmd.service"
    unit.write_text(text)

    result = verify(fake_home, tmp_path, str(unit))

    assert (result.returncode, result.stderr) == (0, "")
