"""Keys of what one part of a test session leaves for the others (``config.stash``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

#: the main job's synthetic corpus (scale 1, all four tasks), once the journeys ran the main job successfully
MAIN_CORPUS = pytest.StashKey[Path]()

#: the synthetic corpus scale of the session's ``corpus_root``: every task's layout and splits, 1/10 of the main
#: job's clips
SMALL_SCALE = 0.1


def scaled(count: int, scale: float = SMALL_SCALE) -> int:
    """What the corpus generator makes of a scale-1 count at ``scale`` (at least one)."""
    return max(1, int(round(count * scale)))


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` filled by ``build(folder)`` once per test run and shared by every xdist worker: the
    first worker to ask builds it under a file lock while the others wait (building it twice on two cores costs
    both workers), then all read it. Session fixtures whose product is read-only files use it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' basetemps share the run's folder
        base = base.parent
    folder, done = base / name, base / f"{name}.built"
    with FileLock(str(base / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder
