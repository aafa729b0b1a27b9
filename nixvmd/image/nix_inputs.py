"""The nix image's inputs: which files a build reads, their content digests, the last good build.

A rebuild is due only when the content of an input changed: `touch vm.nix`, or an editor
saving identical bytes, changes nothing. Inputs are found without trusting the user to list
them (documented in docs/nix-backend.md):

- nix_file form: `nix-instantiate -vvv` logs every file it imports ("evaluating file") and
  every path it copies to the store ("copied source"); `builtins.readFile`,
  `builtins.path` and `filterSource` log nothing, so the relative path literals
  (./x, ../x) written in those .nix files are added too. Files in the Nix store and in the
  search path's roots (the nixpkgs channel) are left out: they are not the user's to edit.
- flake form: a flake cannot read outside its own tree, so a local flake's directory is
  the input (walked, minus .git); a remote flake has only image.inputs.
- always: the configuration file itself and image.inputs.

The last good build is kept in `<state_dir>/image/state.json`, so a restarted daemon that
finds every input unchanged runs no Nix at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nixvmd.errors import ImageBuildError
from nixvmd.image.nix import (
    NIXOS_ENTRY,
    NixImage,
    NixImageSpec,
    build_image,
    image_dir,
    nix_build_command,
    nix_expression_for_path,
    run_nix,
)

STATE_VERSION = 1

_EVALUATED = re.compile(r"^evaluating file '(?P<path>.*)'$")
_COPIED = re.compile(r"^copied source '(?P<path>.*)' -> '/nix/store/[^']*'$")
_SEARCH_ROOT = re.compile(r"^resolved search path element '(?P<elem>.*)' to '(?P<path>.*)'$")
_RELATIVE_PATH_LITERAL = re.compile(r"(?<![A-Za-z0-9._+\-/])\.\.?(?:/[A-Za-z0-9._+\-]+)+")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_IGNORED_DIRS = frozenset({".git", ".hg", ".svn", ".direnv"})
# Editors' swap, backup and lock files, and vim's "can I write here" probe.
_IGNORED_FILE = re.compile(r"^(\..*\.sw[a-p]|.*~|#.*#|\.#.*|4913)$")
_STORE = "/nix/store/"
_MISSING = "missing"


def local_flake_directory(ref: str, cwd: Path) -> Path | None:
    """The directory of a local flake ('.#vm', 'path:/x#y', 'git+file:///x'); None if remote."""
    base = ref.split("#", 1)[0].split("?", 1)[0]
    for prefix in ("path:", "git+file://", "git+file:"):
        if base.startswith(prefix):
            base = base.removeprefix(prefix) or "."
            break
    else:
        if _URL_SCHEME.match(base) or not base.startswith((".", "/")):
            return None
    return Path(os.path.normpath(cwd / base))


async def discover_inputs(spec: NixImageSpec, *, env: Mapping[str, str] | None = None) -> frozenset[Path]:
    """The files and directories whose content the image depends on.

    For the nix_file form this runs one `nix-instantiate` (an evaluation, no build). It
    works on a configuration that fails to evaluate too: the files read before the error
    are reported, so the watcher can see the broken one being fixed.
    """
    always = _always_inputs(spec)
    if spec.is_flake:
        flake_dir = local_flake_directory(spec.flake, spec.cwd())
        return frozenset(always | ({flake_dir} if flake_dir else set()))
    configuration = spec.configuration()
    argv = [
        "nix-instantiate",
        "-vvv",
        NIXOS_ENTRY,
        "-A",
        "vm",
        "--arg",
        "configuration",
        nix_expression_for_path(configuration),
        *spec.nix_args,
    ]
    try:
        _, lines = await run_nix(argv, spec.cwd(), env, _ignore)
    except ImageBuildError:
        lines = []  # no nix-instantiate: the path literals below are what is left
    evaluated, roots = parse_evaluation_log(lines)
    roots = [r for r in roots if not _is_under(configuration, r)]
    found = {p for p in evaluated if not _excluded(p, roots)} | always
    nix_files = [p for p in found if p.suffix == ".nix" and p.is_file()]
    literals = {p for f in nix_files for p in _path_literals(f) if not _excluded(p, roots)}
    return frozenset(found | literals)


def parse_evaluation_log(lines: Iterable[str]) -> tuple[set[Path], list[Path]]:
    """From `nix-instantiate -vvv` output: the paths read, and the search path's roots."""
    read: set[Path] = set()
    roots: list[Path] = []
    for line in lines:
        if m := _EVALUATED.match(line) or _COPIED.match(line):
            read.add(Path(m["path"]))
        elif m := _SEARCH_ROOT.match(line):
            roots += [Path(m["elem"]), Path(os.path.realpath(m["path"]))]
    return read, roots


def _path_literals(nix_file: Path) -> set[Path]:
    try:
        text = nix_file.read_text(errors="replace")
    except OSError:
        return set()
    found = set()
    for literal in _RELATIVE_PATH_LITERAL.findall(text):
        path = Path(os.path.normpath(nix_file.parent / literal))
        if path.is_file() or path.is_dir():
            found.add(path)
    return found


def _excluded(path: Path, roots: Iterable[Path]) -> bool:
    return os.path.realpath(path).startswith(_STORE) or any(_is_under(path, r) for r in roots)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _ignore(_line: str) -> None:
    pass


def digest(path: Path) -> str:
    """The sha256 of a file's bytes (and executable bit) or of a directory tree, by content.

    Directories are walked in sorted order, skipping .git (and other VCS dirs) and editor
    swap/backup files; symlinks inside them count by their target text, as Nix copies them.
    A missing path has a digest too, so creating or deleting it is a change.
    """
    h = hashlib.sha256()
    try:
        if path.is_dir():
            _digest_tree(h, path)
        else:
            _digest_file(h, "", path)
    except FileNotFoundError:
        return _MISSING
    return h.hexdigest()


