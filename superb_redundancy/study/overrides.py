"""A study file as it runs: the file it ``extends:``, then the file itself, then override files, merged into one mapping.

A study extends another (``extends: paper.yaml``, relative to the extending file) to add to it without rewriting it,
and a run cuts a study down without editing it (``study run paper --override rehearsal.yaml``). The
layers merge in order, each over the one before:

* mappings merge key by key (``data: {asr: {...}}`` adds a task's roots and keeps the others);
* ``upstreams`` merges entry by entry, by ``name``: an entry naming an upstream merges into it (``remove: true``
  removes it), an entry named ``"*"`` merges into every upstream, any other name is a new upstream;
* ``null`` removes a key, so its default applies (``curves: null``: no curves; ``data: {speech_commands_35: null}``:
  that task's corpus is no longer given);
* any other value, lists included, replaces what was there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from superb_redundancy.core.config_io import read_yaml
from superb_redundancy.core.errors import InputNotFound
from superb_redundancy.study.sections import StudyConfigError
from superb_redundancy.study.shipped import study_path

__all__ = ["EVERY_UPSTREAM", "REMOVE", "merge", "read_study"]

#: the ``name`` of an override entry that merges into every upstream
EVERY_UPSTREAM = "*"
#: an upstream override entry with this key true removes the upstream it names
REMOVE = "remove"


def merge(base: Any, over: Any, key: str = "") -> Any:
    """``over`` merged into ``base`` (the rules of the module docstring); neither is changed."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for name, value in over.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = merge(base[name], value, str(name)) if name in base else value
        return merged
    if key == "upstreams" and isinstance(base, list) and isinstance(over, list):
        return _merge_upstreams(base, over)
    return over


def _merge_upstreams(base: list, over: list) -> list:
    merged = list(base)
    for entry in over:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name == EVERY_UPSTREAM:
            changes = {k: v for k, v in entry.items() if k != "name"}
            merged = [merge(up, changes) if isinstance(up, dict) else up for up in merged]
            continue
        at = next((i for i, up in enumerate(merged) if isinstance(up, dict) and up.get("name") == name), None)
        if isinstance(entry, dict) and entry.get(REMOVE) is True:
            if at is None:
                raise StudyConfigError(f"upstreams: remove: true names {name!r}, which is not an upstream; valid: "
                                       f"{[up.get('name') for up in merged if isinstance(up, dict)]}")
            del merged[at]
        elif name is not None and at is not None:
            merged[at] = merge(merged[at], entry)
        else:
            merged.append(entry)
    return merged


def _layer(path: Path, seen: tuple[Path, ...]) -> dict:
    """One file with the chain it extends, merged (the file over what it extends)."""
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise StudyConfigError(f"{path}: extends itself ({chain})")
    if seen and not path.is_file():
        raise StudyConfigError(f"{seen[-1]}: extends {path}, which is not found")
    data = read_yaml(path, "study file", StudyConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StudyConfigError(f"{path}: expected a mapping (a study), got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise StudyConfigError(f"{path}: extends: {parent!r}; the path of another study file")
    return merge(_layer((path.parent / parent).resolve(), (*seen, path)), data)


def read_study(path: str | Path, overrides: Sequence[str | Path] = ()) -> dict:
    """The mapping a study file stands for: its ``extends`` chain, the file, then each override file in order."""
    data = _layer(Path(path).expanduser().resolve(), ())
    for override in overrides:
        try:
            override = study_path(override, "override file")
        except InputNotFound as missing:
            raise StudyConfigError(str(missing)) from None
        layer = read_yaml(override, "override file", StudyConfigError)
        if layer is None:
            continue
        if not isinstance(layer, dict):
            raise StudyConfigError(f"{override}: expected a mapping of study keys, got {type(layer).__name__}")
        if "extends" in layer:
            raise StudyConfigError(f"{override}: extends: is for study files; an override file only changes keys")
        data = merge(data, layer)
    return data
