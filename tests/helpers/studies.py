"""Study files for tests: one writer, and the ``data:`` section pointing a study at a corpus laid out like the
synthetic one (the way a study names real corpora), so that a study reuses the session's corpus instead of
generating its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import yaml


def write_study(path: Path, upstream: Optional[dict] = None, **overrides) -> Path:
    """A study file: one tiny wav2vec2 upstream ``w`` (``upstream`` adds to it) on keyword spotting, workdir and
    leaderboard beside the file; ``overrides`` replace whole top-level sections."""
    # the leaderboard's timing cut to a few rounds: these studies check what is built, not how fast it runs
    board = {"path": str(path.parent / "board"), "rounds": 5, "max_passes": 2}
    study = {"name": "t", "workdir": str(path.parent / "work"), "leaderboard": board,
             "upstreams": [{"name": "w", "family": "wav2vec2", "base": "tiny", **(upstream or {})}],
             "tasks": ["speech_commands"], "seeds": [1337]}
    study.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(study))
    return path


def corpus_data(root: Path, tasks: Sequence[str]) -> dict:
    """``data:`` for ``tasks`` on a corpus under ``root`` laid out like the synthetic one (its datarc keys)."""
    from superb_redundancy.data.tasks import get_task

    return {task: {key: str(Path(root) / relative) for key, relative in get_task(task).corpus_keys}
            for task in tasks}
