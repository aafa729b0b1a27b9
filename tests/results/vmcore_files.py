"""Small vmcore files as QEMU lays them out (ELF, kdump, flattened kdump), for the reader's tests."""

from __future__ import annotations

import struct

BLOCK = 4096


def _note(name: bytes, desc: bytes, kind: int = 0) -> bytes:
    def padded(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    return struct.pack("<III", len(name), len(desc), kind) + padded(name) + padded(desc)


def elf_file(vmcoreinfo: bytes) -> bytes:
    """An ELF64 core: a PT_LOAD, then a PT_NOTE with a CPU's note and the VMCOREINFO note."""
    notes = _note(b"CORE\0", b"\1" * 336, 1) + _note(b"VMCOREINFO\0", vmcoreinfo)
    phoff, phnum = 64, 2
    notes_at = phoff + 56 * phnum
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 7, notes_at + len(notes), 0, 0, 0, 0, 0)
    note = struct.pack("<IIQQQQQQ", 4, 0, notes_at, 0, 0, len(notes), len(notes), 0)
    return header + load + note + notes


def kdump_file(vmcoreinfo: bytes) -> bytes:
    """A kdump file: header block (block size at byte 428), sub-header block pointing at VMCOREINFO."""
    header = bytearray(BLOCK)
    header[0:8] = b"KDUMP   "
    struct.pack_into("<I", header, 8, 6)
    struct.pack_into("<II", header, 424, 1, BLOCK)
    sub = bytearray(BLOCK)
    at = 2 * BLOCK
    struct.pack_into("<QQ", sub, 32, at, len(vmcoreinfo))
    return bytes(header + sub) + vmcoreinfo


def flattened(kdump: bytes, piece: int = 1000) -> bytes:
    """`kdump` as makedumpfile's flattened records (big endian), written back to front."""
    head = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)
    out = head.ljust(BLOCK, b"\0")
    for start in reversed(range(0, len(kdump), piece)):
        chunk = kdump[start : start + piece]
        out += struct.pack(">qq", start, len(chunk)) + chunk
    return out + struct.pack(">qq", -1, -1)
