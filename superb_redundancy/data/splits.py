"""The audio clips of a corpus split, and of folders or files given by hand.

:func:`corpus_audio` lists one split (train, dev or test) of a SUPERB task's corpus, laid out as s3prl reads it
(the synthetic corpus or the real one); :func:`task_clips` is that list as a study stage reads it (:class:`Clips`:
maybe a seeded subset, and what the run records of it); :func:`audio_files` lists folders and files (each through
:func:`superb_redundancy.core.audio.list_audio`), as absolute paths, with an optional seeded subset. Every
problem is one :class:`SplitError` line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from superb_redundancy.core.audio import list_audio
from superb_redundancy.data import tasks
from superb_redundancy.core.errors import UserError

__all__ = ["SPLITS", "SplitError", "Clips", "audio_files", "corpus_audio", "task_clips"]

SPLITS = ("train", "dev", "test")


class SplitError(UserError):
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


def _speech_commands_35(paths: dict[str, Path], split: str) -> list[Path]:
    """v0.02 as the KS-35 downstream splits it (its official lists; test = the test archive if given, without
    ``_silence_``), so that a stage reads exactly the clips the downstream trains or scores on."""
    from superb_redundancy.data.speech_commands_v2 import load_split

    test_root = paths.get("speech_commands_test_root")
    return [Path(path).resolve() for _, path in load_split(paths["speech_commands_root"], split, test_root)]


#: the split listing of each task
_LISTINGS = {"speech_commands": _speech_commands, "speech_commands_35": _speech_commands_35,
             "voxceleb1": _voxceleb1, "emotion": _emotion, "asr": _asr}


@dataclass(frozen=True)
class Clips:
    """The clips a study stage reads: one split of a task's corpus, maybe a seeded subset of it. What a run
    records of them (:meth:`record`) tells which split it read, how many clips, and which (a digest of the list)."""

    task: str
    split: str
    files: tuple[Path, ...]
    listed: int  # the clips of the split, before a subset was drawn
    limit: Optional[int] = None
    too_long: int = 0  # clips of the split longer than the task's longest, left out

    def record(self) -> dict:
        """``{task, split, clips, of, too_long, sha256}``: the digest is of the clips' paths below their common
        folder, so that the same list under another mount point digests alike."""
        root = os.path.commonpath([str(p) for p in self.files]) if len(self.files) > 1 else ""
        names = "\n".join(os.path.relpath(p, root) if root else Path(p).name for p in self.files)
        return {"task": self.task, "split": self.split, "clips": len(self.files), "of": self.listed,
                "too_long": self.too_long, "sha256": hashlib.sha256(names.encode()).hexdigest()}


def task_clips(task: str, split: str, datarc: Optional[dict] = None, corpus_root: Optional[str | os.PathLike] = None,
               limit: Optional[int] = None, seed: int = 0) -> Clips:
    """One split of a task's corpus (:func:`corpus_audio`: a real corpus by its ``datarc`` keys, or one laid out like
    the synthetic corpus under ``corpus_root``), without the clips longer than the task's longest (counted);
    ``limit``: a subset of that many clips, seeded by ``seed``."""
    files = corpus_audio(corpus_root, task, split, datarc=datarc)
    listed, too_long = len(files), 0
    longest = tasks.get_task(task).max_seconds
    if longest is not None:
        kept = [p for p in files if _seconds(p) <= longest + 1e-9]
        files, too_long = kept, len(files) - len(kept)
    if limit is not None and limit < len(files):
        files = sorted(random.Random(seed).sample(files, limit))
    if not files:
        raise SplitError(f"the {split} split of {task} holds no clip of at most {longest} s" if too_long else
                         f"the {split} split of {task} holds no clip")
    return Clips(task, split, tuple(files), listed, limit, too_long)


def _seconds(path: Path) -> float:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as error:
        raise SplitError(f"unreadable audio file {path}: {str(error).splitlines()[0]}") from None
    return info.frames / info.samplerate
