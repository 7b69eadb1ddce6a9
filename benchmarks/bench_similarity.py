"""Similarity analysis overhead: the three matrices including the forward passes, over the forward passes alone.

Real-size wav2vec2 Base architecture (12 layers, d 768) with random weights, 1 s clips, on this machine's CPU.
Both timings run in this process, interleaved (forward-only, then full analysis, repeated), and the ratio of
medians is printed with the target (<= 1.25). Usage:

    python benchmarks/bench_similarity.py [--clips 64] [--repeats 3] [--pool mean]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool", default="mean", choices=["mean", "flatten", "frames"])
    parser.add_argument("--batch-size", type=int, default=32, help="similarity batch (samples)")
    args = parser.parse_args(argv)

    from superb_redundancy.analysis.hidden_states import iter_hidden_states
    from superb_redundancy.analysis.report import SimilaritySettings, analyse
    from superb_redundancy.core.audio import list_audio
    from superb_redundancy.hub.install import install
    from superb_redundancy.models.architectures import write_architecture_checkpoint

    install()
    import s3prl.hub

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(args.clips):
            soundfile.write(tmp / f"{i:04d}.wav", (0.1 * rng.standard_normal(16000)).astype("float32"), 16000)
        files = list_audio(tmp)
        ckpt = write_architecture_checkpoint("wav2vec2_base", tmp / "base.pt")
        upstream = s3prl.hub.wav2vec2_local(ckpt=str(ckpt)).eval()
        settings = SimilaritySettings(pool=args.pool, batch_size=args.batch_size, forward_batch_size=8)

        def forward_only() -> float:
            start = time.perf_counter()
            for _ in iter_hidden_states(upstream, files, settings.forward_batch_size, progress=False):
                pass
            return time.perf_counter() - start

        def full() -> float:
            start = time.perf_counter()
            analyse(upstream, files, settings, progress=False)
            return time.perf_counter() - start

        forward_only()  # warm-up
        forward_times, full_times = [], []
        for _ in range(args.repeats):
            forward_times.append(forward_only())
            full_times.append(full())
    ratio = statistics.median(full_times) / statistics.median(forward_times)
    print(f"wav2vec2 Base (random weights), {args.clips} x 1 s clips, pool={args.pool}, "
          f"similarity batch {args.batch_size}, threads {torch.get_num_threads()}, CPU")
    print(f"forward passes alone      median {statistics.median(forward_times):.2f} s  {['%.2f' % t for t in forward_times]}")
    print(f"forward + 3 matrices      median {statistics.median(full_times):.2f} s  {['%.2f' % t for t in full_times]}")
    print(f"ratio (target <= 1.25):   {ratio:.3f}  {'OK' if ratio <= 1.25 else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
