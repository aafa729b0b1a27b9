"""The host root share: QEMU's vhost-user-fs options and the virtiofsd wrapper, without QEMU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nixvmd.vm.cmdline import host_root_options, virtfs_options
from nixvmd.vm.virtiofsd import VIRTIOFSD, Export, host_root_export, host_root_launch, virtiofs_launch


def test_host_root_options_share_guest_memory_and_add_the_tagged_device(tmp_path: Path) -> None:
    assert host_root_options(tmp_path / "virtiofs", 768 << 20) == [
        "-object",
        "memory-backend-memfd,id=mem,size=768M,share=on",
        "-numa",
        "node,memdev=mem",
        "-chardev",
        f"socket,id=vfs,path={tmp_path / 'virtiofs'}",
        "-device",
        "vhost-user-fs-pci,chardev=vfs,tag=hostroot",
    ]


def test_the_launch_runs_qemu_last_in_a_private_mount_namespace(tmp_path: Path) -> None:
    argv = host_root_launch(["qemu-system-x86_64", "-m", "1G"], tmp_path)
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = argv[7]
    assert "remount,bind,ro" in script and "cache=always" in script and "--pdeathsig KILL" in script
    assert argv[8:] == [
        "nixvmd-virtiofs",
        VIRTIOFSD,
        str(tmp_path / "virtiofs"),
        "/",
        str(tmp_path / "hostroot"),
        "--",
        "qemu-system-x86_64",
        "-m",
        "1G",
    ]


@pytest.mark.skipif(not Path(VIRTIOFSD).exists() or shutil.which("unshare") is None, reason="no virtiofsd")
def test_the_export_is_read_only_and_virtiofsd_goes_with_its_qemu(tmp_path: Path) -> None:
    # A shell stands in for QEMU: it sees the export read-only and virtiofsd listening.
    probe = (
        'touch "$1/etc/nixvmd-probe" 2>/dev/null && echo WRITABLE; '
        '[ -S "$2" ] && echo LISTENING; ls "$1/etc/hostname"'
    )
    argv = host_root_launch(
        ["/bin/sh", "-c", probe, "qemu", str(tmp_path / "hostroot"), str(tmp_path / "virtiofs")], tmp_path
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "WRITABLE" not in out.stdout
    assert "LISTENING" in out.stdout and "etc/hostname" in out.stdout
    assert not Path("/etc/nixvmd-probe").exists()
    assert list((tmp_path / "hostroot").iterdir()) == []  # the bind mount lived in the namespace only


def test_a_9p_share_is_read_only_and_a_comma_in_its_path_is_escaped(tmp_path: Path) -> None:
    assert virtfs_options(tmp_path / "a,b", "nixvmd-fstests") == [
        "-virtfs",
        f"local,path={tmp_path}/a,,b,mount_tag=nixvmd-fstests,security_model=none,readonly=on",
    ]


@pytest.mark.skipif(not Path(VIRTIOFSD).exists() or shutil.which("unshare") is None, reason="no virtiofsd")
def test_a_directory_is_exported_read_only_beside_the_host_root(tmp_path: Path) -> None:
    tree = tmp_path / "fstests"
    (tree / "tests").mkdir(parents=True)
    (tree / "check").write_text("#!/bin/sh\n")
    sockets = tmp_path / "s"
    dev = Export(tree, sockets / "fstests.sock", sockets / "fstests")
    probe = (
        'touch "$1/new" 2>/dev/null && echo WRITABLE; ls "$1"; '
        '[ -S "$2" ] && [ -S "$3" ] && echo LISTENING; ls "$4/etc/hostname"'
    )
    qemu = ["/bin/sh", "-c", probe, "qemu", str(dev.mount_point), str(dev.socket)]
    qemu += [str(sockets / "virtiofs"), str(sockets / "hostroot")]
    argv = virtiofs_launch(qemu, [host_root_export(sockets), dev])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "WRITABLE" not in out.stdout and not (tree / "new").exists()
    assert "check" in out.stdout and "LISTENING" in out.stdout and "etc/hostname" in out.stdout
    assert list(dev.mount_point.iterdir()) == []  # the bind mount lived in the namespace only
