"""Compute profile of an upstream: parameters, MACs and latency, under the field's conventions.

Every number states what it counts:

* **Parameters** (:func:`count_parameters`). ``total`` is every parameter tensor the upstream holds, each
  shared tensor once: for wav2vec2 and HuBERT experts this is the number the SUPERB leaderboard reports
  (95.04 M / 94.70 M for the Base models), since s3prl's expert keeps the pretraining-only modules the released
  checkpoints carry. ``inference`` leaves out the modules a forward pass never touches (:data:`PRETRAINING_ONLY`:
  quantizer, project_q, final_proj, label_embs_concat, mask_emb, target_glu): 94.37 M for both Base models;
  and DistilHuBERT's prediction heads (output_layer), which s3prl's expert runs but neither the paper's
  downstream evaluation (its last layer) nor SUPERB's 23.49 M count uses.
  ``stack`` is the transformer layers (``encoder.layers.N``); ``rest`` = ``total - stack`` (CNN, feature
  projection, positional convolution, encoder LayerNorm, heads). For a pruned upstream, pass its base's counts
  to get the removed share with the denominator in the key (``removed_share_of_base_total``, ...).
* **MACs** (:func:`count_macs`, :func:`macs_per_lengths`): :class:`torch.utils.flop_counter.FlopCounterMode`
  FLOPs / 2, batch size 1, one clip per length, the upstream's whole forward (CNN included). It counts matrix
  products and convolutions (``mm``, ``addmm``, ``bmm``, ``baddbmm``, convolutions, scaled-dot-product
  attention); this module adds the formula for ``_scaled_dot_product_flash_attention_for_cpu``, the kernel
  scaled-dot-product attention takes on CPU, which torch's table lacks (without it attention scores and the
  attention-weighted sum, 2·T²·d MACs per layer, go uncounted on CPU but not on GPU). Not counted: element-wise
  ops (activations, residual adds, bias adds, dropout), normalisations (GroupNorm, LayerNorm), softmax,
  weight-norm reparametrisation and embedding look-ups (WavLM's relative-position buckets): well under 1% of
  the total for these models. The SUPERB leaderboard's convention is the sum over 32 LibriSpeech test-clean
  utterances at batch 1 (:func:`macs_per_lengths` with a lengths file).
* **Latency** (:func:`measure_latency`): batch 1, after warm-up, median and inter-quartile range of the
  forward pass under ``torch.inference_mode``, with the thread count and device it ran on; CUDA events on GPU,
  ``time.perf_counter`` on CPU. Real-time factor = median latency / audio seconds.

s3prl quirk worth knowing: wav2vec2 and HuBERT configs default to ``required_seq_len_multiple=2``, so the
transformer runs on the frame count rounded up to even (50 frames for 1 s of audio, not 49); the padding is
cut from ``hidden_states`` afterwards. MACs here are those of what actually runs. WavLM does not pad.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

__all__ = [
    "ProfileError",
    "SAMPLE_RATE",
    "PRETRAINING_ONLY",
    "count_parameters",
    "count_checkpoint_parameters",
    "count_macs",
    "macs_per_lengths",
    "read_lengths_file",
    "measure_latency",
    "interleaved_latency",
    "validate_request",
    "profile_upstream",
    "format_profile_table",
    "write_json",
]

SAMPLE_RATE = 16000
#: the CNN front end's receptive field: shorter input gives no frame (s3prl's experts fail on it)
MIN_SAMPLES = 400

#: modules that s3prl's experts hold (because the released checkpoints do) but that their forward never uses;
#: plus DistilHuBERT's distillation heads (output_layer: s3prl's distiller runs them, SUPERB does not count them)
PRETRAINING_ONLY = ("quantizer", "project_q", "final_proj", "label_embs_concat", "mask_emb", "target_glu",
                    "output_layer")


class ProfileError(ValueError):
    """Bad input for a profile; raised before any model is built. The message is one line."""


# ============================================================================================ parameters
_STACK = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
_ANY_LAYERS = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_COMPONENTS = (  # (component, pattern); first match wins, after pretraining-only and the stack
    ("cnn", re.compile(r"(?:^|\.)feature_extractor\.")),
    ("positional_conv", re.compile(r"(?:^|\.)encoder\.pos_conv\.")),
    ("encoder_norm", re.compile(r"(?:^|\.)encoder\.layer_norm\.")),
    ("feature_projection", re.compile(r"(?:^|\.)(?:post_extract_proj|layer_norm)\.(?:weight|bias)$")),
)


def _is_pretraining_only(name: str) -> bool:
    return any(part in PRETRAINING_ONLY for part in name.split("."))


def _count_named(named: Iterable[tuple[str, int]]) -> dict:
    named = list(named)
    stack_re = _STACK if any(_STACK.search(n) for n, _ in named) else _ANY_LAYERS
    components = {"stack": 0, "pretraining_only": 0, **{c: 0 for c, _ in _COMPONENTS}, "other": 0}
    layers: set[int] = set()
    for name, numel in named:
        if _is_pretraining_only(name):
            components["pretraining_only"] += numel
            continue
        match = stack_re.search(name)
        if match:
            components["stack"] += numel
            layers.add(int(match.group(1)))
            continue
        for component, pattern in _COMPONENTS:
            if pattern.search(name):
                components[component] += numel
                break
        else:
            components["other"] += numel
    total = sum(components.values())
    inference = total - components["pretraining_only"]
    stack = components["stack"]
    return {
        "total": total,
        "inference": inference,
        "pretraining_only": components["pretraining_only"],
        "stack": stack,
        "rest": total - stack,
        "inference_rest": inference - stack,
        "stack_share_of_total": stack / total if total else 0.0,
        "stack_share_of_inference": stack / inference if inference else 0.0,
        "layers_with_parameters": len(layers),
        "components": components,
    }


def _add_removed(counts: dict, base: Optional[dict]) -> dict:
    if base is None:
        return counts
    for key in ("total", "inference", "stack"):
        counts[f"base_{key}"] = base[key]
    removed = base["total"] - counts["total"]
    counts["removed"] = removed
    counts["removed_share_of_base_total"] = removed / base["total"] if base["total"] else 0.0
    counts["removed_share_of_base_inference"] = (
        (base["inference"] - counts["inference"]) / base["inference"] if base["inference"] else 0.0
    )
    counts["removed_share_of_base_stack"] = (
        (base["stack"] - counts["stack"]) / base["stack"] if base["stack"] else 0.0
    )
    return counts


def count_parameters(upstream: nn.Module, base: Optional[dict] = None) -> dict:
    """Parameter counts of ``upstream`` (each tensor once), split as described in the module docstring.

    Keys: ``total`` (everything held; SUPERB's count for wav2vec2/HuBERT), ``inference`` (``total`` less
    :data:`PRETRAINING_ONLY` modules), ``pretraining_only``, ``stack`` (transformer layers), ``rest`` and
    ``inference_rest`` (the same less the stack), ``stack_share_of_total``, ``stack_share_of_inference``,
    ``layers_with_parameters`` and ``components`` (cnn, feature_projection, positional_conv, stack,
    encoder_norm, pretraining_only, other). With ``base`` (the base model's counts, from this function or
    :func:`count_checkpoint_parameters`): ``base_total``, ``base_inference``, ``base_stack``, ``removed``
    and ``removed_share_of_base_total`` / ``_inference`` / ``_stack``.

    The stack is found by name (``encoder.layers.N.``, else any ``layers.N.``): a pruned upstream's dropped
    layers hold no parameters and are absent from it.
    """
    counts = _count_named((name, p.numel()) for name, p in upstream.named_parameters())
    return _add_removed(counts, base)


def count_checkpoint_parameters(checkpoint, family: Optional[str] = None, base: Optional[dict] = None) -> dict:
    """:func:`count_parameters` of the model a stock checkpoint (dict or path) describes, without building it.

    Counts the weights in the checkpoint; for the stock experts these are exactly their parameters (no buffers).
    """
    from .bundles import family_of_checkpoint, get_family

    if not isinstance(checkpoint, dict):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    fam = get_family(family) if family else family_of_checkpoint(checkpoint)
    if fam is None:
        raise ProfileError(f"not a stock checkpoint of a known family (keys: {sorted(checkpoint)})")
    weights = checkpoint[fam.weights_key]
    return _add_removed(_count_named((name, t.numel()) for name, t in weights.items()
                                     if name != fam.ema_key), base)  # data2vec's EMA teacher: no model weight


# ============================================================================================ MACs
def _sdpa_flop_mapping() -> dict:
    """FLOP formulas for the attention kernels torch's flop counter lacks (CPU flash attention)."""
    from torch.utils.flop_counter import sdpa_flop_count

    def sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)  # (B, H, T, d): 2 bmm of 2*B*H*T*S*d

    mapping = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None:
            mapping[packet] = sdpa_flop
    return mapping


