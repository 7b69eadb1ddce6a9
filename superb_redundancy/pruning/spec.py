"""Prune specs: which transformer layers of which base model to drop.

A spec is a small YAML file, passed to s3prl's runner with ``-g`` (its model-config flag)::

    base: wav2vec2            # an s3prl hub name of the family, or a checkpoint path
    drop_layers: [3, 4, 5]    # 0-based transformer layers to remove (or give keep_layers instead)
    compact: false            # true: hidden_states hold only the kept layers
    variant: {...}            # written by `superb-redundancy prune`: what the variant is (core/variant.py)

Layer indices are 0-based over the transformer stack (0 .. L-1). Validation that needs L (out of range,
dropping every layer) happens in :meth:`PruneSpec.resolve`, once the base checkpoint's config is read and
before any model is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import yaml

from superb_redundancy.core.config_io import from_mapping, read_yaml
from superb_redundancy.core.files import checkpoint_sha256, write_text
from superb_redundancy.core.errors import UserError
from superb_redundancy.core.variant import VariantDescription, VariantError, VariantKind

__all__ = ["PruneSpec", "PruneSpecError"]


class PruneSpecError(UserError):
    """A prune spec that cannot be applied; the message names the bad value and what would be valid."""


def _as_indices(name: str, value) -> Optional[tuple[int, ...]]:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise PruneSpecError(f"{name} must be a list of 0-based layer indices, got {value!r}")
    duplicates = sorted({v for v in value if list(value).count(v) > 1})
    if duplicates:
        raise PruneSpecError(f"{name} lists layer(s) {duplicates} more than once: {list(value)}")
    return tuple(value)


@dataclass(frozen=True)
class PruneSpec:
    base: Optional[str] = None
    drop_layers: Optional[tuple[int, ...]] = None
    keep_layers: Optional[tuple[int, ...]] = None
    compact: bool = False
    #: free-form provenance (objective, scores, ...) written by `superb-redundancy prune`; not interpreted here
    notes: dict = field(default_factory=dict)
    #: what the variant is (:class:`~superb_redundancy.core.variant.VariantDescription`), written by
    #: :meth:`described`; harvest copies it into the run record. Not read to build the model.
    variant: Optional[VariantDescription] = None

    def __post_init__(self):
        if isinstance(self.variant, dict):
            try:
                object.__setattr__(self, "variant", VariantDescription.from_dict(self.variant, "prune spec"))
            except VariantError as error:
                raise PruneSpecError(str(error)) from None
        elif self.variant is not None and not isinstance(self.variant, VariantDescription):
            raise PruneSpecError(f"variant must be a mapping (a variant description), got {self.variant!r}")
        object.__setattr__(self, "drop_layers", _as_indices("drop_layers", self.drop_layers))
        object.__setattr__(self, "keep_layers", _as_indices("keep_layers", self.keep_layers))
        if self.drop_layers is not None and self.keep_layers is not None:
            raise PruneSpecError("give either drop_layers or keep_layers, not both")
        if self.base is not None and not isinstance(self.base, str):
            raise PruneSpecError(f"base must be an s3prl hub name or a checkpoint path, got {self.base!r}")
        if not isinstance(self.compact, bool):
            raise PruneSpecError(f"compact must be true or false, got {self.compact!r}")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: dict, source: str = "prune spec") -> "PruneSpec":
        return from_mapping(cls, data, source, PruneSpecError, expected="a mapping with base and drop_layers")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "PruneSpec":
        data = read_yaml(path, "prune spec", PruneSpecError)
        return cls.from_dict(data or {}, source=str(path))

    def to_dict(self) -> dict:
        data = {"base": self.base, "drop_layers": self.drop_layers, "keep_layers": self.keep_layers,
                "compact": self.compact, "notes": dict(self.notes),
                "variant": None if self.variant is None else self.variant.to_dict()}
        for key in ("drop_layers", "keep_layers"):
            data[key] = None if data[key] is None else list(data[key])
        return {k: v for k, v in data.items() if v is not None and v != {}}

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file in the same folder, then rename)."""
        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # ------------------------------------------------------------------ semantics
    def resolve(self, num_layers: int) -> tuple[int, ...]:
        """The sorted 0-based layers to drop from a stack of ``num_layers``; raises PruneSpecError if invalid."""
        if self.drop_layers is None and self.keep_layers is None:
            raise PruneSpecError("the prune spec names no layers: give drop_layers (or keep_layers)")
        given = self.drop_layers if self.drop_layers is not None else self.keep_layers
        name = "drop_layers" if self.drop_layers is not None else "keep_layers"
        bad = [i for i in given if not 0 <= i < num_layers]
        if bad:
            raise PruneSpecError(
                f"{name} {bad} out of range: this model has {num_layers} transformer layers (valid 0..{num_layers - 1})"
            )
        dropped = set(given) if self.drop_layers is not None else set(range(num_layers)) - set(given)
        if len(dropped) == num_layers:
            raise PruneSpecError(
                f"the spec drops all {num_layers} transformer layers; keep at least one "
                "(a model without its stack is a mimicker with zero layers, not a pruned model)"
            )
        return tuple(sorted(dropped))

    def with_base(self, base: str) -> "PruneSpec":
        """This spec on ``base``; its description, which names the spec's own base, is left out."""
        return PruneSpec(base=base, drop_layers=self.drop_layers, keep_layers=self.keep_layers,
                         compact=self.compact, notes=self.notes)

    def described(self, family: str, num_layers: Optional[int] = None) -> "PruneSpec":
        """This spec with its variant description: ``family``, the base (by content where it is a file), the
        layers dropped (``keep_layers`` need ``num_layers``) and the objective of its notes."""
        dropped = self.resolve(num_layers) if num_layers is not None else self.drop_layers
        if dropped is None:
            raise PruneSpecError("a spec given by keep_layers needs the model's layer count to be described")
        base_file = self.base and Path(self.base).expanduser().is_file()
        description = VariantDescription(
            kind=VariantKind.PRUNED, family=family, base=self.base,
            base_sha256=checkpoint_sha256(self.base, "base checkpoint", PruneSpecError) if base_file else None,
            drop_layers=tuple(dropped), objective=(self.notes or {}).get("objective"))
        return replace(self, variant=description)


def kept_layers(dropped: Sequence[int], num_layers: int) -> tuple[int, ...]:
    return tuple(i for i in range(num_layers) if i not in set(dropped))
