"""The front end's CNN features kept per clip (superb_redundancy.distill.frontend.FrontendCache) in a store that
the mimic runs of a study share."""

from __future__ import annotations

import pytest
import torch

from superb_redundancy.hub.feature_cache import clip_key
from superb_redundancy.mimic.artifact import hub_entry_local
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.mimic.config import MimicConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_store_serves_the_next_run_the_clips_computed_without_padding(tiny_ckpts, tmp_path):
    """Run 1 computes a, b (one length) and c (alone), and d padded beside a longer e: persist() stores a, b, c, e
    but not d, whose frames depend on its batch. Run 2 (another mimicker of the same teacher) reads them: a batch
    of a, b, c runs no CNN and gives run 1's values bit for bit; d is computed again."""
    teacher = tiny_ckpts["wav2vec2"]
    one = hub_entry_local(str(init_artifact(teacher, MimicConfig.tiny(), tmp_path / "one.pt"))).eval()
    two = hub_entry_local(str(init_artifact(teacher, MimicConfig.tiny(kind="transformer"), tmp_path / "two.pt"))).eval()
    store = tmp_path / "store"
    first = one.cache_frozen_part(2 ** 30, store)
    torch.manual_seed(0)
    a, b, c, d, e = torch.randn(8000), torch.randn(8000), torch.randn(6000), torch.randn(5000), torch.randn(7000)
    with torch.no_grad():
        one([a, b]), one([c]), one([d, e])
    assert first.persist() == 4 and first.persist() == 0 and len(list(store.iterdir())) == 1
    second = two.cache_frozen_part(2 ** 30, store)
    assert second.loaded == 4 and "4 read from cnn-" in second.summary()
    cnn_batches = []
    two.frontend.feature_extractor.register_forward_hook(lambda m, args, out: cnn_batches.append(len(args[0])))
    with torch.no_grad():
        two([a, b, c])
        assert cnn_batches == []
        for clip in (a, b, c):
            assert torch.equal(second._store[clip_key(clip)], first._store[clip_key(clip)])
        two([d])
    assert cnn_batches == [1]
    third = two.cache_frozen_part(2 ** 30, tmp_path / "elsewhere")  # another store: nothing read
    assert third.loaded == 0


def test_a_store_cut_short_is_computed_again(tiny_ckpts, tmp_path):
    upstream = hub_entry_local(str(init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(), tmp_path / "m.pt")))
    cache = upstream.cache_frozen_part(2 ** 30, tmp_path / "store")
    with torch.no_grad():
        upstream.eval()([torch.randn(4000)])
    cache.persist()
    (path,) = (tmp_path / "store").iterdir()
    path.write_bytes(path.read_bytes()[:100])
    assert upstream.cache_frozen_part(2 ** 30, tmp_path / "store").loaded == 0
