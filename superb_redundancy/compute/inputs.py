"""What a measurement is given: clip lengths (seconds, sample counts, a lengths file) and a device, checked.

Every bad value raises :class:`ProfileError` with one line naming it and what would be valid, before any model
work. Shared by :mod:`~superb_redundancy.compute.macs`, :mod:`~superb_redundancy.compute.latency` and
:mod:`~superb_redundancy.compute.profile`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import soundfile
import torch

# the one definition of the rate, and the CNN front end's receptive field: shorter input gives no frame
from superb_redundancy.core.audio import MIN_SAMPLES, SAMPLE_RATE
from superb_redundancy.core.errors import UserError

__all__ = ["ProfileError", "SAMPLE_RATE", "MIN_SAMPLES", "as_samples", "read_lengths_file", "check_device",
           "check_counts"]


class ProfileError(UserError):
    """Bad input for a profile; raised before any model is built. The message is one line."""


def as_samples(value) -> int:
    """A clip length as 16 kHz samples: floats are seconds, ints sample counts; at least :data:`MIN_SAMPLES`."""
    if isinstance(value, bool):
        raise ProfileError(f"length {value!r} is neither seconds nor a sample count")
    if isinstance(value, float):
        if not value > 0 or not math.isfinite(value):
            raise ProfileError(f"seconds must be > 0, got {value}")
        samples = int(round(value * SAMPLE_RATE))
    elif isinstance(value, int):
        samples = value
    else:
        raise ProfileError(f"length {value!r} must be seconds (float) or a sample count (int)")
    if samples < MIN_SAMPLES:
        raise ProfileError(
            f"{value!r} is {samples} samples: give at least {MIN_SAMPLES} samples ({MIN_SAMPLES / SAMPLE_RATE} s, "
            "the CNN's receptive field); seconds are floats (1.0), sample counts ints (16000)"
        )
    return samples


def check_counts(repeats: int, warmup: int, prefix: str = "") -> None:
    """Timed runs (``repeats``) at least 1, untimed ones (``warmup``) at least 0; ``prefix``: "--" for the CLI."""
    if repeats < 1:
        raise ProfileError(f"{prefix}repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ProfileError(f"{prefix}warmup must be >= 0, got {warmup}")


def check_device(device: str) -> torch.device:
    """``device`` as a torch device this machine has: cpu, cuda or cuda:N (with CUDA available)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ProfileError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ProfileError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ProfileError(f"unsupported device {device!r}; valid: cpu, cuda, cuda:N")
    return dev


def read_lengths_file(path: str | os.PathLike) -> list[int]:
    """Lengths (16 kHz samples) from a file: one sample count or one audio path per line.

    Blank lines and lines starting with ``#`` are skipped. Relative audio paths are taken from the file's folder.
    Audio lengths come from ``soundfile.info`` (frames); audio at another sample rate is converted to the
    number of samples it has at 16 kHz, which is what the upstream would see after resampling.
    """
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"lengths file not found: {path}")
    lengths: list[int] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        samples = int(line) if re.fullmatch(r"\d+", line) else _audio_samples(path, number, line)
        if samples < MIN_SAMPLES:
            raise ProfileError(f"{path}:{number}: {samples} samples is shorter than the CNN's {MIN_SAMPLES}")
        lengths.append(samples)
    if not lengths:
        raise ProfileError(f"lengths file {path} lists no lengths")
    return lengths


def _audio_samples(lengths_file: Path, number: int, line: str) -> int:
    """The 16 kHz sample count of the audio file on line ``number`` (relative to the lengths file's folder)."""
    audio = Path(line).expanduser()
    if not audio.is_absolute():
        audio = lengths_file.parent / audio
    if not audio.is_file():
        raise ProfileError(f"{lengths_file}:{number}: neither a sample count nor an existing audio file: {line}")
    try:
        info = soundfile.info(str(audio))
    except Exception as error:
        raise ProfileError(f"{lengths_file}:{number}: cannot read {audio}: {str(error).splitlines()[0]}") from None
    return int(round(info.frames * SAMPLE_RATE / info.samplerate))
