"""Reading an s3prl experiment checkpoint (``states-*.ckpt``, ``dev-best.ckpt``) without trusting pickles.

s3prl's runner saves its arguments as an :class:`argparse.Namespace` beside the weights; the checkpoint is loaded
weights-only with that one class allowed, and refused in one line when it is not an experiment's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from superb_redundancy.core.files import load_checkpoint

__all__ = ["read_experiment_checkpoint"]


def read_experiment_checkpoint(path: str | Path) -> dict:
    """An s3prl ``states-*.ckpt`` / ``dev-best.ckpt`` (weights only; its ``Args`` is an argparse.Namespace).

    Memory-mapped, so reading ``Args`` or ``Step`` does not read the weights. ValueError names what is wrong.
    """
    checkpoint = load_checkpoint(path, "s3prl experiment checkpoint", ValueError, mmap=True,
                                 safe_globals=[argparse.Namespace])
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("Args"), argparse.Namespace):
        raise ValueError(f"{path} is not an s3prl experiment checkpoint (no Args)")
    return checkpoint
