"""The settings of a pretraining run (:class:`PretrainSettings`) and their checks.

Light at import (no torch, numpy or soundfile): ``superb-redundancy pretrain``'s parser takes its defaults from
:class:`PretrainSettings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.errors import UserError

__all__ = ["PretrainError", "PretrainSettings", "TEMPERATURE_FLOOR_AT"]

#: where the Gumbel temperature reaches its floor, as a fraction of the run
TEMPERATURE_FLOOR_AT = 0.7


class PretrainError(UserError):
    """Bad input for pretraining; raised before any work."""


@dataclass(frozen=True)
class PretrainSettings:
    """Everything a pretraining run depends on (with the audio). Defaults: 8 layers of width 128."""

    corpus: Optional[str] = None  # a corpus root (its training splits) ...
    data: tuple[str, ...] = ()  # ... or folders of audio (every clip)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 5e-3  # fairseq Base: 5e-4 over 400k updates; at 5e-4 a small run never leaves the plateau here
    warmup: Optional[int] = None  # None: 8% of the steps (fairseq's Base: 32k of 400k)
    weight_decay: float = 0.01
    clip_norm: float = 10.0
    seed: int = 0
    threads: int = 2
    crop_min: float = 1.0  # seconds
    crop_max: float = 2.0
    # ---- model (superb_redundancy.models.config.ModelConfig fields)
    layers: int = 8
    dim: int = 128
    ffn_dim: int = 512
    heads: int = 4
    conv_dim: int = 64
    conv_pos: int = 8
    conv_pos_groups: int = 4
    final_dim: int = 64
    latent_vars: int = 8
    latent_groups: int = 2
    #: True: a pre-LN transformer (wav2vec 2.0 Large's layer_norm_first) on Base's CNN (one GroupNorm, raw
    #: waveforms); False: Base's post-LN transformer. Measured on the synthetic corpus (8 layers, lr 5e-3): the
    #: post-LN stack stays at chance (flat logits, accuracy ~0.08) for 1500 updates and more, the pre-LN one leaves
    #: that plateau after a few hundred. (Large's LayerNorm CNN with normalised waveforms collapsed its codebook.)
    layer_norm_first: bool = True
    # ---- objective
    mask_prob: float = 0.5
    mask_length: int = 5
    num_negatives: int = 20
    dropout: float = 0.1  # transformer, attention, input and feature dropout (fairseq's Base: 0.1 each)
    feature_grad_mult: float = 0.1

    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(1, round(0.08 * self.steps))

    def temperature(self) -> list[float]:
        """``latent_temp`` (start, floor, decay per update): 2 -> 0.5 at 70% of the steps."""
        updates = max(1, round(TEMPERATURE_FLOOR_AT * self.steps))
        return [2.0, 0.5, float((0.5 / 2.0) ** (1.0 / updates))]

    def check(self) -> "PretrainSettings":
        """Every problem of the settings (not of the data) as one line; raises :class:`PretrainError`."""
        def positive(name: str, value, kind=int) -> None:
            if not isinstance(value, kind) or isinstance(value, bool) or not value > 0 or \
                    (kind is float and not math.isfinite(value)):
                raise PretrainError(f"--{name.replace('_', '-')} must be a positive {kind.__name__}, got {value!r}")

        if bool(self.corpus) == bool(self.data):
            raise PretrainError("give the audio as --corpus ROOT or as --data DIR [DIR ...] (one of the two)")
        for name in ("steps", "batch_size", "threads", "layers", "dim", "ffn_dim", "heads", "conv_dim", "conv_pos",
                     "conv_pos_groups", "final_dim", "latent_vars", "latent_groups", "mask_length",
                     "num_negatives"):
            positive(name, getattr(self, name))
        for name in ("lr", "crop_min", "crop_max"):
            positive(name, float(getattr(self, name)), float)
        if self.warmup is not None and not 0 <= self.warmup <= self.steps:
            raise PretrainError(f"--warmup must be between 0 and --steps ({self.steps}), got {self.warmup}")
        for name in ("weight_decay", "clip_norm", "dropout", "feature_grad_mult"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise PretrainError(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")
        if self.dropout >= 1:
            raise PretrainError(f"--dropout must be below 1, got {self.dropout!r}")
        if not 0 < self.mask_prob <= 1:
            raise PretrainError(f"--mask-prob must be in (0, 1], got {self.mask_prob!r}")
        if self.crop_max < self.crop_min:
            raise PretrainError(f"--crop-seconds: the maximum {self.crop_max:g} is below the minimum "
                                f"{self.crop_min:g}")
        frames = _frames(int(self.crop_min * SAMPLE_RATE))
        if frames < 2 * self.mask_length + 2:
            raise PretrainError(f"--crop-seconds minimum {self.crop_min:g} s gives {frames} frames: too few for "
                                f"masked spans of --mask-length {self.mask_length} (need {2 * self.mask_length + 2})")
        if self.dim % self.heads:
            raise PretrainError(f"--dim {self.dim} is not divisible by --heads {self.heads}")
        if self.dim % self.conv_pos_groups:
            raise PretrainError(f"--dim {self.dim} is not divisible by --conv-pos-groups {self.conv_pos_groups}")
        if self.final_dim % self.latent_groups:
            raise PretrainError(f"--final-dim {self.final_dim} is not divisible by --latent-groups "
                                f"{self.latent_groups}")
        if self.latent_vars < 2:
            raise PretrainError(f"--latent-vars must be at least 2, got {self.latent_vars}")
        return self


def _frames(samples: int) -> int:
    """Frames of the 320-stride conv stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) for ``samples``."""
    n = samples
    for kernel, stride in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2:
        n = (n - kernel) // stride + 1
        if n <= 0:
            return 0
    return n

