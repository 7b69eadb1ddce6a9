"""The ASR head's training step on a CPU: s3prl's packed LSTM against the padded one, subnormal floats kept or flushed.

s3prl's own pieces as its runner puts them together for the embedded default's ASR setting
(superb_redundancy/downstream_configs/asr/demo.yaml): the shipped 8-layer model (superb_redundancy/models/ks_w2v2_8l.pt) behind
our feature cache, s3prl's Featurizer (a learnt weighted sum of the 9 hidden states) and s3prl's ASR
DownstreamExpert (a 128-unit BiLSTM with CTC), trained with Adam at 3e-3 and gradient clipping at 1 on the
synthetic corpus's 400 training sentences in s3prl's length buckets of 16. Four modes, each in a fresh process
with ``--threads`` threads and the same seed and batches:

* ``packed``: s3prl as it is (its packed LSTM, subnormals kept): the baseline;
* ``packed+ftz``: subnormal floats flushed to zero (superb_redundancy/core/numerics.py), as our commands do;
* ``padded``: ``runner.padded_rnn`` (superb_redundancy/hub/padded_rnn.py) alone;
* ``padded+ftz``: both, as the main job trains it.

The first epoch (25 steps) fills the feature cache and is not timed; the next ``--steps`` are. Prints each mode's
milliseconds per step, its ratio to the baseline, and how far each mode's losses strayed from the baseline's
over all steps (float rounding, so a small fraction of the loss).

    .venv/bin/python benchmarks/bench_asr_head.py [--steps 200] [--threads 1] [--corpus DIR]

About 3 minutes at the defaults on one core (the corpus's ASR part is generated into a temporary folder unless
``--corpus`` names one that has it, e.g. work/study/data after the main job).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("packed", "packed+ftz", "padded", "padded+ftz")
WARM_STEPS = 25  # one epoch of 400 sentences in batches of 16: every clip's features are then in the cache


def _train(mode: str, corpus: Path, steps: int) -> dict:
    """One mode's training in this process: its step times and losses."""
    import torch
    import yaml

    if mode.endswith("+ftz"):
        from superb_redundancy.core.numerics import flush_denormals

        flush_denormals()  # before torch starts its threads
    torch.manual_seed(1337)
    import s3prl.hub
    from s3prl.downstream.asr.expert import DownstreamExpert
    from s3prl.upstream.interfaces import Featurizer

    from superb_redundancy.hub.feature_cache import FeatureCache
    from superb_redundancy.hub.install import install
    from superb_redundancy.hub.padded_rnn import adopt

    install()
    upstream = getattr(s3prl.hub, "wav2vec2_local")(ckpt=str(ROOT / "superb_redundancy" / "models" /
                                                              "ks_w2v2_8l.pt")).eval()
    cache = FeatureCache(upstream, "hidden_states", 2 ** 31)
    featurizer = Featurizer(cache, upstream_device="cpu")
    config = yaml.safe_load((ROOT / "superb_redundancy" / "downstream_configs" / "asr" / "demo.yaml").read_text())
    expert_config = config["downstream_expert"]
    expert_config["datarc"].update(libri_root=str(corpus / "LibriSpeech"), bucket_file=str(corpus / "len_for_bucket"),
                                   dict_path=str(ROOT / "superb_redundancy" / "downstream_configs" / "asr" / "char.dict"))
    expert = DownstreamExpert(featurizer.output_dim, featurizer.downsample_rate, expert_config, expdir=".")
    if mode.startswith("padded"):
        assert adopt(expert) == 1
    parameters = list(featurizer.parameters()) + list(expert.parameters())
    optimizer = torch.optim.Adam(parameters, lr=3e-3)
    loader = expert.get_dataloader("train")
    times, losses, step = [], [], 0
    while step < WARM_STEPS + steps:
        for wavs, labels, filenames in loader:
            start = time.perf_counter()
            with torch.no_grad():
                features = cache([torch.as_tensor(w) for w in wavs])
            loss = expert("train", featurizer([torch.as_tensor(w) for w in wavs], features), labels, filenames,
                          collections.defaultdict(list))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            if step >= WARM_STEPS:
                times.append(time.perf_counter() - start)
            losses.append(loss.item())
            step += 1
            if step == WARM_STEPS + steps:
                break
    return {"times": times, "losses": losses}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per mode, after one untimed epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpus", default=None, help="a corpus root with LibriSpeech/ and len_for_bucket/")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one mode, in the child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.mode:
        Path(args.out).write_text(json.dumps(_train(args.mode, Path(args.corpus), args.steps)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus).resolve() if args.corpus else Path(tmp) / "corpus"
        if not (corpus / "LibriSpeech").is_dir():
            from superb_redundancy.data.corpus.generate import generate

            generate(corpus, tasks=["asr"], progress=False)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
               "HF_HUB_OFFLINE": "1", "SUPERB_REDUNDANCY_OFFLINE": "1"}
        results = {}
        for mode in MODES:
            out = Path(tmp) / f"{mode}.json"
            command = [sys.executable, __file__, "--mode", mode, "--out", str(out), "--corpus", str(corpus),
                       "--steps", str(args.steps)]
            result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"the {mode} run failed:\n{result.stderr[-3000:]}")
            results[mode] = json.loads(out.read_text())
            print(f"{mode}: {1000 * sum(results[mode]['times']) / args.steps:.1f} ms a step", flush=True)
    base = sum(results["packed"]["times"])
    print(f"ASR demo head, {args.steps} timed steps of 16 sentences after a {WARM_STEPS}-step epoch, "
          f"{args.threads} thread(s); time / s3prl's packed LSTM with subnormals kept; the relative loss difference "
          "from it at the first step and the largest over all steps (rounding grows as training goes on); the mean "
          "loss of the last epoch:")
    reference = results["packed"]["losses"]
    for mode in MODES:
        losses = results[mode]["losses"]
        ratio = sum(results[mode]["times"]) / base
        drift = [abs(a - b) / abs(b) for a, b in zip(losses, reference)]
        last = sum(losses[-WARM_STEPS:]) / WARM_STEPS
        print(f"  {mode:<11} {ratio:.2f}   first step {drift[0]:.1e}, at most {max(drift):.1e}   last epoch {last:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
