"""Reading nixvmd.toml: every problem reported at once, with its line and key path."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from nixvmd.config import values as check
from nixvmd.config.extensions import name_of
from nixvmd.config.schema import (
    Accel,
    Backend,
    Config,
    DaemonConfig,
    DiskConfig,
    ImageConfig,
    KernelConfig,
    NotifyConfig,
    SuiteConfig,
    SuiteKind,
    VMConfig,
    XfstestsConfig,
    XfstestsSection,
)
from nixvmd.config.units import parse_size
from nixvmd.errors import ConfigError

T = TypeVar("T")

SECTIONS: dict[str, tuple[str, ...]] = {
    "kernel": ("tree", "image", "cmdline", "modules", "modules_dir"),
    "image": ("backend", "nix_file", "flake", "nix_args", "inputs", "busybox", "share_host_root"),
    "vm": ("accel", "memory", "cpus", "qemu", "qemu_options", "boot_timeout", "disks"),
    "suite": ("kind", "command", "timeout", "baseline", "rerun_failed"),
    "notify": ("on", "command"),
    "daemon": ("state_dir", "socket", "settle"),
    "xfstests": (
        "dir",
        "args",
        "sections",
        "run_sections",
        "test_size",
        "scratch_size",
        "results_size",
        "test_dir",
        "scratch_mnt",
        "hang_multiple",
        "hang_floor",
        "hang_ceiling",
    ),
}
XFSTESTS_SECTION_KEYS = ("name", "fstyp", "mkfs_options", "mount_options", "extra")
DISK_KEYS = ("name", "size", "serial")
_NO_STRINGS: tuple[str, ...] = ()
_NO_PATHS: tuple[Path, ...] = ()


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
    reader = _Reader(data, _key_lines(text), name, base, on_disk)
    config = reader.config(source)
    if reader.problems:
        raise ConfigError(reader.problems)
    assert config is not None
    return config


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


class _Reader:
    """Walks the parsed TOML, converting values and collecting every problem."""

    def __init__(
        self, data: dict[str, Any], lines: dict[str, int], name: str, base: Path, on_disk: bool
    ) -> None:
        self.data = data
        self.lines = lines
        self.name = name
        self.base = base
        self.on_disk = on_disk
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        # vm.disks[1].size is vm.disks.1.size for [[vm.disks]] tables, else on the `disks =` line.
        key = re.sub(r"\[(\d+)\]", r".\1", key)
        line = self.lines.get(key)
        while line is None and "." in key:
            key = key.rsplit(".", 1)[0]
            line = self.lines.get(key)
        where = f"{self.name}:{line}" if line else self.name
        self.problems.append(f"{where}: {message}")

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            self.problem(name, f"{name}: expected a table [{name}], got {type(value).__name__}")
            return {}
        for key in value:
            if key not in SECTIONS[name]:
                known = ", ".join(SECTIONS[name])
                self.problem(f"{name}.{key}", f"{name}.{key}: unknown key (known keys in [{name}]: {known})")
        return value

    def get(self, table: Mapping[str, Any], path: str, convert: Callable[[Any], T], default: T) -> T:
        key = path.rsplit(".", 1)[-1]
        if key not in table:
            return default
        try:
            return convert(table[key])
        except (ValueError, TypeError) as exc:
            self.problem(path, f"{path}: {exc}")
            return default

    def path(self, value: Any) -> Path:
        p = check.expanded_path(value)
        return p if p.is_absolute() else self.base / p

    def config(self, source: Path | None) -> Config | None:
        for key in self.data:
            if key not in SECTIONS:
                known = ", ".join(f"[{s}]" for s in SECTIONS)
                self.problem(key, f"{key}: unknown section or key (known sections: {known})")
        kernel = self.kernel(self.section("kernel"))
        image = self.image(self.section("image"))
        vm = self.vm(self.section("vm"))
        suite = self.suite(self.section("suite"))
        notify = self.notify(self.section("notify"))
        daemon = self.daemon(self.section("daemon"))
        xfstests = self.xfstests(self.section("xfstests"))
        if suite.kind is SuiteKind.XFSTESTS:
            vm = dataclasses.replace(vm, disks=(*vm.disks, *xfstests.disks()))
        if self.problems:
            return None
        return Config(kernel, image, vm, suite, notify, daemon, xfstests=xfstests, source=source)

    def optional_path(self, value: Any) -> Path | None:
        """A path key where "" means "not set"."""
        return None if check.string(value) == "" else self.path(value)

    def kernel(self, t: dict[str, Any]) -> KernelConfig:
        tree = self.get(t, "kernel.tree", self.path, self.base)
        if self.on_disk and not tree.is_dir():
            what = "is not a directory;" if tree.exists() else "does not exist; create it or"
            self.problem("kernel.tree", f"kernel.tree: {tree} {what} point kernel.tree at your kernel tree")
        image = self.get(t, "kernel.image", check.expanded_path, Path("arch/x86/boot/bzImage"))
        modules_dir = self.get(t, "kernel.modules_dir", check.optional_path, None)
        return KernelConfig(
            tree=tree,
            image=image if image.is_absolute() else tree / image,
            cmdline=self.get(t, "kernel.cmdline", check.string, ""),
            modules=tuple(
                check.under(tree, p) for p in self.get(t, "kernel.modules", check.paths, _NO_PATHS)
            ),
            modules_dir=None if modules_dir is None else check.under(tree, modules_dir),
        )

    def image(self, t: dict[str, Any]) -> ImageConfig:
        backend: Backend | str = Backend.DIRECT
        backend = self.get(t, "image.backend", name_of(Backend, "image.backend"), backend)
        nix_file = self.get(t, "image.nix_file", self.path, self.base / "vm.nix")
        flake = self.get(t, "image.flake", check.string, "")
        if backend is Backend.NIX and "nix_file" in t and flake:
            self.problem("image.flake", "image.flake: give either image.nix_file or image.flake, not both")
        return ImageConfig(
            backend=backend,
            nix_file=nix_file,
            flake=flake,
            nix_args=self.get(t, "image.nix_args", check.strings, ()),
            inputs=tuple(self.path(p) for p in self.get(t, "image.inputs", check.strings, _NO_STRINGS)),
            busybox=self.get(t, "image.busybox", self.path, Path("/bin/busybox")),
            share_host_root=self.get(t, "image.share_host_root", check.boolean, False),
        )

    def vm(self, t: dict[str, Any]) -> VMConfig:
        disks: list[DiskConfig] = []
        raw_disks = t.get("disks", [])
        if not isinstance(raw_disks, list):
            self.problem("vm.disks", "vm.disks: expected a list of tables like {name = 'test', size = '1G'}")
            raw_disks = []
        for index, disk in enumerate(raw_disks):
            where = f"vm.disks[{index}]"
            if not isinstance(disk, dict):
                self.problem(where, f"{where}: expected a table like {{name = 'test', size = '1G'}}")
                continue
            for key in disk:
                if key not in DISK_KEYS:
                    self.problem(
                        f"{where}.{key}", f"{where}.{key}: unknown key (known: {', '.join(DISK_KEYS)})"
                    )
            disk_name = self.get(disk, f"{where}.name", check.identifier, f"disk{index}")
            disks.append(
                DiskConfig(
                    name=disk_name,
                    size=self.get(disk, f"{where}.size", parse_size, 1 << 30),
                    serial=self.get(disk, f"{where}.serial", check.serial, f"nixvmd-{disk_name}"[:20]),
                )
            )
        names = [d.name for d in disks]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.problem("vm.disks", f"vm.disks: the name {dup!r} is used twice; disk names must differ")
        # The guest finds its disks by serial, so two disks with one serial cannot be told apart.
        serials = [d.serial for d in {d.name: d for d in reversed(disks)}.values()]
        for dup in sorted({s for s in serials if serials.count(s) > 1}):
            self.problem(
                "vm.disks",
                f"vm.disks: the serial {dup!r} is used by more than one disk; give each disk its own serial",
            )
        return VMConfig(
            accel=self.get(t, "vm.accel", check.enum_of(Accel), Accel.AUTO),
            memory=self.get(t, "vm.memory", check.memory, 2 << 30),
            cpus=self.get(t, "vm.cpus", check.positive_int, 2),
            qemu=self.get(t, "vm.qemu", check.string, "qemu-system-x86_64"),
            qemu_options=self.get(t, "vm.qemu_options", check.strings, ()),
            boot_timeout=self.get(t, "vm.boot_timeout", check.duration, 120.0),
            disks=tuple(disks),
        )

    def suite(self, t: dict[str, Any]) -> SuiteConfig:
        return SuiteConfig(
            kind=self.get(t, "suite.kind", name_of(SuiteKind, "suite.kind"), _any_kind(SuiteKind.COMMAND)),
            command=self.get(t, "suite.command", check.string, "uname -r"),
            timeout=self.get(t, "suite.timeout", check.duration, 1800.0),
            baseline=self.get(t, "suite.baseline", self.optional_path, None),
            rerun_failed=self.get(t, "suite.rerun_failed", check.count, 0),
        )

    def xfstests(self, t: dict[str, Any]) -> XfstestsConfig:
        d = XfstestsConfig()
        sections = self.xfstests_sections(t.get("sections", [{}]))
        names = [s.name for s in sections]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.problem("xfstests.sections", f"xfstests.sections: the name {dup!r} is used twice")
        run_sections = self.get(t, "xfstests.run_sections", check.strings, _NO_STRINGS)
        for name in run_sections:
            if name not in names:
                self.problem(
                    "xfstests.run_sections",
                    f"xfstests.run_sections: no section named {name!r} (sections: {', '.join(names)})",
                )
        return XfstestsConfig(
            dir=self.get(t, "xfstests.dir", check.guest_path, d.dir),
            args=self.get(t, "xfstests.args", check.strings, d.args),
            sections=sections,
            run_sections=run_sections,
            test_size=self.get(t, "xfstests.test_size", check.disk_size, d.test_size),
            scratch_size=self.get(t, "xfstests.scratch_size", check.disk_size, d.scratch_size),
            results_size=self.get(t, "xfstests.results_size", check.disk_size, d.results_size),
            test_dir=str(self.get(t, "xfstests.test_dir", check.guest_path, Path(d.test_dir))),
            scratch_mnt=str(self.get(t, "xfstests.scratch_mnt", check.guest_path, Path(d.scratch_mnt))),
            hang_multiple=self.get(t, "xfstests.hang_multiple", check.multiple, d.hang_multiple),
            hang_floor=self.get(t, "xfstests.hang_floor", check.duration, d.hang_floor),
            hang_ceiling=self.get(t, "xfstests.hang_ceiling", check.duration, d.hang_ceiling),
        )

    def xfstests_sections(self, raw: Any) -> tuple[XfstestsSection, ...]:
        example = "[[xfstests.sections]] tables with name, fstyp, mkfs_options, mount_options, extra"
        if not isinstance(raw, list) or not raw:
            self.problem("xfstests.sections", f"xfstests.sections: expected one or more {example}")
            return XfstestsConfig.sections
        sections = []
        for index, table in enumerate(raw):
            where = f"xfstests.sections[{index}]"
            if not isinstance(table, dict):
                self.problem(where, f"{where}: expected a table ({example})")
                continue
            for key in table:
                if key not in XFSTESTS_SECTION_KEYS:
                    known = ", ".join(XFSTESTS_SECTION_KEYS)
                    self.problem(f"{where}.{key}", f"{where}.{key}: unknown key (known: {known})")
            d = XfstestsSection()
            sections.append(
                XfstestsSection(
                    name=self.get(
                        table, f"{where}.name", check.identifier, d.name if index == 0 else f"s{index}"
                    ),
                    fstyp=self.get(table, f"{where}.fstyp", check.fstyp, d.fstyp),
                    mkfs_options=self.get(table, f"{where}.mkfs_options", check.config_value, ""),
                    mount_options=self.get(table, f"{where}.mount_options", check.config_value, ""),
                    extra=self.get(table, f"{where}.extra", check.config_pairs, ()),
                )
            )
        return tuple(sections) or XfstestsConfig.sections

    def notify(self, t: dict[str, Any]) -> NotifyConfig:
        return NotifyConfig(
            on=self.get(t, "notify.on", check.notify_events, NotifyConfig.on),
            command=self.get(t, "notify.command", check.string, ""),
        )

    def daemon(self, t: dict[str, Any]) -> DaemonConfig:
        state_default = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "nixvmd"
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/nixvmd-{os.getuid()}"
        socket = self.get(t, "daemon.socket", self.path, Path(runtime) / "nixvmd" / "control.sock")
        if len(os.fsencode(socket)) > 107:
            self.problem(
                "daemon.socket",
                f"daemon.socket: {socket} is longer than the 107 bytes a Unix socket path may have;"
                " choose a shorter path (e.g. under /tmp or $XDG_RUNTIME_DIR)",
            )
        return DaemonConfig(
            state_dir=self.get(t, "daemon.state_dir", self.path, state_default),
            socket=socket,
            settle=self.get(t, "daemon.settle", check.duration, 0.05),
        )


def _any_kind(default: SuiteKind) -> SuiteKind | str:
    """`default` typed as a plugin's name could be (config/extensions.py)."""
    return default
