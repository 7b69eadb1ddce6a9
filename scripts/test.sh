#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: two pytest-xdist workers (one per core of a 2-core CI machine),
# the journeys and the tests that reuse the main job's corpus together in one (--dist loadgroup, their xdist_group);
# extra arguments go to pytest (-n 0: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 SUPERB_REDUNDANCY_OFFLINE=1
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
