"""Make s3prl 0.4.18 import and run on current PyTorch, torchaudio and huggingface_hub.

s3prl's last release predates torchaudio 2.9 (backends and ``sox_effects`` removed, I/O through TorchCodec),
huggingface_hub 1.0 (``HfFolder`` and ``Repository`` removed) and torch 2.6 (``weights_only=True`` by
default). Each fix below is applied from outside s3prl, before it is imported, without editing installed
files. Every fix is idempotent and a no-op where the stack still has what s3prl expects.

    from superb_redundancy import compat
    compat.apply()          # then import s3prl

``FIXES`` maps a fix's name to its function, so tests can leave one out and watch s3prl fail without it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import math
import os
import sys
import types
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch

__all__ = ["FIXES", "apply", "applied"]

FIXES: dict[str, Callable[[], bool]] = {}
_APPLIED: set[str] = set()


def _fix(name: str):
    def decorate(fn: Callable[[], bool]) -> Callable[[], bool]:
        FIXES[name] = fn
        return fn

    return decorate


def applied() -> frozenset[str]:
    """Names of the fixes that changed something in this process."""
    return frozenset(_APPLIED)


def apply(exclude: Iterable[str] = ()) -> frozenset[str]:
    """Apply every fix (except those named in ``exclude``); return the names of those that changed something."""
    exclude = set(exclude)
    unknown = exclude - set(FIXES)
    if unknown:
        raise ValueError(f"unknown compat fix(es) {sorted(unknown)}; valid: {sorted(FIXES)}")
    for name, fix in FIXES.items():
        if name not in exclude and fix():
            _APPLIED.add(name)
    return applied()


# 1. torchaudio >= 2.9 dropped the backend functions; they had been no-ops since torchaudio 2.1.
@_fix("audio_backend")
def _audio_backend() -> bool:
    import torchaudio

    changed = False
    stubs = {
        "set_audio_backend": lambda backend=None: None,
        "get_audio_backend": lambda: None,
        "list_audio_backends": lambda: ["soundfile"],
    }
    for name, stub in stubs.items():
        if not hasattr(torchaudio, name):
            setattr(torchaudio, name, stub)
            changed = True
    return changed


# 2. torchaudio >= 2.9 routes load/info through TorchCodec, which needs FFmpeg's shared libraries. Where they
#    are missing, read with soundfile (a wheel that bundles libsndfile: wav, flac, ogg).
@functools.lru_cache(maxsize=1)
def _torchcodec_works() -> bool:
    """Decode 10 ms of silence through TorchCodec: its FFmpeg-linked core loads lazily, on first use."""
    try:
        import io
        import wave

        from torchcodec.decoders import AudioDecoder

        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 160)
        AudioDecoder(buffer.getvalue()).get_all_samples()
        return True
    except Exception:
        return False


@_fix("audio_io")
def _audio_io() -> bool:
    import torchaudio

    if getattr(torchaudio.load, "_superb_redundancy", False) or _torchcodec_works():
        return False

    def load(uri, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True,
             channels_first: bool = True, format=None, buffer_size: int = 4096, backend=None):
        import soundfile

        stop = None if num_frames is None or num_frames < 0 else frame_offset + num_frames
        data, sample_rate = soundfile.read(
            uri, start=frame_offset, stop=stop, dtype="float32" if normalize else "int16", always_2d=True
        )
        wav = torch.from_numpy(data)
        return (wav.T.contiguous() if channels_first else wav), sample_rate

    def info(uri, format=None, buffer_size: int = 4096, backend=None):
        import soundfile

        meta = soundfile.info(uri)
        return types.SimpleNamespace(sample_rate=meta.samplerate, num_frames=meta.frames,
                                     num_channels=meta.channels, bits_per_sample=16, encoding=meta.subtype)

    load._superb_redundancy = True
    torchaudio.load = load
    torchaudio.info = info
    return True


# 3. torchaudio.sox_effects was removed in 2.9. speech_commands (and mos_prediction) import it; these are the
#    effects s3prl passes. Anything else fails loudly rather than silently doing nothing.
def _apply_effects_tensor(tensor: torch.Tensor, sample_rate: int, effects, channels_first: bool = True):
    import torchaudio.functional as AF

    wav = tensor if channels_first else tensor.T
    for effect in effects:
        name, *args = [str(a) for a in effect]
        if name == "channels":
            n = int(args[0])
            if n == 1:
                wav = wav.mean(dim=0, keepdim=True)
            elif wav.size(0) != n:
                wav = wav[:1].repeat(n, 1)
        elif name == "rate":
            new_rate = int(float(args[0]))
            if new_rate != sample_rate:
                wav = AF.resample(wav, sample_rate, new_rate)
                sample_rate = new_rate
        elif name in ("gain", "vol") and (name == "gain" or (args and args[-1] == "dB")):
            if args and args[0] == "-n":  # gain -n [dB]: normalise the peak to dB (default 0)
                target = float(args[1]) if len(args) > 1 else 0.0
                peak = wav.abs().max().clamp_min(1e-12)
                wav = wav / peak * 10 ** (target / 20)
            else:
                wav = wav * 10 ** (float(args[0]) / 20)
        elif name == "vol":
            wav = wav * float(args[0])
        elif name == "norm":
            target = float(args[0]) if args else 0.0
            wav = wav / wav.abs().max().clamp_min(1e-12) * 10 ** (target / 20)
        elif name == "pad":
            before = round(float(args[0]) * sample_rate)
            after = round(float(args[1]) * sample_rate) if len(args) > 1 else 0
            wav = torch.nn.functional.pad(wav, (before, after))
        elif name == "trim":
            start = round(float(args[0]) * sample_rate)
            length = round(float(args[1]) * sample_rate) if len(args) > 1 else None
            wav = wav[:, start:] if length is None else wav[:, start:start + length]
        else:
            raise NotImplementedError(
                f"sox effect {name!r} is not available without torchaudio.sox_effects; "
                "superb_redundancy's stand-in supports channels, rate, gain, vol, norm, pad, trim"
            )
    return (wav if channels_first else wav.T), sample_rate


def _apply_effects_file(path, effects, normalize: bool = True, channels_first: bool = True, format=None):
    import torchaudio

    wav, sample_rate = torchaudio.load(str(path), normalize=normalize)
    return _apply_effects_tensor(wav, sample_rate, effects, channels_first=channels_first)


@_fix("sox_effects")
def _sox_effects() -> bool:
    try:
        importlib.import_module("torchaudio.sox_effects")
        return False
    except ImportError:
        pass
    import torchaudio

    module = types.ModuleType("torchaudio.sox_effects", "superb_redundancy stand-in for torchaudio.sox_effects")
    module.apply_effects_tensor = _apply_effects_tensor
    module.apply_effects_file = _apply_effects_file
    module.effect_names = lambda: ["channels", "rate", "gain", "vol", "norm", "pad", "trim"]
    module.init_sox_effects = lambda: None
    module.shutdown_sox_effects = lambda: None
    sys.modules["torchaudio.sox_effects"] = module
    torchaudio.sox_effects = module
    return True


# 4. huggingface_hub >= 1.0 removed HfFolder and Repository; s3prl imports them for pushing to the Hub only.
class _RemovedRepository:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            "huggingface_hub >= 1.0 removed Repository; pushing an s3prl experiment to the Hub needs "
            "huggingface_hub < 1.0 (or upload the expdir with `hf upload`)"
        )


@_fix("hf_hub_names")
def _hf_hub_names() -> bool:
    import huggingface_hub

    changed = False
    if not hasattr(huggingface_hub, "HfFolder"):

        class HfFolder:
            """The two calls s3prl makes, mapped onto huggingface_hub's current token functions."""

            @staticmethod
            def get_token() -> Optional[str]:
                return huggingface_hub.get_token()

            @staticmethod
            def save_token(token: str) -> None:
                huggingface_hub.login(token=token, add_to_git_credential=False)

        huggingface_hub.HfFolder = HfFolder
        changed = True
    if not hasattr(huggingface_hub, "Repository"):
        huggingface_hub.Repository = _RemovedRepository
        changed = True
    return changed


