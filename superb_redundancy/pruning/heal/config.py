"""What healing trains on and how (:class:`HealConfig`), and the error every bad input to healing raises."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from superb_redundancy.core.errors import UserError

__all__ = ["HealConfig", "HealError", "TARGETS", "DTYPES"]

TARGETS = ("final", "mapped")
DTYPES = ("float16", "float32")  # of the teacher cache


class HealError(UserError):
    """Bad input for healing; raised (one line naming the value and what is valid) before any work."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class HealConfig:
    """What healing trains on and how. ``lr`` is small because the layers start trained (fine-tuning, not the
    mimic trainer's from-scratch 1e-3); ``batch_size`` counts clips, run through the whole stack with gradients."""

    targets: str = "final"
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 16
    seed: int = 0
    val_fraction: float = 0.1
    max_val_clips: int = 1024

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, valid: str):
            raise HealError(f"heal config: {name}={value!r} is invalid; valid: {valid}")

        if self.targets not in TARGETS:
            bad("targets", self.targets, " or ".join(TARGETS))
        if not _is_int(self.epochs) or self.epochs < 0:
            bad("epochs", self.epochs, "an integer >= 0 (0: the unhealed model, with its losses recorded)")
        if not _is_number(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", self.lr, "a finite number > 0")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "an integer >= 1 (clips per step)")
        if not _is_int(self.seed):
            bad("seed", self.seed, "an integer")
        if not _is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            bad("val_fraction", self.val_fraction, "a number in [0, 1)")
        if not _is_int(self.max_val_clips) or self.max_val_clips < 0:
            bad("max_val_clips", self.max_val_clips, "an integer >= 0")

    def to_dict(self) -> dict:
        return asdict(self)
