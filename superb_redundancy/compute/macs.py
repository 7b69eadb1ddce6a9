"""MACs of an upstream's forward at batch size 1: :class:`~torch.utils.flop_counter.FlopCounterMode` FLOPs / 2.

Counted: convolutions, mm/addmm/bmm/baddbmm and scaled-dot-product attention, with the formula of the CPU
attention kernel (``_scaled_dot_product_flash_attention_for_cpu``) added here, since torch's table lacks it.
Not counted: element-wise ops, normalisations, softmax, embedding look-ups (well under 1% for these models).
See :mod:`superb_redundancy.compute` for the conventions.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from superb_redundancy.compute.inputs import SAMPLE_RATE, ProfileError, as_samples

__all__ = ["count_macs", "macs_per_lengths"]

_LAYER_MODULE = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)$")


def _sdpa_flop_mapping() -> dict:
    """FLOP formulas for the attention kernels torch's flop counter lacks (CPU flash attention)."""

    def sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)  # (B, H, T, d): 2 bmm of 2*B*H*T*S*d

    mapping = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None:
            mapping[packet] = sdpa_flop
    return mapping


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _countable(upstream: nn.Module) -> Iterator[None]:
    """``upstream`` in eval mode with the fused transformer fast path off; both restored after.

    nn.TransformerEncoderLayer's inference fast path is one fused kernel the counter cannot see into (a
    transformer mimicker counted 0 MACs); the unfused path does the same matmuls and attention, visibly.
    """
    was_training = upstream.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    upstream.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        upstream.train(was_training)


def _counted_forward(upstream: nn.Module, samples: int) -> tuple[FlopCounterMode, object]:
    """One forward on seeded random audio of ``samples`` samples under the flop counter: (counter, outputs)."""
    wav = torch.randn(samples, generator=torch.Generator().manual_seed(samples)).to(_module_device(upstream))
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_sdpa_flop_mapping())
    with _countable(upstream), torch.inference_mode(), counter:
        outputs = upstream([wav])
    return counter, outputs


def _macs_by_module(per_module: dict) -> tuple[dict[int, int], int, int]:
    """MACs of each transformer layer (by index), of the CNN and of the positional convolution."""
    per_layer: dict[int, int] = {}
    cnn = pos_conv = 0
    for module_name, ops in per_module.items():
        module_macs = sum(ops.values()) // 2
        match = _LAYER_MODULE.search(module_name)
        if match:
            per_layer[int(match.group(1))] = per_layer.get(int(match.group(1)), 0) + module_macs
        elif module_name.endswith(".feature_extractor"):
            cnn += module_macs
        elif module_name.endswith(".encoder.pos_conv"):
            pos_conv += module_macs
    return per_layer, cnn, pos_conv


def _macs_of(upstream: nn.Module, samples: int) -> dict:
    counter, outputs = _counted_forward(upstream, samples)
    flops = counter.get_total_flops()
    per_module = counter.get_flop_counts()
    per_layer, cnn, pos_conv = _macs_by_module(per_module)
    hidden = outputs.get("hidden_states") if isinstance(outputs, dict) else None
    macs = flops // 2
    stack = sum(per_layer.values())
    return {
        "samples": samples,
        "seconds": samples / SAMPLE_RATE,
        "frames": int(hidden[-1].shape[1]) if hidden else None,
        "macs": macs,
        "flops": flops,
        "stack_macs": stack,
        "rest_macs": macs - stack,
        "cnn_macs": cnn,
        "positional_conv_macs": pos_conv,
        "per_layer_macs": {str(k): v for k, v in sorted(per_layer.items())},
        "by_op": {str(op): n // 2 for op, n in per_module.get("Global", {}).items()},
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
    samples = [as_samples(v) for v in values]
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
    lengths = [as_samples(int(n)) for n in lengths]
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
