"""The upstream registry: our variants (and third parties') made visible to s3prl.

s3prl resolves ``-u NAME`` with ``getattr(s3prl.hub, NAME)`` and has no plugin mechanism, so a variant becomes
usable by its runner, by ``s3prl.nn.S3PRLUpstream(NAME)`` and by ESPnet's s3prl frontend once it is set on
``s3prl.hub``. Variants are factories with s3prl's signature ``(ckpt=None, model_config=None, refresh=False,
**kwargs)`` registered with :func:`register_upstream`; :func:`install` discovers them and sets them on the hub.

Discovery imports every ``hubconf`` under ``superb_redundancy.upstreams`` (this project's families) and loads
the entry-point group ``superb_redundancy.upstreams``: an entry point naming a module is imported (its
decorators register), one naming a callable is registered under the entry point's name.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

__all__ = ["UpstreamEntry", "UPSTREAMS", "register_upstream", "discover", "install", "build_upstream",
           "check_stock_checkpoint", "upstream_output", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "superb_redundancy.upstreams"


@dataclass(frozen=True)
class UpstreamEntry:
    name: str
    factory: Callable
    description: str
    #: the name takes a local path in -k (s3prl's `_local` convention)
    local: bool


UPSTREAMS: dict[str, UpstreamEntry] = {}


def register_upstream(name: str, description: str = "") -> Callable[[Callable], Callable]:
    """Register a factory under ``name``; names ending in ``_local`` take a path with ``-k``."""

    def decorate(factory: Callable) -> Callable:
        existing = UPSTREAMS.get(name)
        if existing is not None and existing.factory is not factory and not _same_function(existing.factory, factory):
            raise ValueError(f"upstream name {name!r} is already registered by {existing.factory.__module__}")
        summary = description or ((factory.__doc__ or "").strip().splitlines() or [""])[0]
        UPSTREAMS[name] = UpstreamEntry(name, factory, summary, name.endswith("_local"))
        return factory

    return decorate


def _same_function(a: Callable, b: Callable) -> bool:
    # the same module imported twice (e.g. by path and by package) registers equal functions
    return getattr(a, "__module__", None) == getattr(b, "__module__", None) and \
        getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)


def _import_families(package: str, submodule: str = "hubconf") -> None:
    """Import ``<package>.<sub>.<submodule>`` for every subpackage (its decorators register)."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.ispkg:
            importlib.import_module(f"{package}.{info.name}.{submodule}")


def _load_plugins(group: str, builtin: str, submodule: str, registered: dict, register: Callable,
                  kind: str) -> None:
    """Load an entry-point group: a package's families are imported, a callable is registered by its name.

    ``builtin`` (our own package) is imported first and its entry point skipped; a plugin that fails to load is
    reported and skipped so that it cannot take the others down. Shared by the upstream and downstream registries.
    """
    _import_families(builtin, submodule)
    for entry_point in entry_points(group=group):
        if entry_point.value == builtin:
            continue  # ours, imported above
        try:
            loaded = entry_point.load()
        except Exception as error:  # a broken plugin must not take the others down
            print(f"[superb_redundancy] skipping {kind} plugin {entry_point.value!r}: {error}", file=sys.stderr)
            continue
        if hasattr(loaded, "__path__"):
            _import_families(loaded.__name__, submodule)
        elif callable(loaded) and entry_point.name not in registered:
            register(entry_point.name)(loaded)


def discover() -> dict[str, UpstreamEntry]:
    """Import our upstream families and every package in the entry-point group; return the registry."""
    _load_plugins(ENTRY_POINT_GROUP, "superb_redundancy.upstreams", "hubconf", UPSTREAMS, register_upstream,
                  "upstream")
    return dict(UPSTREAMS)


def install() -> list[str]:
    """Discover every variant and set each on ``s3prl.hub`` (imported through the compat hook); returns the names."""
    from . import downstream_registry

    import s3prl.hub

    for name, entry in discover().items():
        setattr(s3prl.hub, name, entry.factory)
    downstream_registry.install()  # -d NAME for our downstreams (superb_redundancy.downstream_registry)
    return sorted(UPSTREAMS)


def upstream_output(hidden_states: list) -> dict:
    """s3prl's upstream return dict: ``hidden_states``, ``last_hidden_state`` and ``hidden_state_<i>`` (for ``-s``)."""
    result = {"hidden_states": hidden_states, "last_hidden_state": hidden_states[-1]}
    for i, hidden in enumerate(hidden_states):
        result[f"hidden_state_{i}"] = hidden
    return result


def build_upstream(name: str, ckpt: str | None = None, model_config: str | None = None, refresh: bool = False):
    """Any upstream s3prl.hub knows (ours included), built with s3prl's call convention; clear error if unknown."""
    import difflib

    install()
    import s3prl.hub

    factory = getattr(s3prl.hub, name, None)
    if not callable(factory):
        options = s3prl.hub.options(only_registered_ckpt=False) + sorted(UPSTREAMS)
        close = difflib.get_close_matches(name, options, n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `superb-redundancy upstreams` lists ours"
        raise ValueError(f"unknown upstream {name!r}{hint}")
    check_stock_checkpoint(name, ckpt)
    return factory(ckpt=ckpt, model_config=model_config, refresh=refresh)


def check_stock_checkpoint(name: str, ckpt: str | None) -> None:
    """s3prl's stock ``<family>_local`` loaders fail on a bad -k with a traceback or a bare AssertionError:
    check the file first (exists, loads as weights only, of the family, weights fit the config), in one line."""
    from pathlib import Path

    from .bundles import FAMILIES

    family = next((f for f in FAMILIES.values() if f.local_hub_name == name), None)
    if family is None:
        return  # ours check their own files; other s3prl names take no local checkpoint of our families
    if not ckpt:
        raise ValueError(f"{name} loads a local checkpoint: pass -k PATH (a stock {family.name} checkpoint)")
    from .pruned_upstream import load_base_checkpoint

    load_base_checkpoint(Path(ckpt).expanduser(), family, mmap=True)
