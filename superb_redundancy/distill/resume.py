"""Where a distillation run keeps the state it resumes from (written after every epoch)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["resume_state_path"]


def resume_state_path(output: Path) -> Path:
    """Where a training run's resumable state goes: beside its output (the mimic trainer's and heal's)."""
    return output.with_name(output.name + ".state.pt")
