"""The known-failures file (baseline): failing tests that are expected, maybe only on some kernels.

One test per line, an optional ``# comment``, and optional kernel-version
conditions in brackets, before the comment or inside it::

    generic/475                       # flaky everywhere
    generic/476  [>= 6.1, < 6.6]      # fixed in 6.6
    xfs/123      # fails on old kernels [< 6.1]
    xfs_4k:generic/001                # only in section xfs_4k
    kunit_suite.*                     # '*' and '?' match like shell globs
    "selftests: net: reuseport_bpf"   # a name with spaces goes in double quotes

Blank lines and full-line comments are ignored. Conditions in one bracket (or
in several) must all hold. Operators: < <= > >= == != (= means ==). An entry
without a section applies in every section: ``generic/475`` also covers
``xfs_4k:generic/475``.

Kernel versions compare by major.minor.patch, with -rcN before the release
(6.8.0-rc3 < 6.8.0 < 6.8.1); anything after that is a local or distribution
suffix and ignored, so Debian's 6.1.0-56-cloud-amd64 is 6.1.0 (its ABI number
is not an upstream version). ``==`` compares what it names: ``== 6.8`` is the
whole 6.8 series including its rcs, ``== 6.8.0`` only the release,
``== 6.8.0-rc3`` that rc. When the running kernel's version cannot be read,
entries with conditions do not apply: an unexplained failure is shown rather
than hidden.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import NixvmdError

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?")
_GROUP = re.compile(r"\[([^\]]*)\]")
_CONDITION = re.compile(r"\s*(<=|>=|==|!=|<|>|=)\s*(\S+)\s*$")
_STARTS_WITH_OPERATOR = re.compile(r"\s*[<>=!]")

_HEADER = (
    "# nixvmd known failures: one test per line, optional '# comment',\n"
    "# optional kernel condition in brackets, e.g. 'generic/475  # flaky  [< 6.6]'.\n"
)


class BaselineError(NixvmdError):
    """The known-failures file cannot be read or has bad lines; `problems` names each file:line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class KernelVersion:
    """A kernel release reduced to what orders it: major.minor.patch and the rc number."""

    major: int
    minor: int
    patch: int = 0
    rc: int | None = None
    given: int = 3
    """How many of major.minor.patch were written; `==` compares only those."""

    @classmethod
    def parse(cls, text: str) -> KernelVersion | None:
        """The version at the start of `text` (``6.1.0-56-cloud-amd64``, ``6.8-rc3+``), or None."""
        match = _VERSION.match(text.strip())
        if match is None:
            return None
        major, minor, patch, rc = match.groups()
        return cls(
            int(major),
            int(minor),
            int(patch or 0),
            None if rc is None else int(rc),
            3 if patch is not None else 2,
        )

    @property
    def order(self) -> tuple[int, int, int, int, int]:
        """Sort key: an rc sorts before its release."""
        rc = self.rc
        return (self.major, self.minor, self.patch, 0 if rc is not None else 1, rc or 0)

    def same_as(self, other: KernelVersion) -> bool:
        """Whether `other` (a running kernel) is this version, to the precision it was written."""
        mine = (self.major, self.minor, self.patch)[: self.given]
        theirs = (other.major, other.minor, other.patch)[: self.given]
        if mine != theirs:
            return False
        if self.rc is not None:
            return other.rc == self.rc
        return self.given < 3 or other.rc is None

    def __str__(self) -> str:
        numbers = f"{self.major}.{self.minor}" + (f".{self.patch}" if self.given == 3 else "")
        return numbers + (f"-rc{self.rc}" if self.rc is not None else "")


@dataclass(frozen=True)
class VersionCondition:
    """One ``op version`` condition on the running kernel."""

    op: str
    version: KernelVersion

    def holds(self, kernel: KernelVersion) -> bool:
        """Whether the running `kernel` satisfies this condition."""
        if self.op == "==":
            return self.version.same_as(kernel)
        if self.op == "!=":
            return not self.version.same_as(kernel)
        mine, theirs = self.version.order, kernel.order
        return {
            "<": theirs < mine,
            "<=": theirs <= mine,
            ">": theirs > mine,
            ">=": theirs >= mine,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.version}"


@dataclass(frozen=True)
class BaselineEntry:
    """One known failure: a test name (or glob), its conditions, its comment, and its line."""

    test: str
    conditions: tuple[VersionCondition, ...] = ()
    comment: str = ""
    line: int = 0

    def matches(self, test: str) -> bool:
        """Whether this entry names `test`; an entry without a section covers every section."""
        names = [test]
        section, colon, plain = test.partition(":")
        if colon and section and not section[-1].isspace() and ":" not in self.test:
            names.append(plain)
        if "*" in self.test or "?" in self.test:
            return any(fnmatch.fnmatchcase(name, self.test) for name in names)
        return self.test in names

    def applies(self, test: str, kernel_version: str) -> bool:
        """Whether `test` failing on `kernel_version` is expected by this entry."""
        if not self.matches(test):
            return False
        if not self.conditions:
            return True
        kernel = KernelVersion.parse(kernel_version)
        return kernel is not None and all(c.holds(kernel) for c in self.conditions)


