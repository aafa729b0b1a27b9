"""What a kernel tree's .config says about testing it with nixvmd (for `nixvmctl init`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")

# The modules nixvmd's guest loads when they are not built in (image/initramfs.py), by option.
GUEST_MODULES = {
    "VIRTIO_PCI": "virtio_pci",
    "VIRTIO_BLK": "virtio_blk",
    "VIRTIO_CONSOLE": "virtio_console",
    "PVPANIC_PCI": "pvpanic_pci",
}


@dataclass(frozen=True)
class KernelOptions:
    """The few .config facts that decide how nixvmd should boot and test the kernel."""

    path: Path
    kunit_tests: int  # KUnit test options built in (=y) with KUnit itself built in
    kunit_test_modules: int  # KUnit test options built as modules: they do not run at boot
    kunit_off_by_default: bool  # CONFIG_KUNIT_DEFAULT_ENABLED off: needs kunit.enable=1
    modules: int  # options built as modules, with CONFIG_MODULES=y
    guest_modules: tuple[str, ...]  # nixvmd's guest modules among them
    virtio_console: str  # "y", "m", or "" when the kernel has none

    @property
    def kunit(self) -> bool:
        """KUnit tests run at boot, so the `kunit` suite has something to read."""
        return self.kunit_tests > 0


def parse_kconfig(text: str) -> dict[str, str]:
    """Option name (without CONFIG_) → value: "y", "m", a string or number; "n" for unset."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if (m := _SET.match(line)) is not None:
            values[m.group(1)] = m.group(2).strip('"')
        elif (m := _UNSET.match(line)) is not None:
            values[m.group(1)] = "n"
    return values


def is_kunit_test(option: str) -> bool:
    """A KUnit test option by the kernel's naming (FOO_KUNIT_TEST, EXT4_KUNIT_TESTS,
    BITFIELD_KUNIT, KUNIT_ALL_TESTS), not KUnit's own switches (KUNIT, KUNIT_DEBUGFS, ...)."""
    return "KUNIT" in option and option != "KUNIT" and option.endswith(("_TEST", "_TESTS", "_KUNIT"))


def kernel_options(values: dict[str, str], path: Path) -> KernelOptions:
    """The facts nixvmd needs from parsed .config `values` (read from `path`)."""
    kunit_on = values.get("KUNIT") == "y"
    tests = [name for name in values if is_kunit_test(name)]
    modular = values.get("MODULES") == "y"
    as_modules = [name for name, value in values.items() if value == "m"] if modular else []
    console = values.get("VIRTIO_CONSOLE", "n")
    return KernelOptions(
        path=path,
        kunit_tests=sum(values[name] == "y" for name in tests) if kunit_on else 0,
        kunit_test_modules=sum(values[name] == "m" for name in tests) if modular else 0,
        kunit_off_by_default=kunit_on and values.get("KUNIT_DEFAULT_ENABLED") == "n",
        modules=len(as_modules),
        guest_modules=tuple(module for name, module in GUEST_MODULES.items() if name in as_modules),
        virtio_console=console if console in ("y", "m") and (console == "y" or modular) else "",
    )


def read_kernel_options(build_dirs: list[Path]) -> KernelOptions | None:
    """The options of the first of `build_dirs` that has a .config; None when none has."""
    for directory in build_dirs:
        path = directory / ".config"
        try:
            text = path.read_text(errors="replace")
        except OSError:  # none there, or unreadable: the config is written without its hints
            continue
        return kernel_options(parse_kconfig(text), path)
    return None
