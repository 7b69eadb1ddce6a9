"""Compute profile: MACs against hand calculation, pruning arithmetic, parameter breakdown, latency, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from superb_redundancy.cli import main as superb_redundancy_main
from superb_redundancy.compute.inputs import ProfileError, read_lengths_file
from superb_redundancy.compute.latency import measure_latency
from superb_redundancy.compute.macs import count_macs, macs_per_lengths
from superb_redundancy.compute.parameters import count_checkpoint_parameters, count_parameters
from superb_redundancy.compute.profile import format_profile_table, profile_upstream
from superb_redundancy.models.config import ModelConfig


def cli_main(argv):
    """``superb-redundancy profile ARGV``: the one CLI turns bad input into one line and exit status 2."""
    return superb_redundancy_main(["profile", *argv])


# ---------------------------------------------------------------------------------------------- hand calculation
def conv_out(length: int, kernel: int, stride: int) -> int:
    return (length - kernel) // stride + 1


def hand_macs(samples: int, cfg: ModelConfig, pad_to_even: bool, gru_rel_pos: bool = False) -> int:
    """MACs of the matrix products and convolutions of a wav2vec2-family forward at batch 1, counted by hand.

    CNN: sum over conv layers of out_len * c_out * c_in * kernel. Feature projection: T * c * d.
    Positional conv (kernel K even, padding K/2, groups G): (T + 1) * d * (d / G) * K (SamePad drops the last
    frame after the conv). Per transformer layer on T' frames (T rounded up to even where the config pads,
    s3prl's required_seq_len_multiple=2 for wav2vec2/HuBERT): q, k, v, out projections 4 T' d^2, FFN 2 T' d f,
    attention scores and weighted sum 2 T'^2 d; WavLM's gated relative position adds a Linear(d/H -> 8) per
    head and frame: T' * d * 8.
    """
    layers = eval(cfg.conv_layers())
    length, channels, macs = samples, 1, 0
    for c_out, kernel, stride in layers:
        length = conv_out(length, kernel, stride)
        macs += length * c_out * channels * kernel
        channels = c_out
    frames, d, f = length, cfg.dim, cfg.ffn_dim
    macs += frames * channels * d
    macs += (frames + 1) * d * (d // cfg.conv_pos_groups) * cfg.conv_pos
    t = frames + (frames % 2 if pad_to_even else 0)
    per_layer = 4 * t * d * d + 2 * t * d * f + 2 * t * t * d + (t * d * 8 if gru_rel_pos else 0)
    return macs + cfg.num_layers * per_layer


@pytest.fixture(scope="module")
def experts(hub, tiny_ckpts):
    return {family: getattr(hub, f"{family}_local")(ckpt=str(path)).eval() for family, path in tiny_ckpts.items()}


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm"])
@pytest.mark.parametrize("seconds", [1.0, 2.5])  # 49 frames (padded to 50 where the config pads) and 124
def test_macs_equal_the_hand_calculation_exactly(experts, family, seconds):
    # Exact: FlopCounterMode counts exactly the convolutions and matrix products above (plus the CPU attention
    # kernel, whose formula compute/macs.py adds); what it does not count (norms, activations, softmax, bias and
    # residual adds) is left out of the hand count too. Tolerance: 0.
    result = count_macs(experts[family], seconds)
    expected = hand_macs(int(seconds * 16000), ModelConfig(), pad_to_even=family != "wavlm",
                         gru_rel_pos=family == "wavlm")
    assert result["macs"] == expected
    assert result["flops"] == 2 * expected
    assert result["frames"] == conv_out(int(seconds * 16000), 400, 320)  # receptive field 400, stride 320
    assert len(set(result["per_layer_macs"].values())) == 1  # identical layers do identical work
    assert result["stack_macs"] + result["rest_macs"] == result["macs"]


def test_attention_is_counted_on_cpu(experts):
    by_op = count_macs(experts["wav2vec2"], 1.0)["by_op"]
    assert by_op.get("aten._scaled_dot_product_flash_attention_for_cpu", 0) == 3 * 2 * 50 * 50 * 64


def test_count_macs_lists_and_lengths(experts):
    results = count_macs(experts["wav2vec2"], [1.0, 16000, 32000])
    assert [r["samples"] for r in results] == [16000, 16000, 32000]
    assert results[0]["macs"] == results[1]["macs"] < results[2]["macs"]
    summary = macs_per_lengths(experts["wav2vec2"], [16000, 32000, 16000])
    assert summary["macs"] == 2 * results[0]["macs"] + results[2]["macs"]
    assert summary["utterances"] == 3 and summary["total_seconds"] == 4.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), 100, True, "1"])
def test_count_macs_rejects_bad_lengths(experts, bad):
    with pytest.raises(ProfileError):
        count_macs(experts["wav2vec2"], bad)


# ---------------------------------------------------------------------------------------------- pruning
def _layer_macs_alone(upstream, layer, samples: int) -> int:
    """MACs of one transformer layer run by itself, on the very inputs it gets inside the model."""
    from torch.utils.flop_counter import FlopCounterMode

    from superb_redundancy.compute.macs import _sdpa_flop_mapping

    captured = {}
    handle = layer.register_forward_pre_hook(lambda m, args, kwargs: captured.update(args=args, kwargs=kwargs),
                                             with_kwargs=True)
    with torch.inference_mode():
        upstream([torch.randn(samples)])
    handle.remove()
    counter = FlopCounterMode(display=False, custom_mapping=_sdpa_flop_mapping())
    with torch.inference_mode(), counter:
        layer(*captured["args"], **captured["kwargs"])
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("family, dropped", [("wav2vec2", [1]), ("wavlm", [0, 2])])
def test_pruned_macs_fall_by_exactly_the_dropped_layers(experts, tiny_ckpts, family, dropped):
    from superb_redundancy.models.families import get_family
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    full = experts[family]
    one_layer = _layer_macs_alone(full, get_family(family).layers(full)[1], 16000)
    pruned = build_pruned(family, PruneSpec(base=str(tiny_ckpts[family]), drop_layers=dropped)).eval()
    for seconds in (1.0, 2.5):
        one = one_layer if seconds == 1.0 else _layer_macs_alone(full, get_family(family).layers(full)[1], 40000)
        before, after = count_macs(full, seconds)["macs"], count_macs(pruned, seconds)["macs"]
        assert after == before - len(dropped) * one
        assert sorted(map(int, count_macs(pruned, seconds)["per_layer_macs"])) == \
            [i for i in range(3) if i not in dropped]


# ---------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm"])
def test_parameter_breakdown_adds_up(experts, tiny_ckpts, family):
    counts = count_parameters(experts[family])
    assert counts["total"] == sum(p.numel() for p in experts[family].parameters())
    assert sum(counts["components"].values()) == counts["total"]
    assert counts["inference"] + counts["pretraining_only"] == counts["total"]
    assert counts["stack"] + counts["rest"] == counts["total"]
    assert counts["stack"] + counts["inference_rest"] == counts["inference"]
    assert counts["components"]["other"] == 0  # every tensor of the stock experts has a named home
    assert counts["layers_with_parameters"] == 3
    assert count_checkpoint_parameters(tiny_ckpts[family]) == counts  # checkpoint and expert agree


def test_removed_share_names_its_denominator(experts, tiny_ckpts):
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    base = count_parameters(experts["wav2vec2"])
    pruned = build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]))
    counts = count_parameters(pruned, base=base)
    assert counts["removed_share_of_base_stack"] == pytest.approx(1 / 3)
    assert counts["removed"] == base["stack"] // 3 == base["total"] - counts["total"]
    assert counts["removed_share_of_base_total"] == pytest.approx(counts["removed"] / base["total"])
    assert counts["removed_share_of_base_inference"] == pytest.approx(counts["removed"] / base["inference"])
    assert counts["layers_with_parameters"] == 2


def test_wavlm_moved_table_is_not_counted_as_removed(experts, tiny_ckpts):
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    base = count_parameters(experts["wavlm"])
    pruned = build_pruned("wavlm", PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[0]))
    table = 32 * 4  # num_buckets x heads, moved from layer 0 to layer 1
    removed = count_parameters(pruned, base=base)["removed"]
    assert removed == (base["stack"] - table) // 3


# ---------------------------------------------------------------------------------------------- latency
def test_latency_reports_median_iqr_threads_device(experts):
    before = torch.get_num_threads()
    result = measure_latency(experts["wav2vec2"], seconds=0.5, repeats=5, warmup=1, threads=1, device="cpu")
    assert torch.get_num_threads() == before  # restored
    for key in ("median_s", "iqr_s", "q1_s", "q3_s", "threads", "device", "timer", "rtf", "repeats", "times_s"):
        assert key in result
    assert result["threads"] == 1 and result["device"] == "cpu" and result["timer"] == "perf_counter"
    assert len(result["times_s"]) == 5 and result["q1_s"] <= result["median_s"] <= result["q3_s"]
    assert result["iqr_s"] == pytest.approx(result["q3_s"] - result["q1_s"])
    assert result["rtf"] == pytest.approx(result["median_s"] / 0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(seconds=0), "seconds must be > 0"),
    (dict(repeats=0), "repeats must be >= 1"),
    (dict(device="cuda:7" if not torch.cuda.is_available() else "tpu"), "device"),
])
def test_latency_rejects_bad_input(experts, kwargs, message):
    with pytest.raises(ProfileError, match=message):
        measure_latency(experts["wav2vec2"], **{"seconds": 1.0, **kwargs})


# ---------------------------------------------------------------------------------------------- lengths file
def test_lengths_file_reads_counts_and_audio(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(24000, dtype="float32"), 16000)
    (tmp_path / "sub").mkdir()
    soundfile.write(tmp_path / "sub" / "b.flac", np.zeros(12000, dtype="float32"), 8000)  # 1.5 s at 8 kHz
    lengths = tmp_path / "lengths.txt"
    lengths.write_text(f"# SUPERB-style list\n16000\n\n{tmp_path / 'a.wav'}\nsub/b.flac\n")
    assert read_lengths_file(lengths) == [16000, 24000, 24000]


@pytest.mark.parametrize("content, message", [
    ("16000\nnot/a/file.wav\n", "neither a sample count nor an existing audio file"),
    ("# nothing\n", "lists no lengths"),
    ("200\n", "shorter than"),
])
def test_lengths_file_errors(tmp_path, content, message):
    path = tmp_path / "lengths.txt"
    path.write_text(content)
    with pytest.raises(ProfileError, match=message):
        read_lengths_file(path)
    with pytest.raises(ProfileError, match="lengths file not found"):
        read_lengths_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------- whole profile, CLI
def test_profile_of_a_pruned_upstream(tmp_path, tiny_ckpts):
    from superb_redundancy.pruning.spec import PruneSpec

    spec = PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[0, 2]).to_yaml(tmp_path / "spec.yaml")
    profile = profile_upstream("pruned_wav2vec2", model_config=str(spec), seconds=[1.0], repeats=2, warmup=1)
    json.dumps(profile)  # serialisable
    params, macs = profile["parameters"], profile["macs"][0]
    assert profile["drop_layers"] == [0, 2] and profile["num_layers"] == 3
    assert params["removed_share_of_base_stack"] == pytest.approx(2 / 3)
    full = hand_macs(16000, ModelConfig(), pad_to_even=True)
    assert macs["base_macs_derived"] == full
    assert macs["macs_share_of_base"] == pytest.approx(macs["macs"] / full)
    assert profile["latency"][0]["rtf"] == pytest.approx(profile["latency"][0]["median_s"])
    table = format_profile_table(profile)
    assert "removed share of base stack" in table and "MACs / base" in table


def test_cli_writes_json_atomically(tmp_path, tiny_ckpts, capsys):
    out = tmp_path / "out" / "profile.json"
    lengths = tmp_path / "lengths.txt"
    lengths.write_text("16000\n40000\n")
    rc = cli_main(["-u", "hubert_local", "-k", str(tiny_ckpts["hubert"]), "--seconds", "1", "--timing-passes", "2",
                   "--warmup-passes", "0", "--threads", "1", "--lengths-file", str(lengths), "--output", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["profile.json"]
    assert data["parameters"]["total"] == count_checkpoint_parameters(tiny_ckpts["hubert"])["total"]
    assert data["macs_lengths_file"]["macs"] == sum(
        hand_macs(n, ModelConfig(), pad_to_even=True) for n in (16000, 40000))
    assert data["latency"][0]["threads"] == 1
    assert "median ms" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["-u", "wav2vec2_locl", "-k", "X"], "unknown upstream 'wav2vec2_locl'; did you mean wav2vec2_local"),
    (["--arch", "wav2vec2_small"], "unknown --arch 'wav2vec2_small'; valid: wav2vec2_base, wav2vec2_large, "
                                   "hubert_base, hubert_large, wavlm_base, wavlm_large, distilhubert"),
    (["-u", "wav2vec2_local", "-k", "CKPT", "--seconds", "1", "0"], "--seconds must be > 0, got 0.0"),
    (["-u", "wav2vec2_local", "-k", "CKPT", "--seconds", "-2"], "--seconds must be > 0, got -2.0"),
    (["-u", "wav2vec2_local", "-k", "CKPT", "--lengths-file", "/no/such/lengths.txt"],
     "lengths file not found: /no/such/lengths.txt"),
    (["-u", "wav2vec2_local", "-k", "/no/such.pt"], "checkpoint (-k) not found: /no/such.pt"),
    (["-u", "wav2vec2_local"], "wav2vec2_local loads a local file: give its path with -k"),
    (["--arch", "wav2vec2_base", "-k", "CKPT"], "give either --arch (random weights) or -k CHECKPOINT"),
    (["--arch", "wav2vec2_base", "-u", "wavlm_local"], "is a wavlm upstream but --arch wav2vec2_base is wav2vec2"),
    ([], "no upstream: give -u NAME"),
    (["--arch", "wav2vec2_base", "-g", "SPEC"], "--arch wav2vec2_base: drop_layers [12] out of range"),
    (["--arch", "wav2vec2_base", "-u", "wav2vec2_local", "-g", "SPEC"],
     "-g / drop_layers with --arch wav2vec2_base prune through pruned_wav2vec2, not 'wav2vec2_local'; leave out -u"),
    (["--arch", "hubert_base", "-u", "distilhubert"],
     "upstream 'distilhubert' is a distiller upstream but --arch hubert_base is hubert; use hubert_local or pruned_hubert"),
    (["--arch", "distilhubert", "-u", "wavlm_local"], "is a wavlm upstream but --arch distilhubert is distiller; "
                                                      "use distiller_local"),
    (["--arch", "distilhubert", "-u", "distilhubert"], "--arch distilhubert loads through distiller_local, not "
                                                       "'distilhubert'; leave out -u"),
    (["--arch", "distilhubert", "-g", "SPEC"], "--arch distilhubert has no pruned upstream: -g / drop_layers need "
                                               "one of wav2vec2_base, wav2vec2_large, hubert_base"),
])
def test_cli_bad_input_is_one_line_before_any_model_work(monkeypatch, hub, tiny_ckpts, capsys, tmp_path, argv,
                                                         message):
    import superb_redundancy.models.architectures as architectures

    def no_model_work(*args, **kwargs):
        raise AssertionError("a model was built before the input was checked")

    for name in ("wav2vec2_local", "hubert_local", "wavlm_local", "distiller_local", "distilhubert"):
        monkeypatch.setattr(hub, name, no_model_work)
    monkeypatch.setattr(architectures, "write_architecture_checkpoint", no_model_work)
    (tmp_path / "spec.yaml").write_text("drop_layers: [3, 12]\n")
    argv = [{"CKPT": str(tiny_ckpts["wav2vec2"]), "SPEC": str(tmp_path / "spec.yaml")}.get(a, a) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("superb-redundancy profile: error: ")
    assert message in err[0]


# ---------------------------------------------------------------------------------------------- real size
@pytest.fixture(scope="module")
def base_expert(tmp_path_factory, hub):
    from superb_redundancy.models.architectures import write_architecture_checkpoint

    path = write_architecture_checkpoint("wav2vec2_base", tmp_path_factory.mktemp("base") / "wav2vec2_base.pt")
    return path, hub.wav2vec2_local(ckpt=str(path)).eval()


def test_real_size_base_macs_per_second(base_expert):
    _, expert = base_expert
    result = count_macs(expert, 1.0)
    cfg = ModelConfig(num_layers=12, dim=768, ffn_dim=3072, heads=12, conv_pos=128, conv_pos_groups=16,
                     conv_dim=512)
    assert result["macs"] == hand_macs(16000, cfg, pad_to_even=True)  # 6.997 G
    assert result["macs"] == pytest.approx(6.9e9, rel=0.05)  # the field's ~6.9 GMACs per second of audio
    assert result["cnn_macs"] == pytest.approx(2.45e9, rel=0.01)
    counts = count_parameters(expert)
    assert abs(counts["total"] / 1e6 - 95.0) <= 0.1 and counts["inference"] == 94_370_944


def test_real_size_pruning_removes_exactly_the_dropped_layers(base_expert):
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    path, expert = base_expert
    one_layer = _layer_macs_alone(expert, expert.model.encoder.layers[4], 16000)
    pruned = build_pruned("wav2vec2", PruneSpec(base=str(path), drop_layers=[3, 4, 5])).eval()
    full, after = count_macs(expert, 1.0), count_macs(pruned, 1.0)
    assert after["macs"] == full["macs"] - 3 * one_layer
    assert after["macs"] / full["macs"] == pytest.approx(0.847, abs=0.002)  # 25% of layers, ~15% of MACs


@pytest.mark.slow
def test_profile_of_a_pruned_real_size_architecture():
    profile = profile_upstream(arch="wav2vec2_base", drop_layers=[3, 4, 5], seconds=[1.0], latency=False)
    assert profile["upstream"] == "pruned_wav2vec2" and profile["drop_layers"] == [3, 4, 5]
    params, macs = profile["parameters"], profile["macs"][0]
    assert params["base_total"] == 95_044_608 and params["removed_share_of_base_stack"] == 0.25
    assert params["removed_share_of_base_total"] == pytest.approx(3 * 7_087_872 / 95_044_608)
    assert macs["base_macs_derived"] == pytest.approx(6.9e9, rel=0.05)
    assert macs["macs_share_of_base"] == pytest.approx(0.847, abs=0.002)
    assert profile["latency"] == [] and "random weights" in profile["notes"][0]


def test_profile_of_distilhubert(tmp_path, capsys):
    """SUPERB's 23.49 M for DistilHuBERT leaves out its three prediction heads: the profile's inference count."""
    out = tmp_path / "profile.json"
    assert cli_main(["--arch", "distilhubert", "--seconds", "1", "--no-latency", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    params, macs = data["parameters"], data["macs"][0]
    assert data["upstream"] == "distiller_local"
    assert abs(params["inference"] / 1e6 - 23.49) <= 0.1 and params["inference"] == 23_491_200
    assert params["total"] == 23_491_200 + 3_543_552 and params["pretraining_only"] == 3_543_552
    assert params["stack"] == 2 * 7_087_872 and params["layers_with_parameters"] == 2
    assert params["components"]["cnn"] == 4_200_448 and params["components"]["other"] == 0
    assert macs["frames"] == 49 and list(macs["per_layer_macs"]) == ["0", "1"]
    assert macs["cnn_macs"] == pytest.approx(2.45e9, rel=0.01)  # HuBERT Base's CNN
    assert "23.49 M" in capsys.readouterr().out


class _Counting(torch.nn.Module):
    """An 'upstream' that counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, wavs):
        self.calls += 1
        return {"hidden_states": [wavs[0][None, :, None]]}


