"""The VMCOREINFO of a vmcore, read from ELF, kdump and flattened kdump files as QEMU writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixvmd.results.vmcore_file import VmcoreError, read_vmcoreinfo
from tests.results.vmcore_files import elf_file, flattened, kdump_file

INFO = b"OSRELEASE=6.1.0-57-cloud-amd64\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a1b3c0\n"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (elf_file(INFO), "elf"),
        (kdump_file(INFO), "kdump"),
        (flattened(kdump_file(INFO)), "kdump, flattened"),
    ],
    ids=["elf", "kdump", "flattened"],
)
def test_each_kind_of_dump_gives_its_vmcoreinfo(tmp_path: Path, content: bytes, kind: str) -> None:
    path = tmp_path / "vmcore"
    path.write_bytes(content)

    info = read_vmcoreinfo(path)

    assert info.kind == kind
    assert info.release == "6.1.0-57-cloud-amd64"
    assert info.info == {
        "OSRELEASE": "6.1.0-57-cloud-amd64",
        "PAGESIZE": "4096",
        "SYMBOL(init_uts_ns)": "ffffffff82a1b3c0",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a dump at all", "is neither an ELF nor a kdump file"),
        (kdump_file(b""), "the kdump header has no VMCOREINFO (the guest did not load qemu_fw_cfg?)"),
        (elf_file(b"")[:100], "the file ends before byte"),
        (flattened(kdump_file(INFO))[:-16], "the flattened dump ends without its end record"),
    ],
    ids=["garbage", "no-vmcoreinfo", "truncated-elf", "truncated-flat"],
)
def test_a_file_that_cannot_be_read_is_one_sentence(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "vmcore"
    path.write_bytes(content)

    with pytest.raises(VmcoreError) as caught:
        read_vmcoreinfo(path)

    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
