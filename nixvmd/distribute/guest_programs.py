"""The host programs a sealed guest needs, as a store tree unpacked over the guest's root.

A Nix builder cannot share its root with the guest (image.share_host_root needs root and
the host's /), and there is no nixpkgs to build a guest from; so the programs the suite
runs beyond busybox are copied from this host with their libraries and loader, each at the
path the host has it (ld.so finds the libraries in its default search path; `#!/bin/bash`
finds bash through a bin/ link). fstests needs bash, the sections' mkfs and whatever of
xfsprogs and util-linux is installed; `distribute.guest_programs` adds more. The tree is
made once per set of programs (their paths, sizes and mtimes) and remembered in
state_dir/distribute/guest-programs.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from nixvmd.config.schema import Config
from nixvmd.distribute.programs import copy_file, file_key, find_program, libraries
from nixvmd.distribute.store import cached_tree
from nixvmd.errors import DistributeError

FORMAT = "1"
CACHE_FILE = Path("distribute") / "guest-programs.json"
NAME = "nixvmd-guest-programs"
# Used by fstests when installed here; missing ones are left out (check says what it lacks).
XFSTESTS_OPTIONAL = ("blkid", "xfs_db", "xfs_io", "xfs_repair", "xfs_admin", "mkfs.ext4", "e2fsck")


def wanted_programs(config: Config) -> tuple[Path, ...]:
    """The host programs `config`'s guest gets: the suite's, then distribute.guest_programs."""
    required = list(config.distribute.guest_programs)
    optional: list[str] = []
    if str(config.suite.kind) == "xfstests":
        required += ["bash", *(f"mkfs.{s.fstyp}" for s in config.xfstests.sections)]
        optional += XFSTESTS_OPTIONAL
    found = [find_program(name) for name in dict.fromkeys(required)]
    for name in optional:
        try:
            found.append(find_program(name))
        except DistributeError:
            continue
    unique = {p.name: p for p in found}
    return tuple(unique.values())


async def guest_programs(config: Config) -> str | None:
    """The store tree of `config`'s guest programs; None when the suite needs none."""
    programs = wanted_programs(config)
    if not programs:
        return None
    key = FORMAT + "".join(f":{p.name}={file_key(p)}" for p in programs)
    cache = config.daemon.state_dir / CACHE_FILE
    return await cached_tree(cache, key, NAME, lambda root: make_tree(programs, root))


def make_tree(programs: tuple[Path, ...], root: Path) -> None:
    """Each program in its host directory by its own name (mkfs.ext4 stays mkfs.ext4), its libraries."""
    root.mkdir()
    for program in programs:
        directory = program.resolve().parent
        copy_file(program, root / directory.relative_to("/") / program.name, 0o755)
        if directory.parent == Path("/usr"):  # /usr/bin/bash also as /bin/bash
            link = root / directory.name / program.name
            link.parent.mkdir(exist_ok=True)
            if not link.is_symlink():
                os.symlink(f"/usr/{directory.name}/{program.name}", link)
        for lib in libraries(program):
            dest = root / lib.path.relative_to("/")
            if not dest.exists():
                copy_file(lib.path, dest, 0o755)
