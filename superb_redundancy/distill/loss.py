"""The distillation loss of one hidden state: the mean squared error over the valid frames."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["masked_mse"]


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean squared error over the valid frames (``padding_mask`` True = padding) and all dimensions."""
    if padding_mask is None:
        return torch.mean((prediction - target) ** 2)
    valid = (~padding_mask).unsqueeze(-1).to(prediction.dtype)
    return ((prediction - target) ** 2 * valid).sum() / (valid.sum() * prediction.size(-1)).clamp_min(1)
