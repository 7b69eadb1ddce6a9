#!/usr/bin/env bash
# Create .venv and install the stack into it. Idempotent: skipped when .venv already holds what this script,
# setup.cfg and setup.py ask for (a stamp of their hash), so the README commands can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
want=$(cat setup.cfg setup.py scripts/bootstrap.sh | sha1sum | cut -d' ' -f1)
stamp="$VENV/.superb_redundancy_stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[bootstrap] installing the stack into $VENV (a few minutes on a fresh machine)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q "setuptools>=64" wheel
# torch 2.14.1 (a CUDA build that also runs on CPU): torchaudio 2.11's library links libc10_cuda.so, so the
# CPU-only wheels fail to load it.
pip install -q "torch==2.14.1"
# torchaudio's metadata names no torch version; --no-deps keeps pip from swapping the torch above.
# 2.11.0: its abi3 library loads with torch 2.14.1 (checked).
pip install -q --no-deps "torchaudio==2.11.0"
# torchaudio >= 2.9 reads audio through TorchCodec; 0.17 is the release built against torch 2.14. Without
# FFmpeg's libraries it cannot decode, and the compat layer reads wav/flac with soundfile instead.
pip install -q "torchcodec==0.17.0"
pip install -q --no-build-isolation -e ".[test,docs]"  # docs: mkdocs, whose strict build is a test
echo "$want" > "$stamp"
echo "[bootstrap] done"
