#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the embedded default: synthetic corpus, tiny models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 SUPERB_REDUNDANCY_OFFLINE=1
exec .venv/bin/superb-redundancy main "$@"
