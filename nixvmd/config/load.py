"""Reading nixvmd.toml: every problem reported at once, with its line and key path."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nixvmd.config.declaration import Base, Derived, Row, Setting, Table
from nixvmd.config.schema import Backend, Config, Engine, SuiteKind
from nixvmd.config.settings import SECTIONS
from nixvmd.errors import ConfigError, HostDeviceError
from nixvmd.image.host_disks import check_host_disk


def default_kernel_cache() -> Path:
    """Where the setup step keeps the sample kernel (scripts/fetch-debian-kernel.sh)."""
    return Path(os.environ.get("NIXVMD_KERNEL_CACHE", "/var/cache/nixvmd/kernels"))


def builtin_defaults_toml() -> str:
    """The config used when there is no file: the sample kernel, direct backend, smoke suite."""
    sample = default_kernel_cache() / "debian-cloud"
    return f"""
[kernel]
tree = "{sample}"
image = "vmlinuz"
modules_dir = "modules"

[vm]
memory = "512M"
disks = [{{ name = "scratch", size = "64M" }}]

[suite]
kind = "command"
command = "nixvmd-smoke"
timeout = "5m"
"""


def find_config_file(cwd: Path | None = None) -> Path | None:
    """nixvmd.toml in the current directory, else $XDG_CONFIG_HOME/nixvmd/config.toml."""
    local = (cwd or Path.cwd()) / "nixvmd.toml"
    if local.is_file():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = xdg / "nixvmd" / "config.toml"
    return user if user.is_file() else None


def load_config(path: Path | None, *, on_disk: bool = False) -> Config:
    """Read and validate `path` (None: the built-in defaults); raises ConfigError listing all problems.

    `on_disk` also refuses a kernel tree that does not exist (`nixvmctl config check`); the
    daemon itself starts without one and waits for it to appear.
    """
    if path is None:
        return parse_config(
            builtin_defaults_toml(), name="<built-in defaults>", base=Path.cwd(), on_disk=on_disk
        )
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    return parse_config(text, name=str(path), base=path.resolve().parent, source=path, on_disk=on_disk)


def parse_config(
    text: str, *, name: str, base: Path, source: Path | None = None, on_disk: bool = False
) -> Config:
    """Validate TOML `text`; relative paths are taken from `base` (`on_disk`: see load_config)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"{name}:{line.group(1)}" if line else name
        raise ConfigError([f"{where}: not valid TOML: {exc}; fix the syntax and save again"]) from None
    reader = _Reader(_key_lines(text), name, base, on_disk)
    config = reader.config(data, source)
    if reader.problems:
        raise ConfigError(reader.problems)
    return add_suite_disks(config)