# 5. torch >= 2.6 loads with weights_only=True; s3prl's experiment checkpoints hold an argparse.Namespace.
@_fix("namespace_safe_global")
def _namespace_safe_global() -> bool:
    from torch.serialization import add_safe_globals, get_safe_globals

    if argparse.Namespace in get_safe_globals():
        return False
    add_safe_globals([argparse.Namespace])
    return True


# 6. catalyst is imported by speech_commands for one class only; catalyst itself pins old dependencies.
class DistributedSamplerWrapper(torch.utils.data.DistributedSampler):
    """Shard any sampler (e.g. the balanced WeightedRandomSampler) across distributed ranks.

    Each epoch the wrapped sampler is drawn once; rank r takes every num_replicas-th of those indices.
    """

    def __init__(self, sampler, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True):
        super().__init__(list(range(len(sampler))), num_replicas=num_replicas, rank=rank, shuffle=shuffle)
        self.sampler = sampler

    def __iter__(self) -> Iterator[int]:
        drawn = list(self.sampler)
        positions = list(super().__iter__())  # this rank's share of positions into `drawn`
        return iter(drawn[p] for p in positions)


@_fix("catalyst_sampler")
def _catalyst_sampler() -> bool:
    try:
        importlib.import_module("catalyst.data.sampler")
        return False
    except ImportError:
        pass
    for name in ("catalyst", "catalyst.data", "catalyst.data.sampler"):
        module = sys.modules.get(name) or types.ModuleType(name, "superb_redundancy stand-in")
        module.__path__ = []  # a package, so the submodule import resolves through sys.modules
        sys.modules[name] = module
    sys.modules["catalyst"].data = sys.modules["catalyst.data"]
    sys.modules["catalyst.data"].sampler = sys.modules["catalyst.data.sampler"]
    sys.modules["catalyst.data.sampler"].DistributedSamplerWrapper = DistributedSamplerWrapper
    return True


# 7. voxceleb1 caches its file lists in site-packages keyed by split name only, so a second corpus silently
#    reuses the first one's lists. Key the cache by the corpus root and split file instead.
def voxceleb1_cache_dir(file_path: str, meta_data: str) -> Path:
    meta = Path(meta_data)
    stamp = f"{Path(file_path).resolve()}|{meta.resolve()}|{meta.stat().st_mtime_ns if meta.exists() else 0}"
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    root = Path(os.environ.get("SUPERB_REDUNDANCY_CACHE", Path.home() / ".cache" / "superb_redundancy"))
    return root / "voxceleb1_lists" / digest


@_fix("voxceleb1_cache")
def _voxceleb1_cache() -> bool:
    dataset = importlib.import_module("s3prl.downstream.voxceleb1.dataset")
    cls = dataset.SpeakerClassifiDataset
    if getattr(cls.__init__, "_superb_redundancy", False):
        return False
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, mode, file_path, meta_data, max_timestep=None):
        # The original reads the module-level CACHE_PATH when it runs.
        dataset.CACHE_PATH = str(voxceleb1_cache_dir(file_path, meta_data)) + os.sep
        original(self, mode, file_path, meta_data, max_timestep)

    __init__._superb_redundancy = True
    cls.__init__ = __init__
    return True
