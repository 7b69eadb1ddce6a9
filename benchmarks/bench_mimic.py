"""Mimicking networks at real size: parameters and CPU time vs the original, and what the teacher cache saves.

1. On the wav2vec2 Base architecture (random weights, ``superb_redundancy.models.architectures``; s3prl's stock
   ``wav2vec2_local`` expert is the original), the mimic upstream (the teacher's CNN + feature projection + the
   mimicking layers; :func:`superb_redundancy.mimic.baselines.init_artifact`, loaded with ``mimic_local``) for
   linear N=1 z=32 and transformer N=2 z=768: parameter counts and time per clip as ratios of the original.
   Three parameter denominators are printed: everything s3prl's expert holds (SUPERB's count, pretraining
   heads included), the inference model (without them), and the paper's whole KS model (inference model +
   projector 768->256 + classifier 256->35, the paper's Table 1). Time: batch 1, CPU, 1 s and 10 s clips,
   interleaved rounds (each round runs every model once, the order rotating), medians; the ratio is the
   median over rounds of the per-round ratio mimic / original.
2. Step 1 for 6 configurations on a handful of clips: total time with the teacher cache (``train_grid``: one
   teacher pass, then every configuration and epoch reads the cache; the cold run builds it) over the time
   without it (the teacher re-run on every batch of every epoch for every configuration, the same batches,
   loss and optimizer; no validation in either: ``val_fraction=0``).

    .venv/bin/python benchmarks/bench_mimic.py [--threads 1] [--repeats 5] [--clips 8] [--epochs 2]

A few minutes on 2 cores. Timing wants an otherwise idle machine; the load average is printed.
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

import numpy as np
import torch

ARCH = "wav2vec2_base"
TIMED = {"linear N=1 z=32": dict(kind="linear", n_layers=1, z=32),
         "transformer N=2 z=768": dict(kind="transformer", n_layers=2, z=768)}
STEP1 = [dict(kind="linear", n_layers=1, z=32), dict(kind="linear", n_layers=2, z=32),
         dict(kind="linear", n_layers=1, z=768), dict(kind="transformer", n_layers=1, z=32),
         dict(kind="transformer", n_layers=2, z=32), dict(kind="transformer", n_layers=1, z=768)]
HEAD_768 = 768 * 256 + 256 + 256 * 35 + 35  # the paper's KS projector + classifier


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _forward(model, wav) -> float:
    start = time.perf_counter()
    model([wav])
    return time.perf_counter() - start


def bench_models(teacher: Path, workdir: Path, seconds: list[float], repeats: int, warmup: int) -> tuple[list, dict]:
    import s3prl.hub

    from superb_redundancy.compute.parameters import count_parameters
    from superb_redundancy.mimic.artifact import load_mimic_artifact
    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.baselines import init_artifact

    models = {"original": s3prl.hub.wav2vec2_local(ckpt=str(teacher)).eval()}
    for label, values in TIMED.items():
        artifact = init_artifact(teacher, MimicConfig(**values), workdir / f"{label.replace(' ', '_')}.pt")
        models[label] = load_mimic_artifact(artifact).eval()
    counts = count_parameters(models["original"])
    params = {"total": counts["total"], "inference": counts["inference"]}
    params.update({label: _params(models[label]) for label in TIMED})

    rows, names = [], list(models)
    for length in seconds:
        wav = torch.randn(int(round(length * 16000)), generator=torch.Generator().manual_seed(0))
        times = {name: [] for name in names}
        rounds = repeats * max(1, min(5, int(10 // length)))
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    _forward(models[name], wav)
            for index in range(rounds):
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(_forward(models[name], wav))
        for label in TIMED:
            paired = [m / o for m, o in zip(times[label], times["original"])]
            rows.append({"seconds": length, "model": label, "rounds": rounds,
                         "original_ms": statistics.median(times["original"]) * 1e3,
                         "mimic_ms": statistics.median(times[label]) * 1e3,
                         "ratio": statistics.median(paired), "spread": (min(paired), max(paired))})
        print(f"  timing {length:g} s done", file=sys.stderr, flush=True)
    return rows, params


def _write_clips(directory: Path, count: int, seed: int = 0) -> list[Path]:
    import soundfile

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        t = np.arange(16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(16000)
        paths.append(directory / f"clip{k:02d}.wav")
        soundfile.write(paths[-1], x.astype(np.float32), 16000)
    return paths


def step1_without_cache(teacher: Path, files: list[Path], configs, device: torch.device) -> float:
    """The same training as train_mimicker (batches, loss, Adam), the teacher re-run for every batch."""
    from torch.nn.utils.rnn import pad_sequence

    from superb_redundancy.mimic.modules import Mimicker
    from superb_redundancy.distill.teacher_cache import Teacher, _read_audio
    from superb_redundancy.distill.split import split_clips as _split
    from superb_redundancy.mimic.train import _step1_terms
    from superb_redundancy.models.families import family_of_checkpoint

    started = time.perf_counter()
    checkpoint = torch.load(teacher, map_location="cpu", weights_only=True, mmap=True)
    family = family_of_checkpoint(checkpoint)
    num_layers, d = family.num_layers(checkpoint), family.hidden_size(checkpoint)
    del checkpoint
    runner = Teacher(teacher, family, device)
    for config in configs:
        targets = config.resolve_targets(num_layers)
        train_ids, _ = _split(len(files), config)
        torch.manual_seed(config.seed)
        model = Mimicker.from_config(config, d).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        for epoch in range(1, config.epochs + 1):
            order = np.random.default_rng([config.seed, epoch]).permutation(train_ids)
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            model.train()
            for start in range(0, len(order), config.batch_size):
                outputs = [runner.run(_read_audio(files[i]), targets) for i in order[start:start + config.batch_size]]
                lengths = torch.tensor([f.size(0) for f, _ in outputs])
                mask = (torch.arange(int(lengths.max()))[None, :] >= lengths[:, None]).to(device)
                features = pad_sequence([f for f, _ in outputs], batch_first=True).to(device)
                wanted = [pad_sequence([o[t] for _, o in outputs], batch_first=True).to(device) for t in targets]
                loss = sum(_step1_terms(model, features, mask, wanted, config.teacher_forcing))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return time.perf_counter() - started


def bench_step1(teacher: Path, workdir: Path, clips: int, epochs: int) -> dict:
    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.train import train_grid

    files = _write_clips(workdir / "clips", clips)
    configs = [MimicConfig(**values, epochs=epochs, batch_size=4, val_fraction=0.0) for values in STEP1]
    device = torch.device("cpu")
    started = time.perf_counter()
    train_grid(teacher, files, configs, workdir / "grid", progress=False, device="cpu")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    train_grid(teacher, files, configs, workdir / "grid", progress=False, device="cpu")  # the cache is reused
    warm = time.perf_counter() - started
    without = step1_without_cache(teacher, files, configs, device)
    print("  step 1 done", file=sys.stderr, flush=True)
    return {"cold": cold, "warm": warm, "without": without, "clips": clips, "epochs": epochs,
            "configs": [c.name() for c in configs]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved rounds for 10 s clips, x10/seconds (at most x5) for shorter (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per model and length (default 1)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--clips", type=int, default=8, help="step-1 clips (1 s each; default 8)")
    parser.add_argument("--epochs", type=int, default=2, help="step-1 epochs (default 2)")
    args = parser.parse_args(argv)
    if min(args.threads, args.repeats, args.clips, args.epochs) < 1 or any(s <= 0 for s in args.seconds):
        parser.error("--threads, --repeats, --clips and --epochs must be >= 1 and --seconds > 0")

    from tabulate import tabulate

    from superb_redundancy.hub.install import install
    from superb_redundancy.models.architectures import write_architecture_checkpoint

    install()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_mimic_") as tmp:
        teacher = write_architecture_checkpoint(ARCH, Path(tmp) / f"{ARCH}.pt")
        rows, params = bench_models(teacher, Path(tmp), args.seconds, args.repeats, args.warmup)
        step1 = bench_step1(teacher, Path(tmp), args.clips, args.epochs)

    print(f"Mimic upstream vs original {ARCH} (random weights), CPU, batch 1, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {platform.machine()}; load (1-min average) at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("Parameters (ratio = mimic / original):")
    table = []
    for label in TIMED:
        n = params[label]
        table.append([label, f"{n:,}", f"{n / params['total']:.4f}", f"{n / params['inference']:.4f}",
                      f"{(n + HEAD_768) / (params['inference'] + HEAD_768):.4f}", f"{n + HEAD_768:,}"])
    print(tabulate(table, headers=["mimic upstream", "params",
                                   f"/ expert total {params['total']:,}", f"/ inference {params['inference']:,}",
                                   f"+KS head / inference+head {params['inference'] + HEAD_768:,}",
                                   "+KS head (paper's Table 1 count)"], tablefmt="github"))
    print("\nTime per clip (ratio = median over rounds of mimic / original in the same round):")
    table = [[f"{r['seconds']:g}", r["model"], r["rounds"], f"{r['original_ms']:.1f}", f"{r['mimic_ms']:.1f}",
              f"{r['ratio']:.3f}", f"{r['spread'][0]:.3f}-{r['spread'][1]:.3f}"] for r in rows]
    print(tabulate(table, headers=["audio s", "mimic upstream", "rounds", "original ms (median)", "mimic ms (median)",
                                   "time ratio", "ratio range"], tablefmt="github"))
    print(f"\nStep 1, {len(step1['configs'])} configurations ({', '.join(step1['configs'])}), {step1['clips']} clips "
          f"of 1 s, {step1['epochs']} epochs, batch 4, teacher {ARCH}:")
    table = [["without cache (teacher re-run every batch, epoch, configuration)", f"{step1['without']:.1f}", "1.000"],
             ["with cache, cold (builds it: one teacher pass)", f"{step1['cold']:.1f}",
              f"{step1['cold'] / step1['without']:.3f}"],
             ["with cache, already built", f"{step1['warm']:.1f}", f"{step1['warm'] / step1['without']:.3f}"]]
    print(tabulate(table, headers=["step 1", "seconds", "ratio to without"], tablefmt="github"))
    print(f"\ntook {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
