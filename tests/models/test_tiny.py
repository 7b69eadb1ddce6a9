"""Tiny checkpoints: stock formats, loadable by s3prl's own loaders, sized and strided as documented."""

from __future__ import annotations

import pytest
import torch

from superb_redundancy.models.families import family_of_checkpoint
from superb_redundancy.models.tiny import build_tiny_checkpoint, write_tiny_checkpoint


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "data2vec"])
def test_stock_loader_accepts_tiny_checkpoint(family, tiny_ckpts, hub):
    checkpoint = torch.load(tiny_ckpts[family], weights_only=True)
    assert family_of_checkpoint(checkpoint).name == family
    expert = getattr(hub, f"{family}_local")(ckpt=str(tiny_ckpts[family])).eval()
    assert 100_000 <= sum(p.numel() for p in expert.parameters()) <= 200_000
    with torch.no_grad():
        states = expert([torch.randn(32000)])["hidden_states"]
    assert len(states) == 4 and states[0].shape == (1, 32000 // 320 - 1, 64)  # total conv stride 320


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = write_tiny_checkpoint("wav2vec2", tmp_path / "a.pt", seed=3)
    b = write_tiny_checkpoint("wav2vec2", tmp_path / "b.pt", seed=3)
    wa, wb = (torch.load(p, weights_only=True)["model_weight"] for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    other = build_tiny_checkpoint("wav2vec2", seed=4)["model_weight"]
    assert not all(torch.equal(wa[k], other[k]) for k in wa)


def test_unknown_family():
    with pytest.raises(ValueError, match=r"unknown family 'wav2vec3'; valid: \['wav2vec2', 'hubert', 'wavlm', 'data2vec'\]"):
        build_tiny_checkpoint("wav2vec3")