def _as_samples(value) -> int:
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


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


_LAYER_MODULE = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)$")


def _macs_of(upstream: nn.Module, samples: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    device = _module_device(upstream)
    generator = torch.Generator().manual_seed(samples)
    wav = torch.randn(samples, generator=generator).to(device)
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_sdpa_flop_mapping())
    was_training = upstream.training
    upstream.eval()
    # nn.TransformerEncoderLayer's inference fast path is one fused kernel the counter cannot see into (a
    # transformer mimicker counted 0 MACs); the unfused path does the same matmuls and attention, visibly
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), counter:
            outputs = upstream([wav])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        upstream.train(was_training)
    flops = counter.get_total_flops()
    per_module = counter.get_flop_counts()
    per_layer: dict[int, int] = {}
    cnn = pos_conv = 0
    for module_name, ops in per_module.items():
        module_flops = sum(ops.values())
        match = _LAYER_MODULE.search(module_name)
        if match:
            per_layer[int(match.group(1))] = per_layer.get(int(match.group(1)), 0) + module_flops // 2
        elif module_name.endswith(".feature_extractor"):
            cnn += module_flops // 2
        elif module_name.endswith(".encoder.pos_conv"):
            pos_conv += module_flops // 2
    by_op = {str(op): n // 2 for op, n in per_module.get("Global", {}).items()}
    hidden = outputs.get("hidden_states") if isinstance(outputs, dict) else None
    frames = int(hidden[-1].shape[1]) if hidden else None
    macs = flops // 2
    stack = sum(per_layer.values())
    return {
        "samples": samples,
        "seconds": samples / SAMPLE_RATE,
        "frames": frames,
        "macs": macs,
        "flops": flops,
        "stack_macs": stack,
        "rest_macs": macs - stack,
        "cnn_macs": cnn,
        "positional_conv_macs": pos_conv,
        "per_layer_macs": {str(k): v for k, v in sorted(per_layer.items())},
        "by_op": by_op,
    }


def count_macs(upstream: nn.Module, seconds_or_lengths, *, _cache: Optional[dict] = None):
    """MACs (FlopCounterMode FLOPs / 2) of one forward at batch size 1, per clip length.

    ``seconds_or_lengths``: a float (seconds), an int (samples), or a list of them (floats are seconds, ints are
    sample counts; 16 kHz). Returns one dict for a single value, a list of dicts for a list. Each dict: samples,
    seconds, frames (of the returned hidden states), macs, flops, stack_macs (sum of the transformer layers'
    modules), rest_macs, cnn_macs, positional_conv_macs, per_layer_macs (layer index -> MACs; a pruned model's
    dropped layers do no MACs and are absent), by_op (MACs per aten op).

    Counted: convolutions, mm/addmm/bmm/baddbmm and scaled-dot-product attention (with the CPU kernel's formula
    added here). Not counted: element-wise ops, normalisations, softmax, embedding look-ups (< 1% here).
    The forward runs for real on the upstream's device, with random audio.
    """
    single = not isinstance(seconds_or_lengths, (list, tuple))
    values = [seconds_or_lengths] if single else list(seconds_or_lengths)
    samples = [_as_samples(v) for v in values]
    cache = {} if _cache is None else _cache
    results = []
    for n in samples:
        if n not in cache:
            cache[n] = _macs_of(upstream, n)
        results.append(dict(cache[n]))
    return results[0] if single else results


def macs_per_lengths(upstream: nn.Module, lengths: Sequence[int], *, _cache: Optional[dict] = None) -> dict:
    """Summed MACs over clips of the given lengths (samples), each at batch size 1: the SUPERB convention.

    SUPERB's leaderboard sums 32 LibriSpeech test-clean utterances (every 82nd line of the test list):
    1.669e12 MACs for wav2vec2 / HuBERT Base. Equal lengths are counted once.
    """
    lengths = [_as_samples(int(n)) for n in lengths]
    if not lengths:
        raise ProfileError("no lengths given")
    per = count_macs(upstream, lengths, _cache={} if _cache is None else _cache)
    total_samples = sum(lengths)
    macs = sum(r["macs"] for r in per)
    return {
        "utterances": len(lengths),
        "total_samples": total_samples,
        "total_seconds": total_samples / SAMPLE_RATE,
        "macs": macs,
        "stack_macs": sum(r["stack_macs"] for r in per),
        "rest_macs": sum(r["rest_macs"] for r in per),
        "macs_per_second_of_audio": macs / (total_samples / SAMPLE_RATE),
        "lengths": lengths,
    }


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
        if re.fullmatch(r"\d+", line):
            samples = int(line)
        else:
            audio = Path(line).expanduser()
            if not audio.is_absolute():
                audio = path.parent / audio
            if not audio.is_file():
                raise ProfileError(f"{path}:{number}: neither a sample count nor an existing audio file: {line}")
            try:
                import soundfile

                info = soundfile.info(str(audio))
            except Exception as error:
                raise ProfileError(f"{path}:{number}: cannot read {audio}: {str(error).splitlines()[0]}") from None
            samples = int(round(info.frames * SAMPLE_RATE / info.samplerate))
        if samples < MIN_SAMPLES:
            raise ProfileError(f"{path}:{number}: {samples} samples is shorter than the CNN's {MIN_SAMPLES}")
        lengths.append(samples)
    if not lengths:
        raise ProfileError(f"lengths file {path} lists no lengths")
    return lengths


# ============================================================================================ latency
@contextlib.contextmanager
def _threads(threads: Optional[int]):
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ProfileError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ProfileError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ProfileError(f"unsupported device {device!r}; valid: cpu, cuda, cuda:N")
    return dev


def _quartiles(times: list[float]) -> tuple[float, float, float]:
    if len(times) == 1:
        return times[0], times[0], times[0]
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1, statistics.median(times), q3


def measure_latency(upstream: nn.Module, seconds: float = 1.0, repeats: int = 10, warmup: int = 3,
                    threads: Optional[int] = None, device: str = "cpu") -> dict:
    """Forward latency at batch size 1: median and inter-quartile range over ``repeats`` after ``warmup`` runs.

    The upstream is moved to ``device`` (in place) and run under ``torch.inference_mode``. ``threads`` sets
    ``torch.set_num_threads`` for the measurement (restored after); the result states the count used. On CUDA
    each run is timed with CUDA events after a synchronize; on CPU with ``time.perf_counter``.
    Keys: seconds, samples, repeats, warmup, device, threads, timer, median_s, q1_s, q3_s, iqr_s, min_s,
    times_s, rtf (= median_s / seconds).
    """
    samples = _as_samples(float(seconds))
    if repeats < 1:
        raise ProfileError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ProfileError(f"warmup must be >= 0, got {warmup}")
    dev = _check_device(device)
    upstream.to(dev).eval()
    wav = torch.randn(samples, generator=torch.Generator().manual_seed(0)).to(dev)
    cuda = dev.type == "cuda"
    times: list[float] = []
    with _threads(threads), torch.inference_mode():
        used_threads = torch.get_num_threads()
        for _ in range(warmup):
            upstream([wav])
        if cuda:
            torch.cuda.synchronize(dev)
        for _ in range(repeats):
            times.append(_time_once(upstream, wav, dev))
    q1, median, q3 = _quartiles(times)
    return {
        "seconds": samples / SAMPLE_RATE,
        "samples": samples,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(dev) if not cuda else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "threads": used_threads,
        "timer": "cuda_event" if cuda else "perf_counter",
        "median_s": median,
        "q1_s": q1,
        "q3_s": q3,
        "iqr_s": q3 - q1,
        "min_s": min(times),
        "times_s": times,
        "rtf": median / (samples / SAMPLE_RATE),
    }


def interleaved_latency(upstreams: Mapping[str, nn.Module], seconds: float = 1.0, repeats: int = 30,
                        warmup: int = 5, threads: Optional[int] = None, device: str = "cpu",
                        seed: int = 0, passes: int = 1) -> dict[str, dict]:
    """Batch-1 latency of several upstreams timed together, so that drift in the machine's load hits all alike.

    Each upstream is warmed up ``warmup`` times; then come ``repeats`` rounds, each timing every upstream once
    in a fresh (seeded) random order, on the same input. One timing is the mean of ``passes`` back-to-back
    forward passes: more passes narrow the spread of the timings (more rounds would not: the IQR is the
    machine's noise, not the uncertainty of the median). Returns, per name, what :func:`measure_latency`
    returns for one upstream (median, quartiles, IQR, every time), plus ``rounds``, ``passes`` and ``order_seed``.
    """
    import random

    samples = _as_samples(float(seconds))
    if repeats < 1:
        raise ProfileError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ProfileError(f"warmup must be >= 0, got {warmup}")
    if passes < 1:
        raise ProfileError(f"passes must be >= 1, got {passes}")
    if not upstreams:
        raise ProfileError("no upstreams to time")
    dev = _check_device(device)
    cuda = dev.type == "cuda"
    wav = torch.randn(samples, generator=torch.Generator().manual_seed(0)).to(dev)
    names = list(upstreams)
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    with _threads(threads), torch.inference_mode():
        used_threads = torch.get_num_threads()
        for name in names:
            upstreams[name].to(dev).eval()
            for _ in range(warmup):
                upstreams[name]([wav])
        if cuda:
            torch.cuda.synchronize(dev)
        for _ in range(repeats):
            for name in order.sample(names, len(names)):
                times[name].append(_time_once(upstreams[name], wav, dev, passes))
    out = {}
    for name in names:
        q1, median, q3 = _quartiles(times[name])
        out[name] = {"seconds": samples / SAMPLE_RATE, "samples": samples, "repeats": repeats, "warmup": warmup,
                     "device": str(dev) if not cuda else f"{dev} ({torch.cuda.get_device_name(dev)})",
                     "threads": used_threads, "timer": "cuda_event" if cuda else "perf_counter",
                     "median_s": median, "q1_s": q1, "q3_s": q3, "iqr_s": q3 - q1, "min_s": min(times[name]),
                     "times_s": times[name], "rtf": median / (samples / SAMPLE_RATE), "rounds": repeats, "passes": passes,
                     "interleaved_with": [n for n in names if n != name], "order_seed": seed}
    return out


def _time_once(upstream: nn.Module, wav: torch.Tensor, dev: torch.device, passes: int = 1) -> float:
    """Seconds per forward pass, averaged over ``passes`` back-to-back passes."""
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(passes):
            upstream([wav])
        end.record()
        torch.cuda.synchronize(dev)
        return start.elapsed_time(end) / 1000.0 / passes
    t0 = time.perf_counter()
    for _ in range(passes):
        upstream([wav])
    return (time.perf_counter() - t0) / passes


# ============================================================================================ whole profile
def _hub_names() -> list[str]:
    import s3prl.hub

    return sorted(n for n, v in vars(s3prl.hub).items() if callable(v) and not n.startswith("_")
                  and not isinstance(v, type))


def _check_upstream_name(name: str) -> None:
    import difflib

    names = _hub_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else "; list them with s3prl.hub.options()"
        raise ProfileError(f"unknown upstream {name!r}{hint}")


def _family_named(name: str) -> Optional[str]:
    """The architecture family an upstream name refers to, if any (distilhubert is a distiller, not a hubert)."""
    if name.startswith("distil"):
        return "distiller"
    return next((f for f in ("wav2vec2", "hubert", "wavlm", "data2vec") if f in name), None)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".ckpt", ".pth", ".bin"))


