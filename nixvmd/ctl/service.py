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


def unit_text(template: str, nixvmd_path: Path) -> str:
    """The unit with ExecStart's program replaced by `nixvmd_path` (quoted and %-escaped)."""
    program = str(nixvmd_path).replace("%", "%%")
    if re.search(r'[\s"\\]', program):
        program = '"' + program.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text, count = re.subn(r"^(ExecStart=)\S+", lambda m: m.group(1) + program, template, flags=re.MULTILINE)
    if count != 1:
        raise NixvmdError(f"{UNIT_NAME} template has {count} ExecStart= lines, expected one")
    return text


def user_unit_path() -> Path:
    """~/.config/systemd/user/nixvmd.service (honouring $XDG_CONFIG_HOME)."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / UNIT_NAME


def install(target: Path, text: str, *, force: bool) -> None:
    """Write the unit; NixvmdError if a different one is there and `force` is not given."""
    if target.exists() and not force and target.read_text() != text:
        raise NixvmdError(f"{target} exists and differs; use --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
