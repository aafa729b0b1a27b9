"""`nixvmctl install-service`: the systemd user unit, with ExecStart at this installation."""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import nixvmd
from nixvmd.errors import NixvmdError

UNIT_NAME = "nixvmd.service"
NEXT_STEP = "systemctl --user daemon-reload && systemctl --user enable --now nixvmd"


def unit_template() -> str:
    """contrib/systemd/nixvmd.service: as package data when installed with it, else from the
    source checkout an editable install runs from."""
    packaged = resources.files(nixvmd).joinpath("systemd", UNIT_NAME)
    if packaged.is_file():
        return packaged.read_text()
    checkout = Path(nixvmd.__file__).resolve().parents[1] / "contrib" / "systemd" / UNIT_NAME
    if checkout.is_file():
        return checkout.read_text()
    raise NixvmdError(f"this nixvmd installation has no {UNIT_NAME}; reinstall it from the sources")


def installed_nixvmd() -> Path:
    """The `nixvmd` next to the Python running this (its venv or prefix), else the one on PATH."""
    beside = Path(sys.executable).parent / "nixvmd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nixvmd")
    if found is None:
        raise NixvmdError("cannot find the nixvmd command; install nixvmd (pip install .) first")
    return Path(found).absolute()


def unit_text(template: str, nixvmd_path: Path, config: Path | None = None) -> str:
    """The unit with ExecStart's program replaced by `nixvmd_path`, and its --config by
    `config` when given (both quoted and escaped for systemd)."""
    line = re.compile(r"^(ExecStart=)\S+( --config )(\S+)$", re.MULTILINE)

    def exec_start(m: re.Match[str]) -> str:
        argument = m.group(3) if config is None else _unit_word(str(config))
        return f"{m.group(1)}{_unit_word(str(nixvmd_path))}{m.group(2)}{argument}"

    text, count = line.subn(exec_start, template)
    if count != 1:
        raise NixvmdError(f"{UNIT_NAME} template has {count} 'ExecStart=... --config' lines, expected one")
    return text


def _unit_word(word: str) -> str:
    """`word` as one argument of a unit's command line: systemd expands % and $ there."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.search(r'[\s"\\\']', word):
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def unit_config(explicit: Path | None, found: Path | None) -> Path | None:
    """The config the unit should start nixvmd with, as an absolute path: the one given
    (--config), else the one nixvmd would use from here (`found`); None when neither, and the
    template's own default stays."""
    chosen = explicit or found
    return None if chosen is None else Path(os.path.abspath(chosen))


def missing_config_warning(config: Path | None) -> str | None:
    """One sentence for stderr when the unit's config file does not exist (None when it does)."""
    where = config or template_default()
    if where.is_file():
        return None
    return (
        f"{where} does not exist, so the service would exit at start and stay down: "
        "run `nixvmctl init` in your kernel tree and then `nixvmctl install-service` there, "
        "or pass --config PATH"
    )


def template_default() -> Path:
    """What the template's %E/nixvmd/config.toml means for this user."""
    return _config_home() / "nixvmd" / "config.toml"


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def user_unit_path() -> Path:
    """~/.config/systemd/user/nixvmd.service (honouring $XDG_CONFIG_HOME)."""
    return _config_home() / "systemd" / "user" / UNIT_NAME


def install(target: Path, text: str, *, force: bool) -> None:
    """Write the unit; NixvmdError if a different one is there and `force` is not given."""
    if target.exists() and not force and target.read_text() != text:
        raise NixvmdError(f"{target} exists and differs; use --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
