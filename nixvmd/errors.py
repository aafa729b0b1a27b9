"""The exception hierarchy: errors a user can cause, kept apart from bugs.

NixvmdError                 root; str() is one sentence saying what is wrong and what to do
 ├── ConfigError            the config file is unreadable or invalid (holds every problem found)
 ├── KernelImageError       the watched kernel image is missing, truncated or not a bzImage
 ├── ImageBuildError        the guest image (initramfs, nix build) could not be made
 ├── StateSpaceError        daemon.state_dir has no room for a write nixvmd must make
 ├── VMError                QEMU could not be started or broke while it ran
 │    ├── AccelError        the requested accelerator is unusable
 │    └── HostDeviceError   a disk path or USB device of the host cannot be given to the guest
 ├── SuiteError             the suite ran but had nothing to judge the kernel by (no results at all)
 ├── DistributeError        Nix could not take a shard (store, instantiate, a bundle nixvmd makes)
 └── ControlError           a control-socket request or reply is malformed

Anything else that escapes is a bug and may show a traceback.
"""

from __future__ import annotations

from pathlib import Path


class NixvmdError(Exception):
    """Root of the errors a user can cause; the message is meant for them."""

    def __str__(self) -> str:
        text = super().__str__()
        cause = self.__cause__
        if cause is not None and str(cause) and str(cause) not in text:
            return f"{text}: {cause}"
        return text


class ConfigError(NixvmdError):
    """The config file is unreadable or invalid; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class KernelImageError(NixvmdError):
    """The kernel image cannot be booted (missing, truncated, not a bzImage)."""


class ImageBuildError(NixvmdError):
    """The guest image could not be built; `log` keeps the useful part of the output."""

    def __init__(self, message: str, log: str = "") -> None:
        self.log = log
        super().__init__(message)


class StateSpaceError(NixvmdError):
    """daemon.state_dir has no room (ENOSPC, EDQUOT): `path` could not be written, `free` bytes were left."""

    def __init__(self, message: str, path: Path, free: int, needed: int | None = None) -> None:
        self.path = path
        self.free = free
        self.needed = needed
        super().__init__(message)


class VMError(NixvmdError):
    """QEMU could not be started, or it broke while it ran."""


class AccelError(VMError):
    """The requested accelerator cannot be used."""


class HostDeviceError(VMError):
    """A host disk (vm.disks `path`) or USB device (vm.usb) cannot be given to the guest now."""


class SuiteError(NixvmdError):
    """The suite's setup could not produce results: its exit status says nothing about the kernel.

    Raised by `SuiteRun.results` for a run that otherwise completed; the run ends `error`.
    """


class DistributeError(NixvmdError):
    """Nix could not take a shard: adding to the store, instantiating, a bundle nixvmd makes for it."""


class ControlError(NixvmdError):
    """A control-socket request or reply is malformed."""
