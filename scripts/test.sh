#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 SUPERB_REDUNDANCY_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
