"""Speech Commands v0.02's official splits as the paper uses them: 35 words, every word a target, no ``_silence_``.

Layout of the v0.02 release (``speech_commands_v0.02.tar.gz``)::

    <root>/<word>/<speaker>_nohash_<n>.wav      35 word folders, 16 kHz mono, <= 1 s
    <root>/_background_noise_/*.wav             long noise recordings (the _silence_ source: never a clip here)
    <root>/validation_list.txt                  "<word>/<file>.wav" lines: the dev split
    <root>/testing_list.txt                     the same for the test split

The official split: a clip listed in ``validation_list.txt`` is dev, one in ``testing_list.txt`` is test, every
other clip of the 35 word folders is train (84,843 / 9,981 / 11,005 clips in the real release).

The paper's test set is different: it takes Hugging Face's ``speech_commands`` v0.02 test split, which is the
separate test archive ``speech_commands_test_set_v0.02.tar.gz`` (``<test_root>/<word>/`` for the 10 command
words, ``<test_root>/_unknown_/<word>_<speaker>_nohash_<n>.wav`` for the 25 others, ``<test_root>/_silence_/``),
minus its 408 ``_silence_`` clips: 4,482 clips. :func:`load_splits` takes it from ``test_root`` when one is given.

The KS-35 downstream (:mod:`superb_redundancy.downstreams.speech_commands_35`) trains and scores on these splits,
and every study stage that reads keyword audio takes it from them (:func:`superb_redundancy.data.splits.task_clips`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

__all__ = ["CLASSES", "SPLITS", "load_splits", "load_split", "load_test_archive"]

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
