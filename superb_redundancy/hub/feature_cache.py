"""A frozen upstream's features, computed once per clip: the feature cache of our downstream runner.

In the SUPERB protocol the upstream is frozen, in eval mode and under ``no_grad``, so the features it gives a
clip are the same in every epoch. s3prl's runner nevertheless runs the upstream on every batch, though a small
head on a CPU passes many times over the same clips (the demo ASR setting: 96 epochs of 400 sentences; with the
cache its training takes 0.71x the time, benchmarks/bench_feature_cache.py). With ``runner.feature_cache_gb: G``
in a downstream config, our runner (:mod:`superb_redundancy.hub.runner`) wraps the upstream in
:class:`FeatureCache`: a clip's features are kept, up to G GiB, keyed by its samples' content, and later batches
take them from memory.

What a head sees: the feature s3prl's Featurizer selects (``-s``, default ``hidden_states``), for each clip the
frames s3prl would pass on (``round(len / downsample_rate)``, at most what the upstream returned) as computed in
the first batch the clip came in, zero-padded to the batch. Plain s3prl recomputes a clip inside each new batch:
its valid frames agree with the cached ones to float rounding (padding is masked) where the upstream treats each
clip on its own, and a frame past the clip's own output, which s3prl computes over the batch's padding, is zero
here. (A CNN that normalises over time, wav2vec 2.0 Base's GroupNorm, sees a batch's padding: there a clip padded
in a batch gets slightly other frames in another batch, with or without the cache.) A run that fine-tunes the
upstream (``-f``) is not cached, except the part that stays frozen where the upstream offers that
(``cache_frozen_part(max_bytes)``: a mimicker's CNN, :class:`~superb_redundancy.distill.frontend.FrontendCache`).
s3prl's own ``run_downstream.py`` ignores the key and computes everything every time.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from superb_redundancy.core.errors import UserError

__all__ = ["FeatureCache", "FeatureCacheError", "CONFIG_KEY", "STORE_KEY", "cache_budget", "clip_key", "enable", "CACHES"]

#: the key in a downstream config's ``runner`` section: the cache's size limit in GiB (0 or absent: no cache)
CONFIG_KEY = "feature_cache_gb"
#: ``runner.frontend_store``: a folder where an upstream's frozen part keeps its features for the next run
#: (``cache_frozen_part``; a study's mimic runs share their teacher's CNN through it)
STORE_KEY = "frontend_store"

#: the caches of the call in progress, for its summary line (our runner empties it at the end of each call)
CACHES: list["FeatureCache"] = []


class FeatureCacheError(UserError):
    """A bad ``runner.feature_cache_gb``, or a selection the upstream does not give: one line for the user."""


def cache_budget(config: dict) -> float:
    """The ``runner.feature_cache_gb`` of a downstream config (0 when absent); a bad value: FeatureCacheError."""
    value = (config.get("runner") or {}).get(CONFIG_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FeatureCacheError(f"runner.{CONFIG_KEY}: {value!r}; valid: a number of GiB >= 0 (0: no feature cache)")
    return float(value)


def clip_key(wav: torch.Tensor) -> bytes:
    """A clip's identity: its samples (the dataloader makes new tensors every epoch, so no pointer would do)."""
    data = wav.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16, person=str(data.size).encode()[:16]).digest()


