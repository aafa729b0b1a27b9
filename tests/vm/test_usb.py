"""vm.usb: a device found by its ids in sysfs, its node checked, QEMU's xHCI and usb-host options.

No USB device exists here: the sysfs and /dev trees are laid out as the kernel's
(/sys/bus/usb/devices/<port>/{idVendor,idProduct,busnum,devnum}, /dev/bus/usb/BBB/DDD).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nixvmd.config.load import parse_config
from nixvmd.errors import ConfigError, HostDeviceError
from nixvmd.vm.usb import usb_options


def _plug(root: Path, port: str, vendor: str, product: str, bus: int, number: int) -> Path:
    device = root / "sys" / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1" / port
    device.mkdir(parents=True)
    for name, value in {"idVendor": vendor, "idProduct": product, "busnum": bus, "devnum": number}.items():
        (device / name).write_text(f"{value}\n")
    devices = root / "sys" / "bus" / "usb" / "devices"
    devices.mkdir(parents=True, exist_ok=True)
    (devices / port).symlink_to(device)
    node = root / "dev" / "bus" / "usb" / f"{bus:03d}" / f"{number:03d}"
    node.parent.mkdir(parents=True, exist_ok=True)
    node.write_bytes(b"")
    return node


def test_a_plugged_in_device_becomes_an_xhci_controller_and_a_usb_host_device(tmp_path: Path) -> None:
    _plug(tmp_path, "1-1", "1d6b", "0002", 1, 1)
    _plug(tmp_path, "1-2", "8564", "1000", 1, 5)
    options = usb_options([(0x8564, 0x1000)], sysfs=tmp_path / "sys", dev=tmp_path / "dev")
    assert options == [
        "-device",
        "qemu-xhci,id=nixvmd-xhci",
        "-device",
        "usb-host,bus=nixvmd-xhci.0,vendorid=0x8564,productid=0x1000",
    ]
    assert usb_options([], sysfs=tmp_path / "sys", dev=tmp_path / "dev") == []


def test_a_device_not_plugged_in_is_refused_naming_it(tmp_path: Path) -> None:
    _plug(tmp_path, "1-1", "1d6b", "0002", 1, 1)
    with pytest.raises(HostDeviceError) as caught:
        usb_options([(0x8564, 0x1000)], sysfs=tmp_path / "sys", dev=tmp_path / "dev")
    assert str(caught.value) == (
        f"vm.usb: no USB device 8564:1000 is plugged in (none under {tmp_path}/sys/bus/usb/devices has "
        "these ids); plug it in, or take it out of vm.usb"
    )


def test_a_device_whose_node_cannot_be_opened_is_refused_with_the_udev_rule(tmp_path: Path) -> None:
    node = _plug(tmp_path, "3-4.1", "8564", "1000", 3, 12)
    node.unlink()  # as when /dev/bus/usb is not there (a container) or udev has not made it yet
    with pytest.raises(HostDeviceError) as caught:
        usb_options([(0x8564, 0x1000)], sysfs=tmp_path / "sys", dev=tmp_path / "dev")
    assert str(caught.value) == (
        f"vm.usb: the USB device 8564:1000 is plugged in but {tmp_path}/dev/bus/usb/003/012 cannot be "
        "opened (No such file or directory); grant your user access with a udev rule in "
        '/etc/udev/rules.d/70-nixvmd-usb.rules: SUBSYSTEM=="usb", ATTR{idVendor}=="8564", '
        'ATTR{idProduct}=="1000", MODE="0660", TAG+="uaccess" (then udevadm control --reload and '
        "plug it in again)"
    )
    node.write_bytes(b"")
    node.chmod(0o444)
    if not os.access(node, os.W_OK):
        with pytest.raises(HostDeviceError, match="cannot be opened \\(Permission denied\\)"):
            usb_options([(0x8564, 0x1000)], sysfs=tmp_path / "sys", dev=tmp_path / "dev")


def test_usb_ids_are_read_from_the_config_and_need_one_vm(tmp_path: Path) -> None:
    config = parse_config('[vm]\nusb = ["8564:1000", "1D6B:0002"]\n', name="c.toml", base=tmp_path)
    assert config.vm.usb == ((0x8564, 0x1000), (0x1D6B, 0x0002))
    with pytest.raises(ConfigError) as caught:
        parse_config('[vm]\nusb = ["8564-1000"]\n', name="c.toml", base=tmp_path)
    assert str(caught.value) == (
        "c.toml:2: vm.usb: expected USB ids as 'vendor:product' in hex (lsusb shows them), got '8564-1000'"
    )
    with pytest.raises(ConfigError, match=r"vm\.usb: a USB device can be passed to one VM only"):
        parse_config('[vm]\nusb = ["8564:1000"]\n[suite]\nshards = 2\n', name="c.toml", base=tmp_path)
