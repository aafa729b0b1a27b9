"""Real git repositories for tests: a kernel tree with one commit, its HEAD read back."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(tree: Path, *args: str) -> str:
    """git's stdout for `args` run in `tree`; a failing git fails the test."""
    done = subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def one_commit_tree(tree: Path) -> str:
    """`tree` (made if need be) a git work tree with one commit of a Makefile; the commit's id."""
    tree.mkdir(parents=True, exist_ok=True)
    git(tree, "init", "-q")
    (tree / "Makefile").write_text("VERSION = 6\n")
    git(tree, "add", "Makefile")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    return git(tree, "rev-parse", "HEAD")
