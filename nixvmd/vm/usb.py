"""Host USB devices passed through to the guest (vm.usb): found in sysfs, checked, as QEMU options.

`vm.usb = ["8564:1000"]` becomes an xHCI controller and one `usb-host` device per entry,
matched by vendor and product id (QEMU follows the device if it is re-plugged). Before a run
each must be plugged in (/sys/bus/usb/devices/*/idVendor, idProduct) and its device node
(/dev/bus/usb/BBB/DDD) openable by this user, read-write, as QEMU will open it; else the run is
refused in one sentence naming the device and the udev rule that grants access. `sysfs` and
`dev` are parameters so tests can hand in a tree laid out as sysfs is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import HostDeviceError

CONTROLLER_ID = "nixvmd-xhci"
UDEV_RULE = (
    'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vendor}", ATTR{{idProduct}}=="{product}", '
    'MODE="0660", TAG+="uaccess"'
)
UDEV_RULES_FILE = "/etc/udev/rules.d/70-nixvmd-usb.rules"


@dataclass(frozen=True)
class UsbDevice:
    """A plugged-in USB device: its ids and where its node is."""

    vendor: int
    product: int
    node: Path

    @property
    def ids(self) -> str:
        """The ids as lsusb shows them: "8564:1000"."""
        return f"{self.vendor:04x}:{self.product:04x}"


def usb_options(
    ids: Sequence[tuple[int, int]], *, sysfs: Path = Path("/sys"), dev: Path = Path("/dev")
) -> list[str]:
    """QEMU options passing the devices `ids` through; HostDeviceError when one cannot be."""
    if not ids:
        return []
    args = ["-device", f"qemu-xhci,id={CONTROLLER_ID}"]
    for vendor, product in ids:
        device = find_usb_device(vendor, product, sysfs=sysfs, dev=dev)
        check_access(device)
        args += [
            "-device",
            f"usb-host,bus={CONTROLLER_ID}.0,vendorid={vendor:#06x},productid={product:#06x}",
        ]
    return args


def find_usb_device(vendor: int, product: int, *, sysfs: Path, dev: Path) -> UsbDevice:
    """The plugged-in device with these ids (the first by sysfs name); HostDeviceError if none is."""
    ids = f"{vendor:04x}:{product:04x}"
    devices = sysfs / "bus" / "usb" / "devices"
    try:
        entries = sorted(devices.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if _read(entry / "idVendor") == f"{vendor:04x}" and _read(entry / "idProduct") == f"{product:04x}":
            bus, number = _read(entry / "busnum"), _read(entry / "devnum")
            if not (bus.isdigit() and number.isdigit()):
                continue
            node = dev / "bus" / "usb" / f"{int(bus):03d}" / f"{int(number):03d}"
            return UsbDevice(vendor, product, node)
    raise HostDeviceError(
        f"vm.usb: no USB device {ids} is plugged in (none under {devices} has these ids); "
        "plug it in, or take it out of vm.usb"
    )


def check_access(device: UsbDevice) -> None:
    """HostDeviceError unless this user can open `device`'s node read-write, as QEMU will."""
    try:
        fd = os.open(device.node, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        rule = UDEV_RULE.format(vendor=f"{device.vendor:04x}", product=f"{device.product:04x}")
        raise HostDeviceError(
            f"vm.usb: the USB device {device.ids} is plugged in but {device.node} cannot be opened "
            f"({exc.strerror}); grant your user access with a udev rule in {UDEV_RULES_FILE}: {rule} "
            "(then udevadm control --reload and plug it in again)"
        ) from None
    os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
