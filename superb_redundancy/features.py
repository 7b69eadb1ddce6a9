"""Hidden states of an upstream over a folder of audio: the input of similarity analysis and pruning scores.

Audio is read with soundfile (16 kHz mono; other rates are resampled), batched, and run through any s3prl-style
upstream (``forward(list of wavs) -> {"hidden_states": [B, T, D] ...}``) in eval mode without gradients.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["AUDIO_SUFFIXES", "list_audio", "load_wav", "iter_hidden_states", "frame_lengths"]

AUDIO_SUFFIXES = (".wav", ".flac")
SAMPLE_RATE = 16000


def list_audio(data: str | Path, limit: Optional[int] = None, seed: int = 0) -> list[Path]:
    """Audio files under ``data`` (recursive, sorted); ``limit`` draws a seeded random subset of that size."""
    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"audio folder not found: {root}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"no {'/'.join(AUDIO_SUFFIXES)} files under {root}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if limit < len(files):
            files = sorted(random.Random(seed).sample(files, limit))
    return files


def load_wav(path: str | Path, max_seconds: Optional[float] = None) -> Tensor:
    """A 1-D float32 16 kHz waveform (mono mix; resampled if the file is at another rate)."""
    import soundfile

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
    return torch.tensor([min(frames, max(1, round(n / rate))) for n in wav_lengths])


@torch.no_grad()
def iter_hidden_states(upstream: torch.nn.Module, files: Sequence[Path], batch_size: int = 8,
                       device: str = "cpu", max_seconds: Optional[float] = None,
                       progress: bool = True) -> Iterator[tuple[list[Tensor], Tensor]]:
    """Yield ``(hidden_states, frame_lengths)`` per batch of clips: L+1 tensors [B, T, D] and [B] lengths."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    upstream = upstream.to(device).eval()
    rate = upstream.get_downsample_rates("hidden_states") if hasattr(upstream, "get_downsample_rates") else 320
    bar = tqdm(total=len(files), desc="hidden states", unit="clip", disable=not progress)
    for start in range(0, len(files), batch_size):
        wavs = [load_wav(f, max_seconds).to(device) for f in files[start:start + batch_size]]
        states = [h.float().cpu() for h in upstream(wavs)["hidden_states"]]
        yield states, frame_lengths([len(w) for w in wavs], states[0].size(1), rate)
        bar.update(len(wavs))
    bar.close()
