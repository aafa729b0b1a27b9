"""The shard lists a run's inputs were split into before, so the same inputs make the same derivations.

With `[distribute] engine = "nix"` each shard's test list, in its order, is part of its
derivation. The daemon splits a run on the tests' previous durations and puts the
previous run's failures first, so the same kernel run again would mostly be split or
ordered otherwise: other derivations, built again, no cache hit. `same_split` keeps the
lists a run used under its inputs' key (daemon/tested.py `run_key`: kernel bytes,
effective config, guest; and the tests it was narrowed to) in
`state_dir/distribute/splits.json` and gives them back when the same key comes again and
they still hold the same tests. A new kernel is a new key: a fresh split, balanced on the
durations known then. Losing the file costs one rebuild, never a wrong run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from nixvmd.errors import StateSpaceError
from nixvmd.results.space import make_dirs, write_atomic

log = logging.getLogger(__name__)

SPLITS = Path("distribute") / "splits.json"  # under state_dir
KEEP = 64  # run keys remembered; the oldest go first

Shards = list[tuple[str, ...]]


def split_key(inputs: str, tests: Sequence[str]) -> str:
    """The key of a run's split: its inputs' run key and the tests it is narrowed to (none: all)."""
    return hashlib.sha256(json.dumps([inputs, list(tests)]).encode()).hexdigest()[:32]


def same_split(state_dir: Path, key: str, shards: Shards) -> Shards:
    """The lists a run with `key` was split into before, when they hold the same tests as
    `shards` (the split made now); else `shards`, remembered for `key` from now on."""
    path = state_dir / SPLITS
    known = _load(path)
    before = known.get(key)
    if before is not None and sorted(t for s in before for t in s) == sorted(t for s in shards for t in s):
        return before
    known.pop(key, None)  # re-inserted last: the newest
    known[key] = shards
    while len(known) > KEEP:
        del known[next(iter(known))]
    text = json.dumps({"version": 1, "splits": {k: [list(s) for s in v] for k, v in known.items()}})
    try:
        make_dirs(path.parent, "keeping the shards' split")
        write_atomic(path, text, "keeping the shards' split")
    except (OSError, StateSpaceError) as exc:
        log.warning("cannot keep the shards' split in %s (%s): the same kernel is built again", path, exc)
    return shards


def _load(path: Path) -> dict[str, Shards]:
    try:
        data = json.loads(path.read_text())
        return {
            str(key): [tuple(str(t) for t in shard) for shard in shards]
            for key, shards in data["splits"].items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s unreadable (%s): runs are split afresh", path, exc)
        return {}
