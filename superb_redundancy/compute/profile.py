"""The whole compute profile of one upstream: the request, checked before any model work; the run; its tables.

:func:`validate_request` resolves and checks every input (upstream name, checkpoint, prune spec, architecture,
clip lengths, timing) and raises :class:`~superb_redundancy.compute.inputs.ProfileError` with one line;
:func:`profile_upstream` then loads the upstream as s3prl's runner does and measures its parameters, MACs and
latency; :func:`format_profile_table` renders the result.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch
from tabulate import tabulate
from torch import nn

from superb_redundancy.compute.inputs import ProfileError, as_samples, check_counts, check_device, read_lengths_file
from superb_redundancy.compute.latency import measure_latency
from superb_redundancy.compute.macs import count_macs, macs_per_lengths
from superb_redundancy.compute.parameters import count_checkpoint_parameters, count_parameters
from superb_redundancy.hub import install as registry
from superb_redundancy.models import architectures
from superb_redundancy.models.architectures import ARCHITECTURES, Architecture
from superb_redundancy.models.checkpoints import is_path_like, resolve_base
from superb_redundancy.models.families import get_family
from superb_redundancy.pruning.spec import PruneSpec, PruneSpecError
# the pruned loader's "is this base a path?" test (a separator or a checkpoint suffix); only asked here of a
# checkpoint already known not to exist, where its exists() clause adds nothing
from superb_redundancy.pruning.upstream import PrunedUpstream

__all__ = ["validate_request", "profile_upstream", "format_profile_table"]

MACS_CONVENTION = "FlopCounterMode FLOPs / 2, batch 1; counts conv, matmul, attention; not element-wise ops, " \
                  "norms, softmax"


# ============================================================================================ the request
def _checked_seconds(seconds: Sequence[float], lengths_file: Optional[str]) -> list[float]:
    seconds = list(seconds or [])
    for s in seconds:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not s > 0 or not math.isfinite(s):
            raise ProfileError(f"--seconds must be > 0, got {s}")
        as_samples(float(s))
    if not seconds and not lengths_file:
        raise ProfileError("nothing to profile: give --seconds and/or --lengths-file")
    return [float(s) for s in seconds]


def _check_timing(repeats: int, warmup: int, threads: Optional[int]) -> None:
    check_counts(repeats, warmup, prefix="--")
    if threads is not None and threads < 1:
        raise ProfileError(f"--threads must be >= 1, got {threads}")


def _family_named(name: str) -> Optional[str]:
    """The architecture family an upstream name refers to, if any (distilhubert is a distiller, not a hubert)."""
    if name.startswith("distil"):
        return "distiller"
    return next((f for f in ("wav2vec2", "hubert", "wavlm", "data2vec") if f in name), None)


def _check_spec(arch: str, num_layers: int, model_config: Optional[str],
                drop_layers: Optional[Sequence[int]]) -> None:
    """The prune spec (-g) or drop_layers must fit the architecture's layer count (the upstream is its pruned
    entry: :func:`_check_name_fits`)."""
    try:
        if drop_layers:
            if model_config:
                raise ProfileError("give drop_layers or a prune spec (-g), not both")
            PruneSpec(drop_layers=tuple(drop_layers)).resolve(num_layers)
        elif model_config:
            PruneSpec.from_yaml(model_config).resolve(num_layers)
    except PruneSpecError as error:
        raise ProfileError(f"--arch {arch}: {error}") from None


def _check_name_fits(arch: str, architecture: Architecture, name: Optional[str], pruned: bool) -> None:
    """A -u given with --arch must load that architecture's family (and, if not prunable, be its hub name; with a
    prune spec or drop_layers, be its pruned entry)."""
    family = architecture.family
    named = _family_named(name) if name else None
    if named and named != family:
        use = (f"{architecture.hub_name} or {architecture.pruned_hub_name}" if architecture.prunable
               else architecture.hub_name)
        raise ProfileError(f"upstream {name!r} is a {named} upstream but --arch {arch} is {family}; use {use}")
    if architecture.prunable:
        if pruned and name not in (None, architecture.pruned_hub_name):
            raise ProfileError(f"-g / drop_layers with --arch {arch} prune through {architecture.pruned_hub_name}, "
                               f"not {name!r}; leave out -u")
        return
    if pruned:
        prunable = ", ".join(n for n, a in ARCHITECTURES.items() if a.prunable)
        raise ProfileError(f"--arch {arch} has no pruned upstream: -g / drop_layers need one of {prunable}")
    if name not in (None, architecture.hub_name):
        raise ProfileError(f"--arch {arch} loads through {architecture.hub_name}, not {name!r}; leave out -u")


def _resolve_arch(arch: str, name: Optional[str], ckpt: Optional[str], model_config: Optional[str],
                  drop_layers: Optional[Sequence[int]]) -> tuple[str, str]:
    """The upstream name and family that profile ``arch`` (random weights); the name defaults to the family's
    ``<family>_local``, or ``pruned_<family>`` with a prune spec or drop_layers."""
    if arch not in ARCHITECTURES:
        raise ProfileError(f"unknown --arch {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    if ckpt:
        raise ProfileError("give either --arch (random weights) or -k CHECKPOINT, not both")
    architecture = ARCHITECTURES[arch]
    pruned = bool(model_config or drop_layers)
    _check_name_fits(arch, architecture, name, pruned)
    if name is None:
        name = architecture.pruned_hub_name if pruned else architecture.hub_name
    _check_spec(arch, architecture.num_layers, model_config, drop_layers)
    return name, architecture.family


def _check_upstream_name(name: str) -> None:
    """An upstream s3prl.hub knows once our variants are installed; otherwise the registry's one line."""
    try:  # heavy (s3prl): only once the cheap checks have passed
        registry.hub_factory(name)
    except ValueError as error:
        raise ProfileError(str(error)) from None


