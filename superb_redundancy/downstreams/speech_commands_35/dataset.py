"""Speech Commands v0.02 as the paper uses it: 35 words, every word a target, no ``_silence_``, 1 s clips.

The splits (the official lists, or the paper's test archive) are :mod:`superb_redundancy.data.speech_commands_v2`'s,
shared with the study stages that read this audio; this module reads the clips and fits them to one length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile
from torch.utils.data import Dataset

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.data.speech_commands_v2 import CLASSES, Item, PathLike, load_split, load_splits, load_test_archive

__all__ = ["CLASSES", "SAMPLE_RATE", "load_splits", "load_split", "load_test_archive", "read_audio", "fit_length",
           "SpeechCommands35Dataset"]


def read_audio(path: PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono float32 waveform at ``sample_rate`` (channels averaged, resampled when the file differs)."""
    wav, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if rate != sample_rate:
        import torch
        import torchaudio.functional

        wav = torchaudio.functional.resample(torch.from_numpy(wav), rate, sample_rate).numpy()
    return np.ascontiguousarray(wav, dtype=np.float32)


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Cut to the first ``length`` samples, or pad with zeros at the end (the paper: padded or cut to 1 s)."""
    if len(wav) >= length:
        return wav[:length]
    return np.pad(wav, (0, length - len(wav)))


class SpeechCommands35Dataset(Dataset):
    """``(wav, label, utterance id)`` items, every clip exactly ``clip_seconds`` long."""

    def __init__(self, items: Sequence[Item], clip_seconds: float = 1.0, gain_db: float = 0.0,
                 sample_rate: int = SAMPLE_RATE):
        self.class2index = {word: i for i, word in enumerate(CLASSES)}
        self.class_num = len(CLASSES)
        self.items = [(word, Path(path)) for word, path in items]
        unknown = {word for word, _ in self.items} - set(CLASSES)
        if unknown:
            raise ValueError(f"word(s) {sorted(unknown)} are not among the 35 classes")
        self.labels = [self.class2index[word] for word, _ in self.items]
        self.length = int(round(clip_seconds * sample_rate))
        if self.length <= 0:
            raise ValueError(f"clip_seconds must be > 0, got {clip_seconds!r}")
        self.gain = float(10.0 ** (float(gain_db) / 20.0))
        self.sample_rate = sample_rate

    @property
    def sample_weights(self) -> list[float]:
        """Inverse class frequency, for a class-balanced sampler."""
        counts = np.bincount(self.labels, minlength=self.class_num)
        return [len(self.labels) / float(counts[label]) for label in self.labels]

    def load(self, path: PathLike) -> np.ndarray:
        wav = fit_length(read_audio(path, self.sample_rate), self.length)
        return wav * self.gain if self.gain != 1.0 else wav

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        word, path = self.items[index]
        return self.load(path), self.labels[index], "-".join(path.parts[-2:])

    @staticmethod
    def collate_fn(samples):
        """``(wavs, labels, utterance ids)``, each a tuple: the runner turns the wavs into tensors itself."""
        return tuple(zip(*samples))