def fingerprint(paths: Iterable[Path]) -> str:
    """One sha256 over the sorted absolute paths and their content digests."""
    h = hashlib.sha256()
    for path in sorted({Path(os.path.abspath(p)) for p in paths}):
        _feed(h, "path", str(path), digest(path))
    return h.hexdigest()


def digests(paths: Iterable[Path]) -> dict[Path, str]:
    """The content digest of each path (see `digest`)."""
    return {Path(os.path.abspath(p)): digest(Path(p)) for p in paths}


def _feed(h: hashlib._Hash, *fields: str) -> None:
    for field in fields:
        data = field.encode(errors="surrogateescape")
        h.update(len(data).to_bytes(8, "big") + data)


def _digest_file(h: hashlib._Hash, name: str, path: Path) -> None:
    # O_NONBLOCK: a FIFO listed as an input must not hang the daemon.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            _feed(h, "special", name, oct(stat.S_IFMT(mode)))
            return
        _feed(h, "file", name, "x" if mode & stat.S_IXUSR else "-")
        while chunk := f.read(1 << 20):
            h.update(chunk)


def _digest_tree(h: hashlib._Hash, top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        rel_dir = os.path.relpath(dirpath, top)
        for name in sorted([*filenames, *(d for d in dirnames if _is_link(dirpath, d))]):
            if _IGNORED_FILE.match(name):
                continue
            full = Path(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            try:
                if full.is_symlink():
                    _feed(h, "link", rel, os.readlink(full))
                else:
                    _digest_file(h, rel, full)
            except FileNotFoundError:
                _feed(h, _MISSING, rel)
            except OSError as e:
                _feed(h, "unreadable", rel, e.strerror or "")


def _is_link(dirpath: str, name: str) -> bool:
    return os.path.islink(os.path.join(dirpath, name))


@dataclass(frozen=True)
class ImageState:
    """The last good nix build: the image, how it was built, and the digests of its inputs.

    The digests are taken before the build started, so an edit that lands while Nix runs
    still counts as a change afterwards.
    """

    image: NixImage
    command: tuple[str, ...]
    nix_path: str
    inputs: Mapping[Path, str]

    @property
    def fingerprint(self) -> str:
        """One digest over all inputs as they were when this image was built."""
        h = hashlib.sha256()
        for path in sorted(self.inputs):
            _feed(h, "path", str(path), self.inputs[path])
        return h.hexdigest()


def state_file(state_dir: Path) -> Path:
    """Where the last good build is recorded."""
    return image_dir(state_dir) / "state.json"


def save_state(state_dir: Path, state: ImageState) -> None:
    """Record the last good build (atomically: a crash leaves the old record or the new)."""
    data = {
        "version": STATE_VERSION,
        "out_path": str(state.image.out_path),
        "runner": str(state.image.runner),
        "host_name": state.image.host_name,
        "command": list(state.command),
        "nix_path": state.nix_path,
        "inputs": {str(p): d for p, d in sorted(state.inputs.items())},
        "fingerprint": state.fingerprint,
    }
    path = state_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def load_state(state_dir: Path) -> ImageState | None:
    """The recorded last good build, or None when there is none or its image is gone."""
    try:
        data = json.loads(state_file(state_dir).read_text())
        if data.get("version") != STATE_VERSION:
            return None
        image = NixImage(Path(data["out_path"]), Path(data["runner"]), str(data["host_name"]))
        state = ImageState(
            image=image,
            command=tuple(str(a) for a in data["command"]),
            nix_path=str(data["nix_path"]),
            inputs={Path(p): str(d) for p, d in data["inputs"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return state if image.runner.is_file() else None


def is_current(
    state: ImageState | None,
    spec: NixImageSpec,
    state_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> bool:
    """True when `state`'s image is what a build of `spec` would give now: no Nix needed.

    Reads the inputs' content; runs no process.
    """
    if state is None or not state.image.runner.is_file():
        return False
    if state.command != tuple(nix_build_command(spec, state_dir)):
        return False
    if state.nix_path != _nix_path(env):
        return False
    required = _always_inputs(spec)
    if not required <= state.inputs.keys():
        return False
    return all(digest(p) == d for p, d in state.inputs.items())


async def build_and_record(
    spec: NixImageSpec,
    state_dir: Path,
    on_line: Callable[[str], None],
    *,
    previous: ImageState | None = None,
    env: Mapping[str, str] | None = None,
) -> ImageState:
    """Build the image, discover its inputs and record it all as the last good build.

    Raises ImageBuildError as build_image does (the previous record stays in place).
    """
    known = _always_inputs(spec) | set(previous.inputs if previous else ())
    before = digests(known)
    image = await build_image(spec, state_dir, on_line, env=env)
    inputs = await discover_inputs(spec, env=env)
    state = ImageState(
        image=image,
        command=tuple(nix_build_command(spec, state_dir)),
        nix_path=_nix_path(env),
        inputs={p: before[p] if p in before else digest(p) for p in inputs},
    )
    save_state(state_dir, state)
    return state


def _always_inputs(spec: NixImageSpec) -> set[Path]:
    paths = {Path(os.path.abspath(spec.cwd() / p)) for p in spec.inputs}
    if not spec.is_flake:
        paths.add(spec.configuration())
    return paths


def _nix_path(env: Mapping[str, str] | None) -> str:
    return (os.environ if env is None else env).get("NIX_PATH", "")
