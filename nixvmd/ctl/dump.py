"""How `nixvmctl dump RUN` shows a run's vmcores: where each is, and the commands that open it."""

from __future__ import annotations

from typing import Any

from nixvmd.config.units import format_size

FLATTENED = ("kdump-zlib", "kdump-lzo", "kdump-snappy")
"""QEMU's kdump formats written as makedumpfile's flattened file (QEMU before 8.2)."""


def format_dumps(answer: dict[str, Any]) -> str:
    """The run's dumps, each with `crash` and `drgn` command lines (or what is missing for them)."""
    dumps = answer["dumps"]
    vmlinux = answer.get("vmlinux")
    lines = [f"run {answer['run_id']}: {len(dumps)} vmcore{'s' if len(dumps) != 1 else ''}"]
    if vmlinux is None:
        lines.append(
            f"  vmlinux is needed to open them: {answer['tree']}/vmlinux does not exist "
            "(build it in kernel.tree, or give the one of this kernel below)"
        )
    symbols = vmlinux or "<vmlinux>"
    for dump in dumps:
        path = dump["path"]
        release = f", Linux {dump['release']}" if dump.get("release") else ""
        where = f"{dump['vm']}: " if dump.get("vm", "run") != "run" else ""
        lines.append(f"  {where}{path} ({format_size(dump['size'])}, {dump['format']}{release})")
        if not dump.get("present"):
            lines.append("    removed since (debug.keep_dumps keeps only the newest)")
            continue
        if dump.get("problem"):
            lines.append(f"    {dump['problem']}")
        lines.append(f"    crash {symbols} {path}")
        if dump["format"] in FLATTENED:
            lines.append(f"    makedumpfile -R {path}.raw < {path}   # drgn needs it unflattened")
            lines.append(f"    drgn -c {path}.raw -s {symbols}")
        else:
            lines.append(f"    drgn -c {path} -s {symbols}")
    if answer.get("note"):
        lines.append(f"  also: {answer['note']}")
    return "\n".join(lines)
