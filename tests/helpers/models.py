"""Inputs and outputs of upstreams in tests: seeded waveforms, hidden states, parameter counts."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def wavs(seed: int = 0, lengths: Sequence[int] = (16000, 12000, 8000), scale: float = 1.0) -> list[torch.Tensor]:
    """Seeded Gaussian waveforms of the given lengths (a batch of unequal clips: padding matters)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * scale for n in lengths]


def hidden(model: torch.nn.Module, inputs: Optional[list[torch.Tensor]] = None) -> list[torch.Tensor]:
    """An upstream's ``hidden_states`` in eval mode, without gradients (copies)."""
    model.eval()
    with torch.no_grad():
        return [h.clone() for h in model(inputs if inputs is not None else wavs())["hidden_states"]]


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
