#!/usr/bin/env bash
# The paper study at real size on this machine's CPU: wav2vec2 Base and Large with random weights on a few hundred
# clips, every stage but the curves, then what each kind of run took beside what `study status --estimate`
# predicts (scripts/rehearse_paper.py). About 30 minutes on 2 cores; needs ~8 GB of memory and ~10 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 SUPERB_REDUNDANCY_OFFLINE=1
exec .venv/bin/python scripts/rehearse_paper.py "$@"
