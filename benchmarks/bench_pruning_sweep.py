"""Pruning-curve sweep: shared computation (SharedPrunedForward) over running every variant end to end.

Real-size wav2vec2 Base architecture (12 layers, d 768, FFN 3072, 12 heads, 512-channel CNN; random weights, from
superb_redundancy.models.architectures), loaded through s3prl's stock ``wav2vec2_local``; a Featurizer over its 13 hidden
states with random layer weights and a random linear head over the mean-pooled weighted sum (12 classes); random
1-s clips. The sweep is the paper's: 4 objectives (forward, backward, BI, kNN-BI; orders from the similarity of
these clips, computed before timing) x every amount p = 0..11 = 48 variants.

- naive: each (objective, amount) separately, its pruned model run end to end (the stock expert with the dropped
  layers replaced by DroppedLayer, as build_pruned builds it; no checkpoint reload is timed) on every batch;
- shared: one pass per batch through SharedPrunedForward, then the Featurizer and head per distinct variant.

The logits of every variant must be identical (asserted, bit for bit); prints the time ratio shared / naive
(target <= 0.5), also against a naive sweep that skips the duplicate variants (p = 0 and objectives that agree).
The shared sweep is timed before and after the naive one and the slower run is kept.

    .venv/bin/python benchmarks/bench_pruning_sweep.py [--clips 8] [--batch 8] [--threads 2]

About 4 minutes on 2 cores at the defaults: the naive sweep dominates (48 end-to-end runs of a 95 M-parameter
model, ~0.4 s per clip each), so the clip count is kept at one batch of 8; more clips scale both sides alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

TARGET = 0.5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="random 1-s clips (default 8)")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from superb_redundancy.hub.install import install

    install()
    import s3prl.hub
    from s3prl.upstream.interfaces import Featurizer

    from superb_redundancy.analysis.blocks import detect_blocks
    from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings
    from superb_redundancy.analysis.similarity import SimilarityAccumulator, pool
    from superb_redundancy.models.families import get_family
    from superb_redundancy.pruning.curves.orders import pruning_orders, variant_masks
    from superb_redundancy.pruning.curves.settings import PAPER_OBJECTIVES
    from superb_redundancy.pruning.curves.shared_forward import SharedPrunedForward, as_upstream_output, layers_dropped

    try:
        from superb_redundancy.models.architectures import write_architecture_checkpoint
    except ImportError:  # pragma: no cover - the architectures module is another engineer's; fall back
        write_architecture_checkpoint = None

    family = get_family("wav2vec2")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wav2vec2_base.pt"
        if write_architecture_checkpoint is not None:
            write_architecture_checkpoint("wav2vec2_base", path, seed=args.seed)
        else:
            from superb_redundancy.models.config import ModelConfig
            from superb_redundancy.models.tiny import build_checkpoint

            config = ModelConfig(num_layers=12, dim=768, ffn_dim=3072, heads=12, conv_dim=512, conv_pos=128,
                                 conv_pos_groups=16)
            torch.save(build_checkpoint("wav2vec2", config, args.seed), path)
        expert = s3prl.hub.wav2vec2_local(ckpt=str(path)).eval()
    num_layers = len(family.layers(expert))

    torch.manual_seed(args.seed)
    featurizer = Featurizer(upstream=expert, feature_selection="hidden_states", upstream_device="cpu").eval()
    with torch.no_grad():
        featurizer.weights.copy_(torch.randn(num_layers + 1))
    head = torch.nn.Linear(featurizer.output_dim, 12).eval()
    clips = [0.1 * torch.randn(16000) for _ in range(args.clips)]
    batches = [clips[i:i + args.batch] for i in range(0, len(clips), args.batch)]

    def logits(wavs, upstream_output):
        features = featurizer(wavs, upstream_output)  # list of [T, D]
        return head(torch.stack([f.mean(0) for f in features]))

    engine = SharedPrunedForward(expert, family)
    # the score objectives' orders: similarity of these clips on the unpruned model (not timed)
    settings = SimilaritySettings()
    accumulator = SimilarityAccumulator(k=min(settings.k, args.clips - 1), batch_size=max(args.clips, 16))
    full = tuple([True] * num_layers)
    with torch.no_grad():
        for wavs in batches:
            for _, hidden in engine.run(wavs, [full]):
                accumulator.update([pool(h, None, "mean") for h in hidden])
    matrices = accumulator.compute()
    report = SimilarityReport(matrices, {m: detect_blocks(v) for m, v in matrices.items()}, settings,
                              accumulator.num_samples)
    orders = pruning_orders(PAPER_OBJECTIVES, num_layers, report)
    variants = variant_masks(orders, num_layers)
    masks = list(dict.fromkeys(variants.values()))
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}; "
          f"wav2vec2 Base ({num_layers} layers), {args.clips} x 1 s clips in batches of {args.batch}")
    print(f"{len(variants)} variants (4 objectives x {num_layers} amounts), {len(masks)} distinct; orders: "
          + "; ".join(f"{o} {order}" for o, order in orders.items()))

    with torch.no_grad():  # warm-up (allocator, oneDNN primitives) for both paths
        for _, hidden in engine.run(batches[0], [full]):
            logits(batches[0], as_upstream_output(hidden))

    def shared_sweep():
        out = {mask: [] for mask in masks}
        engine.layer_calls = 0
        start = time.perf_counter()
        with torch.no_grad():
            for wavs in batches:
                for mask, hidden in engine.run(wavs, masks):
                    out[mask].append(logits(wavs, as_upstream_output(hidden)))
        return time.perf_counter() - start, {m: torch.cat(v) for m, v in out.items()}, engine.layer_calls

    t_shared_1, shared, extra_layers = shared_sweep()
    print(f"shared: {t_shared_1:.1f} s ({len(batches)} full passes + {extra_layers // len(batches)} extra layer "
          f"calls per batch, vs {sum(sum(m) for m in variants.values())} layer calls per batch naive)", flush=True)

    naive, per_variant = {}, {}
    start = time.perf_counter()
    with torch.no_grad():
        for key, mask in variants.items():
            t0 = time.perf_counter()
            dropped = [i for i, keep in enumerate(mask) if not keep]
            with layers_dropped(expert, family, dropped) as upstream:
                naive[key] = torch.cat([logits(wavs, upstream(wavs)) for wavs in batches])
            per_variant[key] = time.perf_counter() - t0
    t_naive = time.perf_counter() - start
    t_shared_2, shared_again, _ = shared_sweep()
    t_shared = max(t_shared_1, t_shared_2)

    mismatched = [key for key, mask in variants.items() if not torch.equal(naive[key], shared[mask])]
    mismatched += [("rerun", m) for m in masks if not torch.equal(shared[m], shared_again[m])]
    if mismatched:
        print(f"FAIL: logits differ for {mismatched}")
        return 1
    first = {}
    for key, mask in variants.items():
        first.setdefault(mask, key)
    t_naive_distinct = sum(per_variant[key] for key in first.values())
    ratio = t_shared / t_naive
    print(f"naive end to end: {t_naive:.1f} s for {len(variants)} variants "
          f"({t_naive_distinct:.1f} s of it for the {len(masks)} distinct ones)")
    print(f"shared: {t_shared_1:.1f} s / {t_shared_2:.1f} s (kept {t_shared:.1f} s); identical logits for all "
          f"{len(variants)} variants")
    print(f"ratio shared / naive = {ratio:.3f} (target <= {TARGET}); "
          f"vs the distinct-variant naive sweep {t_shared / t_naive_distinct:.3f}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
