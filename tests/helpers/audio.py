"""Test audio written to disk, in one place: each kind of clip the tests need, with its seed and lengths.

Every writer returns the folder (or the files) it wrote; the content is a function of the arguments only, so a
module that asks for the same clips again gets the same samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

SR = 16000


def _write(path: Path, samples: np.ndarray, rate: int = SR, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples.astype(np.float32), rate, **kwargs)
    return path


def noise_clips(folder: Path, count: int = 10, samples: int | Sequence[int] = 8000, seed: int = 0,
                scale: float = 0.1, name: str = "{i}.wav") -> Path:
    """``count`` clips of Gaussian noise (std ``scale``), ``samples`` long (one length, or one per clip)."""
    rng = np.random.default_rng(seed)
    lengths = [samples] * count if isinstance(samples, int) else list(samples)
    for i, n in enumerate(lengths):
        _write(folder / name.format(i=i), scale * rng.standard_normal(n))
    return folder


def pitched_sines(folder: Path, count: int, seconds, base_hz: float, step_hz: float, seed: int,
                  name: str = "{i:03d}.wav") -> Path:
    """Sines of rising pitch (``base_hz + step_hz * i``) with light noise, clip i ``seconds(i)`` long: enough
    structure for nearest neighbours to mean something, and lengths that make padding matter."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        t = np.arange(int(SR * seconds(i))) / SR
        _write(folder / name.format(i=i),
               0.3 * np.sin(2 * np.pi * (base_hz + step_hz * i) * t) + 0.05 * rng.standard_normal(t.size))
    return folder


def random_sines(folder: Path, count: int, seed: int, name: str = "clip{k:02d}.wav", nested: bool = False,
                 stereo: Sequence[int] = ()) -> list[Path]:
    """Sines of random pitch (100-900 Hz) with noise, 0.3-1.0 s. ``nested``: every third clip in ``sub/`` and
    every fourth (from the second) as FLAC; ``stereo``: those clips as two channels (x, -x)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        n = int(rng.integers(int(0.3 * SR), SR))
        t = np.arange(n) / SR
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(n)
        relative = name.format(k=k)
        if nested:
            relative = str(Path("sub" if k % 3 == 0 else "") / f"{Path(relative).stem}.{'flac' if k % 4 == 1 else 'wav'}")
        data = np.stack([x, -x], axis=1) if k in stereo else x
        paths.append(_write(folder / relative, data))
    return paths


def tone_syllables(folder: Path, count: int, seed: int) -> Path:
    """Clips of 1.0-1.6 s: runs of tone "syllables" (50-250 ms, random pitch, Hann envelope) over light noise,
    frames that their neighbours predict, as in speech; every third in ``sub/``, every fourth (from the second)
    as FLAC."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(SR, int(1.6 * SR)))
        x = np.zeros(n)
        pos = 0
        while pos < n:
            seg = min(int(rng.integers(800, 4000)), n - pos)
            t = np.arange(seg) / SR
            x[pos:pos + seg] = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 2500) * t) * np.hanning(seg)
            pos += seg
        x += 0.02 * rng.standard_normal(n)
        sub = "sub" if k % 3 == 0 else ""
        _write(folder / sub / f"clip{k:02d}.{'flac' if k % 4 == 1 else 'wav'}", x)
    return folder


def silence(path: Path, samples: int, rate: int = SR, **kwargs) -> Path:
    """One clip of zeros (``samples`` long at ``rate``)."""
    return _write(path, np.zeros(samples), rate, **kwargs)
