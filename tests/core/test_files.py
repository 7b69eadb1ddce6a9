"""Atomic writes: an interrupted write leaves the old file intact and no temporary file behind."""

from __future__ import annotations

import pytest
import torch

from superb_redundancy.core.files import atomic_path, torch_save, write_json, write_text


def test_interrupted_write_keeps_the_old_content(tmp_path):
    target = write_text(tmp_path / "record.json", "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise KeyboardInterrupt  # killed mid-write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_successful_writes_replace(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text().strip() == '{\n "x": 1\n}'
    torch_save({"w": torch.ones(2)}, tmp_path / "sub" / "w.pt")
    assert torch.equal(torch.load(tmp_path / "sub" / "w.pt", weights_only=True)["w"], torch.ones(2))
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_loading_with_safe_globals_keeps_those_allowed_before(tmp_path):
    """A class allowed process-wide before (the compat layer's argparse.Namespace) stays allowed after a
    load_checkpoint that names it too: the second of two runner calls in one process loads s3prl's checkpoints."""
    import subprocess
    import sys

    script = f"""
import argparse, torch
from superb_redundancy.core.files import load_checkpoint, torch_save
path = {str(tmp_path / "exp.ckpt")!r}
torch_save({{"Args": argparse.Namespace(seed=1)}}, path)
torch.serialization.add_safe_globals([argparse.Namespace])
assert load_checkpoint(path, safe_globals=[argparse.Namespace])["Args"].seed == 1
print(argparse.Namespace in torch.serialization.get_safe_globals())
print(torch.load(path, weights_only=True)["Args"].seed)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "1"]
