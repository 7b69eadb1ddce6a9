"""Dataclass configs from YAML mappings, validated on load: an unknown field is named with the valid ones."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Type, TypeVar

import yaml

from superb_redundancy.core.errors import UserError

__all__ = ["from_mapping", "read_yaml"]

T = TypeVar("T")


def from_mapping(cls: Type[T], data: Any, source: str, error: Type[Exception] = UserError,
                 expected: str = "a mapping") -> T:
    """``cls(**data)`` after checking that ``data`` is a mapping of ``cls``'s fields."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected {expected}, got {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{source}: unknown field(s) {unknown}; valid: {sorted(known)}")
    return cls(**data)


def read_yaml(path: str | Path, what: str, error: Type[Exception] = UserError) -> Any:
    """The parsed YAML file; a missing file or a YAML error is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
