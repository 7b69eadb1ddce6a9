"""Speech synthesis with espeak-ng (through ctypes) and the per-clip post-processing.

espeak-ng ships as a pip wheel (``espeakng-loader``: ``libespeak-ng.so`` plus ``espeak-ng-data``), so no system
package is needed. The C API is driven directly:

* ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)``: ``espeak_Synth`` returns once the text is spoken and the
  samples have gone through the callback registered with ``espeak_SetSynthCallback`` (16-bit mono, 22050 Hz).
* ``espeak_SetVoiceByName("en+f3")``: a language voice plus a variant (``!v/f3``) gives a "speaker".
* ``espeak_SetParameter``: rate (words per minute), volume, pitch base and pitch range (0-100), word gap.

Determinism: espeak-ng's wave generator keeps state between utterances (phase and flutter counters that neither
``espeak_Terminate`` nor ``espeak_ng_SetRandSeed`` resets), so the same text spoken twice in one process gives
different samples. It is deterministic given the sequence of calls since process start, so every unit of clips is
synthesised in a fresh interpreter (:mod:`._synth`, started by :mod:`.generate`) in a fixed order, and its random
generator is seeded before each utterance.

This module imports no torch at import time: the synthesis workers stay light (numpy and ctypes only).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from superb_redundancy.core.audio import SAMPLE_RATE

__all__ = [
    "ESPEAK_RATE",
    "TARGET_RATE",
    "Voice",
    "Espeak",
    "espeak_version",
    "synthesize_unit",
    "Render",
    "render_noise",
    "clip_rng",
    "render_speech",
    "make_noise",
]

TARGET_RATE = SAMPLE_RATE  # what the upstreams take
ESPEAK_RATE = 22050  # what espeak-ng's wave generator produces; checked on initialisation

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, espeak_POSITION_TYPE and flag values from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Voice:
    """One espeak-ng speaking style: a voice name (``language[+variant]``) and its prosody parameters."""

    name: str = "en"
    rate: int = 175  # words per minute (espeak accepts 80..450)
    pitch: int = 50  # pitch base, 0..100
    range: int = 50  # pitch range, 0..100 (0 = monotone)
    volume: int = 100  # amplitude, 0..200
    wordgap: int = 0  # extra pause between words, in units of 10 ms

    def with_changes(self, **changes) -> "Voice":
        values = asdict(self)
        values.update(changes)
        values["rate"] = int(min(max(values["rate"], 80), 450))
        for key in ("pitch", "range"):
            values[key] = int(min(max(values[key], 0), 100))
        values["volume"] = int(min(max(values["volume"], 0), 200))
        values["wordgap"] = int(max(values["wordgap"], 0))
        return Voice(**values)


class Espeak:
    """A process-wide handle on libespeak-ng (the library is a singleton: one voice, one callback)."""

    _instance: Optional["Espeak"] = None

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self._has_seed = hasattr(lib, "espeak_ng_SetRandSeed")
        if self._has_seed:
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None

        # The path argument is the folder that holds espeak-ng-data.
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng failed to initialise (returned {rate}; expected {ESPEAK_RATE} Hz)")
        self.sample_rate = rate
        self.version = lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []

        def collect(wav, numsamples, events):
            if wav and numsamples > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
            return 0  # 0 = go on synthesising

        self._callback = _SynthCallback(collect)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: Optional[str] = None

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def synthesize(self, text: str, voice: Voice, rand_seed: int = 0) -> np.ndarray:
        """Speak ``text``; return int16 samples at :attr:`sample_rate`."""
        lib = self.lib
        if voice.name != self._voice:
            status = lib.espeak_SetVoiceByName(voice.name.encode())
            if status != 0:
                raise ValueError(f"espeak-ng has no voice {voice.name!r} (status {status})")
            self._voice = voice.name
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_VOLUME, voice.volume), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.range), (_PARAM_WORDGAP, voice.wordgap)):
            lib.espeak_SetParameter(param, int(value), 0)
        if self._has_seed:
            lib.espeak_ng_SetRandSeed(int(rand_seed) & 0x7FFFFFFF)
        self._chunks = []
        data = text.encode("utf-8")
        status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def espeak_version() -> str:
    return Espeak.get().version


def synthesize_unit(requests: Sequence[tuple[str, dict, int]]) -> list[np.ndarray]:
    """Synthesise ``(text, voice fields, seed)`` requests in order (run in a fresh process: see the module doc)."""
    engine = Espeak.get()
    return [engine.synthesize(text, Voice(**voice), seed) for text, voice, seed in requests]


def clip_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (e.g. the task and the clip's path)."""
    digest = hashlib.sha256("|".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _trim_silence(wav: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wav) > threshold * max(float(np.abs(wav).max()), 1e-9))
    if loud.size == 0:
        return wav
    return wav[loud[0]:loud[-1] + 1]


