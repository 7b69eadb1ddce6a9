"""The feature cache: a frozen upstream's features kept per clip, equal to what s3prl computes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from superb_redundancy.hub.feature_cache import FeatureCache, cache_budget

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")

#: batch composition changes float rounding only (padding is masked in the tiny pre-LN wav2vec2)
ATOL = 1e-5


@pytest.fixture(scope="module")
def upstream(hub, tiny_preln_wav2vec2):
    return hub.wav2vec2_local(ckpt=str(tiny_preln_wav2vec2)).eval()


def _clips(seed: int, lengths: tuple[int, ...]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=generator) for n in lengths]


def _frames(wav: torch.Tensor, output_frames: int) -> int:
    """The frames s3prl's Featurizer passes on for a clip in a batch whose output has ``output_frames``."""
    return min(output_frames, round(len(wav) / 320))


def _own_frames(wav: torch.Tensor) -> int:
    """The frames wav2vec2's feature encoder computes from the clip itself (400-sample window, stride 320); a
    frame past them is computed over a batch's padding, which depends on the batch."""
    return (len(wav) - 80) // 320


@torch.no_grad()
def test_first_batch_is_the_upstreams_own_output_bit_for_bit(upstream):
    wavs = _clips(0, (16000, 12800, 9600))
    plain = upstream(wavs)["hidden_states"]
    cache = FeatureCache(upstream, "hidden_states", 2 ** 30)
    cached = cache(wavs)["hidden_states"]
    assert len(cached) == len(plain) and cache.misses == 3 and cache.hits == 0
    for layer, reference in zip(cached, plain):
        for i, wav in enumerate(wavs):
            n = _frames(wav, reference.size(1))
            assert torch.equal(layer[i, :n], reference[i, :n])
            assert not layer[i, n:].any()  # past the clip's frames: zero padding


@torch.no_grad()
def test_later_batches_come_from_memory_and_match_a_fresh_computation(upstream):
    first, second = _clips(1, (16000, 11200)), _clips(2, (14400,))
    cache = FeatureCache(upstream, "hidden_states", 2 ** 30)
    cache(first)
    mixed = [second[0], first[1], first[0]]  # a new clip among known ones, in another order and padding
    cached = cache(mixed)["hidden_states"]
    assert (cache.hits, cache.misses) == (2, 3)
    fresh = upstream(mixed)["hidden_states"]
    for layer, reference in zip(cached, fresh):
        for i, wav in enumerate(mixed):
            n = _own_frames(wav)
            torch.testing.assert_close(layer[i, :n], reference[i, :n], atol=ATOL, rtol=0)
    assert "2 of 5 clip passes from memory (40%)" in cache.summary()


@torch.no_grad()
def test_the_featurizer_sees_the_same_features_through_the_cache(upstream):
    from s3prl.upstream.interfaces import Featurizer

    wavs = _clips(3, (16000, 8000))
    featurizer = Featurizer(upstream, upstream_device="cpu")
    cache = FeatureCache(upstream, "hidden_states", 2 ** 30)
    for _ in range(2):  # the second pass from memory
        through_cache = featurizer(wavs, cache(wavs))
        plain = featurizer(wavs, upstream(wavs))
        for got, want, wav in zip(through_cache, plain, wavs):
            assert len(got) == len(want)
            n = _own_frames(wav)
            torch.testing.assert_close(got[:n], want[:n], atol=ATOL, rtol=0)
    assert cache.hits == 2


@torch.no_grad()
def test_a_full_cache_computes_what_it_cannot_keep(upstream):
    wavs = _clips(4, (16000, 16000))
    cache = FeatureCache(upstream, "hidden_states", 1)  # room for nothing
    a, b = cache(wavs)["hidden_states"], cache(wavs)["hidden_states"]
    assert cache.full and cache.hits == 0 and cache.bytes == 0
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert "limit" in cache.summary()


def test_a_trained_upstream_is_refused(upstream):
    cache = FeatureCache(upstream, "hidden_states", 2 ** 30)
    with pytest.raises(RuntimeError, match="being trained"):
        cache(_clips(5, (16000,)))  # grad enabled, parameters that require it


@pytest.mark.parametrize("config, expected", [({}, 0.0), ({"runner": {"feature_cache_gb": 2}}, 2.0),
                                              ({"runner": {"feature_cache_gb": 0.5}}, 0.5)])
def test_budget_from_config(config, expected):
    assert cache_budget(config) == expected


@pytest.mark.parametrize("value", [-1, "2", True])
def test_a_bad_budget_names_the_value_and_what_is_valid(value):
    with pytest.raises(ValueError, match=r"runner.feature_cache_gb: .* valid: a number of GiB >= 0"):
        cache_budget({"runner": {"feature_cache_gb": value}})


@pytest.mark.slow
@pytest.mark.parametrize("trainable", [False, True])
def test_run_downstream_with_the_cache_as_a_user_runs_it(trainable, tiny_ckpts, corpus_root, tmp_path):
    """``run_downstream.py`` with ``runner.feature_cache_gb`` in its config, in a fresh process: a frozen upstream's
    clips come from memory from the second epoch on; a fine-tuned one (-f) is not cached."""
    from superb_redundancy.data import tasks

    data = tasks.format_overrides(tasks.data_overrides("speech_commands", corpus_root))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_downstream.py"), "-m", "train", "-u", "wav2vec2_local", "-k",
         str(tiny_ckpts["wav2vec2"]), "-d", "speech_commands", "-c", str(tasks.config_path("speech_commands", "tiny")),
         "-p", str(tmp_path / "exp"), "--device", "cpu", *(["-f"] if trainable else []),
         "-o", data + ",,config.runner.total_steps=12,,config.runner.eval_step=6,,config.runner.save_step=6"
                           ",,config.runner.feature_cache_gb=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    if trainable:
        assert "feature cache off: the upstream is fine-tuned (-f)" in result.stderr
        assert "clip passes from memory" not in result.stderr
    else:
        assert "feature cache on: 'hidden_states'" in result.stderr
        line = next(x for x in result.stderr.splitlines() if "clip passes from memory" in x)
        hits = int(line.split("; ")[-1].split(" of ")[0])
        assert hits > 0, line  # the dev split is evaluated twice: its second pass is from memory
    assert (tmp_path / "exp" / "states-12.ckpt").is_file()


@pytest.mark.slow
def test_a_bad_budget_stops_run_downstream_with_one_line(tiny_ckpts, corpus_root, tmp_path):
    """A bad ``runner.feature_cache_gb`` is one line naming it, before the upstream loads or anything is trained."""
    from superb_redundancy.data import tasks

    data = tasks.format_overrides(tasks.data_overrides("speech_commands", corpus_root))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_downstream.py"), "-m", "train", "-u", "wav2vec2_local", "-k",
         str(tiny_ckpts["wav2vec2"]), "-d", "speech_commands", "-c", str(tasks.config_path("speech_commands", "tiny")),
         "-p", str(tmp_path / "exp"), "--device", "cpu", "-o", data + ",,config.runner.feature_cache_gb=-1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "run_downstream.py: error: runner.feature_cache_gb: -1; valid: a number of GiB >= 0" in result.stderr
    assert "Traceback" not in result.stderr and not list((tmp_path / "exp").glob("states-*.ckpt"))