def _check_upstream(name: Optional[str], ckpt: Optional[str], arch: Optional[str]) -> None:
    if not name:
        raise ProfileError("no upstream: give -u NAME (an s3prl hub name) or --arch NAME")
    if ckpt and not Path(ckpt).expanduser().exists() and (name.endswith("_local") or is_path_like(ckpt)):
        raise ProfileError(f"checkpoint (-k) not found: {ckpt}")
    if name.endswith("_local") and not ckpt and arch is None:
        raise ProfileError(f"{name} loads a local file: give its path with -k (or use --arch for random weights)")
    _check_upstream_name(name)


def validate_request(name: Optional[str] = None, ckpt: Optional[str] = None, model_config: Optional[str] = None,
                     seconds: Sequence[float] = (1.0, 10.0), lengths_file: Optional[str] = None,
                     repeats: int = 10, warmup: int = 3, threads: Optional[int] = None, device: str = "cpu",
                     arch: Optional[str] = None, drop_layers: Optional[Sequence[int]] = None) -> dict:
    """Check every input of :func:`profile_upstream` before any model work; returns the resolved request:
    ``name`` (the upstream), ``family`` (of ``arch``, else None), ``seconds`` and ``lengths`` (samples, or None).

    Raises :class:`ProfileError` with one line naming the bad value and what would be valid.
    """
    seconds = _checked_seconds(seconds, lengths_file)
    _check_timing(repeats, warmup, threads)
    lengths = read_lengths_file(lengths_file) if lengths_file else None
    check_device(device)
    if model_config and not Path(model_config).is_file():
        raise ProfileError(f"model config (-g) not found: {model_config}")
    family = None
    if arch is not None:
        name, family = _resolve_arch(arch, name, ckpt, model_config, drop_layers)
    elif drop_layers:
        raise ProfileError("drop_layers needs --arch (or a prune spec with -g and a pruned_<family> upstream)")
    _check_upstream(name, ckpt, arch)
    return {"name": name, "family": family, "seconds": seconds, "lengths": lengths}


# ============================================================================================ the run
def _environment(device: str) -> dict:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _random_weights(arch: str, seed: int, drop_layers: Optional[Sequence[int]], model_config: Optional[str],
                    tmp: Path) -> tuple[str, Optional[str]]:
    """The checkpoint (-k) and prune spec (-g) that load ``arch`` with random weights, written into ``tmp``."""
    ckpt = str(architectures.write_architecture_checkpoint(arch, tmp / f"{arch}.pt", seed=seed))
    if drop_layers and not model_config:
        model_config = str(PruneSpec(drop_layers=tuple(drop_layers)).to_yaml(tmp / "spec.yaml"))
    return ckpt, model_config


