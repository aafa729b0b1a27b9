"""git for a bisect: the worktree nixvmd owns, `git bisect` in it, and what git answers.

The developer's checkout, index and HEAD are never touched: everything runs in a worktree
of the same repository (`git worktree add --detach`), whose bisect refs are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import NixvmdError


class BisectError(NixvmdError):
    """A bisect cannot start or go on: a bad revision, a tree that is no git repository, git failing."""


@dataclass(frozen=True)
class NextStep:
    """git checked out `commit` to test; about `steps_left` more steps after it."""

    commit: str
    subject: str
    steps_left: int


@dataclass(frozen=True)
class FirstBad:
    """git named the first bad commit."""

    commit: str


@dataclass(frozen=True)
class Undecided:
    """Only skipped commits are left: the first bad one is one of `commits` (git's own words in `message`)."""

    commits: tuple[str, ...]
    message: str


Answer = NextStep | FirstBad | Undecided

_NEXT = re.compile(r"^Bisecting: .*?\(roughly (\d+) steps?\)\n\[([0-9a-f]{40})\] ?(.*)$", re.MULTILINE)
_FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit$", re.MULTILINE)
_ONLY_SKIPPED = "There are only 'skip'ped commits left to test."


def parse_answer(output: str) -> Answer:
    """What `git bisect start|good|bad|skip` printed: the next commit, the first bad one, or skipped ones."""
    if (found := _FIRST_BAD.search(output)) is not None:
        return FirstBad(found.group(1))
    if _ONLY_SKIPPED in output:
        commits = tuple(re.findall(r"^([0-9a-f]{40})$", output, re.MULTILINE))
        return Undecided(commits, _undecided_message(commits))
    if (step := _NEXT.search(output)) is not None:
        return NextStep(step.group(2), step.group(3).strip(), int(step.group(1)))
    raise BisectError(f"git bisect said something nixvmd does not understand: {output.strip()[-300:]!r}")


def _undecided_message(commits: tuple[str, ...]) -> str:
    short = [c[:12] for c in commits]
    span = f"{short[0]}..{short[-1]}" if len(short) > 1 else "".join(short)
    return f"could not tell: commits {span} are skipped (the first bad commit is one of {', '.join(short)})"


async def git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """git's stdout and stderr for `args` run in `cwd`; BisectError with git's last words otherwise.

    Cancelling kills git and waits for it: no git outlives its bisect.
    """
    env = dict(os.environ, LC_ALL="C", GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0")
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        raise BisectError(f"cannot run git in {cwd}: {exc.strerror or exc}") from None
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = output.decode("utf-8", "replace")
    if process.returncode not in ok:
        last = text.strip().splitlines()[-1] if text.strip() else f"exit status {process.returncode}"
        raise BisectError(f"git {' '.join(args[:2])} in {cwd} failed: {last}")
    return text


async def resolve(tree: Path, rev: str) -> str:
    """The full commit id `rev` names in `tree`; BisectError in one sentence when it names none."""
    try:
        await git(tree, "rev-parse", "--is-inside-work-tree")
    except BisectError:
        raise BisectError(f"kernel.tree {tree} is not a git work tree; bisect needs one") from None
    try:
        out = await git(tree, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except BisectError:
        raise BisectError(f"{rev!r} names no commit in {tree}") from None
    return out.strip()


async def common_dir(tree: Path) -> Path:
    """The repository `tree` belongs to (its common git directory, absolute)."""
    out = await git(tree, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return Path(out.strip())


async def own_worktree(tree: Path, worktree: Path) -> bool:
    """Make `worktree` nixvmd's detached worktree of `tree`'s repository, at `tree`'s HEAD when new.

    An existing one of the same repository is kept (its build objects make the next build
    incremental), any bisect left in it ended; one of another repository, or a broken one,
    is replaced. Of the repository's worktree entries only the one for `worktree` is touched.
    True when the worktree was made now.
    """
    if await asyncio.to_thread(os.path.lexists, worktree):
        try:
            same = await common_dir(worktree) == await common_dir(tree)
        except BisectError:
            same = False
        if same:
            await git(worktree, "bisect", "reset", "HEAD")
            return False
        await asyncio.to_thread(shutil.rmtree, worktree)
    await asyncio.to_thread(worktree.parent.mkdir, parents=True, exist_ok=True)
    # --force takes over this path's own stale entry (a worktree removed with the state dir);
    # `git worktree prune` would drop the developer's stale entries too.
    await git(tree, "worktree", "add", "--force", "--detach", str(worktree), "HEAD")
    return True


async def start(worktree: Path, bad: str, good: str) -> Answer:
    """`git bisect start BAD GOOD` in the worktree."""
    output = await git(worktree, "bisect", "start", bad, good, "--")
    return parse_answer(output)


async def mark(worktree: Path, verdict: str) -> Answer:
    """`git bisect good|bad|skip` for the commit checked out; git's next step or its conclusion."""
    return parse_answer(await git(worktree, "bisect", verdict, ok=(0, 2)))


async def finish(worktree: Path) -> None:
    """End git's bisect, leaving the worktree where it is (its build stays for the next bisect)."""
    await git(worktree, "bisect", "reset", "HEAD")


async def subject(tree: Path, commit: str) -> str:
    """The first line of `commit`'s message."""
    return (await git(tree, "log", "-1", "--format=%s", commit)).strip()