def _check_spec(arch: str, num_layers: int, name: str, model_config: Optional[str],
                drop_layers: Optional[Sequence[int]]) -> None:
    """The prune spec (-g) or drop_layers must fit the architecture's layer count."""
    from .prune_spec import PruneSpec, PruneSpecError

    try:
        if drop_layers:
            if model_config:
                raise ProfileError("give drop_layers or a prune spec (-g), not both")
            PruneSpec(drop_layers=tuple(drop_layers)).resolve(num_layers)
        elif model_config and name.startswith("pruned_"):
            PruneSpec.from_yaml(model_config).resolve(num_layers)
    except PruneSpecError as error:
        raise ProfileError(f"--arch {arch}: {error}") from None


def validate_request(name: Optional[str] = None, ckpt: Optional[str] = None, model_config: Optional[str] = None,
                     seconds: Sequence[float] = (1.0, 10.0), lengths_file: Optional[str] = None,
                     repeats: int = 10, warmup: int = 3, threads: Optional[int] = None, device: str = "cpu",
                     arch: Optional[str] = None, drop_layers: Optional[Sequence[int]] = None) -> dict:
    """Check every input of :func:`profile_upstream` before any model work; returns the resolved request.

    Raises :class:`ProfileError` with one line naming the bad value and what would be valid.
    """
    from . import registry
    from .architectures import ARCHITECTURES

    seconds = list(seconds or [])
    for s in seconds:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not s > 0 or not math.isfinite(s):
            raise ProfileError(f"--seconds must be > 0, got {s}")
        _as_samples(float(s))
    if not seconds and not lengths_file:
        raise ProfileError("nothing to profile: give --seconds and/or --lengths-file")
    if repeats < 1:
        raise ProfileError(f"--repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ProfileError(f"--warmup must be >= 0, got {warmup}")
    if threads is not None and threads < 1:
        raise ProfileError(f"--threads must be >= 1, got {threads}")
    lengths = read_lengths_file(lengths_file) if lengths_file else None
    _check_device(device)
    if model_config and not Path(model_config).is_file():
        raise ProfileError(f"model config (-g) not found: {model_config}")
    family = None
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise ProfileError(f"unknown --arch {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        if ckpt:
            raise ProfileError("give either --arch (random weights) or -k CHECKPOINT, not both")
        architecture = ARCHITECTURES[arch]
        family = architecture.family
        named = _family_named(name) if name else None
        if named and named != family:
            use = f"{architecture.hub_name} or pruned_{family}" if architecture.prunable else architecture.hub_name
            raise ProfileError(f"upstream {name!r} is a {named} upstream but --arch {arch} is {family}; use {use}")
        if not architecture.prunable:
            if model_config or drop_layers:
                prunable = ", ".join(n for n, a in ARCHITECTURES.items() if a.prunable)
                raise ProfileError(f"--arch {arch} has no pruned upstream: -g / drop_layers need one of {prunable}")
            if name not in (None, architecture.hub_name):
                raise ProfileError(f"--arch {arch} loads through {architecture.hub_name}, not {name!r}; leave out -u")
        if name is None:
            name = f"pruned_{family}" if (model_config or drop_layers) else architecture.hub_name
        _check_spec(arch, architecture.num_layers, name, model_config, drop_layers)
    elif drop_layers:
        raise ProfileError("drop_layers needs --arch (or a prune spec with -g and a pruned_<family> upstream)")
    if not name:
        raise ProfileError("no upstream: give -u NAME (an s3prl hub name) or --arch NAME")
    if ckpt and not Path(ckpt).expanduser().exists() and (name.endswith("_local") or _looks_like_path(ckpt)):
        raise ProfileError(f"checkpoint (-k) not found: {ckpt}")
    if name.endswith("_local") and not ckpt and arch is None:
        raise ProfileError(f"{name} loads a local file: give its path with -k (or use --arch for random weights)")
    registry.install()
    _check_upstream_name(name)
    if drop_layers and not name.startswith("pruned_"):
        raise ProfileError(f"drop_layers needs a pruned_<family> upstream, not {name!r}")
    return {"name": name, "family": family, "seconds": [float(s) for s in seconds], "lengths": lengths}


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


def _base_counts_of_pruned(upstream: nn.Module) -> Optional[dict]:
    from .bundles import get_family
    from .pruned_upstream import PrunedUpstream, resolve_base

    if not isinstance(upstream, PrunedUpstream) or upstream.spec is None or not upstream.spec.base:
        return None
    family = get_family(upstream.family_name)
    try:
        path = resolve_base(upstream.spec.base, family)
        return count_checkpoint_parameters(path, family.name)
    except Exception:  # the base may be a hub name whose file is not cached: leave the share out
        return None


def profile_upstream(name: Optional[str] = None, ckpt: Optional[str] = None, model_config: Optional[str] = None,
                     seconds: Sequence[float] = (1.0, 10.0), lengths_file: Optional[str] = None,
                     repeats: int = 10, warmup: int = 3, threads: Optional[int] = None, device: str = "cpu",
                     arch: Optional[str] = None, drop_layers: Optional[Sequence[int]] = None, seed: int = 0,
                     latency: bool = True) -> dict:
    """Parameters, MACs per clip length (and summed over a lengths file) and latency of an upstream.

    ``name`` is any upstream on ``s3prl.hub`` after :func:`superb_redundancy.registry.install` (stock or ours),
    loaded as s3prl's runner does: ``getattr(s3prl.hub, name)(ckpt=..., model_config=..., refresh=False)``.
    ``arch`` (see :mod:`superb_redundancy.architectures`) profiles a real-size architecture with random
    weights: its checkpoint is written to a temporary file and passed as ``ckpt`` to ``name`` (default: the
    family's ``<family>_local``; ``pruned_<family>`` when a prune spec ``model_config`` or ``drop_layers`` is
    given). For a pruned upstream the removed share of parameters is reported against its base checkpoint, and
    ``base_macs_derived`` is the pruned MACs plus the dropped layers' count times the MACs of a kept layer
    (the layers are identical in shape, so this is exact for what the counter counts).
    Returns a JSON-serialisable dict (see :func:`format_profile_table`).
    """
    request = validate_request(name, ckpt, model_config, seconds, lengths_file, repeats, warmup, threads,
                               device, arch, drop_layers)
    name = request["name"]
    import s3prl.hub

    with tempfile.TemporaryDirectory(prefix="superb_redundancy_profile_") as tmp:
        notes = []
        if arch is not None:
            from .architectures import write_architecture_checkpoint
            from .prune_spec import PruneSpec

            ckpt_used = str(write_architecture_checkpoint(arch, Path(tmp) / f"{arch}.pt", seed=seed))
            notes.append(f"random weights: architecture {arch}, seed {seed}")
            if drop_layers and not model_config:
                model_config = str(PruneSpec(drop_layers=tuple(drop_layers)).to_yaml(Path(tmp) / "spec.yaml"))
        else:
            ckpt_used = ckpt
        try:
            upstream = getattr(s3prl.hub, name)(ckpt=ckpt_used, model_config=model_config, refresh=False)
        except ProfileError:
            raise
        except Exception as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ProfileError(f"could not load upstream {name!r}: {message}") from None
        upstream.eval()
        base_counts = _base_counts_of_pruned(upstream)
        if base_counts is None and getattr(upstream, "dropped_layers", None):
            notes.append("base checkpoint not available locally: removed shares of parameters left out")
        params = count_parameters(upstream, base=base_counts)

        result: dict = {
            "upstream": name,
            "ckpt": ckpt if arch is None else None,
            "model_config": model_config if arch is None or not drop_layers else None,
            "arch": arch,
            "seed": seed if arch is not None else None,
            "drop_layers": list(getattr(upstream, "dropped_layers", ()) or ()) or None,
            "num_layers": getattr(upstream, "num_layers", None),
            "device": device,
            "environment": _environment(device),
            "parameters": params,
            "macs_convention": "FlopCounterMode FLOPs / 2, batch 1; counts conv, matmul, attention; "
                               "not element-wise ops, norms, softmax",
        }
        dev = _check_device(device)
        upstream.to(dev)
        cache: dict[int, dict] = {}
        macs = count_macs(upstream, request["seconds"], _cache=cache) if request["seconds"] else []
        dropped = result["drop_layers"] or []
        for entry in macs:
            kept = list(entry["per_layer_macs"].values())
            if dropped and kept:
                per_layer = kept[0]
                entry["base_macs_derived"] = entry["macs"] + len(dropped) * per_layer
                entry["macs_share_of_base"] = entry["macs"] / entry["base_macs_derived"]
        result["macs"] = macs
        if request["lengths"]:
            summary = macs_per_lengths(upstream, request["lengths"], _cache=cache)
            summary["lengths_file"] = str(lengths_file)
            result["macs_lengths_file"] = summary
        else:
            result["macs_lengths_file"] = None
        result["latency"] = [
            measure_latency(upstream, s, repeats=repeats, warmup=warmup, threads=threads, device=device)
            for s in request["seconds"]
        ] if latency else []
        result["notes"] = notes
    return result


# ============================================================================================ output
def _m(n) -> str:
    return f"{n / 1e6:,.2f} M"


def _g(n) -> str:
    return f"{n / 1e9:,.3f} G"


def format_profile_table(profile: dict) -> str:
    """Human-readable tables (tabulate) of a :func:`profile_upstream` result."""
    from tabulate import tabulate

    title = profile["upstream"]
    if profile.get("arch"):
        title += f" on --arch {profile['arch']} (random weights)"
    if profile.get("drop_layers"):
        title += f", dropped layers {profile['drop_layers']} of {profile.get('num_layers')}"
    blocks = [title]

    p = profile["parameters"]
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
    blocks.append(tabulate(rows, headers=["parameters", "count", ""], tablefmt="github"))

    if profile.get("macs"):
        rows = []
        for m in profile["macs"]:
            rows.append([f"{m['seconds']:g}", m["frames"], _g(m["macs"]), _g(m["stack_macs"]), _g(m["cnn_macs"]),
                         f"{m['macs_share_of_base']:.3f}" if "macs_share_of_base" in m else ""])
        blocks.append(tabulate(rows, headers=["audio s", "frames", "MACs", "stack MACs", "CNN MACs",
                                              "MACs / base"], tablefmt="github"))
    lf = profile.get("macs_lengths_file")
    if lf:
        blocks.append(f"lengths file {lf['lengths_file']}: {lf['utterances']} utterances, "
                      f"{lf['total_seconds']:.1f} s, {lf['macs']:.4g} MACs summed at batch 1 "
                      f"({lf['macs_per_second_of_audio'] / 1e9:.3f} GMACs per second of audio)")
    if profile.get("latency"):
        rows = [[f"{t['seconds']:g}", f"{t['median_s'] * 1e3:.1f}", f"{t['iqr_s'] * 1e3:.1f}", f"{t['rtf']:.4f}",
                 t["repeats"], t["threads"], t["device"]] for t in profile["latency"]]
        blocks.append(tabulate(rows, headers=["audio s", "median ms", "IQR ms", "RTF", "repeats", "threads",
                                              "device"], tablefmt="github"))
    blocks.append("MACs: " + profile.get("macs_convention", ""))
    for note in profile.get("notes", []):
        blocks.append(f"note: {note}")
    return "\n\n".join(blocks)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write ``data`` as JSON atomically (temp file in the same folder, then rename)."""
    from .atomic import write_json as atomic_write_json

    return atomic_write_json(path, data, indent=2)
