"""Tiny randomly initialised checkpoints in s3prl's stock formats, for tests and the embedded default.

The models are built with s3prl's own model classes and saved exactly as the stock loaders expect
(``wav2vec2_local``, ``hubert_local``, ``wavlm_local``, ``data2vec_local``), so every loading path users take with real
checkpoints is exercised offline. The convolutional front end keeps a total stride of 320 (every
wav2vec2-family expert in s3prl hard-codes it); 3 layers of width 64 give ~140k parameters.

:class:`~superb_redundancy.models.config.ModelConfig`'s defaults are the tiny model; any other shape it gives
is built the same way (:func:`build_checkpoint`), real-size ones included
(:mod:`superb_redundancy.models.architectures`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from superb_redundancy.core.files import torch_save
from superb_redundancy.models.config import ModelConfig, checkpoint_entries
from superb_redundancy.models.families import FAMILIES as FAMILY_TABLE, get_family

__all__ = ["build_checkpoint", "build_tiny_checkpoint", "write_tiny_checkpoint", "write_all", "FAMILIES"]

#: the families a tiny checkpoint is written for (every family we prune)
FAMILIES = tuple(FAMILY_TABLE)


def build_tiny_checkpoint(family: str, config: ModelConfig = ModelConfig(), seed: int = 0) -> dict:
    """The checkpoint dict of a freshly initialised tiny model of ``family``."""
    return build_checkpoint(family, config, seed)


def build_checkpoint(family: str, config: ModelConfig, seed: int = 0) -> dict:
    """The stock-format checkpoint dict of a freshly initialised ``family`` model of any size ``config`` gives."""
    entries = checkpoint_entries(family, config)
    bundle = get_family(family)
    torch.manual_seed(seed)
    model, _ = bundle.build_model(entries)
    return {**entries, bundle.weights_key: bundle.stock_weights(model)}


def write_tiny_checkpoint(family: str, path: str | os.PathLike, config: ModelConfig = ModelConfig(),
                          seed: int = 0) -> Path:
    """Write a tiny stock-format checkpoint atomically; returns its path."""
    return torch_save(build_tiny_checkpoint(family, config, seed), path)


def write_all(directory: str | os.PathLike, config: ModelConfig = ModelConfig(), seed: int = 0) -> dict[str, Path]:
    """``<directory>/tiny_<family>.pt`` for every family, written only if missing."""
    directory = Path(directory)
    paths = {}
    for family in FAMILIES:
        path = directory / f"tiny_{family}.pt"
        if not path.is_file():
            write_tiny_checkpoint(family, path, config, seed)
        paths[family] = path
    return paths
