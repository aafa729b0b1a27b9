"""The fstests tree on the host as an input: which tree, which of its files matter, what a change concerns.

With the direct backend sharing the host root, the guest runs the host's fstests working
tree at `xfstests.dir`, so editing a test there is a change of what the next run does. A
change confined to test T's files (`tests/xfs/123`, `123.out`, `123.out.<variant>`,
`123.cfg`) concerns T alone; one in `common/`, `check`, a built helper (`src/`, `ltp/`) or a
group list concerns every test. Objects, dependency files, editor temp files and anything
hidden (`.git`, `.#x`, `.x.swp`) concern nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nixvmd.config.schema import Backend, Config, OnChange, SuiteKind
from nixvmd.suite.xfstests.select import GROUP_LIST, read_group_list

AREAS = ("tests", "common", "src", "ltp")
"""The directories of the tree whose files a run reads (with `check` at its top)."""
CHECK = "check"
_IGNORED_SUFFIXES = (".o", ".d", ".lo", ".a", ".swp", ".swo", ".swx", ".tmp", "~")
_EDITOR_PROBES = frozenset({"4913"})  # vim's "can I write here" file
_SCRATCH_NAMES = frozenset({f"{GROUP_LIST}.new"})  # tools/mkgroupfile's file before it is renamed
_TEST_FILE = re.compile(r"(?P<number>\d{3}[A-Za-z0-9-]*)(?:\.out(?:\.[^/]+)?|\.cfg)?")
NAMED_IN_REASON = 3
"""Changed paths a run's reason names before "and N more"."""


def fstests_host_tree(config: Config) -> Path | None:
    """The host path of the fstests tree the guest runs; None when the host has none to watch.

    `xfstests.dev_tree` when set (shared into the guest at `xfstests.dir`, any backend), else
    `xfstests.dir` when the direct backend shares the host root (the guest sees host paths).
    The one place that says which tree it is.
    """
    if str(config.suite.kind) != SuiteKind.XFSTESTS:
        return None
    if config.xfstests.dev_tree is not None:
        return config.xfstests.dev_tree
    if str(config.image.backend) != Backend.DIRECT or not config.image.share_host_root:
        return None
    return config.xfstests.dir


def watched_tree(config: Config) -> Path | None:
    """The fstests tree to watch: the host tree unless `xfstests.on_change` is "off"."""
    if config.xfstests.on_change is OnChange.OFF:
        return None
    return fstests_host_tree(config)


def matters(relative: str) -> bool:
    """Whether a change of `relative` (a path inside the tree) can change what a run does."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):
        return False
    if parts == (CHECK,):
        return True
    name = parts[-1]
    if parts[0] not in AREAS or len(parts) < 2:
        return False
    ignored = name.endswith(_IGNORED_SUFFIXES) or name in _EDITOR_PROBES or name in _SCRATCH_NAMES
    return not (ignored or name.startswith("#"))


def is_group_list(relative: str) -> bool:
    """Whether `relative` (inside the tree) is a test directory's group list, `tests/<dir>/group.list`."""
    parts = PurePosixPath(relative).parts
    return len(parts) == 3 and parts[0] == "tests" and parts[2] == GROUP_LIST


def group_lists(root: Path) -> dict[str, dict[str, tuple[str, ...]]]:
    """Every test directory's group list in the tree, read: `tests/<dir>/group.list` -> {test: groups}."""
    return {
        path.relative_to(root).as_posix(): read_group_list(path)
        for path in sorted((root / "tests").glob(f"*/{GROUP_LIST}"))
    }


def concerned_test(relative: str) -> str | None:
    """The test whose file `relative` is (`tests/xfs/123.out.64k` → `xfs/123`); None: not a test's file."""
    parts = PurePosixPath(relative).parts
    if len(parts) != 3 or parts[0] != "tests":
        return None
    found = _TEST_FILE.fullmatch(parts[2])
    return f"{parts[1]}/{found['number']}" if found else None


@dataclass(frozen=True)
class TreeChange:
    """What a settled burst of changes in the tree concerns.

    `paths` are the changed paths inside the tree, those that concern every test first;
    `tests` the tests they concern, or None when they concern every test (or `on_change`
    is "all").
    """

    paths: tuple[str, ...]
    tests: tuple[str, ...] | None

    @property
    def reason(self) -> str:
        """Why the run starts, in words: "tests/generic/750.out changed → generic/750"."""
        named = ", ".join(self.paths[:NAMED_IN_REASON])
        more = len(self.paths) - NAMED_IN_REASON
        what = f"{named} and {more} more changed" if more > 0 else f"{named} changed"
        return what if self.tests is None else f"{what} → {', '.join(self.tests)}"

    def __or__(self, other: TreeChange) -> TreeChange:
        paths = tuple(dict.fromkeys((*self.paths, *other.paths)))
        if self.tests is None or other.tests is None:
            return classify(paths, OnChange.ALL)
        return TreeChange(paths, tuple(dict.fromkeys((*self.tests, *other.tests))))


def classify(paths: Iterable[str], on_change: OnChange) -> TreeChange:
    """What the changed `paths` (inside the tree, each once, in order) concern under `on_change`."""
    everything: list[str] = []
    tests_only: list[str] = []
    tests: list[str] = []
    for path in dict.fromkeys(paths):
        test = concerned_test(path)
        if test is None:
            everything.append(path)
        else:
            tests_only.append(path)
            tests.append(test)
    ordered = (*everything, *tests_only)
    if everything or on_change is not OnChange.CHANGED:
        return TreeChange(ordered, None)
    return TreeChange(ordered, tuple(dict.fromkeys(tests)))


def mattering_files(root: Path) -> Iterator[Path]:
    """The files of the tree that matter (see `matters`), walked in a stable order."""
    if (root / CHECK).is_file():
        yield root / CHECK
    for area in AREAS:
        for dirpath, dirnames, filenames in os.walk(root / area):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if matters(path.relative_to(root).as_posix()):
                    yield path


def tree_digest(root: Path) -> str:
    """A digest of what matters in the tree: each file's path, size and modification time.

    Part of a run's inputs for the "tested" memory, so that a kernel judged before an edit
    of the tree is run again after it (a restart included). Stat only: ~5,000 files in
    milliseconds; a `touch` without a change costs one run, never a missed one.
    """
    digest = hashlib.sha256()
    for path in mattering_files(root):
        try:
            st = path.stat()
        except OSError:
            continue  # went while walking: the next change says so
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def count_directories(root: Path, areas: Iterable[str], most: int) -> int:
    """How many directories the `areas` of the tree hold (each watched by inotify), up to `most` + 1."""
    count = 0
    for area in areas:
        for _, dirnames, _ in os.walk(root / area):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            count += 1
            if count > most:
                return count
    return count
