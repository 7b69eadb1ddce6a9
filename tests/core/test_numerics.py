"""Subnormal floats flushed to zero: in the thread that asks and the threads torch starts after it, by the commands
that train."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: 1e-30 * 1e-9 = 1e-39 is subnormal in float32 (the smallest normal is 1.18e-38)
_PROBE = """
import sys, torch
from superb_redundancy.core.numerics import flush_denormals
if sys.argv[1] == "flush":
    assert flush_denormals()
torch.set_num_threads(2)
one = torch.tensor([1e-30]) * 1e-9
many = torch.full((1 << 22,), 1e-30) * 1e-9  # large enough for torch to split it over both threads
print(int(one.item() != 0), int(many.count_nonzero().item()))
"""


@pytest.mark.parametrize("mode, expected", [("flush", "0 0"), ("keep", f"1 {1 << 22}")])
def test_subnormals_are_zero_in_every_thread_once_flushed(mode, expected):
    result = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == expected.split()


@pytest.mark.parametrize("argv, flushed", [
    (["main"], True),
    (["study", "run", "embedded_default"], True),
    (["mimic", "train", "--teacher", "t.pt", "--tiny-grid", "--corpus", "c", "--output-dir", "m"], True),
    (["heal", "-k", "pruned.pt", "--corpus", "c", "--output", "h.pt"], True),
    (["curves", "--expdir", "exp", "--output-dir", "c"], True),
    # the shipped model's record was computed without: its losses must reproduce
    (["pretrain", "--corpus", "c", "--output", "p.pt"], False),
    (["profile", "--arch", "wav2vec2_base"], False),  # latency is measured as torch computes by default
])
def test_the_commands_that_train_flush(argv, flushed):
    from superb_redundancy.cli import build_parser

    args, _ = build_parser().parse_known_args(argv)
    assert getattr(args, "flush_denormals", False) is flushed


def test_run_downstream_flushes_before_s3prl_starts(monkeypatch):
    """Our run_downstream.py flushes before s3prl's runner (and so torch's thread pool) starts."""
    import torch
    from s3prl import run_downstream

    from superb_redundancy.hub import feature_cache, install, padded_rnn, runner

    seen = []
    for module, name in ((install, "install"), (feature_cache, "enable"), (padded_rnn, "enable")):
        monkeypatch.setattr(module, name, lambda *a: None)  # nothing of s3prl's left patched in this process
    monkeypatch.setattr(torch, "set_flush_denormal", lambda mode: seen.append(("flush", mode)) or True)
    monkeypatch.setattr(run_downstream, "main", lambda: seen.append(("s3prl", None)))
    assert runner.main(["-m", "train", "-d", "speech_commands", "--device", "cpu"]) == 0
    assert seen == [("flush", True), ("s3prl", None)]
