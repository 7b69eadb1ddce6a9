"""The upstream registry: our variants (and third parties') made visible to s3prl.

s3prl resolves ``-u NAME`` with ``getattr(s3prl.hub, NAME)`` and has no plugin mechanism, so a variant becomes
usable by its runner, by ``s3prl.nn.S3PRLUpstream(NAME)`` and by ESPnet's s3prl frontend once it is set on
``s3prl.hub``. Variants are factories with s3prl's signature ``(ckpt=None, model_config=None, refresh=False,
**kwargs)`` registered with :func:`register_upstream`; :func:`install` discovers them and sets them on the hub.

Discovery imports every ``hubconf`` under ``superb_redundancy.upstreams`` (this project's families) and loads
the entry-point group ``superb_redundancy.upstreams``: an entry point naming a module is imported (its
decorators register), one naming a callable is registered under the entry point's name (:mod:`.plugins`).

:func:`register` sets this registry's variants on ``s3prl.hub``; :func:`superb_redundancy.hub.install.install`
does that, the compat hook and the downstream registry in one call (``install`` here is that function, kept
under this name for its callers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from superb_redundancy.hub.plugins import load_plugins

__all__ = ["UpstreamEntry", "UPSTREAMS", "register_upstream", "discover", "register", "ENTRY_POINT_GROUP",
           "BUILTIN_PACKAGE"]

ENTRY_POINT_GROUP = "superb_redundancy.upstreams"
#: our families: ``upstreams/<family>/hubconf.py``, installed as this package
BUILTIN_PACKAGE = "superb_redundancy.upstreams"


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


def discover() -> dict[str, UpstreamEntry]:
    """Import our upstream families and every package in the entry-point group; return the registry."""
    load_plugins(ENTRY_POINT_GROUP, BUILTIN_PACKAGE, "hubconf", UPSTREAMS, register_upstream, "upstream")
    return dict(UPSTREAMS)


def register() -> list[str]:
    """Discover every variant and set each on ``s3prl.hub``; returns the names. Import s3prl through the compat
    hook (``import superb_redundancy`` installs it); :func:`install` does all of it and the downstreams too."""
    import s3prl.hub

    for name, entry in discover().items():
        setattr(s3prl.hub, name, entry.factory)
    return sorted(UPSTREAMS)
