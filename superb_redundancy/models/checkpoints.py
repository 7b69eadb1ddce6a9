"""Base checkpoints: a hub name or path resolved to a local stock file, read and checked, and s3prl's stock expert
on it. Pruning, mimicking, healing, profiling and export all start from a base model through these functions.

A hub name is resolved by running s3prl's own hub function only up to its download (so the file s3prl would load
is the file we read); offline, a missing download is one line saying where to get it and how to pass it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from superb_redundancy.core.files import load_checkpoint
from superb_redundancy.models.families import ModelFamily, check_checkpoint
from superb_redundancy.core.errors import UserError

__all__ = ["CheckpointError", "is_path_like", "resolve_base", "load_base_checkpoint", "stock_expert"]


class CheckpointError(UserError):
    """A base model that cannot be used: not found, not downloadable here, unreadable or of another family."""


def is_path_like(base: str) -> bool:
    """A checkpoint path rather than an s3prl hub name."""
    return os.sep in base or base.endswith((".pt", ".ckpt", ".pth", ".bin")) or Path(base).exists()


class _Resolved(Exception):
    def __init__(self, path: Optional[str]):
        self.path = path


@contextlib.contextmanager
def _capture_download(base: str, family: ModelFamily, refresh: bool, download_missing: bool = True) -> Iterator[None]:
    """Run a stock hub function only up to its download, and surface the local file it would load."""
    import s3prl.util.download as download

    original = download._download

    def fetch_then_stop(filepath, url, refresh=refresh, agent="wget"):
        filepath = Path(filepath)
        if not download_missing and not filepath.is_file():
            raise _Resolved(None)
        if not filepath.is_file() or refresh:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("SUPERB_REDUNDANCY_OFFLINE") == "1"
            hint = (
                f"base {base!r} must be downloaded from {url}, and this machine is offline; "
                f"download it elsewhere and pass the file instead: base: /path/to/checkpoint.pt in the spec "
                f"(or -k /path/to/checkpoint.pt), in the stock {family.local_hub_name} format"
            )
            if offline:
                raise CheckpointError(hint)
            try:
                original(filepath, url, refresh=refresh)
            except Exception as error:
                raise CheckpointError(f"{hint} ({type(error).__name__}: {error})".splitlines()[0]) from None
        raise _Resolved(str(filepath))

    download._download = fetch_then_stop
    try:
        yield
    finally:
        download._download = original


def resolve_base(base: str, family: ModelFamily, refresh: bool = False, download: bool = True) -> Optional[Path]:
    """A local checkpoint path for ``base``: a path as given, or the file a stock hub name downloads.
    ``download=False``: None for a hub name whose file is not downloaded yet (nothing is fetched)."""
    if not isinstance(base, str) or not base:
        raise CheckpointError(
            f"no base model given: set base: in the prune spec (an s3prl hub name such as "
            f"{family.name!r}, or a checkpoint path) or pass -k CHECKPOINT"
        )
    if is_path_like(base):
        path = Path(base).expanduser()
        if not path.is_file():
            raise CheckpointError(f"base checkpoint not found: {path}")
        return path
    hub = family.hub_functions()
    if base not in hub:
        raise CheckpointError(
            f"unknown base {base!r} for the {family.name} family; valid hub names: {', '.join(sorted(hub))} "
            "(or a checkpoint path)"
        )
    with _capture_download(base, family, refresh, download_missing=download):
        try:
            hub[base](refresh=refresh)
        except _Resolved as resolved:
            return None if resolved.path is None else Path(resolved.path)
    raise CheckpointError(f"hub name {base!r} did not resolve to a checkpoint file")  # pragma: no cover


def load_base_checkpoint(path: Path, family: ModelFamily, mmap: bool = False) -> dict:
    """Read a stock checkpoint (weights only) and check it: of ``family`` (recognised, not just its keys), with
    weights that fit its config; each problem is one line naming the file. ``mmap``: map it (checks only)."""
    checkpoint = load_checkpoint(path, "checkpoint", CheckpointError, mmap=mmap)
    check_checkpoint(checkpoint, path, family, CheckpointError)
    return checkpoint


def stock_expert(path: Path, family: ModelFamily):
    """s3prl's own ``<family>_local`` expert on a local stock checkpoint."""
    import s3prl.hub

    return getattr(s3prl.hub, family.local_hub_name)(ckpt=str(path))
