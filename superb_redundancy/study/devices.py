"""The GPUs a study's local workers share out: one each, never several workers on one GPU."""

from __future__ import annotations

from typing import Optional

from superb_redundancy.core.errors import UserError

__all__ = ["local_gpus", "check_workers", "worker_gpus"]


def local_gpus(device: str) -> Optional[int]:
    """How many GPUs local workers share out on ``device`` (None: a CPU study, nothing to share)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    return torch.cuda.device_count()


def check_workers(workers: int, device: str) -> None:
    """One GPU per local worker: more workers than GPUs would put several runs on one GPU with no accounting of
    its memory; refused in one line."""
    gpus = local_gpus(device)
    if gpus is not None and workers > 1 and ":" in str(device):
        raise UserError(f"executor.workers: {workers} workers on the one GPU {device}; give device: cuda (each local "
                         f"worker takes a GPU of its own) or workers: 1")
    if gpus is not None and workers > gpus:
        raise UserError(f"executor.workers: {workers} workers on {device}, but this machine has {gpus} GPU(s); "
                         f"each local worker takes one GPU (workers <= {gpus}), or run on Slurm")


def worker_gpus(workers: int) -> list[str]:
    """The GPU each of ``workers`` local workers sees (its ``CUDA_VISIBLE_DEVICES``): the first ``workers`` of those
    this process may use (a ``CUDA_VISIBLE_DEVICES`` the user set is kept to), one each."""
    import os

    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (visible or [str(i) for i in range(workers)])[:workers]
