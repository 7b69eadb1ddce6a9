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
