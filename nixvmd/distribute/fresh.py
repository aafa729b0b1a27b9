"""A derivation made to build again (`nixvmctl run --fresh`): the same one, plus a fresh token.

Nix builds a derivation once: an output valid in a store is its answer from then on. Nor
does `--check` help on a remote builder: Nix 2.8 hands the builder the derivation in
normal mode, the builder finds the output it already has and nothing runs again (and a
check of a VM run would fail anyway: no two consoles are the same). So a fresh run builds a
copy of the derivation that differs in one attribute, `nixvmdFresh`, a new token each
time: the same builder, arguments, environment, inputs and requiredSystemFeatures, a new
output path, a real build.

The copy is made from `nix show-derivation`'s JSON by a small expression
(`builtins.fromJSON`, every input source through `builtins.storePath` so the copy has the
same inputs) and instantiated like the original. A derivation with input derivations is
not copied (a shard's inputs are all sources added to the store).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from nixvmd.distribute.nix_command import NIX, nix_stdout
from nixvmd.errors import DistributeError
from nixvmd.results.space import make_dirs, write_atomic

FRESH = Path("distribute") / "fresh"  # under state_dir: each copy's JSON and expression

EXPRESSION = """\
let
  original = builtins.fromJSON (builtins.readFile ./derivation.json);
in
derivation (removeAttrs original.env [ "out" ] // {
  args = original.args;
  nixvmdInputs = map builtins.storePath original.inputSrcs;
  nixvmdFresh = builtins.readFile ./token;
})
"""


async def fresh_copy(drv: Path, state_dir: Path) -> Path:
    """A new derivation like `drv` whose output is built anew (see the module's docstring)."""
    argv = [NIX, "--extra-experimental-features", "nix-command", "show-derivation", str(drv)]
    try:
        shown = json.loads(await nix_stdout(argv, f"reading {drv}"))
        [original] = shown.values()
    except ValueError as exc:
        raise DistributeError(f"cannot read {drv} to build it again: {exc}") from exc
    if original.get("inputDrvs"):
        raise DistributeError(f"{drv} depends on other derivations: nixvmd cannot build it afresh")
    directory = state_dir / FRESH / drv.name.removesuffix(".drv")
    make_dirs(directory, "copying a derivation to build it again")
    write_atomic(directory / "derivation.json", json.dumps(original), "copying a derivation")
    write_atomic(directory / "token", secrets.token_hex(16), "copying a derivation")
    write_atomic(directory / "fresh.nix", EXPRESSION, "copying a derivation")
    said = await nix_stdout(["nix-instantiate", str(directory / "fresh.nix")], f"copying {drv}")
    return Path(said.split()[-1])