class FeatureCache(nn.Module):
    """``upstream`` with the feature ``selection`` of each clip kept after its first batch (``max_bytes`` at most).

    Calls return ``{selection: value}`` only (the key the Featurizer reads), with ``value`` a list of [B, T, D]
    tensors (or one tensor) as the upstream gives it; the upstream's other attributes pass through."""

    def __init__(self, upstream: nn.Module, selection: str, max_bytes: int):
        super().__init__()
        self.upstream = upstream
        self.selection = selection
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.full = False
        self._store: dict[bytes, list[torch.Tensor]] = {}
        self._single: Optional[bool] = None  # the upstream gives one tensor, not a list of layers
        self._rate: Optional[int] = None

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules
        except AttributeError:
            return getattr(super().__getattr__("upstream"), name)  # get_downsample_rates and the like

    def _frames(self, wav: torch.Tensor) -> int:
        if self._rate is None:
            self._rate = int(self.upstream.get_downsample_rates(self.selection))
        return round(len(wav) / self._rate)

    def _layers(self, output: dict) -> list[torch.Tensor]:
        if self.selection not in output:
            names = ", ".join(sorted(k for k in output if not k.startswith("_")))
            raise FeatureCacheError(f"the feature cache's selection {self.selection!r} is not in the upstream's "
                                    f"output ({names})")
        value = output[self.selection]
        if isinstance(value, dict):
            value = list(value.values())
        self._single = isinstance(value, torch.Tensor)
        return [value] if self._single else list(value)

    def _compute(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Each clip's layers, [frames, D] each, as computed in this batch."""
        layers = self._layers(self.upstream(list(wavs)))
        clips = []
        for i, wav in enumerate(wavs):
            n = min(layers[0].size(1), self._frames(wav))
            clips.append([layer[i, :n].detach().clone() for layer in layers])
        return clips

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.upstream.parameters()):
            raise RuntimeError("the feature cache holds a frozen upstream's features; this upstream is being trained")
        keys = [clip_key(wav) for wav in wavs]
        missing = [i for i, key in enumerate(keys) if key not in self._store]
        self.hits += len(wavs) - len(missing)
        self.misses += len(missing)
        fresh = dict(zip(missing, self._compute([wavs[i] for i in missing]))) if missing else {}
        for i, clip in fresh.items():
            size = sum(t.numel() * t.element_size() for t in clip)
            if self.bytes + size <= self.max_bytes:
                self._store[keys[i]] = clip
                self.bytes += size
            else:
                self.full = True
        clips = [fresh[i] if i in fresh else self._store[key] for i, key in enumerate(keys)]
        layers = [nn.utils.rnn.pad_sequence([clip[j] for clip in clips], batch_first=True)
                  for j in range(len(clips[0]))]
        return {self.selection: layers[0] if self._single else layers}

    def summary(self) -> str:
        total = self.hits + self.misses
        share = f"{100 * self.hits / total:.0f}%" if total else "-"
        limit = f", limit {self.max_bytes / 2 ** 30:g} GiB reached" if self.full else ""
        return (f"feature cache: {len(self._store)} clips, {self.bytes / 2 ** 20:.0f} MiB{limit}; {self.hits} of "
                f"{total} clip passes from memory ({share})")


def _selection(args, upstream: nn.Module) -> str:
    """The key the Featurizer will read: ``-s``, or ``hidden_states`` where the upstream lacks it (as s3prl does)."""
    wanted = getattr(args, "upstream_feature_selection", None) or "hidden_states"
    with torch.no_grad():
        probe = upstream([torch.zeros(16000, device=next(upstream.parameters()).device)])
    return wanted if wanted in probe else "hidden_states"


def enable(note: Callable[[str], None]) -> None:
    """Make s3prl's downstream Runner wrap a frozen upstream in a :class:`FeatureCache` when its config asks
    (``runner.feature_cache_gb``), saying so through ``note``. Idempotent; the runner of this package calls it
    before s3prl starts."""
    from s3prl.downstream import runner as s3prl_runner

    if getattr(s3prl_runner.Runner._get_upstream, "_feature_cache", False):
        return
    original = s3prl_runner.Runner._get_upstream

    def _get_upstream(self):
        budget = cache_budget(self.config)  # a bad value stops the run before the upstream loads
        entry = original(self)
        if not budget:
            return entry
        store = (self.config.get("runner") or {}).get(STORE_KEY)
        frozen = getattr(entry.model, "cache_frozen_part", None)
        if entry.trainable:
            # an upstream whose trained layers sit on a frozen part may keep that part's output per clip instead
            cache = frozen(int(budget * 2 ** 30), store) if callable(frozen) else None
            if cache is None:
                note("feature cache off: the upstream is fine-tuned (-f), so its features change as it trains")
                return entry
            CACHES.append(cache)
            note(f"feature cache on the upstream's frozen part only: {cache.part} of each clip kept after its "
                 f"first batch, up to {budget:g} GiB (runner.{CONFIG_KEY}); the upstream is fine-tuned (-f)")
            return entry
        if store and callable(frozen):  # beneath the whole upstream's cache: a clip another run saw skips the CNN
            part = frozen(int(budget * 2 ** 30), store)
            if part is not None:
                CACHES.append(part)
        entry.model.eval()
        cache = FeatureCache(entry.model, _selection(self.args, entry.model), int(budget * 2 ** 30))
        CACHES.append(cache)
        note(f"feature cache on: {cache.selection!r} of each clip kept after its first batch, up to {budget:g} GiB "
             f"(runner.{CONFIG_KEY})")
        entry.model = cache
        return entry

    _get_upstream._feature_cache = True
    s3prl_runner.Runner._get_upstream = _get_upstream
