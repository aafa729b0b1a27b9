"""Choosing the accelerator: KVM where it really boots guests, else TCG, remembered per host.

/dev/kvm opening is not proof: on nested hosts Linux guests can hang before their first
console line. With accel = "auto" the first boot under KVM is a probe: no console output
within the probe time means KVM does not work here; the verdict is saved in the state
dir (keyed by host kernel and QEMU binary) so later boots go straight to the right one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from nixvmd.config.schema import Accel
from nixvmd.errors import AccelError
from nixvmd.results.space import make_dirs, write_atomic
from nixvmd.vm.cmdline import Accelerator

log = logging.getLogger(__name__)

PROBE_SECONDS = 10.0


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator for the next boot; `probe` is True while KVM's verdict is unknown."""

    accel: Accelerator
    probe: bool = False


def kvm_usable() -> bool:
    """True when /dev/kvm can be opened read-write."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _host_key(qemu: str) -> str:
    binary = shutil.which(qemu) or qemu
    try:
        stamp = int(os.stat(binary).st_mtime)
    except OSError:
        stamp = 0
    return f"{platform.release()}|{binary}|{stamp}"


class AccelVerdicts:
    """The remembered answer to "does KVM boot guests on this host?" in <state_dir>/accel.json."""

    def __init__(self, state_dir: Path, qemu: str) -> None:
        self.path = state_dir / "accel.json"
        self.key = _host_key(qemu)
        self.warned = False

    def _load(self) -> dict[str, bool]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def known(self) -> bool | None:
        return self._load().get(self.key)

    def remember(self, kvm_works: bool) -> None:
        data = self._load()
        data[self.key] = kvm_works
        make_dirs(self.path.parent, "creating the state directory")
        write_atomic(self.path, json.dumps(data, indent=1), "remembering the accelerator verdict")

    def choose(self, wanted: Accel) -> AccelChoice:
        """The accelerator for the next boot; AccelError when kvm is forced but unusable."""
        if wanted is Accel.TCG:
            return AccelChoice(Accelerator.TCG)
        if wanted is Accel.KVM:
            if not kvm_usable():
                raise AccelError(
                    'vm.accel = "kvm" but /dev/kvm cannot be opened; add yourself to the kvm '
                    'group, or set vm.accel = "auto" or "tcg"'
                )
            return AccelChoice(Accelerator.KVM)
        if not kvm_usable():
            return AccelChoice(Accelerator.TCG)
        verdict = self.known()
        if verdict is None:
            return AccelChoice(Accelerator.KVM, probe=True)
        return AccelChoice(Accelerator.KVM if verdict else Accelerator.TCG)

    def kvm_failed(self) -> None:
        """Record that a KVM boot made no progress; warn once."""
        self.remember(False)
        if not self.warned:
            self.warned = True
            log.warning(
                "KVM is present but the guest made no progress under it (a nested-virtualisation "
                'quirk?); using TCG from now on. Set vm.accel = "kvm" to force it, or remove %s '
                "to probe again",
                self.path,
            )
