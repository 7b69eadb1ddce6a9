"""s3prl's experiment checkpoints, written as our runner writes them (hub/atomic_states.py): at every moment the
experiment folder holds one whole ``states-*.ckpt`` that ``-a`` resumes from. s3prl 0.4.18 removes the old one
before it writes the new one in place, so a kill between the two (or during the write) left nothing to resume."""

from __future__ import annotations

import argparse

import pytest
import torch

from superb_redundancy.hub import atomic_states
from superb_redundancy.results.experiment import resumable_states


@pytest.fixture
def s3prl_runner(monkeypatch):
    from s3prl.downstream import runner

    monkeypatch.setattr(runner, "os", runner.os)  # restored afterwards: enable() patches the module
    monkeypatch.setattr(runner, "torch", runner.torch)
    atomic_states.enable()
    atomic_states.enable()  # idempotent
    return runner


def _save_as_s3prl_does(runner, expdir, step: int) -> None:
    """check_ckpt_num's removal of the oldest beyond max_keep 1, then the save (s3prl/downstream/runner.py)."""
    for old in expdir.glob("states-*.ckpt"):
        runner.os.remove(old)
    state = {"Step": step, "Args": argparse.Namespace(seed=1), "Downstream": {"w": torch.full((4,), float(step))}}
    runner.torch.save(state, str(expdir / f"states-{step}.ckpt"))


def test_the_old_checkpoint_goes_only_once_the_new_one_is_whole(s3prl_runner, tmp_path):
    _save_as_s3prl_does(s3prl_runner, tmp_path, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["states-10.ckpt"]
    s3prl_runner.os.remove(tmp_path / "states-10.ckpt")
    assert (tmp_path / "states-10.ckpt").is_file()  # held back until the next one is in place
    _save_as_s3prl_does(s3prl_runner, tmp_path, 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states-20.ckpt"]
    assert resumable_states(tmp_path).name == "states-20.ckpt"


def test_a_kill_during_the_write_leaves_the_last_whole_checkpoint(s3prl_runner, tmp_path, monkeypatch):
    _save_as_s3prl_does(s3prl_runner, tmp_path, 10)
    real_save = torch.save

    def dies_mid_write(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill arrives during the write

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        _save_as_s3prl_does(s3prl_runner, tmp_path, 20)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states-10.ckpt"]  # no half file, the old one kept
    assert torch.load(tmp_path / "states-10.ckpt", weights_only=False)["Step"] == 10


def test_a_broken_checkpoint_from_before_is_not_resumed_from(tmp_path):
    torch.save({"Step": 10, "Args": argparse.Namespace(seed=1)}, tmp_path / "states-10.ckpt")
    (tmp_path / "states-20.ckpt").write_bytes(b"PK\x03\x04 truncated")  # written in place by s3prl and killed
    assert resumable_states(tmp_path).name == "states-10.ckpt"
    assert not (tmp_path / "states-20.ckpt").exists()
    assert resumable_states(tmp_path / "missing") is None