def _parse_group(text: str) -> list[VersionCondition]:
    conditions = []
    for part in text.split(","):
        match = _CONDITION.match(part)
        version = KernelVersion.parse(match.group(2)) if match else None
        if match is None or version is None or _VERSION.fullmatch(match.group(2)) is None:
            raise ValueError(
                f"bad kernel condition {part.strip()!r}: write e.g. '>= 6.1', '< 6.6-rc1', '== 6.8'"
            )
        op = "==" if match.group(1) == "=" else match.group(1)
        conditions.append(VersionCondition(op, version))
    return conditions


def _split_test(text: str) -> tuple[str, str]:
    """The test name at the start of `text` (a token, or "in quotes") and what follows it."""
    stripped = text.lstrip()
    if stripped.startswith('"'):
        test, quote, rest = stripped[1:].partition('"')
        if not quote or not test.strip():
            raise ValueError('a test name in quotes needs its closing quote: "name with spaces"')
        return test, rest
    match = re.match(r"[^\s\[]*", stripped)
    test = match.group(0) if match else ""
    return test, stripped[len(test) :]


def _parse_line(text: str, number: int) -> BaselineEntry | None:
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    test, rest = _split_test(text)
    if not test:
        raise ValueError("a condition without a test name before it")
    rest, _, comment = rest.partition("#")
    conditions: list[VersionCondition] = []
    end = 0
    for group in _GROUP.finditer(rest):
        if rest[end : group.start()].strip():
            break
        conditions += _parse_group(group.group(1))
        end = group.end()
    if rest[end:].strip():
        raise ValueError(
            f"unexpected {rest[end:].strip()!r} after the test name: "
            "conditions go in brackets, anything else after '#'"
        )

    def take(group: re.Match[str]) -> str:
        if not _STARTS_WITH_OPERATOR.match(group.group(1)):
            return group.group(0)
        conditions.extend(_parse_group(group.group(1)))
        return ""

    comment = " ".join(_GROUP.sub(take, comment).split())
    return BaselineEntry(test, tuple(conditions), comment, number)


@dataclass(frozen=True)
class Baseline:
    """The known failures, with the file's lines kept so that rewriting it keeps comments."""

    entries: tuple[BaselineEntry, ...] = ()
    source: str = ""
    lines: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, source: str = "<baseline>") -> Baseline:
        """Parse known-failures text; BaselineError names every bad line as source:line."""
        entries, problems = [], []
        lines = tuple(text.splitlines())
        for number, line in enumerate(lines, start=1):
            try:
                entry = _parse_line(line, number)
            except ValueError as exc:
                problems.append(f"{source}:{number}: {exc}")
                continue
            if entry is not None:
                entries.append(entry)
        if problems:
            raise BaselineError(problems)
        return cls(tuple(entries), source, lines)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        """Read the known-failures file; a missing file is an empty baseline."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(source=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(
                [f"{path}: cannot read the known-failures file ({exc}); fix or remove it"]
            ) from None
        return cls.parse(text, str(path))

    def entry_for(self, test: str, kernel_version: str) -> BaselineEntry | None:
        """The first entry that expects `test` to fail on `kernel_version`, or None."""
        return next((e for e in self.entries if e.applies(test, kernel_version)), None)

    def applies(self, test: str, kernel_version: str) -> bool:
        """Whether `test` failing on `kernel_version` is a known failure."""
        return self.entry_for(test, kernel_version) is not None


def write_baseline(
    path: str | os.PathLike[str],
    failures: Iterable[str],
    kernel_version: str,
    existing: Baseline | None = None,
) -> Baseline:
    """Add the `failures` not yet known to the file at `path`, keeping its lines; return the result.

    `existing` is the baseline as loaded (read from `path` when None). Each new
    line records the kernel version it was accepted on, as a comment; names
    with spaces, '#' or '[' are quoted, and names that cannot be written
    (`unwritable`) are left out. The file is replaced atomically.
    """
    target = Path(path)
    base = existing if existing is not None else Baseline.load(target)
    lines = list(base.lines) or _HEADER.splitlines()
    note = f"  # accepted on {kernel_version}" if kernel_version else ""
    for test in dict.fromkeys(failures):
        if unwritable(test) or base.applies(test, kernel_version):
            continue
        quote = any(c.isspace() or c in "#[" for c in test)
        lines.append(f'"{test}"{note}' if quote else f"{test}{note}")
    return _replace(target, "\n".join(lines) + "\n")


def unwritable(test: str) -> bool:
    """Whether the file's format cannot name `test` exactly (a double quote, a line break, no name)."""
    return any(c in test for c in '"\n\r') or not test.strip()


def remove_from_baseline(path: str | os.PathLike[str], tests: Iterable[str]) -> Baseline:
    """Take the entries for `tests` (names as the file writes them) out of the file at `path`.

    Every other line stays as it was. Names the file has no entry for are refused
    (BaselineError naming them) before anything is written.
    """
    target = Path(path)
    base = Baseline.load(target)
    wanted = list(dict.fromkeys(tests))
    known = {e.test for e in base.entries}
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise BaselineError(
            [f"{target}: no known failure named {', '.join(map(repr, unknown))}; see nixvmctl baseline list"]
        )
    dropped = {e.line for e in base.entries if e.test in wanted}
    lines = [line for number, line in enumerate(base.lines, start=1) if number not in dropped]
    return _replace(target, "\n".join(lines) + "\n")


def _replace(target: Path, text: str) -> Baseline:
    """Write `text` as the known-failures file at `target`, atomically, keeping its mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Baseline.parse(text, str(target))
