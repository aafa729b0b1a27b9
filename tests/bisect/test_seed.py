"""Seeding a new worktree with the tree's build: what make sees there is what it sees in the tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nixvmd.bisect.seed import seed_worktree

OLD = 10**18  # a time well before any checkout


def _git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True)


def test_build_records_name_the_worktree_and_every_time_is_the_trees(tmp_path: Path) -> None:
    tree, worktree = tmp_path / "linux", tmp_path / "state" / "tree"
    tree.mkdir()
    _git(tree, "init", "-q")
    (tree / ".gitignore").write_text("*.o\n.*.cmd\n")
    for name in ("main.c", "edited.c"):
        (tree / name).write_text("int x;\n")
    _git(tree, "add", "-A")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "c0")
    _git(tree, "worktree", "add", "-q", "--detach", str(worktree), "HEAD")
    (tree / "edited.c").write_text("int y;\n")  # the developer's change since HEAD
    record = f"cmd_main.o := gcc -o {tree}/main.o {tree}/main.c -I{tree}2/include\ndeps := {tree}\n"
    (tree / ".main.o.cmd").write_text(record)
    (tree / "main.o").write_bytes(b"\x7fELF")
    for name in (".main.o.cmd", "main.o", "main.c", "edited.c"):
        os.utime(tree / name, ns=(OLD, OLD))

    seeded = seed_worktree(tree, worktree)

    assert seeded.files == 2
    assert (worktree / ".main.o.cmd").read_text() == (
        f"cmd_main.o := gcc -o {worktree}/main.o {worktree}/main.c -I{tree}2/include\ndeps := {worktree}\n"
    )
    assert (tree / ".main.o.cmd").read_text() == record, "the tree is only read"
    for name in (".main.o.cmd", "main.o", "main.c"):
        assert (worktree / name).stat().st_mtime_ns == OLD, name
    # Changed since HEAD: its checkout time is newer than every object, so make rebuilds it here.
    assert (worktree / "edited.c").stat().st_mtime_ns > OLD
    assert (worktree / "edited.c").read_text() == "int x;\n"
