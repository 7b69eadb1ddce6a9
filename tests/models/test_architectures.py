"""Real-size architectures with random weights: stock format, the field's parameter counts, every loader path."""

from __future__ import annotations

import pytest
import torch

from superb_redundancy.compute.parameters import count_checkpoint_parameters, count_parameters
from superb_redundancy.models.architectures import (ARCHITECTURES, build_architecture_checkpoint, get_architecture,
                                                    write_architecture_checkpoint)
from superb_redundancy.models.families import family_of_checkpoint

M = 1e6
# one Base transformer layer: 4 d^2 + 2 d f weights, 4 d + f + d biases... counted exactly:
BASE_LAYER = 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 2 * 768  # 7,087,872
BASE_INFERENCE = 94_370_944  # wav2vec2 and HuBERT Base without pretraining-only heads (HF's count less mask emb)


@pytest.fixture(scope="module")
def wav2vec2_base_path(tmp_path_factory):
    return write_architecture_checkpoint("wav2vec2_base", tmp_path_factory.mktemp("arch") / "wav2vec2_base.pt")


def test_named_architectures_have_the_published_shapes():
    assert list(ARCHITECTURES) == ["wav2vec2_base", "wav2vec2_large", "hubert_base", "hubert_large",
                                   "wavlm_base", "wavlm_large", "distilhubert"]
    for name, arch in ARCHITECTURES.items():
        if not arch.prunable:
            continue  # distilhubert: below
        cfg = arch.config
        base = name.endswith("_base")
        assert arch.family == name.split("_")[0]
        assert (cfg.num_layers, cfg.dim, cfg.ffn_dim, cfg.heads) == ((12, 768, 3072, 12) if base else (24, 1024, 4096, 16))
        assert cfg.conv_layers() == "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
        assert (cfg.conv_pos, cfg.conv_pos_groups) == (128, 16)
        assert cfg.layer_norm_first is (not base)  # Base post-LN, Large pre-LN
        assert cfg.encoder()["extractor_mode"] == ("default" if base else "layer_norm")
        if arch.family == "wavlm":
            assert (cfg.num_buckets, cfg.max_distance, cfg.gru_rel_pos) == (320, 800, True)


def test_distilhubert_has_the_published_shape():
    arch = get_architecture("distilhubert")
    assert (arch.family, arch.hub_name, arch.prunable, arch.superb_params_m) == ("distiller", "distiller_local",
                                                                                 False, 23.49)
    config = arch.config.to_s3prl()
    assert (config["encoder_layers"], config["encoder_embed_dim"], config["encoder_ffn_embed_dim"],
            config["encoder_attention_heads"]) == (2, 768, 3072, 12)
    assert config["extractor_conv_feature_layers"] == "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    assert (config["conv_pos"], config["conv_pos_groups"], config["layer_norm_first"]) == (128, 16, False)
    assert config["pred_layer_id"] == [4, 8, 12] and config["n_tasks"] == 3


@pytest.fixture(scope="module")
def distilhubert_path(tmp_path_factory):
    return write_architecture_checkpoint("distilhubert", tmp_path_factory.mktemp("arch") / "distilhubert.pt")


def test_distilhubert_loads_with_s3prls_distiller(distilhubert_path, hub):
    """distiller_local loads the file as weights only; SUPERB's 23.49 M is the student less its 3 heads."""
    expert = hub.distiller_local(ckpt=str(distilhubert_path)).eval()
    counts = count_parameters(expert)
    assert abs(counts["inference"] / M - 23.49) <= 0.1 and counts["inference"] == 23_491_200
    assert counts["total"] == 27_034_752 and counts["stack"] == 2 * BASE_LAYER
    with torch.inference_mode():
        states = expert([torch.randn(16000)])["hidden_states"]
    assert len(states) == 1 + 2 + 3 and all(s.shape == (1, 49, 768) for s in states)  # input, 2 layers, 3 heads
    a, b = (build_architecture_checkpoint("distilhubert", seed=1)["Distiller"] for _ in range(2))
    assert torch.equal(a["encoder.layers.1.fc1.weight"], b["encoder.layers.1.fc1.weight"])