def test_interleaved_latency_averages_passes_per_timing():
    from superb_redundancy.compute.inputs import ProfileError
    from superb_redundancy.compute.latency import interleaved_latency

    a, b = _Counting(), _Counting()
    out = interleaved_latency({"a": a, "b": b}, seconds=0.1, repeats=5, warmup=2, threads=1, passes=3)
    assert a.calls == b.calls == 2 + 5 * 3  # warm-up, then 5 rounds of 3 back-to-back passes each
    assert out["a"]["passes"] == 3 and len(out["a"]["times_s"]) == 5 and out["a"]["interleaved_with"] == ["b"]
    with pytest.raises(ProfileError, match="passes must be >= 1"):
        interleaved_latency({"a": a}, seconds=0.1, passes=0)


@pytest.mark.parametrize("kind", ["linear", "transformer"])
def test_a_mimicking_layer_counts_its_hand_calculated_macs(tmp_path, tiny_ckpts, hub, kind):
    """One mimicking layer adds exactly its matrix products to the front end's MACs (classifier only, N = 0):
    linear 2Tdz; transformer 3Td^2 (q, k, v) + Td^2 (out) + 2T^2d (attention) + 2Tdz (feed-forward). The
    transformer layer's fused inference kernel once hid all of these (0 MACs)."""
    from superb_redundancy.mimic.artifact import load_mimic_artifact
    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.baselines import init_artifact

    z = 8
    macs = {}
    for n_layers in (0, 1):
        config = MimicConfig.tiny(kind=kind, n_layers=n_layers, z=z)
        path = init_artifact(str(tiny_ckpts["wav2vec2"]), config, tmp_path / f"{kind}{n_layers}.pt")
        macs[n_layers] = count_macs(load_mimic_artifact(str(path)).eval(), 1.0)
    t, d = macs[1]["frames"], ModelConfig().dim
    layer = 2 * t * d * z if kind == "linear" else 4 * t * d * d + 2 * t * t * d + 2 * t * d * z
    assert macs[1]["macs"] - macs[0]["macs"] == layer
    assert torch.backends.mha.get_fastpath_enabled()  # counting left the fast path as it found it
