"""Checked loading of one section of a study file: a mapping into its frozen dataclass, every problem collected.

A study file is checked as a whole (:meth:`superb_redundancy.study.config.StudyConfig.load`): each section builder
appends its problems, one line each (unknown or missing fields, wrong types, bad values), to a shared list instead
of raising at the first, and falls back to defaults so that the rest of the file can still be checked.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Callable, Optional, Union

from superb_redundancy.core.config_io import from_mapping
from superb_redundancy.core.errors import UserError

__all__ = ["StudyConfigError", "Builder", "typed", "unique", "is_int"]


class StudyConfigError(UserError):
    """A study file that cannot run; ``problems`` holds one line per problem (field, bad value, what is valid)."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


#: a section builder: (the YAML value, its dotted path, the problems list) -> the built value
Builder = Callable[[Any, str, list], Any]


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        return f"a list of ({_describe(args[0])})"
    names = {type(None): "null", bool: "true/false", int: "an int", float: "a number", str: "a string",
             dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _values(cls, data: dict, where: str, problems: list[str], nested: Optional[dict[str, Builder]]) -> dict:
    """The fields of ``data`` that are well typed (nested sections built by their builders); the others are
    reported and left out, so that they take their defaults."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name in [f.name for f in fields(cls)]:
        if name not in data:
            continue
        value, path = data[name], f"{where}.{name}" if where else name
        if nested and name in nested:
            value = nested[name](value, path, problems)
            if value is None and data[name] is not None:
                continue
        elif not _fits(value, hints[name]):
            problems.append(f"{path}: {value!r} is not {_describe(hints[name])}")
            continue
        elif isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            value = tuple(value)
        values[name] = value
    return values


def typed(cls, data: Any, where: str, problems: list[str], nested: Optional[dict[str, Builder]] = None,
          also_valid: tuple[str, ...] = (), label: str = ""):
    """``cls`` from a mapping, every problem appended (not raised): unknown or missing fields, wrong types.
    A bad field falls back to its default so that the rest can still be checked; None: nothing to build.
    ``where``: the dotted path of the section (fields are ``where.field``); ``label``: names the mapping itself
    when ``where`` is empty (the top level); ``also_valid``: keys another section of the same mapping reads."""
    label = label or where
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{label}: expected a mapping, got {data!r}")
        return None
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names) - set(also_valid))
    if unknown:
        problems.append(f"{label}: unknown field(s) {unknown}; valid: {sorted(set(names) | set(also_valid))}")
    values = _values(cls, data, where, problems, nested)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        problems.append(f"{label}: missing field(s) {missing}")
    if any(name not in values for name in required):  # missing, or a bad value already reported
        return None
    try:
        return from_mapping(cls, values, label, StudyConfigError)
    except (TypeError, ValueError) as error:  # a __post_init__ of the library's own dataclass refused it
        problems.append(f"{label}: {error}")
        return None


def unique(values, where: str, problems: list[str], key=lambda v: v) -> None:
    """Report every value listed twice (by ``key``)."""
    seen: set = set()
    for value in values:
        if key(value) in seen:
            problems.append(f"{where}: {value!r} is listed twice (the same runs would run twice)")
        seen.add(key(value))
