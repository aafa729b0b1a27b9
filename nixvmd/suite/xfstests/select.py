"""fstests check's own test selection: `xfstests.args` expanded into the tests check would run.

What check does with its arguments (read from fstests' check; the membership files are the
`tests/<dir>/group.list` that tools/mkgroupfile writes: comment lines, then one line per test,
`NNN group group ...`):

- options come first; the first argument that is not an option starts the tests, and an
  option after a test is refused ("Arguments before tests, please!");
- a test is `dir/NNN` (or `tests/dir/NNN`, or a glob such as `xfs/*`); one its directory's
  group.list does not list is "unknown test, ignored";
- `-g a,b` adds the groups' tests, `-x a,b` takes them out again; a plain group is looked up
  in `generic` and the section's file system's directory (ext2 and ext3 use `ext4`), a
  `dir/group` in that directory only; `-g all` alone is every test of those directories; with
  no test and no group check runs `-g auto`; a `-g` group that has no test is fatal, an `-x`
  one is ignored;
- `-e a,b`, `-E file` and `-X file` (a file in each test directory) expunge tests: an entry
  that starts with the test's name as a word;
- the list is sorted (check's `sort -n | uniq` of `tests/dir/NNN` lines, byte order here)
  unless `--exact-order` keeps the order given; duplicates go either way (nixvmd's choice:
  a test runs once per shard).

`-s`/`-S` choose sections (the caller's business: a shard runs its tests under every
section); `-R`, `-T`, `-d`, `-b`, `-l`, `-udiff`, `-n`, `-i`/`-I`/`-L`, `--large-fs` and
`--extra-space=` change how tests run, not which (`run_options` keeps them for a narrowed
run). Anything else (`-overlay`, `-nfs`, ...) is a ConfigError naming it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nixvmd.errors import ConfigError

GROUP_LIST = "group.list"
SRC_GROUPS = ("generic",)
"""The test directories whose groups every file system runs (check's SRC_GROUPS)."""
EXACT_ORDER = "--exact-order"

_TEST_ID = re.compile(r"[0-9]{3}-?[A-Za-z0-9-]*")
"""A test's name inside its directory (fstests' VALID_TEST_NAME)."""
_GLOB = re.compile(r"[*?\[]")
_SELECTING = {"-g", "-x", "-X", "-e", "-E"}
_WITH_VALUE = {"-s", "-S", "-R", "-i", "-I", "-L"}
_FLAGS = {"-T", "-d", "-b", "-l", "-udiff", "-n", "--large-fs", EXACT_ORDER, "-r"}
_DROPPED = {EXACT_ORDER, "-r"}
"""Flags a narrowed run does not keep: its list is in the order nixvmd chose."""


@dataclass
class CheckArgs:
    """check's arguments sorted by what they do."""

    tests: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    xgroups: list[str] = field(default_factory=list)
    subdir_xfiles: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    exclude_files: list[str] = field(default_factory=list)
    exact_order: bool = False
    run_options: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)


def parse_check_args(args: Sequence[str]) -> CheckArgs:
    """Sort `args` as check reads them (no file is read; see the module's docstring)."""
    parsed = CheckArgs()
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if not arg.startswith("-"):
            parsed.tests.append(arg)
        elif parsed.tests:
            parsed.misplaced.append(arg)
        elif arg in _SELECTING or arg in _WITH_VALUE:
            if value is None:
                parsed.unknown.append(f"{arg} (without its value)")
                break
            _take(parsed, arg, value)
            i += 1
        elif arg in _FLAGS or arg.startswith("--extra-space="):
            parsed.exact_order |= arg == EXACT_ORDER
            if arg not in _DROPPED:
                parsed.run_options.append(arg)
        else:
            parsed.unknown.append(arg)
        i += 1
    return parsed


def _take(parsed: CheckArgs, option: str, value: str) -> None:
    words = [w for w in re.split(r"[,\s]+", value) if w]
    if option == "-g":
        parsed.groups += words
    elif option == "-x":
        parsed.xgroups += words
    elif option == "-X":
        parsed.subdir_xfiles.append(value)
    elif option == "-e":
        parsed.excludes += words
    elif option == "-E":
        parsed.exclude_files.append(value)
    else:
        parsed.run_options += [option, value]


def run_options(args: Sequence[str]) -> list[str]:
    """The options in `args` that change how check runs tests but not which (kept when narrowed)."""
    return parse_check_args(args).run_options


def named_tests(args: Sequence[str]) -> list[str] | None:
    """The tests `args` name one by one, without duplicates (None when groups, exclusions,
    globs or options nixvmd does not know choose them)."""
    parsed = parse_check_args(args)
    choosing = parsed.groups or parsed.xgroups or parsed.subdir_xfiles or parsed.excludes
    if choosing or parsed.exclude_files or parsed.unknown or parsed.misplaced or not parsed.tests:
        return None
    if any(_GLOB.search(t) or not _TEST_ID.fullmatch(t.rpartition("/")[2]) for t in parsed.tests):
        return None
    return list(dict.fromkeys(t.removeprefix("tests/") for t in parsed.tests))


