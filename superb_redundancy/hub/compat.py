"""Make s3prl 0.4.18 import and run on current PyTorch, torchaudio and huggingface_hub, and load only weights.

s3prl's last release predates torchaudio 2.9 (backends and ``sox_effects`` removed, I/O through TorchCodec),
huggingface_hub 1.0 (``HfFolder`` and ``Repository`` removed) and torch 2.6 (``weights_only=True`` by
default). Each fix below is applied from outside s3prl, before it is imported, without editing installed
files. Every fix is idempotent and a no-op where the stack still has what s3prl expects.

The fixes are applied in ONE place: an import hook (:func:`install_hook`, installed when ``superb_redundancy``
is imported) applies them the moment anything imports ``s3prl``, whichever command, test, Slurm job or
DataLoader worker does it; a fix that patches an s3prl module (``AFTER_IMPORT``) runs right after that module
has executed. :func:`apply` applies them at once, for callers that import s3prl some other way::

    import superb_redundancy     # installs the hook; nothing heavy is imported
    import s3prl.hub             # the fixes run first

``FIXES`` maps a fix's name to its function, so tests can leave one out (environment variable
``SUPERB_REDUNDANCY_COMPAT_EXCLUDE=name,name``) and watch s3prl fail without it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import importlib.abc
import os
import sys
import types
from pathlib import Path
from typing import Callable, Iterable, Optional

from superb_redundancy.core.errors import UserError

__all__ = ["FIXES", "AFTER_IMPORT", "apply", "applied", "install_hook", "UnsafeCheckpointError",
           "TRUST_ENV", "EXCLUDE_ENV"]

#: names of fixes to leave out (comma-separated); for tests that show a fix is needed
EXCLUDE_ENV = "SUPERB_REDUNDANCY_COMPAT_EXCLUDE"
#: the explicit opt-in for a user who trusts particular files: s3prl may unpickle code from exactly these paths
TRUST_ENV = "SUPERB_REDUNDANCY_TRUST_PICKLES_IN"

FIXES: dict[str, Callable[[], bool]] = {}
#: fix name -> the s3prl module after whose import it runs (the other fixes run before s3prl is imported)
AFTER_IMPORT: dict[str, str] = {}
_APPLIED: set[str] = set()


def _fix(name: str, after: Optional[str] = None):
    def decorate(fn: Callable[[], bool]) -> Callable[[], bool]:
        FIXES[name] = fn
        if after:
            AFTER_IMPORT[name] = after
        return fn

    return decorate


def applied() -> frozenset[str]:
    """Names of the fixes that changed something in this process."""
    return frozenset(_APPLIED)


def _excluded_by_environment() -> set[str]:
    return {n.strip() for n in os.environ.get(EXCLUDE_ENV, "").split(",") if n.strip()}


def _check_names(names: Iterable[str]) -> set[str]:
    names = set(names)
    unknown = names - set(FIXES)
    if unknown:
        raise ValueError(f"unknown compat fix(es) {sorted(unknown)}; valid: {sorted(FIXES)}")
    return names


def _run(name: str) -> None:
    if FIXES[name]():
        _APPLIED.add(name)


def apply(exclude: Iterable[str] = ()) -> frozenset[str]:
    """Apply every fix now (except those named in ``exclude``); return the names of those that changed something.

    A fix of an s3prl module runs now when that module is imported already, else when it is (through the hook).
    """
    exclude = _check_names(exclude) | _check_names(_excluded_by_environment())
    for name in FIXES:
        if name in exclude:
            continue
        module = AFTER_IMPORT.get(name)
        if module is None or module in sys.modules:
            _run(name)
        else:
            _HOOK.pending[module] = _HOOK.pending.get(module, set()) | {name}
    install_hook()
    return applied()


class _Hook(importlib.abc.MetaPathFinder):
    """Applies the fixes when ``s3prl`` is first imported, and module fixes right after their module executes."""

    def __init__(self) -> None:
        self.pending: dict[str, set[str]] = {}  # module -> fixes waiting for it
        self.started = False

    def _start(self) -> None:
        if self.started:
            return
        self.started = True
        exclude = _excluded_by_environment()
        _check_names(exclude)
        for name in FIXES:
            if name in exclude:
                continue
            module = AFTER_IMPORT.get(name)
            if module is None:
                _run(name)
            else:
                self.pending[module] = self.pending.get(module, set()) | {name}

    def find_spec(self, fullname, path, target=None):
        if fullname != "s3prl" and fullname not in self.pending:
            return None
        if fullname == "s3prl":
            self._start()
        if fullname not in self.pending:
            return None  # the normal finders find s3prl itself
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, names = spec.loader, self.pending.pop(fullname)

        class _ThenFix(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                for name in sorted(names):
                    _run(name)

        spec.loader = _ThenFix()
        return spec


_HOOK = _Hook()


def install_hook() -> None:
    """Put the import hook first on ``sys.meta_path`` (idempotent); apply at once if s3prl is imported already."""
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
    if "s3prl" in sys.modules:
        _HOOK._start()
        for module in [m for m in _HOOK.pending if m in sys.modules]:
            for name in sorted(_HOOK.pending.pop(module)):
                _run(name)


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
        import torch

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
def _apply_effects_tensor(tensor: "torch.Tensor", sample_rate: int, effects, channels_first: bool = True):
    import torch
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
@functools.lru_cache(maxsize=1)
def _sampler_wrapper_class() -> type:
    import torch

    class DistributedSamplerWrapper(torch.utils.data.DistributedSampler):
        """Shard any sampler (e.g. the balanced WeightedRandomSampler) across distributed ranks.

        Each epoch the wrapped sampler is drawn once; rank r takes every num_replicas-th of those indices.
        """

        def __init__(self, sampler, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                     shuffle: bool = True):
            super().__init__(list(range(len(sampler))), num_replicas=num_replicas, rank=rank, shuffle=shuffle)
            self.sampler = sampler

        def __iter__(self):
            drawn = list(self.sampler)
            positions = list(super().__iter__())  # this rank's share of positions into `drawn`
            return iter(drawn[p] for p in positions)

    DistributedSamplerWrapper.__module__ = __name__
    return DistributedSamplerWrapper


def __getattr__(name: str):
    if name == "DistributedSamplerWrapper":  # defined on first use: it subclasses a torch class
        return _sampler_wrapper_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    sys.modules["catalyst.data.sampler"].DistributedSamplerWrapper = _sampler_wrapper_class()
    return True


# 7. voxceleb1 caches its file lists in site-packages keyed by split name only, so a second corpus silently
#    reuses the first one's lists. Key the cache by the corpus root and split file instead.
def voxceleb1_cache_dir(file_path: str, meta_data: str) -> Path:
    meta = Path(meta_data)
    stamp = f"{Path(file_path).resolve()}|{meta.resolve()}|{meta.stat().st_mtime_ns if meta.exists() else 0}"
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    root = Path(os.environ.get("SUPERB_REDUNDANCY_CACHE", Path.home() / ".cache" / "superb_redundancy"))
    return root / "voxceleb1_lists" / digest


@_fix("voxceleb1_cache", after="s3prl.downstream.voxceleb1.dataset")
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


# 8. No checkpoint runs code. torch >= 2.6 loads with weights_only=True, but some of s3prl's loaders (distiller,
#    mockingjay) ask for weights_only=False first, so a pickled payload in a file passed with -k would run.
#    Every torch.load called from s3prl's code loads weights only, unless the file is named in TRUST_ENV.
class UnsafeCheckpointError(UserError):
    """A checkpoint that needs code to unpickle (a class, a function, os.system, ...): it is not loaded."""


def _trusted(file) -> bool:
    if not isinstance(file, (str, os.PathLike)):
        return False
    trusted = [p for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p]
    try:
        resolved = Path(file).resolve()
        return any(resolved == Path(p).resolve() for p in trusted)
    except OSError:
        return False


def _refusal(file, error: Exception) -> UnsafeCheckpointError:
    from superb_redundancy.core.files import pickled_global

    found = pickled_global(error)
    what = f"the global {found}" if found else "objects other than tensors and plain containers"
    name = file if isinstance(file, (str, os.PathLike)) else "the checkpoint"
    return UnsafeCheckpointError(
        f"refused to load {name}: it pickles {what}, and checkpoints are loaded as weights only "
        "(tensors, numbers, strings, lists and dicts)")


@_fix("safe_checkpoint_loading")
def _safe_checkpoint_loading() -> bool:
    import pickle

    import torch

    if getattr(torch.load, "_superb_redundancy", False):
        return False
    original = torch.load

    @functools.wraps(original)
    def load(f, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not (caller == "s3prl" or caller.startswith("s3prl.")) or _trusted(f):
            return original(f, *args, **kwargs)
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)  # a custom unpickler would bypass the weights-only one
        try:
            return original(f, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise _refusal(f, error) from None

    load._superb_redundancy = True
    load._original = original
    torch.load = load
    return True


# 9. Not needed to run, but paid by every process that imports s3prl.hub: its two transformers-backed entries
#    (hf_hubert_custom, hf_wav2vec2_custom) import transformers at import time, 2.8 s of the hub's 7 s on 2 cores,
#    in every downstream run of a study. Their hubconf modules are stood in for by entries of the same names
#    that import s3prl's own module when called.
#: the s3prl upstream families whose hubconf imports transformers, and their hub entries
DEFERRED_UPSTREAMS = {"hf_hubert": "hf_hubert_custom", "hf_wav2vec2": "hf_wav2vec2_custom"}


def _deferred_entry(family: str, name: str) -> Callable:
    def entry(ckpt, *args, **kwargs):
        expert = importlib.import_module(f"s3prl.upstream.{family}.expert")
        return expert.UpstreamExpert(ckpt, *args, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"s3prl's {name}: imports s3prl.upstream.{family}.expert (and transformers) when called."
    entry._superb_redundancy = True
    return entry


@_fix("deferred_transformers_upstreams")
def _deferred_transformers_upstreams() -> bool:
    changed = False
    for family, name in DEFERRED_UPSTREAMS.items():
        module_name = f"s3prl.upstream.{family}.hubconf"
        if module_name in sys.modules:  # imported already (or stood in for): nothing left to save
            continue
        module = types.ModuleType(module_name, f"superb_redundancy stand-in for {module_name} (compat fix 9)")
        setattr(module, name, _deferred_entry(family, name))
        module.__all__ = [name]
        sys.modules[module_name] = module
        changed = True
    return changed
