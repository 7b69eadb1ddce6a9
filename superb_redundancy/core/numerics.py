"""Subnormal floats flushed to zero on the CPU, at our entry points.

A gradient that decays towards zero passes through subnormal floats (below 1.2e-38), which x86 cores compute
in microcode, many times slower than normal ones. Training s3prl's ASR head on a CPU, oneDNN's LSTM backward pass
took 40 ms a call with them and 4 ms without (the same 200 steps, torch's profiler), and the head's whole step
0.52x the time (benchmarks/bench_asr_head.py, with the same losses). Values that small change no weight that
matters, so our commands flush them, as GPUs do by default. Threads inherit the setting from the one that starts
them, so it is set before torch starts its thread pool.
"""

from __future__ import annotations

__all__ = ["flush_denormals"]


def flush_denormals() -> bool:
    """Flush subnormal floats to zero in this thread and those it starts; False where the CPU cannot."""
    import torch

    return bool(torch.set_flush_denormal(True))