def _load(name: str, ckpt: Optional[str], model_config: Optional[str]) -> nn.Module:
    """The upstream as s3prl's runner builds it (:func:`~superb_redundancy.hub.install.build_upstream`), in
    eval mode; a failure becomes one line."""
    try:
        upstream = registry.build_upstream(name, ckpt=ckpt, model_config=model_config, refresh=False)
    except ProfileError:
        raise
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ProfileError(f"could not load upstream {name!r}: {message}") from None
    upstream.eval()
    return upstream


def _base_counts_of_pruned(upstream: nn.Module) -> Optional[dict]:
    if not isinstance(upstream, PrunedUpstream) or upstream.spec is None or not upstream.spec.base:
        return None
    family = get_family(upstream.family_name)
    try:
        path = resolve_base(upstream.spec.base, family)
        return count_checkpoint_parameters(path, family.name)
    except Exception:  # the base may be a hub name whose file is not cached: leave the share out
        return None


def _parameters(upstream: nn.Module, notes: list[str]) -> dict:
    """:func:`count_parameters`, against the base checkpoint's counts for a pruned upstream (when at hand)."""
    base_counts = _base_counts_of_pruned(upstream)
    if base_counts is None and getattr(upstream, "dropped_layers", None):
        notes.append("base checkpoint not available locally: removed shares of parameters left out")
    return count_parameters(upstream, base=base_counts)


def _macs(upstream: nn.Module, seconds: list[float], dropped: Sequence[int], cache: dict) -> list[dict]:
    """MACs per clip length; for a pruned upstream also the base's, derived from a kept layer's MACs (the layers
    are identical in shape, so this is exact for what the counter counts)."""
    macs = count_macs(upstream, seconds, _cache=cache) if seconds else []
    for entry in macs:
        kept = list(entry["per_layer_macs"].values())
        if dropped and kept:
            entry["base_macs_derived"] = entry["macs"] + len(dropped) * kept[0]
            entry["macs_share_of_base"] = entry["macs"] / entry["base_macs_derived"]
    return macs


def _macs_of_lengths_file(upstream: nn.Module, lengths: Optional[list[int]], lengths_file: Optional[str],
                          cache: dict) -> Optional[dict]:
    if not lengths:
        return None
    summary = macs_per_lengths(upstream, lengths, _cache=cache)
    summary["lengths_file"] = str(lengths_file)
    return summary


def profile_upstream(name: Optional[str] = None, ckpt: Optional[str] = None, model_config: Optional[str] = None,
                     seconds: Sequence[float] = (1.0, 10.0), lengths_file: Optional[str] = None,
                     repeats: int = 10, warmup: int = 3, threads: Optional[int] = None, device: str = "cpu",
                     arch: Optional[str] = None, drop_layers: Optional[Sequence[int]] = None, seed: int = 0,
                     latency: bool = True) -> dict:
    """Parameters, MACs per clip length (and summed over a lengths file) and latency of an upstream.

    ``name`` is any upstream on ``s3prl.hub`` after :func:`superb_redundancy.hub.install.install` (stock or ours),
    loaded as s3prl's runner does (:func:`superb_redundancy.hub.install.build_upstream`: ``getattr(s3prl.hub,
    name)(ckpt=..., model_config=..., refresh=False)``). ``arch`` (see :mod:`superb_redundancy.models.architectures`)
    profiles a real-size architecture with random weights: its checkpoint is written to a temporary file and
    passed as ``ckpt`` to ``name`` (default: the family's ``<family>_local``; ``pruned_<family>`` when a prune
    spec ``model_config`` or ``drop_layers`` is given). For a pruned upstream the removed share of parameters is
    reported against its base checkpoint, and ``base_macs_derived`` is the pruned MACs plus the dropped layers'
    count times the MACs of a kept layer (the layers are identical in shape, so this is exact for what the
    counter counts). Returns a JSON-serialisable dict (see :func:`format_profile_table`).
    """
    request = validate_request(name, ckpt, model_config, seconds, lengths_file, repeats, warmup, threads,
                               device, arch, drop_layers)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="superb_redundancy_profile_") as tmp:
        ckpt_used, config_used = ckpt, model_config
        if arch is not None:
            ckpt_used, config_used = _random_weights(arch, seed, drop_layers, model_config, Path(tmp))
            notes.append(f"random weights: architecture {arch}, seed {seed}")
        upstream = _load(request["name"], ckpt_used, config_used)
        dropped = list(getattr(upstream, "dropped_layers", ()) or ())
        result: dict = {
            "upstream": request["name"],
            "ckpt": ckpt if arch is None else None,
            "model_config": model_config if arch is None or not drop_layers else None,
            "arch": arch,
            "seed": seed if arch is not None else None,
            "drop_layers": dropped or None,
            "num_layers": getattr(upstream, "num_layers", None),
            "device": device,
            "environment": _environment(device),
            "parameters": _parameters(upstream, notes),
            "macs_convention": MACS_CONVENTION,
        }
        upstream.to(check_device(device))
        cache: dict[int, dict] = {}  # MACs per sample count, shared by the clip lengths and the lengths file
        result["macs"] = _macs(upstream, request["seconds"], dropped, cache)
        result["macs_lengths_file"] = _macs_of_lengths_file(upstream, request["lengths"], lengths_file, cache)
        result["latency"] = [
            measure_latency(upstream, s, repeats=repeats, warmup=warmup, threads=threads, device=device)
            for s in request["seconds"]
        ] if latency else []
        result["notes"] = notes
    return result


