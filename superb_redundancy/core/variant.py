"""What a variant is: one typed description, written by the command that makes the variant (``prune``, ``heal``,
the mimickers' training and baselines), carried in its artifact (the ``superb_redundancy`` entry's ``variant``) or
its prune spec (``variant:``), copied into each run record by harvest, and read by the leaderboard and the
profiler. Readers ask this description what a variant is (its label, whether it is a base, which base it belongs
to) instead of guessing it from hub names or dict keys.

It lives in core, the bottom layer, so that the writers (pruning, mimic) and the readers (compute, results) import
it one way; everything else about the artifacts (their weights, configs, training records) stays with the
subpackage that writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from superb_redundancy.core.errors import UserError

__all__ = ["VariantKind", "Healing", "MimicSetup", "VariantDescription", "VariantError", "ARTIFACT_KEY",
           "PRUNED_ARTIFACT_KIND", "MIMIC_ARTIFACT_KIND", "DESCRIPTION_KEY", "read_description"]

#: the entry of a stock-format checkpoint that makes it one of our artifacts
ARTIFACT_KEY = "superb_redundancy"
#: that entry's ``kind`` in a pruned artifact (and a healed one) / a mimicker artifact
PRUNED_ARTIFACT_KIND = "pruned_upstream"
MIMIC_ARTIFACT_KIND = "mimicker"
#: where the description is kept: in the artifact entry, and as a prune spec's field
DESCRIPTION_KEY = "variant"


class VariantError(UserError):
    """A variant description that cannot be read; the message names the field and what is valid."""


class VariantKind(str, Enum):
    STOCK = "stock"  # a checkpoint as pretrained (or fine-tuned), nothing removed
    PRUNED = "pruned"  # transformer layers dropped from a base (and perhaps healed)
    MIMIC = "mimic"  # a teacher's front end with mimicking layers in place of (part of) its stack


def _bad(source: str, name: str, value: Any, valid: str) -> VariantError:
    return VariantError(f"{source}: variant {name} {value!r} is invalid; valid: {valid}")


def _optional_str(source: str, name: str, value: Any) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise _bad(source, name, value, "a string or null")
    return value


def _int(source: str, name: str, value: Any, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(source, name, value, "an integer >= 0" + (" or null" if optional else ""))
    return value


def _number(source: str, name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(source, name, value, "a finite number or null")
    return float(value)


def _mapping(source: str, what: str, data: Any, cls) -> dict:
    if not isinstance(data, dict):
        raise VariantError(f"{source}: variant {what} must be a mapping, got {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VariantError(f"{source}: variant {what} has unknown field(s) {unknown}; valid: {sorted(known)}")
    return data


@dataclass(frozen=True)
class Healing:
    """What healing did to a pruned model (:mod:`superb_redundancy.pruning.heal`): towards which teacher outputs,
    how many epochs, which one was kept, and the distillation loss before and after."""

    targets: Optional[str] = None
    epochs: Optional[int] = None
    best_epoch: Optional[int] = None
    loss_before: Optional[float] = None
    loss_after: Optional[float] = None

    @classmethod
    def from_dict(cls, data: Any, source: str = "variant") -> "Healing":
        data = _mapping(source, "healing", data, cls)
        return cls(targets=_optional_str(source, "healing.targets", data.get("targets")),
                   epochs=_int(source, "healing.epochs", data.get("epochs"), optional=True),
                   best_epoch=_int(source, "healing.best_epoch", data.get("best_epoch"), optional=True),
                   loss_before=_number(source, "healing.loss_before", data.get("loss_before")),
                   loss_after=_number(source, "healing.loss_after", data.get("loss_after")))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MimicSetup:
    """A mimicker's configuration as the leaderboard names it (:class:`superb_redundancy.mimic.config.MimicConfig`
    holds the whole of it): the layer ``kind`` and count, the bottleneck ``z``, the teacher layers it replaces
    (``span``, a block replacement; None: the whole stack), whether step 1 trained it (``training``: "mimicking"
    or "none") and, for a baseline, which (``baseline``: "non-mimicker", "ceiling ...", "classifier only")."""

    kind: str
    n_layers: int
    z: Optional[int] = None
    span: Optional[tuple[int, int]] = None
    training: Optional[str] = None
    baseline: Optional[str] = None

    def __post_init__(self):
        if self.span is not None:  # a config's [i, j] list: one spelling, so that descriptions compare equal
            object.__setattr__(self, "span", tuple(int(i) for i in self.span))

    @classmethod
    def from_dict(cls, data: Any, source: str = "variant") -> "MimicSetup":
        data = _mapping(source, "mimic", data, cls)
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind:
            raise _bad(source, "mimic.kind", kind, "a layer kind such as linear or transformer")
        span = data.get("span")
        if span is not None:
            if not isinstance(span, (list, tuple)) or len(span) != 2 or \
                    not all(isinstance(i, int) and not isinstance(i, bool) for i in span):
                raise _bad(source, "mimic.span", span, "two layer indices [i, j] or null")
            span = (int(span[0]), int(span[1]))
        return cls(kind=kind, n_layers=_int(source, "mimic.n_layers", data.get("n_layers")),
                   z=_int(source, "mimic.z", data.get("z"), optional=True), span=span,
                   training=_optional_str(source, "mimic.training", data.get("training")),
                   baseline=_optional_str(source, "mimic.baseline", data.get("baseline")))

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["span"] = None if self.span is None else list(self.span)
        return data

    def label(self) -> str:
        """The leaderboard's name of a mimicker (and of the paper's baselines)."""
        if not self.n_layers:
            return "classifier only (no layers)"
        shape = f"{self.kind} N={self.n_layers} z={self.z}"
        if str(self.baseline or "").startswith("ceiling"):  # a reference: layers trained with labels only
            return f"reference: ceiling, {shape} trained with labels on the front end"
        label = f"{'non-mimicker' if self.training == 'none' else 'mimic'} {shape}"
        return f"{label} replacing {self.span[0]}-{self.span[1]}" if self.span else label  # block replacement


@dataclass(frozen=True)
class VariantDescription:
    """One variant: its ``kind``, model ``family``, the model it derives from (``base``: a path or hub name;
    ``base_sha256``: its content hash, :func:`superb_redundancy.core.files.checkpoint_sha256`; a stock model is
    its own base), and what was done to it: ``drop_layers`` (0-based transformer layers) chosen by ``objective``,
    ``healing``, or the ``mimic`` setup."""

    kind: VariantKind
    family: Optional[str] = None
    base: Optional[str] = None
    base_sha256: Optional[str] = None
    drop_layers: tuple[int, ...] = ()
    objective: Optional[str] = None
    healing: Optional[Healing] = None
    mimic: Optional[MimicSetup] = None

    def __post_init__(self):
        # the invariants that make the kind mean something; a dict is checked field by field in from_dict
        if not isinstance(self.kind, VariantKind):
            raise _bad("variant", "kind", self.kind, ", ".join(k.value for k in VariantKind))
        object.__setattr__(self, "drop_layers", tuple(sorted(int(i) for i in self.drop_layers)))
        if self.kind is not VariantKind.PRUNED and (self.drop_layers or self.healing or self.objective):
            raise VariantError(f"variant: a {self.kind.value} variant has no drop_layers, objective or healing")
        if self.kind is VariantKind.MIMIC and self.mimic is None:
            raise VariantError("variant: a mimic variant needs its mimic settings (kind, n_layers, z, ...)")
        if self.kind is not VariantKind.MIMIC and self.mimic is not None:
            raise VariantError(f"variant: mimic settings belong to a mimic variant, not a {self.kind.value} one")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(cls, data: Any, source: str = "variant") -> "VariantDescription":
        """The description of a dict (:meth:`to_dict`'s); :class:`VariantError` names the first bad field."""
        data = _mapping(source, "description", data, cls)
        kind = data.get("kind")
        try:
            kind = VariantKind(kind)
        except ValueError:
            raise _bad(source, "kind", kind, ", ".join(k.value for k in VariantKind)) from None
        drop = data.get("drop_layers") or []
        if not isinstance(drop, (list, tuple)):
            raise _bad(source, "drop_layers", drop, "a list of 0-based layer indices")
        drop = [_int(source, "drop_layers", i) for i in drop]
        healing, mimic = data.get("healing"), data.get("mimic")
        try:
            return cls(kind=kind, family=_optional_str(source, "family", data.get("family")),
                       base=_optional_str(source, "base", data.get("base")),
                       base_sha256=_optional_str(source, "base_sha256", data.get("base_sha256")),
                       drop_layers=tuple(drop), objective=_optional_str(source, "objective", data.get("objective")),
                       healing=None if healing is None else Healing.from_dict(healing, source),
                       mimic=None if mimic is None else MimicSetup.from_dict(mimic, source))
        except VariantError as error:
            message = str(error)
            raise VariantError(message if message.startswith(source) else f"{source}: {message}") from None

    def to_dict(self) -> dict:
        """Plain data (str, int, float, lists, None): JSON, YAML and torch.load(weights_only=True) read it back."""
        return {"kind": self.kind.value, "family": self.family, "base": self.base, "base_sha256": self.base_sha256,
                "drop_layers": list(self.drop_layers), "objective": self.objective,
                "healing": None if self.healing is None else self.healing.to_dict(),
                "mimic": None if self.mimic is None else self.mimic.to_dict()}

    def with_base(self, base: Optional[str], base_sha256: Optional[str]) -> "VariantDescription":
        return replace(self, base=base, base_sha256=base_sha256)

    def healed(self, healing: Healing) -> "VariantDescription":
        return replace(self, healing=healing)

    # ------------------------------------------------------------------ what readers ask
    @property
    def is_base(self) -> bool:
        """The model others are measured against: a stock checkpoint (given as a file), or a pruned variant that
        dropped nothing and was not healed."""
        if self.kind is VariantKind.STOCK:
            return self.base is not None
        return self.kind is VariantKind.PRUNED and not self.drop_layers and self.healing is None

    @property
    def base_key(self) -> Optional[str]:
        """What matches a variant with its base on the leaderboard: the base's content hash, else its name."""
        return self.base_sha256 or self.base

    def label(self, upstream: str) -> str:
        """The leaderboard's name of this variant loaded as the hub entry ``upstream``."""
        if self.mimic is not None:
            return self.mimic.label()
        healed = " healed" if self.healing is not None else ""
        if self.drop_layers:
            label = f"{upstream.removesuffix('_local')} drop {list(self.drop_layers)}"
            return (f"{label} ({self.objective})" if self.objective else label) + healed
        return upstream + healed


def read_description(ckpt: Optional[str], model_config: Optional[str]) -> Optional[VariantDescription]:
    """The description a variant's files carry: its artifact's (``-k``) entry, else its prune spec's (``-g``)
    ``variant:`` (its base replaced by ``-k`` where one is given: s3prl's pruned entries prune ``-k``); None when
    neither has one. A description that does not read raises :class:`VariantError` naming the file."""
    if ckpt and Path(ckpt).expanduser().is_file():
        entry = _artifact_entry(ckpt)
        if isinstance(entry, dict) and entry.get(DESCRIPTION_KEY) is not None:
            return VariantDescription.from_dict(entry[DESCRIPTION_KEY], str(ckpt))
    if model_config and Path(model_config).expanduser().is_file():
        import yaml

        try:
            data = yaml.safe_load(Path(model_config).expanduser().read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            return None
        if isinstance(data, dict) and data.get(DESCRIPTION_KEY) is not None:
            found = VariantDescription.from_dict(data[DESCRIPTION_KEY], str(model_config))
            if ckpt:
                from superb_redundancy.core.files import checkpoint_sha256

                found = found.with_base(str(ckpt), checkpoint_sha256(ckpt))
            return found
    return None


def _artifact_entry(path: str) -> Any:
    """The ``superb_redundancy`` entry of a torch file (memory-mapped: the weights are not read); None for a file
    torch cannot read (a YAML, a Hugging Face folder's file)."""
    from superb_redundancy.core.files import load_checkpoint

    try:
        checkpoint = load_checkpoint(path, "checkpoint", mmap=True)
    except ValueError:
        return None
    return checkpoint.get(ARTIFACT_KEY) if isinstance(checkpoint, dict) else None