_RESAMPLERS: dict = {}


def _resample(wav: np.ndarray, orig: int, new: int) -> np.ndarray:
    """torchaudio's windowed-sinc resampling (``torchaudio.functional.resample``'s defaults), kernel cached."""
    if orig == new:
        return wav
    import torch
    import torchaudio

    if (orig, new) not in _RESAMPLERS:
        _RESAMPLERS[orig, new] = torchaudio.transforms.Resample(orig, new)
    with torch.no_grad():
        return _RESAMPLERS[orig, new](torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))).numpy()


def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white``, ``pink`` (1/f), ``brown`` (1/f^2) or ``hum`` (mains hum plus hiss)."""
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        size = 1 << max(int(n - 1).bit_length(), 1)  # a power of two keeps the FFT fast for any n
        spectrum = np.fft.rfft(rng.standard_normal(size))
        freqs = np.fft.rfftfreq(size)
        freqs[0] = freqs[1]
        spectrum /= np.sqrt(freqs) if kind == "pink" else freqs
        noise = np.fft.irfft(spectrum, size)[:n]
    elif kind == "hum":
        t = np.arange(n) / TARGET_RATE
        base = rng.uniform(48, 62)
        noise = sum(np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
        noise = noise + 0.3 * rng.standard_normal(n)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    noise = noise - noise.mean()
    return (noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Render:
    """How one synthesised utterance becomes a 16 kHz clip: concrete values, drawn per clip by the planner (so
    the plan records the variation; rendering only draws the noise samples).

    ``length``: a fixed number of samples, the speech centred and then moved by ``shift`` seconds (clamped so that
    it stays inside; a longer utterance keeps its middle), or None for the speech plus ``pad`` seconds of room tone
    before and after. ``peak_db``: normalise the peak to this level (None keeps espeak's own level, e.g. when
    loudness carries the emotion); ``gain_db`` applies either way. ``snr_db``: the speech-to-noise ratio of the
    added noise of kind ``noise`` (see :func:`make_noise`), relative to the speech's RMS.
    """

    length: Optional[int] = None
    shift: float = 0.0
    pad: tuple[float, float] = (0.1, 0.1)
    peak_db: Optional[float] = -6.0
    gain_db: float = 0.0
    snr_db: float = 40.0
    noise: str = "white"


def _finish(wav: np.ndarray) -> np.ndarray:
    return np.clip(wav, -1.0, 32767 / 32768).astype(np.float32)


def render_speech(samples: np.ndarray, sample_rate: int, spec: Render, rng: np.random.Generator) -> np.ndarray:
    """Trim, resample to 16 kHz, level, place/pad and add noise; returns float32 in [-1, 1)."""
    wav = samples.astype(np.float32) / 32768.0
    wav = _trim_silence(wav)
    wav = _resample(wav, sample_rate, TARGET_RATE)
    if spec.peak_db is not None:
        wav = wav / max(float(np.abs(wav).max()), 1e-9) * 10 ** (spec.peak_db / 20)
    wav = wav * 10 ** (spec.gain_db / 20)

    if spec.length is not None:
        if wav.size > spec.length:  # keep the middle
            start = (wav.size - spec.length) // 2
            wav = wav[start:start + spec.length]
        room = spec.length - wav.size
        offset = min(max(room // 2 + int(round(spec.shift * TARGET_RATE)), 0), room)
        out = np.zeros(spec.length, dtype=np.float32)
        out[offset:offset + wav.size] = wav
    else:
        before, after = (int(seconds * TARGET_RATE) for seconds in spec.pad)
        out = np.concatenate([np.zeros(before, np.float32), wav, np.zeros(after, np.float32)])

    rms = math.sqrt(float(np.mean(wav ** 2))) if wav.size else 1e-3
    noise_rms = rms * 10 ** (-spec.snr_db / 20)
    out = out + noise_rms * make_noise(spec.noise, out.size, rng)
    return _finish(out)


def render_noise(n: int, kind: str, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise at an RMS of ``level_db`` dBFS."""
    return _finish(make_noise(kind, n, rng) * 10 ** (level_db / 20))
