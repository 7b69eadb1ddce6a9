"""Does pruning save time in proportion to MACs? Time ratio vs MACs ratio of layer-pruned wav2vec2 models.

For the wav2vec2 Base and Large architectures (random weights, see superb_redundancy.models.architectures), on CPU at
batch size 1, for each clip length: the unpruned model and its pruned variants (Base: 3 and 5 of 12 layers
dropped; Large: 9 of 24) are loaded through the project's own loaders (``wav2vec2_local``, ``build_pruned``),
their MACs counted (FlopCounterMode, superb_redundancy.compute.count_macs), and their forward passes timed in
one run: interleaved rounds (each round runs every model once, the order rotating from round to round) so that
drift (thermal, other processes) hits all models alike; the time ratio is the median over rounds of the
per-round ratio variant / unpruned. Target: time ratio within 0.03 of the MACs ratio.

    .venv/bin/python benchmarks/bench_pruned_compute.py [--repeats 3] [--threads 1] [--seconds 1 10]

Takes ~2.5 minutes on 2 cores at the defaults (Large 10 s clips dominate); --repeats trades time for
noise. Wall-clock timing needs an otherwise idle machine: with more runnable processes than cores, OpenMP
threads wait on descheduled peers and times blow up unevenly (the load average is printed). On a shared,
loaded machine use --threads 1 and read the CPU-time ratio column (process CPU time is not charged while the
process waits for a core).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = {  # architecture -> dropped-layer sets (forward pruning: the first layer is kept, as in the paper)
    "wav2vec2_base": [list(range(1, 4)), list(range(1, 6))],
    "wav2vec2_large": [list(range(1, 10))],
}
TARGET = 0.03


def _rounds(repeats: int, seconds: float) -> int:
    """Short clips are cheap: give them more rounds (x10/seconds, at most x5) to beat the noise."""
    return repeats * max(1, min(5, int(10 // seconds)))


def _forward(model, wav) -> tuple[float, float]:
    """Wall time (perf_counter) and this process's CPU time (process_time) of one forward pass."""
    start, cpu = time.perf_counter(), time.process_time()
    model([wav])
    return time.perf_counter() - start, time.process_time() - cpu


def bench_architecture(arch: str, seconds: list[float], repeats: int, warmup: int, workdir: Path) -> list[dict]:
    import s3prl.hub

    from superb_redundancy.compute.macs import count_macs
    from superb_redundancy.models.architectures import write_architecture_checkpoint
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    path = write_architecture_checkpoint(arch, workdir / f"{arch}.pt")
    models = {"unpruned": s3prl.hub.wav2vec2_local(ckpt=str(path)).eval()}
    num_layers = len(models["unpruned"].model.encoder.layers)
    for dropped in VARIANTS[arch]:
        label = f"drop {len(dropped)}/{num_layers}"
        models[label] = build_pruned("wav2vec2", PruneSpec(base=str(path), drop_layers=dropped)).eval()
    path.unlink()  # the models are in memory; Large checkpoints take 1.3 GB of disk

    rows = []
    names = list(models)
    for length in seconds:
        macs = {name: count_macs(model, float(length))["macs"] for name, model in models.items()}
        wav = torch.randn(int(round(length * 16000)), generator=torch.Generator().manual_seed(0))
        times = {name: [] for name in names}
        cpu_times = {name: [] for name in names}
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    _forward(models[name], wav)
            for round_index in range(_rounds(repeats, length)):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:  # rotate the order every round
                    wall, cpu = _forward(models[name], wav)
                    times[name].append(wall)
                    cpu_times[name].append(cpu)
        base_median = statistics.median(times["unpruned"])
        for name in names[1:]:
            paired = [v / b for v, b in zip(times[name], times["unpruned"])]
            time_ratio = statistics.median(paired)
            macs_ratio = macs[name] / macs["unpruned"]
            rows.append({
                "arch": arch, "seconds": length, "variant": name,
                "unpruned_ms": base_median * 1e3, "variant_ms": statistics.median(times[name]) * 1e3,
                "macs_ratio": macs_ratio, "time_ratio": time_ratio,
                "time_ratio_spread": (min(paired), max(paired)),
                "cpu_ratio": statistics.median(v / b for v, b in zip(cpu_times[name], cpu_times["unpruned"])),
                "diff": time_ratio - macs_ratio,
                "unpruned_gmacs": macs["unpruned"] / 1e9,
                "rounds": len(paired),
            })
        print(f"  {arch} {length:g} s done", file=sys.stderr, flush=True)
    del models
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved timing rounds for 10 s clips, x10/seconds (at most x5) for shorter (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per model and length (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: the CPU-time column stays valid on a loaded machine)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--archs", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or any(s <= 0 for s in args.seconds):
        parser.error("--repeats and --threads must be >= 1 and --seconds > 0")

    from superb_redundancy.hub import compat

    compat.apply()  # s3prl imports on this stack; only stock loaders and build_pruned are used
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pruned_compute_") as tmp:
        for arch in args.archs:
            rows += bench_architecture(arch, args.seconds, args.repeats, args.warmup, Path(tmp))

    from tabulate import tabulate

    table = [[r["arch"], f"{r['seconds']:g}", r["variant"], r["rounds"], f"{r['unpruned_gmacs']:.2f}", f"{r['unpruned_ms']:.0f}",
              f"{r['variant_ms']:.0f}", f"{r['macs_ratio']:.3f}", f"{r['time_ratio']:.3f}",
              f"{r['time_ratio_spread'][0]:.3f}-{r['time_ratio_spread'][1]:.3f}", f"{r['cpu_ratio']:.3f}",
              f"{r['diff']:+.3f}",
              "/".join("yes" if abs(x - r["macs_ratio"]) <= TARGET else "NO"
                       for x in (r["time_ratio"], r["cpu_ratio"]))] for r in rows]
    print(f"Pruned vs unpruned wav2vec2, random weights, CPU, batch 1, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"{args.repeats} interleaved rounds per 10 s clip, up to 5x more for short clips (order rotating), "
          f"{args.warmup} warm-up pass(es) per model; "
          "time ratio = median over rounds of variant/unpruned (diff and target use it); ratio range = its "
          "min-max over rounds; CPU-time ratio = the same with process CPU time (robust to other load at --threads 1; "
          "with more threads it includes OpenMP spin-waiting); "
          "MACs = FlopCounterMode FLOPs / 2")
    print(f"machine load (1-min average) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"target: |time ratio - MACs ratio| <= {TARGET}\n")
    print(tabulate(table, headers=["arch", "audio s", "variant", "rounds", "unpruned GMACs", "unpruned ms", "variant ms",
                                   "MACs ratio", "time ratio", "ratio range", "CPU-time ratio", "diff",
                                   "within target (wall/CPU)"],
                   tablefmt="github"))
    print(f"\nwithin target: {sum(abs(r['diff']) <= TARGET for r in rows)}/{len(rows)} by wall time, "
          f"{sum(abs(r['cpu_ratio'] - r['macs_ratio']) <= TARGET for r in rows)}/{len(rows)} by CPU time; "
          f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
