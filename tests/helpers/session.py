"""Keys of what one part of a test session leaves for the others (``config.stash``)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: the main job's synthetic corpus (scale 1, all four tasks), once the journeys ran the main job successfully
MAIN_CORPUS = pytest.StashKey[Path]()

#: the synthetic corpus scale of the session's ``corpus_root``: every task's layout and splits, 1/10 of the main
#: job's clips
SMALL_SCALE = 0.1


def scaled(count: int, scale: float = SMALL_SCALE) -> int:
    """What the corpus generator makes of a scale-1 count at ``scale`` (at least one)."""
    return max(1, int(round(count * scale)))
