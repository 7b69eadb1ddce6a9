"""Forward latency at batch size 1: median and inter-quartile range after warm-up, with threads and device.

Under ``torch.inference_mode``; CUDA events on GPU (after a synchronize), ``time.perf_counter`` on CPU.
:func:`measure_latency` times one upstream; :func:`interleaved_latency` times several in shuffled rounds, so that
drift in the machine's load hits all alike. Real-time factor = median latency / audio seconds.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from typing import Iterator, Mapping, Optional

import torch
from torch import nn

from superb_redundancy.compute.inputs import SAMPLE_RATE, ProfileError, as_samples, check_counts, check_device

__all__ = ["measure_latency", "interleaved_latency"]


@contextlib.contextmanager
def _threads(threads: Optional[int]) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` inside (when given), restored after; yields the count in use."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _quartiles(times: list[float]) -> tuple[float, float, float]:
    if len(times) == 1:
        return times[0], times[0], times[0]
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q1, statistics.median(times), q3


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


def _input(samples: int, dev: torch.device) -> torch.Tensor:
    """The (seeded) random clip every timing runs on."""
    return torch.randn(samples, generator=torch.Generator().manual_seed(0)).to(dev)


def _warm_up(upstream: nn.Module, wav: torch.Tensor, warmup: int) -> None:
    for _ in range(warmup):
        upstream([wav])


def _summary(times: list[float], samples: int, repeats: int, warmup: int, dev: torch.device, threads: int) -> dict:
    """What one upstream's timings say: median, quartiles, IQR, every time, and the conditions they ran under."""
    cuda = dev.type == "cuda"
    q1, median, q3 = _quartiles(times)
    return {
        "seconds": samples / SAMPLE_RATE,
        "samples": samples,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(dev) if not cuda else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "threads": threads,
        "timer": "cuda_event" if cuda else "perf_counter",
        "median_s": median,
        "q1_s": q1,
        "q3_s": q3,
        "iqr_s": q3 - q1,
        "min_s": min(times),
        "times_s": times,
        "rtf": median / (samples / SAMPLE_RATE),
    }


def measure_latency(upstream: nn.Module, seconds: float = 1.0, repeats: int = 10, warmup: int = 3,
                    threads: Optional[int] = None, device: str = "cpu") -> dict:
    """Forward latency at batch size 1: median and inter-quartile range over ``repeats`` after ``warmup`` runs.

    The upstream is moved to ``device`` (in place) and run under ``torch.inference_mode``. ``threads`` sets
    ``torch.set_num_threads`` for the measurement (restored after); the result states the count used. On CUDA
    each run is timed with CUDA events after a synchronize; on CPU with ``time.perf_counter``.
    Keys: seconds, samples, repeats, warmup, device, threads, timer, median_s, q1_s, q3_s, iqr_s, min_s,
    times_s, rtf (= median_s / seconds).
    """
    samples = as_samples(float(seconds))
    check_counts(repeats, warmup)
    dev = check_device(device)
    upstream.to(dev).eval()  # outside inference mode: moved parameters stay ordinary tensors
    wav = _input(samples, dev)
    with _threads(threads) as used_threads, torch.inference_mode():
        _warm_up(upstream, wav, warmup)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times = [_time_once(upstream, wav, dev) for _ in range(repeats)]
    return _summary(times, samples, repeats, warmup, dev, used_threads)


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
    samples = as_samples(float(seconds))
    check_counts(repeats, warmup)
    if passes < 1:
        raise ProfileError(f"passes must be >= 1, got {passes}")
    if not upstreams:
        raise ProfileError("no upstreams to time")
    dev = check_device(device)
    wav = _input(samples, dev)
    names = list(upstreams)
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    for name in names:
        upstreams[name].to(dev).eval()  # outside inference mode: moved parameters stay ordinary tensors
    with _threads(threads) as used_threads, torch.inference_mode():
        for name in names:
            _warm_up(upstreams[name], wav, warmup)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        for _ in range(repeats):
            for name in order.sample(names, len(names)):
                times[name].append(_time_once(upstreams[name], wav, dev, passes))
    return {name: {**_summary(times[name], samples, repeats, warmup, dev, used_threads), "rounds": repeats,
                   "passes": passes, "interleaved_with": [n for n in names if n != name], "order_seed": seed}
            for name in names}