def group_dirs(fstyps: Collection[str]) -> list[str]:
    """The test directories a plain group is looked up in for these file systems (check's get_group_dirs)."""
    dirs = list(SRC_GROUPS)
    for fstyp in fstyps:
        name = "ext4" if fstyp in ("ext2", "ext3") or re.fullmatch(r"fuseblk\.ext[234]", fstyp) else fstyp
        if name not in dirs:
            dirs.append(name)
    return dirs


class _Tree:
    """The group.list files of an fstests tree, read once each."""

    def __init__(self, tree: Path) -> None:
        self.tests_dir = tree / "tests"
        self._lists: dict[str, dict[str, tuple[str, ...]]] = {}
        try:
            self.dirs = sorted(p.parent.name for p in self.tests_dir.glob(f"*/{GROUP_LIST}"))
        except OSError:
            self.dirs = []
        if not tree.is_dir():
            raise ConfigError(
                [f"xfstests.dir {tree} does not exist on this host: point it at a built fstests tree"]
            )
        if not self.dirs:
            raise ConfigError(
                [
                    f"xfstests.dir {tree} has no tests/*/{GROUP_LIST}: point xfstests.dir at a built "
                    "fstests tree (`make` there writes the group lists with tools/mkgroupfile)"
                ]
            )

    def members(self, directory: str) -> dict[str, tuple[str, ...]]:
        """{test name: its groups} of `directory`'s group.list ({} when it has none)."""
        if directory not in self._lists:
            self._lists[directory] = read_group_list(self.tests_dir / directory / GROUP_LIST)
        return self._lists[directory]

    def group(self, group: str, dirs: Sequence[str]) -> list[str]:
        """The tests of `group` (or `dir/group`) in check's `tests/dir/NNN` sense, as `dir/NNN`."""
        sub, _, name = group.rpartition("/")
        if sub and (self.tests_dir / sub).is_dir():
            dirs, group = [sub], name
        return [f"{d}/{t}" for d in dirs for t, groups in self.members(d).items() if group in groups]

    def named(self, pattern: str) -> list[str]:
        """The tests a command-line test names (a glob matches listed tests); [] when unknown."""
        pattern = pattern.removeprefix("tests/")
        if _GLOB.search(pattern):
            every = [f"{d}/{t}" for d in self.dirs for t in self.members(d)]
            return [t for t in every if fnmatch.fnmatchcase(t, pattern)]
        directory, _, name = pattern.partition("/")
        name = name.rpartition("/")[2]
        return [f"{directory}/{name}"] if name in self.members(directory) else []


def read_group_list(path: Path) -> dict[str, tuple[str, ...]]:
    """{test name: its groups} of one group.list ({} when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    members: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        words = line.partition("#")[0].split()
        if words and _TEST_ID.fullmatch(words[0]):
            members[words[0]] = tuple(words[1:])
    return members


def select_tests(tree: Path, args: Sequence[str], fstyps: Collection[str] = ()) -> list[str]:
    """The tests check in `tree` runs for `args`, in check's order, each once.

    `fstyps`: the file systems of the sections that run (their directories' groups count
    too; none: `generic` only). ConfigError (one sentence) for a tree without group lists,
    an option nixvmd does not know, an option after a test, or a `-g` group with no test.
    """
    parsed = parse_check_args(args)
    if parsed.unknown:
        raise ConfigError(
            [
                f"xfstests.args: check option {parsed.unknown[0]} is not one nixvmd can expand into a "
                "test list for shards (use tests, -g, -x, -e, -E, -X, -s, -S; or suite.shards = 1)"
            ]
        )
    if parsed.misplaced:
        raise ConfigError(
            [f"xfstests.args: check takes its options before the tests, not {parsed.misplaced[0]} after them"]
        )
    source = _Tree(tree)
    dirs = group_dirs(fstyps)
    chosen = [t for pattern in parsed.tests for t in source.named(pattern)]
    groups = parsed.groups or ([] if parsed.tests else ["auto"])
    if groups == ["all"] and not parsed.tests:
        chosen = [f"{d}/{t}" for d in dirs for t in source.members(d)]
    else:
        for group in groups:
            members = source.group(group, dirs)
            if not members:
                why = f'xfstests.args: group "{group}" has no test in {tree} (check would stop there)'
                raise ConfigError([why])
            chosen += members
    left_out = {t for group in parsed.xgroups for t in source.group(group, dirs)}
    expunged = _expunged(tree, source, parsed, dirs)
    kept = [t for t in chosen if t not in left_out and not _is_expunged(t, expunged)]
    ordered = kept if parsed.exact_order else sorted(kept)
    return list(dict.fromkeys(ordered))


def _expunged(tree: Path, source: _Tree, parsed: CheckArgs, dirs: Sequence[str]) -> list[str]:
    entries = list(parsed.excludes)
    for name in parsed.exclude_files:
        path = Path(name) if Path(name).is_absolute() else tree / name
        entries += _entries(path)
    for name in parsed.subdir_xfiles:
        for d in dirs:
            listed = _entries(source.tests_dir / d / name)
            entries += [f"{d}/{word}" for entry in listed for word in entry.split()]
    return entries


def _entries(path: Path) -> Iterable[str]:
    """The entries of an exclude file (check ignores one that is missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [e for line in text.splitlines() if (e := line.partition("#")[0].strip())]


def _is_expunged(test: str, entries: Sequence[str]) -> bool:
    word = re.compile(re.escape(test) + r"\b")
    return any(word.match(entry) for entry in entries)
