"""The audio clips of a corpus split, and of folders or files given by hand.

:func:`corpus_audio` lists one split (train, dev or test) of a SUPERB task's corpus, laid out as s3prl reads it
(the synthetic corpus or the real one); :func:`audio_files` lists folders and files (each through
:func:`superb_redundancy.core.audio.list_audio`), as absolute paths, with an optional seeded subset. Every
problem is one :class:`SplitError` line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from superb_redundancy.core.audio import list_audio
from superb_redundancy.data import tasks

__all__ = ["SPLITS", "SplitError", "audio_files", "corpus_audio"]

SPLITS = ("train", "dev", "test")


class SplitError(ValueError):
    """Clips that cannot be listed (a bad split, task or folder); one line, naming it."""


def audio_files(audio: str | os.PathLike | Sequence[str | os.PathLike], limit: Optional[int] = None,
                seed: int = 0) -> list[Path]:
    """The clips of a folder (recursive ``*.wav``/``*.flac``, sorted) or of a list of files/folders, as absolute
    paths (:func:`superb_redundancy.core.audio.list_audio` per entry); ``limit`` keeps a seeded random subset."""
    entries = [audio] if isinstance(audio, (str, os.PathLike)) else list(audio)
    if not entries:
        raise SplitError("no audio files given")
    if limit is not None and limit < 1:
        raise SplitError(f"limit must be >= 1, got {limit}")
    files: list[Path] = []
    try:
        for entry in entries:
            files += [p.resolve() for p in list_audio(Path(entry).expanduser())]
        if limit is not None and limit < len(files):
            files = [files[k] for k in sorted(np.random.default_rng(seed).choice(len(files), limit, replace=False))]
    except (FileNotFoundError, ValueError) as error:
        raise SplitError(str(error)) from None
    return files


def corpus_audio(corpus_root: Optional[str | os.PathLike], task: str, split: str = "train",
                 datarc: Optional[dict] = None) -> list[Path]:
    """The audio of one split (train, dev or test) of a SUPERB task's corpus, laid out as s3prl reads it (the
    synthetic corpus or the real one): speech_commands (v0.01: ``validation_list.txt`` / ``testing_list.txt``
    split the training root, test = the test set), voxceleb1 (``iden_split.txt`` 1/2/3), emotion (fold 1:
    ``Session1/{train,test}_meta_data.json``; no fixed dev split), asr (train-clean-100 / dev-clean / test-clean).

    ``datarc``: the datarc keys of a real corpus (as a study gives them); without it, the corpus under
    ``corpus_root`` laid out like the synthetic one."""
    try:
        tasks.get_task(task)
    except ValueError as error:
        raise SplitError(str(error)) from None
    if split not in SPLITS:
        raise SplitError(f"corpus split {split!r} is invalid; valid: {', '.join(SPLITS)}")
    if datarc is not None:
        paths = {key: Path(value) for key, value in datarc.items()}
    else:
        paths = {key: Path(value) for key, value in tasks.data_overrides(task, corpus_root).items()}
        paths = {key.rsplit(".", 1)[-1]: value for key, value in paths.items()}
    listing = _LISTINGS.get(task)
    if listing is None:  # pragma: no cover (every task of tasks.TASKS has one)
        raise SplitError(f"no split listing for task {task!r}")
    try:
        return listing(paths, split)
    except (OSError, KeyError, ValueError) as error:
        if isinstance(error, SplitError):
            raise
        raise SplitError(f"cannot list the {split} audio of {task} under {corpus_root}: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def _speech_commands(paths: dict[str, Path], split: str) -> list[Path]:
    """v0.01: ``validation_list.txt`` / ``testing_list.txt`` split the training root; test = the test set if given."""
    root = paths["speech_commands_root"]
    if split == "test" and paths.get("speech_commands_test_root"):
        return audio_files(paths["speech_commands_test_root"])
    listed = {name: set((root / f"{name}_list.txt").read_text().split()) for name in ("validation", "testing")}
    words = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith("_")]
    files = [p for d in words for p in audio_files(d)]
    if split == "dev":
        return [p for p in files if f"{p.parent.name}/{p.name}" in listed["validation"]]
    if split == "test":
        return [p for p in files if f"{p.parent.name}/{p.name}" in listed["testing"]]
    dropped = listed["validation"] | listed["testing"]
    return [p for p in files if f"{p.parent.name}/{p.name}" not in dropped]


def _voxceleb1(paths: dict[str, Path], split: str) -> list[Path]:
    """``iden_split.txt``: 1 train, 2 dev, 3 test; each file under ``dev/wav`` or ``test/wav``."""
    root, wanted = paths["file_path"], str(SPLITS.index(split) + 1)
    lines = [line.split() for line in paths["meta_data"].read_text().splitlines() if line.strip()]
    return audio_files([next((root / part / "wav" / rel for part in ("dev", "test")
                              if (root / part / "wav" / rel).is_file()), root / "dev" / "wav" / rel)
                        for number, rel in lines if number == wanted])


def _emotion(paths: dict[str, Path], split: str) -> list[Path]:
    """Fold 1: ``Session1/{train,test}_meta_data.json``."""
    if split == "dev":
        raise SplitError("emotion has no fixed dev split (s3prl draws 20% of train); use train or test")
    meta = json.loads((paths["meta_data"] / "Session1" / f"{split}_meta_data.json").read_text())
    return audio_files([paths["root"] / item["path"] for item in meta["meta_data"]])


def _asr(paths: dict[str, Path], split: str) -> list[Path]:
    names = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
    return audio_files(paths["libri_root"] / names[split])


#: the split listing of each task (speech_commands_35 reads the same corpus as speech_commands)
_LISTINGS = {"speech_commands": _speech_commands, "speech_commands_35": _speech_commands, "voxceleb1": _voxceleb1,
             "emotion": _emotion, "asr": _asr}
