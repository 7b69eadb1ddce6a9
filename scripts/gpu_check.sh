#!/usr/bin/env bash
# The checks that need a GPU, in one short run (< 5 min on one GPU): the test suite's GPU-marked tests (pruned and
# mimic upstreams on cuda equal cpu within a stated tolerance), run_downstream.py train + evaluate of a pruned tiny
# model on cuda, CUDA-event latency of the Base-size original, pruned (3/12) and mimic upstreams, interleaved, the
# paper study's estimate with this GPU measured (--calibrate), and step 1 of the smallest real-size mimicker (d 768,
# z 32, batch 128) with its data path's share of the step.
# Without a CUDA device it says so and exits 0. Output: stdout (and, where $OUT is set, $OUT/gpu_check.log).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
log() { echo "[gpu_check] $*"; }
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  log "no CUDA device here: skipped (run it where torch.cuda.is_available())"
  exit 0
fi
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(n for n in ('s3prl', 'soundfile', 'superb_redundancy', 'pytest', 'tabulate', 'yaml') if u.find_spec(n) is None))")
if [ -n "$missing" ]; then
  log "missing Python packages: $missing (bash scripts/bootstrap.sh installs the stack)"
  exit 1
fi
export HF_HUB_OFFLINE=1 SUPERB_REDUNDANCY_OFFLINE=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -c "import torch; print('[gpu_check] device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

log "1/5 GPU-marked tests"
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests

log "2/5 run_downstream.py train + evaluate of a pruned tiny model on cuda"
"$PY" -m superb_redundancy.cli corpus --root "$work/data" --tasks speech_commands --no-progress >/dev/null
"$PY" -m superb_redundancy.cli tiny-models --output-dir "$work/models" >/dev/null
printf 'base: %s\ndrop_layers: [1]\n' "$work/models/tiny_wav2vec2.pt" > "$work/spec.yaml"
overrides=$("$PY" -m superb_redundancy.cli overrides -d speech_commands --root "$work/data")
"$PY" run_downstream.py -m train -u pruned_wav2vec2 -g "$work/spec.yaml" -d speech_commands --device cuda \
  -c superb_redundancy/downstream_configs/speech_commands/tiny.yaml -p "$work/exp" -o "$overrides" > "$work/train.log" 2>&1
"$PY" run_downstream.py -m evaluate -e "$work/exp/states-30.ckpt" --device cuda > "$work/evaluate.log" 2>&1
grep -h "test at step" "$work/exp/log.log"

log "3/5 CUDA-event latency at batch 1, 1 s of audio: wav2vec2 Base original, pruned 3/12, mimic (linear N=1 z=32)"
"$PY" - "$work" <<'PY'
import sys
from pathlib import Path

import superb_redundancy  # noqa: F401  (the compat hook)
from superb_redundancy.models.architectures import write_architecture_checkpoint
from superb_redundancy.mimic.artifact import load_mimic_artifact
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.mimic.config import MimicConfig
from superb_redundancy.compute.latency import interleaved_latency
from superb_redundancy.compute.macs import count_macs
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import build_pruned
from superb_redundancy.hub.install import build_upstream

work = Path(sys.argv[1])
base = write_architecture_checkpoint("wav2vec2_base", work / "base.pt")
models = {
    "original": build_upstream("wav2vec2_local", str(base)),
    "pruned 3/12": build_pruned("wav2vec2", PruneSpec(base=str(base), drop_layers=[3, 4, 5])),
    "mimic L N=1 z=32": load_mimic_artifact(init_artifact(str(base), MimicConfig(kind="linear", n_layers=1, z=32),
                                                          work / "mimic.pt")),
}
macs = {name: count_macs(model.cuda(), [1.0])[0]["macs"] for name, model in models.items()}
times = interleaved_latency(models, seconds=1.0, repeats=100, warmup=30, device="cuda")
print(f"{'upstream':<18} {'median ms':>10} {'IQR ms':>8} {'time ratio':>11} {'MACs ratio':>11}")
for name, t in times.items():
    print(f"{name:<18} {t['median_s'] * 1e3:>10.2f} {t['iqr_s'] * 1e3:>8.2f} "
          f"{t['median_s'] / times['original']['median_s']:>11.3f} {macs[name] / macs['original']:>11.3f}")
PY
log "4/5 the paper study's cost with this GPU measured"
"$PY" -m superb_redundancy.cli study status paper --estimate --calibrate --device cuda 2>/dev/null \
  | head -12

log "5/5 step 1 at real size: the data path's share of a step (linear N=1 z=32, d 768, batch 128)"
"$PY" benchmarks/bench_step1_data.py --device cuda --clips 4096 --steps 30
log "done"
