"""Audio in: the clips of a folder, checked and read as 16 kHz mono waveforms, and their frame counts.

Audio is read with soundfile (16 kHz mono; other rates are resampled). :data:`SAMPLE_RATE` is the one definition
of the rate every upstream we handle takes. Light at import (torch, numpy and soundfile are imported when used),
so that modules which only need the rate can import it. Running an upstream over the clips is
:mod:`superb_redundancy.analysis.hidden_states`.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Type

from superb_redundancy.core.errors import InputNotFound, UserError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["AUDIO_SUFFIXES", "SAMPLE_RATE", "MIN_SAMPLES", "list_audio", "check_audio", "load_wav", "frame_lengths"]

AUDIO_SUFFIXES = (".wav", ".flac")
SAMPLE_RATE = 16000
#: the shortest clip the models make a frame of: wav2vec2's CNN has a 400-sample (25 ms) receptive field; a shorter
#: clip would become a sample made of padding
MIN_SAMPLES = 400


def list_audio(data: str | Path | Sequence[str | Path], limit: Optional[int] = None, seed: int = 0) -> list[Path]:
    """Audio files under ``data``, a folder (recursive, sorted) or a file, or several of them (the files of each,
    in order, each once); ``limit`` draws a seeded random subset of that size."""
    files: list[Path] = []
    for root in map(Path, [data] if isinstance(data, (str, Path)) else data):
        if not root.exists():
            raise InputNotFound(f"audio folder not found: {root}")
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*")
                                                     if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not found:
            raise UserError(f"no {'/'.join(AUDIO_SUFFIXES)} files under {root}")
        files += found
    files = list(dict.fromkeys(files))
    if not files:
        raise UserError("no audio given")
    if limit is not None:
        if limit < 1:
            raise UserError(f"limit must be >= 1, got {limit}")
        if limit < len(files):
            files = sorted(random.Random(seed).sample(files, limit))
    return files


def check_audio(files: Sequence[Path], min_seconds: float = MIN_SAMPLES / SAMPLE_RATE,
                error: Type[Exception] = UserError, quiet: bool = False) -> list[Path]:
    """The clips of ``files`` long enough to analyse, every file read once before any model runs.

    A file soundfile cannot read (corrupt, not audio) or holding NaN/inf samples raises ``error`` with one line
    naming it; clips shorter than ``min_seconds`` (at 16 kHz, after resampling) are left out with a count on
    stderr; none left raises ``error``.
    """
    import numpy as np
    import soundfile

    kept: list[Path] = []
    short: list[Path] = []
    for path in files:
        finite = True
        try:
            with soundfile.SoundFile(str(path)) as audio:
                rate, frames = audio.samplerate, 0
                for block in audio.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    finite = finite and bool(np.isfinite(block).all())
                    frames += len(block)
        except (RuntimeError, OSError, EOFError) as exc:  # soundfile's errors are RuntimeErrors
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise error(f"unreadable audio file {path}: {text}") from None
        if not finite:
            raise error(f"audio file {path} holds NaN or infinite samples")
        resampled = math.ceil(frames * SAMPLE_RATE / rate)  # the length load_wav gives it
        (kept if resampled >= round(min_seconds * SAMPLE_RATE) else short).append(path)
    if not kept:
        raise error(f"all {len(short)} clip(s) are shorter than {min_seconds * 1000:g} ms (the model's receptive "
                    f"field), e.g. {short[0]}")
    if short and not quiet:
        print(f"note: skipping {len(short)} of {len(files)} clips shorter than {min_seconds * 1000:g} ms "
              f"(too short for one frame), e.g. {short[0]}", file=sys.stderr)
    return kept


def load_wav(path: str | Path, max_seconds: Optional[float] = None) -> Tensor:
    """A 1-D float32 16 kHz waveform (mono mix; resampled if the file is at another rate)."""
    import soundfile
    import torch

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))
    if rate != SAMPLE_RATE:
        import torchaudio.functional as AF

        wav = AF.resample(wav, rate, SAMPLE_RATE)
    if max_seconds is not None:
        wav = wav[: int(max_seconds * SAMPLE_RATE)]
    return wav


def frame_lengths(wav_lengths: Sequence[int], frames: int, rate: int) -> Tensor:
    """Valid frames per clip of a padded batch: ``len / rate`` rounded, capped at the batch's frame count."""
    import torch

    return torch.tensor([min(frames, max(1, round(n / rate))) for n in wav_lengths])
