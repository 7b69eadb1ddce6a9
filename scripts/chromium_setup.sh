#!/usr/bin/env bash
# Headless Chromium for the test that sorts the leaderboard page's columns in a real browser
# (tests/results/test_leaderboard.py). Instant when it is there; installed with apt when this is a Debian machine
# and we are root (CI), else a note: that test then skips and says why. SUPERB_REDUNDANCY_NO_CHROMIUM=1 skips this.
set -euo pipefail
[ "${SUPERB_REDUNDANCY_NO_CHROMIUM:-0}" = 1 ] && exit 0
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[chromium] not installed (needs root on Debian: apt-get install chromium); the browser test will skip"
  exit 0
fi
echo "[chromium] installing chromium for the leaderboard page's browser test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends chromium >/dev/null
echo "[chromium] done"
