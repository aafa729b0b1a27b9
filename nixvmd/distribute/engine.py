"""Nix realises shard derivations on the user's builders: nothing is built here, the logs are followed.

`realise` asks Nix for each derivation's output: an output already valid in the local
store is a cache hit (`cached`, no build); the others go to one `nix-store --realise` with
`--max-jobs 0` (never a local build: the builders or nothing; without it when `[distribute]
build_here`, so nix.conf's max-jobs lets this host build too), `--keep-going` (one shard's
failure leaves the others building; a builder that fails or goes away is Nix's to retry
elsewhere), `--builders` when `[distribute] builders` is set (else nix.conf's), and
`--log-format internal-json`, so each line of a build's log reaches `on_log` with its
derivation, and the machine each one builds on reaches `on_machine`. `fresh`
(`nixvmctl run --fresh`) builds a copy of each derivation with a new token instead
(fresh.py: Nix's `--check` does not build again on a remote builder).

A derivation Nix could not build gets Nix's own error as one sentence (`error`); that is
the machinery's failure, never the kernel's. Each output is kept from the garbage collector
by a root `state_dir/distribute/roots/<name>` (the newest output of that name), so the
next run of the same kernel, guest, configuration and tests is a cache hit. Cancellation
ends Nix's process group (run_nix): the build hook and its ssh die with it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.fresh import fresh_copy
from nixvmd.distribute.nix_command import NIX, NIX_STORE, nix_stdout
from nixvmd.distribute.nix_log import BuildLine, BuildStarted, NixLog, NixMessage, error_sentence
from nixvmd.errors import DistributeError
from nixvmd.image.nix import run_nix
from nixvmd.results.space import make_dirs

log = logging.getLogger(__name__)

ROOTS = Path("distribute") / "roots"  # under state_dir

_STORE_NAME = re.compile(r"^[0-9a-z]{32}-")

OnLog = Callable[[Path, str], None]
"""A derivation and one line of its build's log."""
OnMachine = Callable[[Path, str], None]
"""A derivation and the machine Nix builds it on (its store URI; "" for this one)."""


@dataclass(frozen=True)
class Realised:
    """What became of one derivation: its output (None when it was not built), whether it was
    there before (`cached`: nothing was built) and Nix's error when it failed."""

    drv: Path
    out: Path | None
    cached: bool
    error: str | None


def _nothing(drv: Path, text: str) -> None:
    return None


@dataclass
class _Build:
    """One nix-store --realise as it goes: Nix's messages, and whom to tell about each line."""

    drvs: dict[str, Path]  # the derivations Nix builds -> those the caller asked for
    on_log: OnLog
    on_machine: OnMachine
    log: NixLog = field(default_factory=NixLog)
    messages: list[NixMessage] = field(default_factory=list)

    def line(self, text: str) -> None:
        event = self.log.feed(text)
        if isinstance(event, BuildLine):
            self.on_log(self.drvs.get(event.drv, Path(event.drv)), event.text)
        elif isinstance(event, BuildStarted):
            log.info("building %s on %s", event.drv, event.machine or "this machine")
            self.on_machine(self.drvs.get(event.drv, Path(event.drv)), event.machine)
        elif isinstance(event, NixMessage):
            self.messages.append(event)
            if event.level == 0:
                log.warning("nix: %s", event.text.strip())


def realise_command(drvs: Iterable[Path], config: Config) -> list[str]:
    """The nix-store command that builds `drvs` on the builders (see the module's docstring)."""
    argv = [NIX_STORE, "--realise", *map(str, drvs), "--keep-going"]
    if not config.distribute.build_here:
        argv += ["--max-jobs", "0"]
    argv += ["--log-format", "internal-json"]
    if config.distribute.builders:
        argv += ["--builders", config.distribute.builders]
    return argv


async def realise(
    drvs: Sequence[Path],
    config: Config,
    *,
    fresh: bool,
    on_log: OnLog = _nothing,
    on_machine: OnMachine = _nothing,
) -> list[Realised]:
    """Each of `drvs` realised by Nix on the builders (see the module's docstring), in order.

    Raises DistributeError when Nix cannot be asked at all (not installed, a derivation
    that is not one); a build that fails is a `Realised` with its `error`.
    """
    if fresh:
        targets = {drv: await fresh_copy(drv, config.daemon.state_dir) for drv in drvs}
    else:
        targets = {drv: drv for drv in drvs}
    outs = {drv: await output_of(targets[drv]) for drv in drvs}
    before = await valid_paths(outs.values())
    todo = [drv for drv in drvs if outs[drv] not in before]
    build = _Build({str(targets[drv]): drv for drv in todo}, on_log, on_machine)
    status = 0
    if todo:
        argv = realise_command([targets[drv] for drv in todo], config)
        status, _ = await run_nix(argv, Path("/"), None, build.line)
    after = await valid_paths(outs.values()) if todo else before
    done = [
        _realised(drv, targets[drv], outs[drv], drv not in todo, status, after, build.messages)
        for drv in drvs
    ]
    for r in done:
        if r.out is not None:
            await keep(r.out, config.daemon.state_dir)
    return done


def _realised(
    drv: Path, built: Path, out: Path, cached: bool, status: int, valid: set[Path], messages: list[NixMessage]
) -> Realised:
    """`drv`'s end: `built` is the derivation Nix was given for it (a fresh copy, or itself)."""
    if cached:
        return Realised(drv, out, True, None)
    error = error_sentence(messages, str(built))
    if out in valid and (status == 0 or error is None):
        return Realised(drv, out, False, None)
    if error is None:
        error = f"nix-store --realise {built} failed (exit status {status}) and said nothing about it"
    return Realised(drv, None, False, error)


async def output_of(drv: Path) -> Path:
    """The output path of derivation `drv` (its `out`, named like the derivation)."""
    said = await nix_stdout([NIX_STORE, "--query", "--outputs", str(drv)], f"reading the outputs of {drv}")
    outs = [Path(line) for line in said.split()]
    if not outs:
        raise DistributeError(f"{drv} has no outputs")
    name = _STORE_NAME.sub("", drv.name).removesuffix(".drv")
    return next((o for o in outs if _STORE_NAME.sub("", o.name) == name), outs[0])


async def valid_paths(paths: Iterable[Path]) -> set[Path]:
    """Those of `paths` that are valid in the local store (built or copied in, not collected)."""
    wanted = list(paths)
    if not wanted:
        return set()
    argv = [NIX_STORE, "--check-validity", "--print-invalid", *map(str, wanted)]
    invalid = {Path(line) for line in (await nix_stdout(argv, "checking store paths")).split()}
    return {p for p in wanted if p not in invalid}


async def keep(out: Path, state_dir: Path) -> Path:
    """A GC root for `out` in `state_dir/distribute/roots/`, named like it without its hash."""
    roots = state_dir / ROOTS
    make_dirs(roots, "keeping a Nix result")
    root = roots / _STORE_NAME.sub("", out.name)
    argv = [NIX_STORE, "--realise", str(out), "--add-root", str(root), "--indirect"]
    try:
        await nix_stdout(argv, f"keeping {out} from the garbage collector")
    except DistributeError as exc:
        log.warning("%s", exc)
    return root


async def registered_at(out: Path) -> float | None:
    """When `out` came into the local store (its build, or its copy from the builder); None if unknown."""
    argv = [NIX, "--extra-experimental-features", "nix-command", "path-info", "--json", str(out)]
    try:
        entries = json.loads(await nix_stdout(argv, f"reading the store's record of {out}"))
        return float(entries[0]["registrationTime"])
    except (DistributeError, ValueError, LookupError, TypeError):
        return None
