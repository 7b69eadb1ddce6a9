"""The downstream registry: our tasks (and third parties') made visible to s3prl's runner as ``-d NAME``.

s3prl 0.4.18 resolves ``-d NAME`` in ``Runner._get_downstream`` with
``importlib.import_module(f"s3prl.downstream.{NAME}.expert").DownstreamExpert`` and has no plugin mechanism: a
downstream exists only as a folder inside the installed s3prl package. The import system consults ``sys.modules``
before it looks at any folder, so :func:`install` puts, for every registered name, a module
``s3prl.downstream.<NAME>`` (a package with no files, ``__path__ = []``) and its ``expert`` submodule there; the
runner then finds our expert class without a byte of s3prl being edited. Train, evaluate (``-e``, which reads the
name back from the checkpoint) and resume (``-a``) all go through ``superb_redundancy.hub.install.install()``,
which calls :func:`install`, on every call.

An expert is a class with s3prl's ``DownstreamExpert`` interface (``__init__(upstream_dim, upstream_rate,
downstream_expert, expdir, **kwargs)``, ``get_dataloader(split)``, ``forward(split, features, *others, records)``,
``log_records(split, records, logger, global_step, ...)``), registered with :func:`register_downstream`.

Discovery imports ``<package>.<task>.expert`` for every task package under ``superb_redundancy.downstreams``
(ours) and loads the entry-point group ``superb_redundancy.downstreams``: an entry point naming a package has its
task packages imported the same way, one naming a module is imported (its decorators register), one naming a
class is registered under the entry point's name. The upstream registry discovers its entries the same way
(:mod:`superb_redundancy.hub.plugins`).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from superb_redundancy.hub.plugins import load_plugins

__all__ = ["DownstreamEntry", "DOWNSTREAMS", "ENTRY_POINT_GROUP", "BUILTIN_PACKAGE", "register_downstream",
           "discover", "install", "s3prl_downstreams"]

ENTRY_POINT_GROUP = "superb_redundancy.downstreams"
BUILTIN_PACKAGE = "superb_redundancy.downstreams"
#: the methods s3prl's runner calls on an expert (it asserts the first two; forward is the training step)
_INTERFACE = ("get_dataloader", "log_records", "forward")


@dataclass(frozen=True)
class DownstreamEntry:
    name: str
    #: the class the runner instantiates (s3prl's ``DownstreamExpert`` interface)
    expert: type
    description: str


DOWNSTREAMS: dict[str, DownstreamEntry] = {}


def s3prl_downstreams() -> frozenset[str]:
    """The ``-d`` names the installed s3prl ships (found on disk; s3prl is not imported)."""
    spec = importlib.util.find_spec("s3prl")
    names = set()
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "downstream"
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if (p / "expert.py").is_file())
    return frozenset(names)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_downstream(name: str, description: str = "") -> Callable[[type], type]:
    """Register an expert class as s3prl downstream ``name`` (usable as ``run_downstream.py -d name``)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"downstream name {name!r} must be a Python identifier (it becomes a module name)")
    if name in s3prl_downstreams():
        raise ValueError(f"downstream name {name!r} is s3prl's own downstream; choose another name")

    def decorate(expert: type) -> type:
        if not isinstance(expert, type):
            raise TypeError(f"downstream {name!r}: register an expert class, not {expert!r}")
        missing = [method for method in _INTERFACE if not callable(getattr(expert, method, None))]
        if missing:
            raise TypeError(f"downstream {name!r}: {_qualified(expert)} lacks s3prl's expert interface "
                            f"({', '.join(missing)})")
        existing = DOWNSTREAMS.get(name)
        # the same module imported twice (by path and by package) registers an equal class: not a conflict
        if existing is not None and existing.expert is not expert and \
                _qualified(existing.expert) != _qualified(expert):
            raise ValueError(f"downstream name {name!r} is already registered by {_qualified(existing.expert)}; "
                             f"{_qualified(expert)} cannot take it")
        summary = description or ((expert.__doc__ or "").strip().splitlines() or [""])[0]
        DOWNSTREAMS[name] = DownstreamEntry(name, expert, summary)
        return expert

    return decorate


def discover() -> dict[str, DownstreamEntry]:
    """Import our downstream tasks and every package in the entry-point group; return the registry."""
    load_plugins(ENTRY_POINT_GROUP, BUILTIN_PACKAGE, "expert", DOWNSTREAMS, register_downstream, "downstream")
    return dict(DOWNSTREAMS)


def _expert_module(entry: DownstreamEntry, module_name: str) -> types.ModuleType:
    """The module the runner imports: the defining module when its DownstreamExpert is the class, else a stub."""
    home = sys.modules.get(entry.expert.__module__)
    if home is not None and getattr(home, "DownstreamExpert", None) is entry.expert:
        return home
    stub = types.ModuleType(module_name, f"s3prl downstream {entry.name!r}: {_qualified(entry.expert)}")
    stub.DownstreamExpert = entry.expert
    return stub


def install() -> list[str]:
    """Discover every downstream and make ``s3prl.downstream.<name>.expert`` importable; returns the names."""
    import s3prl.downstream

    for name, entry in discover().items():
        package_name = f"s3prl.downstream.{name}"
        package = types.ModuleType(package_name, f"superb_redundancy downstream {name!r} ({_qualified(entry.expert)})")
        package.__path__ = []  # no folder: nothing but .expert resolves under it
        package.__package__ = package_name
        package.__spec__ = importlib.machinery.ModuleSpec(package_name, None, is_package=True)
        expert = _expert_module(entry, f"{package_name}.expert")
        package.expert = expert
        sys.modules[package_name] = package
        sys.modules[f"{package_name}.expert"] = expert
        setattr(s3prl.downstream, name, package)
    return sorted(DOWNSTREAMS)
