"""What a vmcore says about the kernel it holds: the VMCOREINFO text in an ELF or kdump file.

QEMU writes three kinds of file (dump-guest-memory): ELF (the note sits in a PT_NOTE
segment), kdump (a `KDUMP   ` header, then a sub-header one block in that points at the
VMCOREINFO text), and — for "kdump-*" formats before QEMU 8.2 — the same kdump file in
makedumpfile's flattened form: a `makedumpfile` header, then (offset, size) records in big
endian, each followed by the bytes that go at that offset. Only x86_64 (little endian,
64-bit) dumps are read. `nixvmctl dump` shows the dump's OSRELEASE so a vmlinux can be matched.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nixvmd.errors import NixvmdError

ELF_MAGIC = b"\x7fELF"
KDUMP_MAGIC = b"KDUMP   "
FLAT_MAGIC = b"makedumpfile"
FLAT_HEADER = 4096  # makedumpfile's MAX_SIZE_MDF_HEADER
PT_NOTE = 4
KDUMP_BLOCK_SIZE_AT = 428  # in DiskDumpHeader64: after signature, version, utsname and the timestamp
SUB_VMCOREINFO_AT = 32  # in KdumpSubHeader64: offset_vmcoreinfo, then size_vmcoreinfo
MAX_NOTES = 1 << 20
NOTE_NAME = b"VMCOREINFO"

Read = Callable[[int, int], bytes]


class VmcoreError(NixvmdError):
    """A file that is not a vmcore nixvmd can read, or holds no VMCOREINFO."""


@dataclass(frozen=True)
class VmcoreInfo:
    """A dump's kind ("elf", "kdump", "kdump, flattened") and its VMCOREINFO lines as a dict."""

    kind: str
    info: dict[str, str]

    @property
    def release(self) -> str:
        """The dumped kernel's `uname -r` (VMCOREINFO's OSRELEASE); "" when absent."""
        return self.info.get("OSRELEASE", "")


def read_vmcoreinfo(path: Path) -> VmcoreInfo:
    """The VMCOREINFO of the dump at `path`; VmcoreError saying what is wrong otherwise."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
            if head.startswith(ELF_MAGIC):
                return VmcoreInfo("elf", _parse(_elf_note(_plain(f))))
            if head.startswith(KDUMP_MAGIC):
                return VmcoreInfo("kdump", _parse(_kdump_note(_plain(f))))
            if head.startswith(FLAT_MAGIC):
                return VmcoreInfo("kdump, flattened", _parse(_kdump_note(_flattened(f))))
    except (OSError, struct.error, ValueError) as exc:
        raise VmcoreError(f"cannot read the vmcore {path}: {exc}") from None
    raise VmcoreError(f"{path} is neither an ELF nor a kdump file")


def _plain(f: BinaryIO) -> Read:
    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        data = f.read(size)
        if len(data) != size:
            raise ValueError(f"the file ends before byte {offset + size}")
        return data

    return read


def _flattened(f: BinaryIO) -> Read:
    """The kdump file that makedumpfile's flattened records at `f` make up, readable by offset."""
    pieces = []
    f.seek(FLAT_HEADER)
    while True:
        record = f.read(16)
        if len(record) != 16:
            raise ValueError("the flattened dump ends without its end record")
        offset, size = struct.unpack(">qq", record)
        if offset < 0:
            break
        pieces.append((offset, size, f.tell()))
        f.seek(size, 1)

    def read(offset: int, size: int) -> bytes:
        out = bytearray(size)
        found = 0
        for start, length, at in pieces:
            lo, hi = max(offset, start), min(offset + size, start + length)
            if lo < hi:
                f.seek(at + lo - start)
                out[lo - offset : hi - offset] = f.read(hi - lo)
                found += hi - lo
        if found < size:
            raise ValueError(f"the flattened dump does not hold bytes {offset} to {offset + size}")
        return bytes(out)

    return read


def _kdump_note(read: Read) -> bytes:
    (block_size,) = struct.unpack("<I", read(KDUMP_BLOCK_SIZE_AT, 4))
    offset, size = struct.unpack("<QQ", read(block_size + SUB_VMCOREINFO_AT, 16))
    if size == 0:
        raise ValueError("the kdump header has no VMCOREINFO (the guest did not load qemu_fw_cfg?)")
    if size > MAX_NOTES:
        raise ValueError(f"the kdump header gives VMCOREINFO an implausible size ({size})")
    return read(offset, size)


def _elf_note(read: Read) -> bytes:
    ident = read(0, 64)
    if ident[4] != 2 or ident[5] != 1:
        raise ValueError("only 64-bit little-endian ELF dumps are read")
    (phoff,) = struct.unpack_from("<Q", ident, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
    for index in range(phnum):
        header = read(phoff + index * phentsize, 56)
        kind, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", header)
        if kind == PT_NOTE and filesz <= MAX_NOTES:
            desc = _find_note(read(offset, filesz))
            if desc is not None:
                return desc
    raise ValueError("no VMCOREINFO note in its PT_NOTE segments (the guest did not load qemu_fw_cfg?)")


def _find_note(notes: bytes) -> bytes | None:
    """The description of the VMCOREINFO note among ELF `notes`, if there is one."""
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, _ = struct.unpack_from("<III", notes, at)
        name_at = at + 12
        desc_at = name_at + _aligned(namesz)
        if notes[name_at : name_at + namesz].rstrip(b"\0") == NOTE_NAME:
            return notes[desc_at : desc_at + descsz]
        at = desc_at + _aligned(descsz)
    return None


def _aligned(size: int) -> int:
    return (size + 3) & ~3


def _parse(text: bytes) -> dict[str, str]:
    """VMCOREINFO's `KEY=value` lines; ValueError when it has none."""
    info = {}
    for line in text.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip()
    if not info:
        raise ValueError("its VMCOREINFO is empty")
    return info
