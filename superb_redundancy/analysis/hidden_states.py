"""Hidden states of an upstream over a list of clips: the input of similarity analysis and pruning scores.

The clips are read with :func:`superb_redundancy.core.audio.load_wav` (16 kHz mono), batched, and run through
any s3prl-style upstream (``forward(list of wavs) -> {"hidden_states": [B, T, D] ...}``) in eval mode without
gradients.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from superb_redundancy.core.audio import SAMPLE_RATE, frame_lengths, load_wav

__all__ = ["iter_hidden_states", "fit_clip"]


def fit_clip(wav: Tensor, samples: int, fitted: Optional[Counter] = None) -> Tensor:
    """``wav`` cut to its first ``samples``, or padded with zeros at its end to that many (the paper fits Speech
    Commands clips to 1 s); ``fitted`` counts the clips ``"cut"`` and ``"padded"``."""
    if len(wav) == samples:
        return wav
    if fitted is not None:
        fitted["cut" if len(wav) > samples else "padded"] += 1
    return wav[:samples] if len(wav) > samples else torch.nn.functional.pad(wav, (0, samples - len(wav)))


@torch.no_grad()
def iter_hidden_states(upstream: torch.nn.Module, files: Sequence[Path], batch_size: int = 8,
                       device: str = "cpu", max_seconds: Optional[float] = None,
                       progress: bool = True, clip_seconds: Optional[float] = None,
                       fitted: Optional[Counter] = None) -> Iterator[tuple[list[Tensor], Tensor]]:
    """Yield ``(hidden_states, frame_lengths)`` per batch of clips: L+1 tensors [B, T, D] and [B] lengths.
    ``max_seconds`` crops longer clips; ``clip_seconds`` fits every clip to that length (:func:`fit_clip`, counted
    in ``fitted``), so that all have the same frames."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    upstream = upstream.to(device).eval()
    rate = upstream.get_downsample_rates("hidden_states") if hasattr(upstream, "get_downsample_rates") else 320
    bar = tqdm(total=len(files), desc="hidden states", unit="clip", disable=not progress)
    fit = None if clip_seconds is None else int(round(clip_seconds * SAMPLE_RATE))
    for start in range(0, len(files), batch_size):
        wavs = [load_wav(f, max_seconds) for f in files[start:start + batch_size]]
        wavs = [(wav if fit is None else fit_clip(wav, fit, fitted)).to(device) for wav in wavs]
        states = [h.float().cpu() for h in upstream(wavs)["hidden_states"]]
        yield states, frame_lengths([len(w) for w in wavs], states[0].size(1), rate)
        bar.update(len(wavs))
    bar.close()
