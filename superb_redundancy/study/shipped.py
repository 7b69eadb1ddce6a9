"""The study files shipped inside the package (``superb_redundancy/studies``), found by name: ``study run paper``,
``--override rehearsals/paper_cpu``, whatever the working directory and however the package is installed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from superb_redundancy.core.errors import InputNotFound

__all__ = ["studies_dir", "shipped_names", "study_path"]


def studies_dir() -> Path:
    return Path(str(resources.files("superb_redundancy.studies")))


def shipped_names() -> list[str]:
    """``paper``, ``rehearsals/paper_cpu``, ...: every shipped study or override file, by the name that finds it."""
    root = studies_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def study_path(name: str | Path, what: str = "study file") -> Path:
    """A file given by path, else the shipped one of that name (``.yaml`` optional; ``studies/paper.yaml``, the
    path in a source checkout before the files moved into the package, is found too)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("studies",) else path
    shipped = studies_dir() / relative.with_suffix(".yaml")
    if not path.is_absolute() and shipped.is_file():
        return shipped
    raise InputNotFound(f"{what} not found: {name} (shipped: {', '.join(shipped_names())})")