def test_the_leaderboard_profiles_distilhubert(distilhubert_path, hub):
    """A study run of distiller_local -k FILE gets parameters, MACs and latency on the leaderboard."""
    from superb_redundancy.results.leaderboard.profiles import profile_variants
    from superb_redundancy.results.records import RunRecord

    run = RunRecord(record_id="r", expdir="/exp/r", task="ks", upstream="distiller_local",
                    upstream_ckpt=str(distilhubert_path), upstream_model_config=None, upstream_sha256=None,
                    model_config_sha256=None, variant="distilhubert", metric="acc", value=0.9,
                    higher_is_better=True, seed=1, config=None, config_sha256=None, step=1,
                    evaluated_at="2026-01-01T00:00:00")
    profiles, info = profile_variants([run], repeats=2, max_passes=1, warmup=0)
    profile = profiles["distilhubert"]
    assert profile.params == 23_491_200 and profile.macs_per_second == pytest.approx(3.58e9, rel=0.01)
    assert profile.latency_ms > 0 and not info["unprofiled"]


@pytest.mark.parametrize("name, superb_m, inference", [
    ("wav2vec2_base", 95.04, BASE_INFERENCE),
    ("hubert_base", 94.68, BASE_INFERENCE),
])
def test_base_parameter_counts_match_the_field(name, superb_m, inference):
    checkpoint = build_architecture_checkpoint(name)
    assert family_of_checkpoint(checkpoint).name == ARCHITECTURES[name].family
    counts = count_checkpoint_parameters(checkpoint)
    assert abs(counts["total"] / M - superb_m) <= 0.1  # SUPERB counts everything the released model holds
    assert abs(counts["total"] / M - get_architecture(name).superb_params_m) <= 0.1
    assert counts["inference"] == inference
    assert counts["stack"] == 12 * BASE_LAYER == 85_054_464
    assert counts["components"]["cnn"] == 4_200_448  # the paper's CNN count


def test_wavlm_base_matches_the_released_checkpoint_count():
    # the paper's wavLM-base total (94,587,795) less its classification head (768*256+256 + 256*35+35)
    counts = count_checkpoint_parameters(build_architecture_checkpoint("wavlm_base"))
    assert counts["total"] == 94_587_795 - 205_859 == 94_381_936
    assert counts["stack"] == 12 * (BASE_LAYER + 64 * 8 + 8 + 12) + 320 * 12  # gated rel-pos; table in layer 0


def test_stock_loader_and_pruning_work_on_the_written_file(wav2vec2_base_path, hub):
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    assert not list(wav2vec2_base_path.parent.glob("*.tmp"))  # atomic: no temp file left behind
    expert = hub.wav2vec2_local(ckpt=str(wav2vec2_base_path)).eval()
    on_disk = count_checkpoint_parameters(wav2vec2_base_path)
    assert count_parameters(expert) == on_disk  # the checkpoint's tensors are exactly the expert's parameters
    assert abs(on_disk["total"] / M - 95.0) <= 0.1
    del expert
    pruned = build_pruned("wav2vec2", PruneSpec(base=str(wav2vec2_base_path), drop_layers=[3, 4, 5])).eval()
    with torch.inference_mode():
        states = pruned([torch.randn(16000)])["hidden_states"]
    assert len(states) == 13 and states[0].shape == (1, 49, 768)
    assert count_parameters(pruned)["stack"] == 9 * BASE_LAYER


def test_same_seed_same_weights():
    a = build_architecture_checkpoint("wav2vec2_base", seed=1)["model_weight"]
    b = build_architecture_checkpoint("wav2vec2_base", seed=1)["model_weight"]
    key = "encoder.layers.5.fc1.weight"
    assert torch.equal(a[key], b[key])


def test_unknown_architecture(tmp_path):
    with pytest.raises(ValueError, match=r"unknown architecture 'wav2vec2_small'; valid: wav2vec2_base, wav2vec2_large"):
        write_architecture_checkpoint("wav2vec2_small", tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name, superb_m", [("wav2vec2_large", 317.38), ("hubert_large", 316.61)])
def test_large_parameter_counts_match_the_field(name, superb_m):
    counts = count_checkpoint_parameters(build_architecture_checkpoint(name))  # ~8 s, ~2.5 GB peak
    assert abs(counts["total"] / M - superb_m) <= 0.1
    layer = 4 * (1024 * 1024 + 1024) + (1024 * 4096 + 4096) + (4096 * 1024 + 1024) + 4 * 1024
    assert counts["stack"] == 24 * layer
