"""Which backend `image.backend` names: a name → factory table a plugin module can extend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nixvmd.config.extensions import add_name
from nixvmd.config.schema import Config
from nixvmd.errors import ConfigError
from nixvmd.image.backend import Backend, BuildHooks
from nixvmd.image.direct_backend import direct_backend
from nixvmd.image.nix_backend import nix_backend

# factory(config, config file, the backend in use or None, hooks) -> the backend for config;
# a factory returns `current` itself when nothing it depends on changed (a reload).
BackendFactory = Callable[[Config, Path | None, Backend | None, BuildHooks], Backend]

_FACTORIES: dict[str, BackendFactory] = {"direct": direct_backend, "nix": nix_backend}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `image.backend = name` use `factory` (a plugin module calls this when imported)."""
    _FACTORIES[name] = factory
    add_name("image.backend", name)


def backend_names() -> tuple[str, ...]:
    """The backends `image.backend` may name."""
    return tuple(_FACTORIES)


def backend_for(
    config: Config, config_path: Path | None, current: Backend | None, hooks: BuildHooks
) -> Backend:
    """The backend `config` asks for (`current` when it is still the right one)."""
    name = str(config.image.backend)
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(
            [f"image.backend = {name!r} is not a backend nixvmd knows ({', '.join(_FACTORIES)})"]
        )
    return factory(config, config_path, current, hooks)
