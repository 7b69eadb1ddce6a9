"""The leaderboard's compute axis: each variant's parameters and MACs, and the latency of all of them timed together
in one process (interleaved), with how it was timed.

With a ``cache`` folder each variant's profile is kept there under a key of what it is (its checkpoint's content,
model config, upstream and variant description) and where and how it was timed (machine, device, threads, rounds, most
passes): a rebuild times only the variants not timed there before (``retime``: all of them again)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.results.records import RunRecord

__all__ = ["Profile", "profile_variants", "time_variants", "profile_key"]


@dataclass(frozen=True)
class Profile:
    params: int  # inference parameters of the upstream
    macs_per_second: float  # MACs for 1 s of audio, batch 1
    latency_ms: Optional[float] = None  # median over interleaved rounds
    latency_q1_ms: Optional[float] = None
    latency_q3_ms: Optional[float] = None


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _separated(times: dict, profiles: dict) -> bool:
    """Every pair whose MACs differ by > 10% has non-overlapping latency IQRs."""
    names = list(times)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            small, large = sorted((a, b), key=lambda n: profiles[n][1])
            if profiles[small][1] < 0.9 * profiles[large][1] and times[small]["q3_s"] >= times[large]["q1_s"]:
                return False
    return True


def _built(records: Sequence[RunRecord], device: str) -> tuple[dict, dict, dict, dict]:
    """(models, (params, MACs) per variant, why a variant could not be built, {variant: the variant whose model it
    is}): one model per upstream, checkpoint and config, so a head on another of its outputs (the reference on the
    last layer) is timed as its base is, once."""
    # lazy: torch and the models are needed to profile, not to build tables from profiles already made
    from superb_redundancy.compute.macs import count_macs
    from superb_redundancy.compute.parameters import count_parameters
    from superb_redundancy.hub.install import build_upstream

    models, profiles, failures, same_as, first = {}, {}, {}, {}, {}
    for record in records:
        if record.variant in models or record.variant in failures or record.variant in same_as:
            continue
        model_id = (record.upstream, record.upstream_ckpt, record.upstream_model_config)
        if model_id in first and first[model_id] in profiles:
            same_as[record.variant] = first[model_id]
            profiles[record.variant] = profiles[first[model_id]]
            continue
        first.setdefault(model_id, record.variant)
        try:
            model = build_upstream(record.upstream, record.upstream_ckpt, record.upstream_model_config).eval()
        except Exception as error:  # a variant whose files are gone still gets its scores listed
            failures[record.variant] = str(error).splitlines()[0] if str(error) else type(error).__name__
            continue
        params = count_parameters(model)["inference"]
        macs = count_macs(model.to(device), 1.0)["macs"]
        models[record.variant] = model
        profiles[record.variant] = (params, macs)
    return models, profiles, failures, same_as


def _file_sha(path: Optional[str], memo: dict = {}) -> Optional[str]:  # noqa: B006 - a per-process memo
    """sha256 of a file's bytes (memoised by path, size and mtime), None for no file."""
    if not path or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in memo:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        memo[key] = digest.hexdigest()
    return memo[key]


def profile_key(record: RunRecord, timing: dict) -> str:
    """The cache key of a variant's profile: what the model is and where and how it is timed."""
    what = {"upstream": record.upstream, "ckpt": _file_sha(record.upstream_ckpt) or record.upstream_sha256,
            "model_config": _file_sha(record.upstream_model_config) or record.model_config_sha256,
            "variant": record.description.to_dict() if record.description else None, "machine": _machine(),
            **timing}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def profile_variants(records: Sequence[RunRecord], repeats: int = 30, max_passes: int = 32, device: str = "cpu",
                     threads: Optional[int] = 1, warmup: int = 5, cache: Optional[Path] = None,
                     retime: bool = False) -> tuple[dict[str, Profile], dict]:
    """:func:`time_variants`, each variant's profile read from ``cache`` where it was made before with the same key
    (:func:`profile_key`), unless ``retime``; the new ones written there. The timing info says how many came from
    the cache (``cached``)."""
    if cache is None:
        return time_variants(records, repeats, max_passes, device, threads, warmup)
    from superb_redundancy.core.files import write_json

    timing = {"device": device, "threads": threads, "rounds": repeats, "max_passes": max_passes, "warmup": warmup}
    keys = {}
    for record in records:
        keys.setdefault(record.variant, profile_key(record, timing))
    cached = {}
    for variant, key in keys.items():
        path = Path(cache) / f"{key}.json"
        if not retime and path.is_file():
            entry = json.loads(path.read_text())
            cached[variant] = (Profile(**entry["profile"]), entry["info"])
    todo = [r for r in records if r.variant not in cached]
    profiles, info = time_variants(todo, repeats, max_passes, device, threads, warmup) if todo else ({}, None)
    for variant, profile in profiles.items():
        if profile.latency_ms is not None:
            write_json(Path(cache) / f"{keys[variant]}.json", {"variant": variant, "profile": asdict(profile),
                                                              "info": info})
    if info is None:  # every variant from the cache: the info of one of them
        info = dict(next(iter(cached.values()))[1]) if cached else {"unprofiled": {}}
    info = {**info, "cached": len(cached), "timed": len(profiles)}
    return {**{v: p for v, (p, _) in cached.items()}, **profiles}, info


def time_variants(records: Sequence[RunRecord], repeats: int = 30, max_passes: int = 32, device: str = "cpu",
                  threads: Optional[int] = 1, warmup: int = 5) -> tuple[dict[str, Profile], dict]:
    """Parameters and MACs of each variant, and the latency of all of them timed together (interleaved).

    ``repeats`` rounds time every variant once each, in a fresh random order. One timing is the mean of
    ``passes`` forward passes: a pilot at one pass, then, where some pair of variants whose MACs differ by more
    than 10% still has overlapping inter-quartile ranges, the rounds again at ``max_passes`` (averaging passes
    narrows the IQR, more rounds would only estimate the same spread better; not every round again at 1, 2, 4, ...
    passes). Returns (profiles, how it was timed).
    """
    import torch

    from superb_redundancy.compute.latency import interleaved_latency

    models, profiles, failures, same_as = _built(records, device)
    passes, times = 1, {}
    if models:
        timed = {variant: profiles[variant] for variant in models}
        times = interleaved_latency(models, seconds=1.0, repeats=repeats, warmup=warmup, threads=threads,
                                    device=device, passes=1)
        # where variants that should differ overlap, one more set of rounds at the most passes: fewer, chosen from
        # the pilot's spread, let a loaded machine time a pruned model slower than its base (a CI run did)
        passes = 1 if _separated(times, timed) else max_passes
        if passes > 1:
            times = interleaved_latency(models, seconds=1.0, repeats=repeats, warmup=warmup, threads=threads,
                                        device=device, passes=passes)
        times.update({variant: times[base] for variant, base in same_as.items() if base in times})
    out = {}
    for variant, (params, macs) in profiles.items():
        t = times.get(variant)
        out[variant] = Profile(int(params), float(macs), *(None,) * 3 if t is None else
                               (1e3 * t["median_s"], 1e3 * t["q1_s"], 1e3 * t["q3_s"]))
    any_time = next(iter(times.values()), None)
    info = {"machine": _machine(), "device": device, "threads": any_time["threads"] if any_time else threads,
            "rounds": repeats, "passes": passes, "warmup": warmup, "timer": any_time["timer"] if any_time else None,
            "torch": torch.__version__, "separated": _separated(times, profiles) if times else None,
            "unprofiled": failures}
    return out, info