def add_suite_disks(config: Config) -> Config:
    """The config with the disks its suite makes for itself added to vm.disks (fstests' three).

    This is suite knowledge outside suite/ (issue 9); it stays in this one place until a suite
    kind declares its own disks.
    """
    if config.suite.kind is not SuiteKind.XFSTESTS:
        return config
    vm = dataclasses.replace(config.vm, disks=(*config.vm.disks, *config.xfstests.disks()))
    return dataclasses.replace(config, vm=vm)


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted key paths to the line that sets them (approximate, for messages only)."""
    lines: dict[str, int] = {}
    table = ""
    array_index: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[["):
            table = line.strip("[] ")
            array_index[table] = array_index.get(table, -1) + 1
            table = f"{table}.{array_index[table]}"
            lines.setdefault(table, number)
        elif line.startswith("["):
            table = line.split("]")[0].strip("[ ")
            lines.setdefault(table, number)
        elif (m := re.match(r'^([A-Za-z0-9_.\-"]+)\s*=', line)) is not None:
            key = m.group(1).replace('"', "")
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


_UNUSABLE: Any = object()  # a value that did not convert: its problem is reported, the default stands


class _Reader:
    """Reads tables by their declarations (settings.py), converting values and collecting every problem."""

    def __init__(self, lines: dict[str, int], name: str, base: Path, on_disk: bool) -> None:
        self.lines = lines
        self.name = name
        self.base = base
        self.on_disk = on_disk
        self.problems: list[str] = []
        self.given: set[str] = set()  # the section keys the file sets, as "image.nix_file"
        self.read: dict[str, Any] = {}  # the section keys read so far, for paths relative to them

    def problem(self, key: str, message: str) -> None:
        # vm.disks[1].size is vm.disks.1.size for [[vm.disks]] tables, else on the `disks =` line.
        key = re.sub(r"\[(\d+)\]", r".\1", key)
        line = self.lines.get(key)
        while line is None and "." in key:
            key = key.rsplit(".", 1)[0]
            line = self.lines.get(key)
        where = f"{self.name}:{line}" if line else self.name
        self.problems.append(f"{where}: {message}")

    def config(self, data: dict[str, Any], source: Path | None) -> Config:
        known = {table.path: table for table in SECTIONS}
        for key in data:
            if key not in known:
                sections = ", ".join(f"[{s}]" for s in known)
                self.problem(key, f"{key}: unknown section or key (known sections: {sections})")
        sections_read = {}
        for table in SECTIONS:
            raw = data.get(table.path, {})
            if not isinstance(raw, dict):
                kind = type(raw).__name__
                self.problem(table.path, f"{table.path}: expected a table [{table.path}], got {kind}")
                raw = {}
            sections_read[table.path] = self.table(table, raw, table.path, None)
        config = Config(**sections_read, source=source)
        for check in CHECKS:
            check(config, self)
        return config

    def table(self, table: Table, raw: Mapping[str, Any], where: str, index: int | None) -> Any:
        """One [section] (index None) or one of the [[rows]] at `where`, as its dataclass."""
        known = ", ".join(table.names)
        for key in raw:
            if key not in table.names:
                listed = f"known: {known}" if index is not None else f"known keys in [{where}]: {known}"
                self.problem(f"{where}.{key}", f"{where}.{key}: unknown key ({listed})")
        values: dict[str, Any] = {}
        for setting in table.settings:
            path = f"{where}.{setting.name}"
            row = Row(index or 0, values)
            value: Any = _UNUSABLE
            if setting.name in raw:
                if index is None:
                    self.given.add(path)
                value = self.value(setting, raw[setting.name], path)
            if value is _UNUSABLE:
                value = self.default(setting, path, row)
            values[setting.name] = value
            if index is None:
                self.read[path] = value
        return table.build(**values)

    def value(self, setting: Setting, raw: Any, path: str) -> Any:
        """The converted value at `path`; _UNUSABLE after reporting why it is."""
        if isinstance(setting.convert, Table):
            return self.rows(setting.convert, raw, path)
        try:
            value = setting.convert(raw)
        except (ValueError, TypeError) as exc:
            self.problem(path, f"{path}: {exc}")
            return _UNUSABLE
        return value if setting.base is None else _under(self.base_path(setting.base), value)

    def default(self, setting: Setting, path: str, row: Row) -> Any:
        if isinstance(setting.default, Derived):
            return setting.default.compute(row)
        value = self.value(setting, setting.default, path)
        assert value is not _UNUSABLE, f"the declared default of {path} does not read"
        return value

    def base_path(self, base: Base) -> Path:
        if base is Base.CONFIG_DIR:
            return self.base
        tree: Path = self.read["kernel.tree"]
        return tree

    def rows(self, table: Table, raw: Any, where: str) -> Any:
        """The [[rows]] at `where` as a tuple; _UNUSABLE (the default stands) when none could be read."""
        amount = f"one or more [[{table.path}]] tables" if table.required else "a list of tables"
        if not isinstance(raw, list) or (table.required and not raw):
            self.problem(where, f"{where}: expected {amount} like {table.example}")
            return _UNUSABLE
        rows = []
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                self.problem(f"{where}[{index}]", f"{where}[{index}]: expected a table like {table.example}")
                continue
            rows.append(self.table(table, item, f"{where}[{index}]", index))
        self.unique(table, rows, where)
        return tuple(rows) if rows or not raw else _UNUSABLE

    def unique(self, table: Table, rows: list[Any], where: str) -> None:
        for key in table.unique:
            seen = [getattr(row, key) for row in rows]
            for dup in sorted({v for v in seen if seen.count(v) > 1}):
                times = "twice" if seen.count(dup) == 2 else f"{seen.count(dup)} times"
                self.problem(
                    where, f"{where}: the {key} {dup!r} is used {times}; give each {table.noun} its own {key}"
                )
            # A row that repeats an earlier one's key was reported for it; its later keys need not be.
            rows = list({getattr(row, key): row for row in reversed(rows)}.values())


def _under(base: Path, value: Any) -> Any:
    """A path value (a path, paths, or None) with relative paths taken from `base`."""
    if isinstance(value, tuple):
        return tuple(_under(base, v) for v in value)
    if isinstance(value, Path):
        return value if value.is_absolute() else base / value
    return value


def _tree_exists(config: Config, reader: _Reader) -> None:
    # Only `nixvmctl config check`: the daemon starts without a tree and waits for it.
    tree = config.kernel.tree
    if reader.on_disk and not tree.is_dir():
        what = "is not a directory;" if tree.exists() else "does not exist; create it or"
        reader.problem("kernel.tree", f"kernel.tree: {tree} {what} point kernel.tree at your kernel tree")


def _one_nix_source(config: Config, reader: _Reader) -> None:
    if config.image.backend is Backend.NIX and "image.nix_file" in reader.given and config.image.flake:
        reader.problem("image.flake", "image.flake: give either image.nix_file or image.flake, not both")


def _socket_fits(config: Config, reader: _Reader) -> None:
    socket = config.daemon.socket
    if len(os.fsencode(socket)) > 107:
        reader.problem(
            "daemon.socket",
            f"daemon.socket: {socket} is longer than the 107 bytes a Unix socket path may have;"
            " choose a shorter path (e.g. under /tmp or $XDG_RUNTIME_DIR)",
        )


def _run_sections_exist(config: Config, reader: _Reader) -> None:
    names = [s.name for s in config.xfstests.sections]
    for name in config.xfstests.run_sections:
        if name not in names:
            reader.problem(
                "xfstests.run_sections",
                f"xfstests.run_sections: no section named {name!r} (sections: {', '.join(names)})",
            )


def _dev_tree_is_fstests(config: Config, reader: _Reader) -> None:
    tree = config.xfstests.dev_tree
    if tree is None:
        if config.xfstests.build:
            reader.problem("xfstests.build", "xfstests.build: it runs in xfstests.dev_tree; set dev_tree too")
        return
    if not tree.is_dir():
        what = "is not a directory" if tree.exists() else "does not exist"
        message = f"xfstests.dev_tree: {tree} {what}; point it at your fstests tree"
        reader.problem("xfstests.dev_tree", message)
    elif not (tree / "check").is_file():
        reader.problem(
            "xfstests.dev_tree",
            f"xfstests.dev_tree: {tree} has no check script; point it at the top of your fstests tree",
        )


def _nix_engine_guest(config: Config, reader: _Reader) -> None:
    # A shard's derivation boots the direct backend's initramfs; a NixOS runner as its guest
    # is not built yet, and silently testing another guest than the one configured would mislead.
    if config.distribute.engine is Engine.NIX and config.image.backend is Backend.NIX:
        reader.problem(
            "distribute.engine",
            'distribute.engine: "nix" runs shards in the direct backend\'s guest, not a NixOS image yet;'
            ' set image.backend = "direct" (with image.share_host_root for fstests) or engine = "local"',
        )


def _path_disks(config: Config, reader: _Reader) -> None:
    # A path disk is the user's: nixvmd neither sizes it nor lets two VMs write it at once.
    for index, disk in enumerate(config.vm.disks):
        key = f"vm.disks[{index}]"
        if disk.path is None:
            if disk.format is not None:
                reader.problem(key, f"{key}: format is for a disk with a path; nixvmd's own images are raw")
            continue
        if disk.size:
            reader.problem(key, f"{key}: give a disk either a size (a fresh image) or a path, not both")
        if config.distribute.engine is Engine.NIX:
            reader.problem(
                key, f'{key}: distribute.engine = "nix" runs shards on builders that cannot reach {disk.path}'
            )
        elif not disk.readonly and config.suite.shards != 1:
            reader.problem(
                key,
                f"{key}: {disk.path} is writable and suite.shards = {config.suite.shards} may run several "
                "VMs at once that would all write it; set readonly = true or suite.shards = 1",
            )
        if reader.on_disk:
            try:
                check_host_disk(disk)
            except HostDeviceError as exc:
                reader.problem(key, str(exc))


def _usb_one_vm(config: Config, reader: _Reader) -> None:
    if config.vm.usb and (config.suite.shards != 1 or config.distribute.engine is Engine.NIX):
        reader.problem(
            "vm.usb",
            "vm.usb: a USB device can be passed to one VM only; set suite.shards = 1 "
            '(and distribute.engine = "local") to pass it through',
        )


CHECKS: tuple[Callable[[Config, _Reader], None], ...] = (
    _tree_exists,
    _nix_engine_guest,
    _one_nix_source,
    _socket_fits,
    _run_sections_exist,
    _path_disks,
    _usb_one_vm,
    _dev_tree_is_fstests,
)
"""What no single key can say: keys that must agree, a tree that must be there."""
