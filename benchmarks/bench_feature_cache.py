"""The feature cache: an ASR head trained through our run_downstream.py with and without it, same everything else.

The embedded default's ASR setting (superb_redundancy/downstream_configs/asr/demo.yaml) on the shipped 8-layer model
(superb_redundancy/models/ks_w2v2_8l.pt) and the synthetic corpus's 400 training sentences, cut to ``--steps``
steps (each 16 sentences, so 25 steps are one epoch), evaluated on the dev sentences at the end. Each mode runs
in a fresh process with ``--threads`` threads, ``runner.feature_cache_gb`` 0 (off) then 2 (on); the order
alternates over ``--rounds`` rounds and each mode keeps its median training time. Prints the time ratio
on / off and both dev WERs (the cache changes float rounding only, so they should agree to a fraction of a
point).

    .venv/bin/python benchmarks/bench_feature_cache.py [--steps 300] [--rounds 1] [--threads 1] [--corpus DIR]

About 2 minutes at the defaults on one core (the corpus's ASR part is generated into a temporary folder unless
``--corpus`` names one that has it, e.g. work/study/data after the main job).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _train(mode: str, gib: float, args, data: str, folder: Path) -> tuple[float, float, str]:
    """(seconds, dev WER, the cache's summary line) of one training run in a fresh process."""
    steps = args.steps
    overrides = (f"{data},,config.runner.total_steps={steps},,config.runner.eval_step={steps},,"
                 f"config.runner.save_step={steps},,config.runner.feature_cache_gb={gib},,args.seed=1337")
    command = [sys.executable, "-m", "superb_redundancy.hub.runner", "-m", "train", "-u", "wav2vec2_local", "-k",
               str(ROOT / "superb_redundancy" / "models" / "ks_w2v2_8l.pt"), "-d", "asr", "-c",
               str(ROOT / "superb_redundancy" / "downstream_configs" / "asr" / "demo.yaml"), "-p", str(folder / mode), "--device", "cpu",
               "-o", overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "SUPERB_REDUNDANCY_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the {mode} run failed:\n{result.stderr[-3000:]}")
    wers = re.findall(r"dev-clean wer: ([0-9.]+)", result.stdout + result.stderr)
    summary = [line for line in result.stderr.splitlines() if "clip passes from memory" in line]
    return seconds, float(wers[-1]), summary[-1].split("] ", 1)[-1] if summary else "no cache"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300: 12 epochs)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, alternating (default 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpus", default=None, help="a corpus root with LibriSpeech/ and len_for_bucket/")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from superb_redundancy.data import tasks

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else Path(tmp) / "corpus"
        if not (corpus / "LibriSpeech").is_dir():
            from superb_redundancy.data.corpus.generate import generate

            generate(corpus, tasks=["asr"], progress=False)
        data = tasks.format_overrides(tasks.data_overrides("asr", corpus))
        times: dict[str, list[float]] = {"off": [], "on": []}
        wer, summary = {}, {}
        for round_ in range(args.rounds):
            for mode in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                seconds, wer[mode], line = _train(mode, 2 if mode == "on" else 0, args, data,
                                                  Path(tmp) / f"round{round_}")
                times[mode].append(seconds)
                summary[mode] = line
                print(f"round {round_ + 1} cache {mode}: {seconds:.1f} s, dev WER {wer[mode]:.2f}", flush=True)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"ASR demo setting, {args.steps} steps of 16 sentences, {args.threads} thread(s); the cache: {summary['on']}")
    print(f"time with the cache / without: {on / off:.2f} ({on:.1f} s / {off:.1f} s, process start and the dev "
          f"evaluation included); dev WER {wer['on']:.2f} with, {wer['off']:.2f} without")
    return 0


if __name__ == "__main__":
    sys.exit(main())
