"""The clips a distillation run trains on and the ones it holds out to select its weights by."""

from __future__ import annotations

import numpy as np

__all__ = ["split_clips"]


def split_clips(num_clips: int, config) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train ids, validation ids) of a cache's clips: ``val_fraction`` of them, at most ``max_val_clips``,
    at least one where there are two clips (``config``: a MimicConfig or a HealConfig, which share these fields)."""
    order = np.random.default_rng(config.seed).permutation(num_clips)
    n_val = min(config.max_val_clips, int(round(config.val_fraction * num_clips)))
    if config.val_fraction > 0 and num_clips >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, num_clips - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
