"""The small models shipped inside the package (``superb_redundancy/models/``), named by their file stem.

Each is a stock s3prl checkpoint with a ``<name>.train.json`` record of the command that made it (seeds,
settings, losses or scores); a study names one as its ``base`` (``base: ks_w2v2_8l``). See docs/models.md, "The
shipped models".
"""

from __future__ import annotations

import json
from pathlib import Path

from superb_redundancy.core.errors import UserError

__all__ = ["MODELS_DIR", "shipped_names", "is_shipped", "shipped_checkpoint", "shipped_record"]

MODELS_DIR = Path(__file__).resolve().parent


def shipped_names() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.pt"))


def is_shipped(name: str) -> bool:
    """A bare name (no folder, no suffix) of a shipped model."""
    return "/" not in name and "." not in name and (MODELS_DIR / f"{name}.pt").is_file()


def shipped_checkpoint(name: str) -> Path:
    if not is_shipped(name):
        raise UserError(f"no shipped model {name!r}; valid: {shipped_names()}")
    return MODELS_DIR / f"{name}.pt"


def shipped_record(name: str) -> dict:
    """The training record beside the checkpoint."""
    return json.loads((MODELS_DIR / f"{name}.train.json").read_text())
