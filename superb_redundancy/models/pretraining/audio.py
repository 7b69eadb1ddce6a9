"""The audio a pretraining run trains on: the clips (a corpus' training splits, or folders), read and hashed
once, and the seeded stream of cropped batches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile
import torch

from superb_redundancy.core.audio import AUDIO_SUFFIXES, SAMPLE_RATE
from superb_redundancy.models.pretraining.settings import PretrainError, PretrainSettings

__all__ = ["TrainingAudio", "corpus_training_audio", "training_audio", "iter_batches"]


@dataclass
class TrainingAudio:
    """The clips a run trains on: paths, lengths (samples), and where they came from."""

    files: list[Path]
    lengths: list[int]
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)


def _corpus_sources(root: Path) -> dict[str, list[Path]]:
    """The training clips of each task of a corpus laid out as ours (missing tasks: absent)."""
    sources: dict[str, list[Path]] = {}
    ks = root / "speech_commands_v0.01"
    if ks.is_dir():
        held_out = set()
        for name in ("validation_list.txt", "testing_list.txt"):
            if (ks / name).is_file():
                held_out.update(line.strip() for line in (ks / name).read_text().splitlines() if line.strip())
        sources["speech_commands"] = [p for p in sorted(ks.rglob("*.wav"))
                                      if p.relative_to(ks).parts[0] != "_background_noise_"
                                      and p.relative_to(ks).as_posix() not in held_out]
    vox = root / "voxceleb1"
    if (vox / "iden_split.txt").is_file():
        files = []
        for line in (vox / "iden_split.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "1":  # s3prl's SID: 1 train, 2 dev, 3 test
                found = [vox / part / "wav" / parts[1] for part in ("dev", "test")]
                files.extend([p for p in found if p.is_file()][:1])
        sources["voxceleb1"] = sorted(set(files))
    iemocap = root / "IEMOCAP"
    if iemocap.is_dir():
        sources["emotion"] = sorted(p for s in (2, 3, 4, 5)
                                    for p in (iemocap / f"Session{s}" / "sentences" / "wav").rglob("*.wav"))
    libri = root / "LibriSpeech"
    if libri.is_dir():
        sources["asr"] = sorted(p for d in sorted(libri.glob("train*")) if d.is_dir()
                                for p in d.rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    return sources


def corpus_training_audio(root: str | os.PathLike) -> tuple[list[Path], dict]:
    """The training-split clips of every task of a corpus root, and a description (counts, the corpus marker)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PretrainError(f"--corpus {root}: no such folder")
    sources = _corpus_sources(root)
    if not any(sources.values()):
        raise PretrainError(f"--corpus {root} holds none of speech_commands_v0.01/, voxceleb1/iden_split.txt, "
                            "IEMOCAP/, LibriSpeech/ (make one with: superb-redundancy corpus --root DIR)")
    marker = {}
    if (root / ".complete").is_file():
        try:
            marker = json.loads((root / ".complete").read_text()).get("tasks", {})
        except (ValueError, AttributeError):
            marker = {}
    description = {"kind": "corpus", "root": str(root),
                   "tasks": {task: {"clips": len(files), **({"settings": marker[task].get("settings"),
                                                              "hash": marker[task].get("hash")}
                                                             if isinstance(marker.get(task), dict) else {})}
                             for task, files in sources.items()}}
    return [p for files in sources.values() for p in files], description


def _listed_audio(settings: PretrainSettings) -> tuple[list[Path], list[Path], dict]:
    """The clips of the corpus' training splits or of the folders, their roots, and a description."""
    if settings.corpus:
        files, source = corpus_training_audio(settings.corpus)
        return files, [Path(settings.corpus).expanduser()], source
    files, roots = [], []
    for folder in settings.data:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise PretrainError(f"--data {folder}: no such folder")
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not found:
            raise PretrainError(f"--data {folder}: no {'/'.join(AUDIO_SUFFIXES)} files under it")
        files.extend(found)
        roots.append(path)
    return files, roots, {"kind": "folders", "folders": [str(r) for r in roots]}


def training_audio(settings: PretrainSettings) -> TrainingAudio:
    """Every clip the run trains on, read once (lengths, finite samples) and hashed, before the model is built."""
    files, roots, source = _listed_audio(settings)
    digest = hashlib.sha256()
    kept, lengths, short = [], [], 0
    minimum = int(round(settings.crop_min * SAMPLE_RATE))
    for path in files:
        try:
            with soundfile.SoundFile(str(path)) as audio:
                rate, channels = audio.samplerate, audio.channels
                data = audio.read(dtype="float32", always_2d=True)
        except (RuntimeError, OSError, EOFError) as exc:
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PretrainError(f"unreadable audio file {path}: {text}") from None
        if rate != SAMPLE_RATE:
            raise PretrainError(f"audio file {path} is at {rate} Hz; pretraining reads 16 kHz audio only")
        if not np.isfinite(data).all():
            raise PretrainError(f"audio file {path} holds NaN or infinite samples")
        root = next(r for r in roots if path.is_relative_to(r))
        digest.update(f"{roots.index(root)}:{path.relative_to(root).as_posix()}:{channels}\0".encode())
        digest.update(hashlib.sha256(data.tobytes()).digest())
        if len(data) < minimum:
            short += 1
            continue
        kept.append(path)
        lengths.append(len(data))
    if len(kept) < settings.batch_size:
        raise PretrainError(f"{len(kept)} clip(s) of at least --crop-seconds {settings.crop_min:g} s in the data "
                            f"({short} shorter left out): fewer than --batch-size {settings.batch_size}")
    source.update(clips=len(kept), shorter_left_out=short, seconds=round(sum(lengths) / SAMPLE_RATE, 3),
                  sha256=digest.hexdigest())
    return TrainingAudio(kept, lengths, source)


def _read(path: Path, offset: int, length: int):
    data, _ = soundfile.read(str(path), start=offset, frames=length, dtype="float32", always_2d=True)
    return data.mean(axis=1)


def iter_batches(audio: TrainingAudio, settings: PretrainSettings, steps: int) -> Iterator:
    """``steps`` batches [B, samples] (float32 tensors): seeded epochs of shuffled clips (the last partial batch
    of an epoch dropped), every clip cropped to the batch's length at a seeded offset."""
    rng = np.random.default_rng([settings.seed, 1])
    lo, hi = int(round(settings.crop_min * SAMPLE_RATE)), int(round(settings.crop_max * SAMPLE_RATE))
    order: list[int] = []
    for _ in range(steps):
        if len(order) < settings.batch_size:
            order = [int(i) for i in rng.permutation(len(audio))]
        batch, order = order[:settings.batch_size], order[settings.batch_size:]
        length = min(int(rng.integers(lo, hi + 1)), min(audio.lengths[i] for i in batch))
        offsets = [int(rng.integers(0, audio.lengths[i] - length + 1)) for i in batch]
        yield torch.from_numpy(np.stack([_read(audio.files[i], off, length) for i, off in zip(batch, offsets)]))