# ============================================================================================ the tables
def _m(n) -> str:
    return f"{n / 1e6:,.2f} M"


def _g(n) -> str:
    return f"{n / 1e9:,.3f} G"


def _title(profile: dict) -> str:
    title = profile["upstream"]
    if profile.get("arch"):
        title += f" on --arch {profile['arch']} (random weights)"
    if profile.get("drop_layers"):
        title += f", dropped layers {profile['drop_layers']} of {profile.get('num_layers')}"
    return title


def _parameters_table(p: dict) -> str:
    rows = [
        # SUPERB's count is total for wav2vec2 / HuBERT, inference for DistilHuBERT (see architectures.py)
        ["total (all held)", f"{p['total']:,}", _m(p["total"])],
        ["inference (less pretraining-only heads)", f"{p['inference']:,}", _m(p["inference"])],
        ["transformer stack", f"{p['stack']:,}", _m(p["stack"])],
        ["rest (total - stack)", f"{p['rest']:,}", _m(p["rest"])],
        ["pretraining-only heads", f"{p['pretraining_only']:,}", _m(p["pretraining_only"])],
    ]
    for key in ("removed_share_of_base_total", "removed_share_of_base_inference", "removed_share_of_base_stack"):
        if key in p:
            rows.append([key.replace("_", " "), f"{p[key]:.2%}", ""])
    return tabulate(rows, headers=["parameters", "count", ""], tablefmt="github")


def _macs_table(macs: list[dict]) -> str:
    rows = [[f"{m['seconds']:g}", m["frames"], _g(m["macs"]), _g(m["stack_macs"]), _g(m["cnn_macs"]),
             f"{m['macs_share_of_base']:.3f}" if "macs_share_of_base" in m else ""] for m in macs]
    return tabulate(rows, headers=["audio s", "frames", "MACs", "stack MACs", "CNN MACs", "MACs / base"],
                    tablefmt="github")


def _lengths_file_line(lf: dict) -> str:
    return (f"lengths file {lf['lengths_file']}: {lf['utterances']} utterances, {lf['total_seconds']:.1f} s, "
            f"{lf['macs']:.4g} MACs summed at batch 1 "
            f"({lf['macs_per_second_of_audio'] / 1e9:.3f} GMACs per second of audio)")


def _latency_table(latency: list[dict]) -> str:
    rows = [[f"{t['seconds']:g}", f"{t['median_s'] * 1e3:.1f}", f"{t['iqr_s'] * 1e3:.1f}", f"{t['rtf']:.4f}",
             t["repeats"], t["threads"], t["device"]] for t in latency]
    return tabulate(rows, headers=["audio s", "median ms", "IQR ms", "RTF", "repeats", "threads", "device"],
                    tablefmt="github")


def format_profile_table(profile: dict) -> str:
    """Human-readable tables (tabulate) of a :func:`profile_upstream` result."""
    blocks = [_title(profile), _parameters_table(profile["parameters"])]
    if profile.get("macs"):
        blocks.append(_macs_table(profile["macs"]))
    if profile.get("macs_lengths_file"):
        blocks.append(_lengths_file_line(profile["macs_lengths_file"]))
    if profile.get("latency"):
        blocks.append(_latency_table(profile["latency"]))
    blocks.append("MACs: " + profile.get("macs_convention", ""))
    blocks.extend(f"note: {note}" for note in profile.get("notes", []))
    return "\n\n".join(blocks)
