"""Plugins: modules named in $NIXVMD_PLUGINS, imported before the config is read.

A plugin module registers what it adds when imported: `image.registry.register_backend`,
`suite.registry.register_suite_kind`, `report.reporter.register_channel`. An environment
variable (not a config key) because the config may name what a plugin registers.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from nixvmd.errors import NixvmdError

VARIABLE = "NIXVMD_PLUGINS"


def load_plugins(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Import every module $NIXVMD_PLUGINS names (comma-separated); the names imported.

    NixvmdError in one sentence when one cannot be imported.
    """
    names = tuple(n.strip() for n in environ.get(VARIABLE, "").split(",") if n.strip())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise NixvmdError(
                f"{VARIABLE} names {name!r}, which cannot be imported ({exc}); fix PYTHONPATH or {VARIABLE}"
            ) from None
    return names
