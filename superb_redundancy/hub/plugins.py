"""Plugin discovery shared by the upstream and downstream registries: our families, then an entry-point group.

Both registries find their entries the same way: every subpackage of our own package is imported as
``<package>.<family>.<submodule>`` (``hubconf`` for upstreams, ``expert`` for downstreams; its decorators
register), then the entry points of the group are loaded: one naming a package has its families imported the
same way, one naming a module is imported (its decorators register), one naming a callable is registered under
the entry point's name. This module knows neither registry: each passes its own table and decorator.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from importlib.metadata import entry_points
from typing import Callable

__all__ = ["import_families", "load_plugins"]


def import_families(package: str, submodule: str) -> None:
    """Import ``<package>.<sub>.<submodule>`` for every subpackage (its decorators register)."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.ispkg:
            importlib.import_module(f"{package}.{info.name}.{submodule}")


def load_plugins(group: str, builtin: str, submodule: str, registered: dict, register: Callable,
                 kind: str) -> None:
    """Load an entry-point group: a package's families are imported, a callable is registered by its name.

    ``builtin`` (our own package) is imported first and its entry point skipped; a plugin that fails to load is
    reported and skipped so that it cannot take the others down. ``register(name)`` is the registry's decorator
    and ``registered`` its table (a name already there is not registered again).
    """
    import_families(builtin, submodule)
    for entry_point in entry_points(group=group):
        if entry_point.value == builtin:
            continue  # ours, imported above
        try:
            loaded = entry_point.load()
        except Exception as error:  # a broken plugin must not take the others down
            print(f"[superb_redundancy] skipping {kind} plugin {entry_point.value!r}: {error}", file=sys.stderr)
            continue
        if hasattr(loaded, "__path__"):
            import_families(loaded.__name__, submodule)
        elif callable(loaded) and entry_point.name not in registered:
            register(entry_point.name)(loaded)
