"""Speech Commands v0.02 as the paper uses it: 35 words, every word a target, no ``_silence_``, 1 s clips.

Layout of the v0.02 release (``speech_commands_v0.02.tar.gz``)::

    <root>/<word>/<speaker>_nohash_<n>.wav      35 word folders, 16 kHz mono, <= 1 s
    <root>/_background_noise_/*.wav             long noise recordings (the _silence_ source: not used here)
    <root>/validation_list.txt                  "<word>/<file>.wav" lines: the dev split
    <root>/testing_list.txt                     the same for the test split

The official split: a clip listed in ``validation_list.txt`` is dev, one in ``testing_list.txt`` is test, every
other clip of the 35 word folders is train (84,843 / 9,981 / 11,005 clips in the real release).

The paper's test set is different: it takes Hugging Face's ``speech_commands`` v0.02 test split, which is the
separate test archive ``speech_commands_test_set_v0.02.tar.gz`` (``<test_root>/<word>/`` for the 10 command
words, ``<test_root>/_unknown_/<word>_<speaker>_nohash_<n>.wav`` for the 25 others, ``<test_root>/_silence_/``),
minus its 408 ``_silence_`` clips: 4,482 clips. :func:`load_splits` takes it from ``test_root`` when one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import soundfile
from torch.utils.data import Dataset

from superb_redundancy.core.audio import SAMPLE_RATE

__all__ = ["CLASSES", "SAMPLE_RATE", "load_splits", "load_split", "load_test_archive", "read_audio", "fit_length",
           "SpeechCommands35Dataset"]

# Label order of Hugging Face's speech_commands v0.02 (the 10 command words, the 10 digits, the 15 other words):
# the first 35 labels of the dataset the paper trains on, so label ids agree with it.
CLASSES: tuple[str, ...] = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)
BACKGROUND = "_background_noise_"
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
SPLITS = ("train", "dev", "test")

PathLike = Union[str, Path]
Item = tuple[str, Path]  # (word, wav path)


def _read_list(root: Path, name: str) -> set[str]:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the Speech Commands v0.02 root holds validation_list.txt "
                                f"and testing_list.txt next to the 35 word folders")
    return {line.strip().lstrip("./") for line in path.read_text().splitlines() if line.strip()}


def load_splits(root: PathLike, test_root: Optional[PathLike] = None) -> dict[str, list[Item]]:
    """``{"train", "dev", "test"}`` -> ``[(word, path), ...]`` of a v0.02 root (the official lists).

    With ``test_root`` (the v0.02 test archive) the test split is that archive without ``_silence_`` (the
    paper's 4,482 clips) and the clips of ``testing_list.txt`` are used by no split.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands v0.02 root {root} does not exist")
    dev, test = _read_list(root, "validation_list.txt"), _read_list(root, "testing_list.txt")
    missing = [word for word in CLASSES if not (root / word).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks the word folder(s) {', '.join(missing)}: not a Speech Commands "
                                f"v0.02 root (v0.01 has 30 words)")
    splits: dict[str, list[Item]] = {split: [] for split in SPLITS}
    found = set()
    for word in CLASSES:
        for wav in sorted((root / word).glob("*.wav")):
            relative = f"{word}/{wav.name}"
            found.add(relative)
            splits["dev" if relative in dev else "test" if relative in test else "train"].append((word, wav))
    for name, listed in (("validation_list.txt", dev), ("testing_list.txt", test)):
        absent = sorted(p for p in listed if p not in found)
        if absent:
            raise FileNotFoundError(f"{root / name} lists {len(absent)} clip(s) that are not under {root} "
                                    f"(e.g. {absent[0]}): the lists and the audio are from different releases")
    if test_root is not None:
        splits["test"] = load_test_archive(test_root)
    return splits


def load_test_archive(test_root: PathLike) -> list[Item]:
    """The v0.02 test archive as 35-word items: ``_unknown_`` clips by the word in their name, no ``_silence_``."""
    test_root = Path(test_root)
    if not test_root.is_dir():
        raise FileNotFoundError(f"Speech Commands v0.02 test set {test_root} does not exist")
    items: list[Item] = []
    for folder in sorted(p for p in test_root.iterdir() if p.is_dir()):
        if folder.name in (SILENCE, BACKGROUND):
            continue  # no silence class
        for wav in sorted(folder.glob("*.wav")):
            word = wav.name.split("_", 1)[0] if folder.name == UNKNOWN else folder.name
            if word not in CLASSES:
                raise ValueError(f"{wav}: {word!r} is none of the 35 Speech Commands v0.02 words")
            items.append((word, wav))
    return items


def load_split(root: PathLike, split: str, test_root: Optional[PathLike] = None) -> list[Item]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return load_splits(root, test_root)[split]


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
