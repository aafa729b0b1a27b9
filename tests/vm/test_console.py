"""The console file: what a process writes to it reaches nixvmd whole, in order, as it comes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from nixvmd.vm.console import MAX_PENDING, ConsoleFile, LineSplitter

# A writer that prints one byte per write(), as QEMU's UART does, and then waits for a
# line on stdin before it goes on: the lines it wrote must arrive while it still runs.
WRITER = r"""
import os, sys
for ch in "first line\r\nsecond line\n":
    os.write(1, ch.encode())
sys.stdin.readline()
os.write(1, b"after the pause\nno newline at the end")
"""


def test_lines_arrive_while_the_writer_runs_and_the_rest_when_it_ends(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"an older boot\n")

    async def scenario() -> tuple[list[str], list[str], bytes]:
        lines: list[str] = []
        chunks: list[bytes] = []
        arrived = asyncio.Event()

        def on_line(line: str) -> None:
            lines.append(line)
            if line == "second line":
                arrived.set()

        console = ConsoleFile(log, on_line, chunks.append)
        out = console.writer()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, stdin=subprocess.PIPE, stdout=out
        )
        os.close(out)
        console.follow()
        await asyncio.wait_for(arrived.wait(), 30)
        while_running = list(lines)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await proc.wait()
        console.close()
        return while_running, lines, b"".join(chunks)

    while_running, lines, raw = asyncio.run(scenario())

    assert while_running == ["first line", "second line"]
    assert lines == ["first line", "second line", "after the pause", "no newline at the end"]
    assert raw == b"first line\r\nsecond line\nafter the pause\nno newline at the end"
    # The file keeps every byte, after what was there before (appended, never truncated).
    assert log.read_bytes() == b"an older boot\n" + raw


def test_a_line_without_end_is_cut_to_keep_memory_bounded() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)

    splitter.feed(b"x" * (MAX_PENDING + 1))
    splitter.feed(b"y\n")

    assert [len(line) for line in lines] == [MAX_PENDING + 1, 1]
