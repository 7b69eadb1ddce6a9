"""Step 1's data path: how much of a training step waits for its batch, before and after the batched reads.

A teacher cache at Base width (d = 768, float16 as the study writes it) of 1-s clips (49 frames) with random values,
and the smallest mimicker of the paper's grid (linear N=1, z=32: the least compute per byte read, so the worst case
for the data path), trained at the paper's batch of 128 clips. Two ways to read a batch, timed in one run:

* before: one slice per clip and array, copied into a float32 array in a Python loop, then moved to the device
  (the trainer's reads until this change, kept here as the baseline);
* after: :meth:`superb_redundancy.distill.teacher_cache.TeacherCache.batches`: one indexed read per array, moved to
  the device as stored and converted and padded there, the next batch read in a background thread.

For each: the share of the step spent waiting for the batch (target: at most 10%), and the step time; the ratio
after / before of both. The batches are the same and so are the values (checked).

    .venv/bin/python benchmarks/bench_step1_data.py [--clips 4096] [--steps 40] [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

D, FRAMES, BATCH = 768, 49, 128


def write_cache(folder: Path, clips: int, seed: int = 0) -> Path:
    """A cache in the trainer's format (features, the final layer, the index, the manifest) with random values."""
    from superb_redundancy.distill.teacher_cache import CACHE_FORMAT, CACHE_VERSION

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    total = clips * FRAMES
    for name in ("features.npy", "layer_11.npy"):
        array = np.lib.format.open_memmap(folder / name, mode="w+", dtype=np.float16, shape=(total, D))
        for start in range(0, total, 65536):
            array[start:start + 65536] = rng.standard_normal((min(65536, total - start), D), dtype=np.float32)
        array.flush()
        del array
    index = np.stack([np.arange(clips) * FRAMES, np.full(clips, FRAMES), np.arange(clips)], axis=1)
    np.save(folder / "index.npy", index.astype(np.int64))
    manifest = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "layers": [11], "dtype": "float16",
                "teacher": {"hidden_size": D, "num_layers": 12, "family": "wav2vec2", "sha256": "random"},
                "num_clips": clips, "num_frames": total}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def read_before(cache, ids, device):
    """The trainer's reads before this change: a slice per clip and array, in a Python loop (the baseline)."""
    lengths = torch.as_tensor(cache.lengths[list(ids)])
    frames = int(lengths.max())

    def gather(array):
        out = np.zeros((len(ids), frames, array.shape[1]), dtype=np.float32)
        for b, i in enumerate(ids):
            start, length = int(cache.offsets[i]), int(cache.lengths[i])
            out[b, :length] = array[start:start + length]
        return torch.from_numpy(out).to(device)

    mask = (torch.arange(frames)[None, :] >= lengths[:, None]).to(device)
    return gather(cache.features), mask, [gather(cache.hidden[11])]


def train(batches_iter, model, optimizer, steps: int) -> tuple[float, float]:
    """(seconds waiting for batches, seconds in all) over ``steps`` steps."""
    from superb_redundancy.distill.loss import masked_mse

    waited, began = 0.0, time.perf_counter()
    iterator = iter(batches_iter)
    for _ in range(steps):
        start = time.perf_counter()
        features, mask, (target,) = next(iterator)
        waited += time.perf_counter() - start
        loss = masked_mse(model(features, mask)[-1], target, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if model.parameters().__next__().is_cuda:
        torch.cuda.synchronize()
    return waited, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4096, help="clips in the cache (default 4096: 600 MB on disk)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per way (default 30)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.modules import Mimicker
    from superb_redundancy.distill.teacher_cache import TeacherCache

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_step1_") as tmp:
        cache = TeacherCache(write_cache(Path(tmp) / "cache", args.clips))
        order = np.random.default_rng(0).permutation(args.clips)
        batches = [order[s:s + BATCH] for s in range(0, len(order), BATCH)][: args.steps + 1]
        first_before, first_after = read_before(cache, batches[0], device), cache.batch(batches[0], [11], device)
        same = all(torch.equal(a, b) for a, b in zip([first_before[0], first_before[1], *first_before[2]],
                                                     [first_after[0], first_after[1], *first_after[2]]))
        results = {}
        for name, make in (("before", lambda: (read_before(cache, b, device) for b in batches)),
                           ("after", lambda: cache.batches(batches, [11], device))):
            torch.manual_seed(0)
            model = Mimicker.from_config(MimicConfig(kind="linear", n_layers=1, z=32), D).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            train(make(), model, optimizer, 2)  # warm-up
            results[name] = train(make(), model, optimizer, args.steps)
    print(f"step 1 data path: d={D}, linear N=1 z=32, batch {BATCH} x {FRAMES} frames, {args.steps} steps, "
          f"{args.device}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print(f"the two reads give the same batch: {same}")
    for name, (waited, total) in results.items():
        print(f"{name:>6}: {1e3 * total / args.steps:7.1f} ms a step, {100 * waited / total:5.1f}% of it waiting for "
              f"the batch")
    (wait_b, total_b), (wait_a, total_a) = results["before"], results["after"]
    print(f"after / before: step time {total_a / total_b:.2f}, waiting {wait_a / max(wait_b, 1e-9):.2f}")


if __name__ == "__main__":
    main()
