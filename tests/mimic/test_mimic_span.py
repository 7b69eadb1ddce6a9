"""Block replacement (partial mimicking): a span [i, j] of the teacher's layers replaced by mimicking layers, the
other layers kept frozen. The whole stack (i = 0, j = L-1) is bit-identical to the paper's mimicker; a span
replaced by the identity is the teacher with the span dropped; step 1 reads the span's input from the cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile
import torch
import yaml
from torch import nn

from helpers.audio import random_sines
from superb_redundancy.distill.teacher_cache import TeacherCache, build_teacher_cache
from superb_redundancy.mimic.artifact import describe_artifact, load_mimic_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError, cache_layers, default_layer_i, select_configs
from superb_redundancy.mimic.encoder import TeacherEncoder
from superb_redundancy.mimic.upstream import MimicUpstream
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.mimic.train import train_mimicker
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import build_pruned

SR = 16000
#: equal up to float32 reordering (our prefix/suffix call the teacher's own modules on the same tensors)
ATOL = RTOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """8 synthetic 16 kHz clips (sines + noise), 0.3-1.0 s."""
    directory = tmp_path_factory.mktemp("span_audio")
    random_sines(directory, 8, seed=1, name="clip{k}.wav")
    return directory


@pytest.fixture(scope="module")
def cache(tiny_ckpts, audio, tmp_path_factory):
    """Every layer of the tiny 3-layer wav2vec2, so any span can train."""
    return build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path_factory.mktemp("span") / "cache",
                               layers=[0, 1, 2], progress=False)


def wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [0.3 * torch.randn(n, generator=g) for n in lengths]


#: padded frames (and wav2vec2's padding to an even frame count), and one clip alone
BATCHES = (wavs([16000, 11000, 5123]), wavs([7040], seed=1))


class Identity(nn.Module):
    """Test-only mimicking layer: the identity (the linear mimicker's LayerNorm(z) cannot represent it)."""

    def forward(self, x, padding_mask=None):
        return x


def identity_span(teacher, span, path) -> MimicUpstream:
    """A span artifact whose one mimicking layer is then swapped for the identity."""
    artifact = init_artifact(teacher, MimicConfig.tiny(span=list(span)), path)
    upstream = load_mimic_artifact(artifact).eval()
    upstream.mimicker.layers[0] = Identity()
    return upstream


def hidden(upstream, batch):
    with torch.no_grad():
        return list(upstream(batch)["hidden_states"])


def assert_valid_frames_close(ours, reference, batch, atol=ATOL, rtol=RTOL):
    """Equal on every clip's own frames (padded frames are whatever each model leaves there)."""
    frames = [min(len(w) // 320, ours.shape[1]) for w in batch]
    for b, n in enumerate(frames):
        torch.testing.assert_close(ours[b, :n - 1], reference[b, :n - 1], atol=atol, rtol=rtol)


# ---------------------------------------------------------------------------------------------- config
def test_span_targets_and_names():
    assert MimicConfig(span=[4, 7]).resolve_targets(12) == [7]
    assert MimicConfig(n_layers=2, span=[4, 7]).resolve_targets(12) == [4 + default_layer_i(4), 7] == [6, 7]
    assert MimicConfig(n_layers=2, span=[4, 7], layer_i=4).resolve_targets(12) == [4, 7]
    assert MimicConfig(n_layers=4, span=[4, 7]).resolve_targets(12) == [4, 5, 6, 7]
    for n in (1, 2, 3, 4):  # the whole stack as a span resolves exactly as the paper's mimicker
        assert MimicConfig(n_layers=n, span=[0, 11]).resolve_targets(12) == MimicConfig(n_layers=n).resolve_targets(12)
    assert MimicConfig().resolve_span(12) == (0, 11) and MimicConfig(span=[0, 11]).whole_stack(12)
    assert not MimicConfig(span=[0, 10]).whole_stack(12)
    assert MimicConfig(span=[4, 7]).input_layer(12) == 3 and MimicConfig(span=[0, 7]).input_layer(12) is None
    assert cache_layers(MimicConfig(span=[4, 7], n_layers=2), 12) == [3, 6, 7]
    assert cache_layers(MimicConfig(n_layers=2), 12) == [7, 11]
    assert MimicConfig(span=[4, 7]).compact_for(12) is False and MimicConfig().compact_for(12) is True
    assert MimicConfig(span=[0, 11]).compact_for(12) is True  # the whole stack keeps today's layout
    assert MimicConfig.tiny(span=[4, 7]).name() == "linear-N1-z32-span4-7"
    assert MimicConfig.tiny(n_layers=2, span=[4, 7], layer_i=5).name() == "linear-N2-z32-span4-7-i5"
    assert MimicConfig.tiny(span=[4, 7], compact=True).name() == "linear-N1-z32-span4-7-compact"
    assert MimicConfig.tiny(compact=False).name() == "linear-N1-z32-full"
    assert MimicConfig.tiny(span=[4, 7], compact=False).name() == MimicConfig.tiny(span=[4, 7]).name()
    assert MimicConfig.from_dict(MimicConfig(span=(2, 3)).to_dict()) == MimicConfig(span=[2, 3])
    configs = select_configs(grid="tiny", span=[1, 2])
    assert {tuple(c.span) for c in configs} == {(1, 2)} and len(configs) == 4


@pytest.mark.parametrize("values,needle", [
    ({"span": [2, 1]}, "span=[2, 1] is invalid; valid: [i, j]: transformer layers 0 <= i <= j <= L-1"),
    ({"span": [-1, 2]}, "span=[-1, 2] is invalid"),
    ({"span": [1]}, "span=[1] is invalid"),
    ({"span": "1-2"}, "span='1-2' is invalid"),
    ({"span": [1, 2], "n_layers": 0}, "span=[1, 2] is invalid; valid: unset for n_layers: 0"),
    ({"span": [2, 4], "n_layers": 2, "layer_i": 1}, "layer_i=1 is invalid; valid: a layer of the span, 2..4"),
    ({"span": [2, 4], "n_layers": 2, "target_layers": [2, 3]}, "target_layers=[2, 3] is invalid; valid: "
                                                               "non-decreasing layers of the span 2..4, the last 4"),
    ({"compact": "yes"}, "compact='yes' is invalid"),
    ({"compact": False, "n_layers": 0}, "compact=False is invalid"),
])
def test_span_config_errors_are_one_line(values, needle):
    with pytest.raises(MimicError) as error:
        MimicConfig(**values)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_span_beyond_the_teacher_is_one_line():
    with pytest.raises(MimicError, match=r"span=\[1, 5\] is outside the teacher's transformer stack; valid: \[i, j\] "
                                         r"with 0 <= i <= j <= 2 \(the teacher has 3 transformer layers\)"):
        MimicConfig(span=[1, 5]).resolve_targets(3)


# ---------------------------------------------------------------------------------------------- whole stack
@pytest.mark.parametrize("config", [MimicConfig.tiny(n_layers=2, layer_i=0, epochs=2),
                                    MimicConfig.tiny(kind="transformer", epochs=2)],  # dropout: seeded alike
                         ids=["linear-N2", "transformer-N1"])
def test_whole_stack_span_is_bit_identical(config, cache, tmp_path):
    """span [0, L-1] trains the same weights and gives the same hidden states as no span (today's mimicker)."""
    today = train_mimicker(cache, config, tmp_path / "today.pt", progress=False)
    spanned = train_mimicker(cache, dataclasses.replace(config, span=[0, 2]), tmp_path / "span.pt", progress=False)
    a, b = torch.load(today, weights_only=True), torch.load(spanned, weights_only=True)
    assert set(a["mimicker"]) == set(b["mimicker"])
    for key in a["mimicker"]:
        assert torch.equal(a["mimicker"][key], b["mimicker"][key]), key
    assert [h["val_loss"] for h in a["training"]["history"]] == [h["val_loss"] for h in b["training"]["history"]]
    assert [h["train_loss"] for h in a["training"]["history"]] == [h["train_loss"] for h in b["training"]["history"]]
    assert a["training"]["best_epoch"] == b["training"]["best_epoch"] and a["targets"] == b["targets"]
    assert "encoder" not in a and "encoder" not in b and a["parameters"] == b["parameters"]
    ua, ub = load_mimic_artifact(today).eval(), load_mimic_artifact(spanned).eval()
    assert ub.encoder is None  # the same path: front end + mimicker, no teacher layer
    for batch in BATCHES:
        ha, hb = hidden(ua, batch), hidden(ub, batch)
        assert len(ha) == len(hb) == config.n_layers + 1
        assert all(torch.equal(x, y) for x, y in zip(ha, hb))


def test_whole_stack_full_layout(cache, tmp_path, tiny_ckpts):
    """compact: false on the whole stack: the teacher's L+1 positions, each layer's the mimicking layer for it."""
    path = train_mimicker(cache, MimicConfig.tiny(n_layers=2, layer_i=0, epochs=1), tmp_path / "m.pt", progress=False)
    compact = hidden(load_mimic_artifact(path).eval(), BATCHES[0])
    full = hidden(load_mimic_artifact(path, compact=False).eval(), BATCHES[0])
    assert len(compact) == 3 and len(full) == 4  # targets [0, 2]: m_1 for layer 0, m_2 for layers 1 and 2
    for position, source in enumerate([0, 1, 2, 2]):
        assert torch.equal(full[position], compact[source])


# ---------------------------------------------------------------------------------------------- identity span
FAMILY_SPANS = [(family, span) for family in ("wav2vec2", "hubert", "wavlm", "data2vec")
                for span in ((1, 1), (1, 2), (2, 2))]


@pytest.mark.parametrize("family,span", FAMILY_SPANS, ids=[f"{f}-{i}_{j}" for f, (i, j) in FAMILY_SPANS])
def test_identity_span_is_the_teacher_with_the_span_dropped(family, span, tiny_ckpts, tmp_path):
    """A span i..j (i >= 1) replaced by the identity reproduces the teacher pruned of layers i..j (a stock expert
    with DroppedLayer placeholders, pruned_upstream) at all L+1 positions, to 1e-5."""
    if family not in tiny_ckpts:
        pytest.skip(f"no tiny {family}")
    teacher = tiny_ckpts[family]
    ours = identity_span(teacher, span, tmp_path / "span.pt")
    pruned = build_pruned(family, PruneSpec(base=str(teacher), drop_layers=list(range(span[0], span[1] + 1)))).eval()
    for batch in BATCHES:
        got, expected = hidden(ours, batch), hidden(pruned, batch)
        assert len(got) == len(expected) == 4
        for position, (x, y) in enumerate(zip(got, expected)):
            assert x.shape == y.shape, position
            torch.testing.assert_close(x, y, atol=ATOL, rtol=RTOL, msg=lambda m: f"position {position}: {m}")


def test_identity_span_pre_ln(tiny_preln_wav2vec2, tmp_path):
    """Pre-LN (Large-style) 4-layer teacher: j < L-1 as above; for j = L-1 the span replaces the final LayerNorm
    too, so the last position is the pruned model's last but one (its state before that LayerNorm)."""
    pruned_12 = build_pruned("wav2vec2", PruneSpec(base=str(tiny_preln_wav2vec2), drop_layers=[1, 2])).eval()
    pruned_23 = build_pruned("wav2vec2", PruneSpec(base=str(tiny_preln_wav2vec2), drop_layers=[2, 3])).eval()
    mid = identity_span(tiny_preln_wav2vec2, (1, 2), tmp_path / "a.pt")
    end = identity_span(tiny_preln_wav2vec2, (2, 3), tmp_path / "b.pt")
    for batch in BATCHES:
        for x, y in zip(hidden(mid, batch), hidden(pruned_12, batch)):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=RTOL)
        got, expected = hidden(end, batch), hidden(pruned_23, batch)
        for x, y in zip(got[:-1], expected[:-1]):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(got[-1], expected[-2], atol=ATOL, rtol=RTOL)


class ZeroPosConv(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm"])
def test_identity_span_from_layer_0(family, tiny_ckpts, tmp_path):
    """i = 0: the span starts at the encoder's input (projected features), so the positional convolution and
    the encoder LayerNorm are replaced too: the identity gives the teacher with layers 0..j dropped AND those two
    skipped (WavLM: layer j+1 takes layer 0's relative-position table over). Compared on the clips' frames."""
    teacher = tiny_ckpts[family]
    ours = identity_span(teacher, (0, 1), tmp_path / "span.pt")
    if family == "wavlm":
        kept = ours.encoder.layers["2"].self_attn
        assert kept.has_relative_attention_bias and ours.encoder.kept_layers == [2]
        table = torch.load(teacher, weights_only=True)["model"]["encoder.layers.0.self_attn.relative_attention_bias.weight"]
        assert torch.equal(kept.relative_attention_bias.weight, table)
    reference = build_pruned(family, PruneSpec(base=str(teacher), drop_layers=[0, 1])).eval()
    encoder = reference.upstream.model.encoder
    encoder.pos_conv = ZeroPosConv()  # x + 0 = x
    encoder.layer_norm = nn.Identity()  # post-LN tiny teachers: the LayerNorm before layer 0
    for batch in BATCHES:
        got, expected = hidden(ours, batch), hidden(reference, batch)
        assert len(got) == len(expected) == 4
        for x, y in zip(got, expected):
            assert_valid_frames_close(x, y, batch)


def test_compact_span_layout(tiny_ckpts, tmp_path):
    path = init_artifact(tiny_ckpts["hubert"], MimicConfig.tiny(n_layers=2, span=[1, 1]), tmp_path / "m.pt")
    full = hidden(load_mimic_artifact(path).eval(), BATCHES[0])
    compact = hidden(load_mimic_artifact(path, compact=True).eval(), BATCHES[0])
    # full: [teacher 0, teacher 1, m_2 (layer 1's output), teacher 3 = encoder output]; compact: i+1 + N + (L-1-j)
    assert len(full) == 4 and len(compact) == 2 + 2 + 1
    assert torch.equal(compact[0], full[0]) and torch.equal(compact[1], full[1])
    assert torch.equal(compact[3], full[2]) and torch.equal(compact[4], full[3])
    # the -g upstream config may ask for it too
    config = tmp_path / "g.yaml"
    config.write_text(yaml.safe_dump({"compact": True}))
    from superb_redundancy.hub.install import install
    install()
    import s3prl.hub

    assert s3prl.hub.mimic_local(ckpt=str(path), model_config=str(config)).compact is True
    config.write_text(yaml.safe_dump({"compact": "yes"}))
    with pytest.raises(MimicError, match="compact='yes' is invalid"):
        s3prl.hub.mimic_local(ckpt=str(path), model_config=str(config))


# ---------------------------------------------------------------------------------------------- step 1 and artifact
def test_span_trains_from_the_cache_and_keeps_the_teacher(cache, tmp_path, tiny_ckpts, hub):
    config = MimicConfig.tiny(span=[1, 1], epochs=6)
    path = train_mimicker(cache, config, tmp_path / f"{config.name()}.pt", progress=False)
    artifact = torch.load(path, weights_only=True)
    training = artifact["training"]
    losses = [h["val_loss"] for h in training["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert training["span"] == [1, 1] and training["input"] == "output of layer 0" and artifact["targets"] == [1]
    # the kept teacher weights, as the teacher has them
    weights = torch.load(tiny_ckpts["wav2vec2"], weights_only=True)["model_weight"]
    assert {k.split(".")[0] for k in artifact["encoder"]} == {"pos_conv", "layer_norm", "layers"}
    assert {k.split(".")[1] for k in artifact["encoder"] if k.startswith("layers.")} == {"0", "2"}
    for key, value in artifact["encoder"].items():
        assert torch.equal(value, weights[f"encoder.{key}"]), key
    params = artifact["parameters"]
    assert params["teacher_encoder"] == sum(v.numel() for v in artifact["encoder"].values())
    assert params["total"] == params["frontend"] + params["mimicker"] + params["teacher_encoder"]
    # the upstream holds all of them (what profile counts), frozen; -f trains the mimicker and front end only
    upstream = hub.mimic_local(ckpt=str(path))
    from superb_redundancy.compute.parameters import count_parameters

    assert count_parameters(upstream)["total"] == params["total"]
    assert count_parameters(upstream)["layers_with_parameters"] == 2  # the kept teacher layers (encoder.layers.N)
    upstream.train()
    assert not upstream.encoder.training and upstream.mimicker.training
    assert not any(p.requires_grad for p in upstream.encoder.parameters())
    out = upstream(wavs([9000, 5000]))["hidden_states"]
    sum(h.pow(2).mean() for h in out).backward()
    assert all(p.grad is None for p in upstream.encoder.parameters())
    assert all(p.grad is not None for p in upstream.mimicker.parameters())
    assert upstream.frontend.post_extract_proj.weight.grad is not None  # through the frozen layer 0
    # what the upstream feeds the mimicker is the span input step 1 read from the cache (float16 there)
    upstream.eval()
    manifest = cache.manifest
    for k in (0, 3):
        wav, _ = soundfile.read(manifest["sources"][int(cache.index[k, 2])]["path"], dtype="float32")
        start, length = int(cache.offsets[k]), int(cache.lengths[k])
        with torch.no_grad():
            prefix, _ = upstream.encoder.prefix(*upstream.frontend(torch.from_numpy(wav)[None]))
        np.testing.assert_allclose(prefix[-1][0].numpy(), cache.hidden[0][start:start + length], rtol=2e-3, atol=2e-3)
    described = describe_artifact(path)
    assert "replacing layers 1..1 of 3" in described and "kept teacher-encoder parameters" in described


def test_span_needs_its_input_in_the_cache(tiny_ckpts, audio, tmp_path):
    small = build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[2], progress=False)
    with pytest.raises(MimicError, match=r"needs \[1, 2\] \(missing \[1\]\)"):
        train_mimicker(small, MimicConfig.tiny(span=[2, 2]), tmp_path / "x.pt", progress=False)
    assert train_mimicker(small, MimicConfig.tiny(span=[0, 2], epochs=1), tmp_path / "w.pt", progress=False).is_file()
    # a span's kept layers come from the teacher the cache recorded, checked by content
    other = tmp_path / "other.pt"
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    write_tiny_checkpoint("wav2vec2", other, ModelConfig(), seed=7)
    full = build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[1, 2], progress=False)
    with pytest.raises(MimicError, match="is not the teacher of cache"):
        train_mimicker(full, MimicConfig.tiny(span=[2, 2], epochs=1), tmp_path / "x.pt", teacher=other,
                       progress=False)


def test_span_resume_and_old_states(cache, tmp_path):
    config = MimicConfig.tiny(span=[1, 2], kind="transformer", epochs=3)
    straight = train_mimicker(cache, config, tmp_path / "a.pt", progress=False)
    train_mimicker(cache, dataclasses.replace(config, epochs=2), tmp_path / "b.pt", progress=False)
    resumed = train_mimicker(cache, config, tmp_path / "b.pt", resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert all(torch.equal(a["mimicker"][k], b["mimicker"][k]) for k in a["mimicker"])
    # a state written before span/compact existed resumes (its config lacks the two fields)
    state_path = tmp_path / "c.pt.state.pt"
    plain = MimicConfig.tiny(epochs=1)
    train_mimicker(cache, plain, tmp_path / "c.pt", progress=False)
    state = torch.load(state_path, weights_only=True)
    for key in ("span", "compact"):
        state["config"].pop(key)
    state.pop("selection")
    torch.save(state, state_path)
    train_mimicker(cache, dataclasses.replace(plain, epochs=2), tmp_path / "c.pt", resume=True, progress=False)


def test_non_mimicker_span_and_cli(tiny_ckpts, audio, tmp_path, capsys, hub):
    path = init_artifact(tiny_ckpts["wavlm"], MimicConfig.tiny(kind="transformer", span=[1, 2]), tmp_path / "n.pt")
    upstream = hub.mimic_local(ckpt=str(path)).eval()
    assert isinstance(upstream.encoder, TeacherEncoder) and upstream.encoder.kept_layers == [0]
    assert len(hidden(upstream, BATCHES[0])) == 4

    from superb_redundancy.cli import main

    config = tmp_path / "c.yaml"
    MimicConfig.tiny(epochs=1).to_yaml(config)
    out = tmp_path / "out"
    assert main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", str(audio), "--limit", "5",
                 "--config", str(config), "--span", "1", "2", "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'linear-N1-z32-span1-2.pt'}: linear N=1 z=32, targets [2], replacing layers 1..2 of 3" in printed
    assert TeacherCache(out / "teacher_cache").layers == [0, 2]  # the span's input and target
    code = main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", str(audio), "--config",
                 str(config), "--span", "2", "5", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "span=[2, 5] is outside the teacher's transformer stack; valid: [i, j] with 0 <= i <= j <= 2" in err[0]
    assert main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", str(audio), "--config",
                 str(config), "--span", "0", "1", "--output-dir", str(tmp_path / "m"), "--no-progress"]) == 0
    assert (tmp_path / "m" / "linear-N1-z32-span0-1.pt").is_file()
