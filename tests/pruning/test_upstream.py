"""Pruned upstreams: equivalences (stated tolerances), parameter counts, the s3prl contract, bad input."""

from __future__ import annotations


import pytest
import torch

from helpers.models import hidden, n_params, wavs
from superb_redundancy.models.checkpoints import CheckpointError
from superb_redundancy.models.families import get_family
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import (DroppedLayer, PrunedUpstream, PrunedUpstreamError, build_pruned,
                                                load_pruned_artifact, save_pruned)

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec")
# The same float32 ops run in the same order on CPU, so equal-by-construction paths match bit for bit; the
# tolerance only absorbs reordering in different-but-equivalent paths (stated per test).
EXACT = dict(rtol=0, atol=0)


def pruned(family, ckpt, **spec):
    return build_pruned(family, PruneSpec(base=str(ckpt), **spec)).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_dropping_nothing_equals_stock_upstream(family, tiny_ckpts, hub):
    stock = getattr(hub, f"{family}_local")(ckpt=str(tiny_ckpts[family]))
    model = pruned(family, tiny_ckpts[family], drop_layers=[])
    expected, got = hidden(stock, wavs()), hidden(model, wavs())
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", [1, 2])
def test_dropping_last_k_layers_equals_prefix_of_full_model(family, k, tiny_ckpts):
    full = hidden(pruned(family, tiny_ckpts[family], drop_layers=[]), wavs())
    num_layers = len(full) - 1
    got = hidden(pruned(family, tiny_ckpts[family], drop_layers=list(range(num_layers - k, num_layers))), wavs())
    assert len(got) == num_layers + 1
    for i in range(num_layers - k + 1):
        torch.testing.assert_close(got[i], full[i], **EXACT)
    for i in range(num_layers - k + 1, num_layers + 1):  # dropped layers repeat their input (post-LN: no final norm)
        torch.testing.assert_close(got[i], got[num_layers - k], **EXACT)


def _identity_reference(family, ckpt, hub, index):
    """Independent reference: the stock expert with layer `index` monkeypatched to return its input."""
    stock = getattr(hub, f"{family}_local")(ckpt=str(ckpt)).eval()
    layer = get_family(family).layers(stock)[index]
    if family == "wavlm" and index == 0:
        attn = layer.self_attn

        def forward(x, self_attn_padding_mask=None, need_weights=False, self_attn_mask=None, pos_bias=None):
            t = x.size(0)
            bias = attn.compute_bias(t, t).unsqueeze(0).repeat(x.size(1), 1, 1, 1).view(-1, t, t)
            return x, None, bias  # identity, but the relative-position table still feeds the other layers
    elif family == "wavlm":
        def forward(x, pos_bias=None, **kwargs):
            return x, None, pos_bias
    else:
        def forward(x, **kwargs):
            return x, (None, x)
    layer.forward = forward
    return stock


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("index", [0, 1])
def test_dropped_middle_layer_equals_identity_replacement(family, index, tiny_ckpts, hub):
    reference = hidden(_identity_reference(family, tiny_ckpts[family], hub, index), wavs())
    got = hidden(pruned(family, tiny_ckpts[family], drop_layers=[index]), wavs())
    assert len(got) == len(reference)
    # WavLM layer 0: the bias table moved to the next layer recomputes the same bias; same ops, same order.
    for a, b in zip(got, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(got[index + 1], got[index], **EXACT)


def test_preln_dropped_last_layer_still_gets_final_norm(tiny_preln_wav2vec2, hub):
    full = hidden(pruned("wav2vec2", tiny_preln_wav2vec2, drop_layers=[]), wavs())
    got = hidden(pruned("wav2vec2", tiny_preln_wav2vec2, drop_layers=[3]), wavs())
    reference = hidden(_identity_reference("wav2vec2", tiny_preln_wav2vec2, hub, 3), wavs())
    for a, b in zip(got, reference):
        torch.testing.assert_close(a, b, **EXACT)
    for i in range(4):
        torch.testing.assert_close(got[i], full[i], **EXACT)
    assert not torch.equal(got[4], got[3])  # the encoder's LayerNorm still applies after the stack


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_count_falls_by_exactly_the_dropped_layers(family, tiny_ckpts, hub):
    stock = getattr(hub, f"{family}_local")(ckpt=str(tiny_ckpts[family]))
    layers = get_family(family).layers(stock)
    for dropped in ([1], [1, 2], [0]):
        model = pruned(family, tiny_ckpts[family], drop_layers=dropped)
        removed = sum(n_params(layers[i]) for i in dropped)
        if family == "wavlm" and 0 in dropped:  # the position table moves to the next layer, it is not removed
            removed -= layers[0].self_attn.relative_attention_bias.weight.numel()
        assert n_params(stock) - n_params(model) == removed
        assert all(isinstance(get_family(family).layers(model.upstream)[i], DroppedLayer) for i in dropped)
        assert not any(f"encoder.layers.{i}." in k for k in model.state_dict() for i in dropped
                       if not (family == "wavlm" and i == 0 and "relative_attention_bias" in k))


@pytest.mark.parametrize("family", FAMILIES)
def test_compact_mode_returns_only_kept_layers(family, tiny_ckpts):
    full = hidden(pruned(family, tiny_ckpts[family], drop_layers=[1]), wavs())
    compact = hidden(pruned(family, tiny_ckpts[family], drop_layers=[1], compact=True), wavs())
    assert len(compact) == 3  # input of the stack + kept layers 0 and 2
    for a, b in zip(compact, [full[0], full[1], full[3]]):
        torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dropped", [[1], [0, 2]])
def test_artifact_round_trip(family, dropped, tiny_ckpts, tmp_path, hub):
    spec = PruneSpec(base=str(tiny_ckpts[family]), drop_layers=dropped)
    path = save_pruned(family, spec, tmp_path / "pruned.pt")
    loaded = load_pruned_artifact(family, str(path)).eval()
    direct = pruned(family, tiny_ckpts[family], drop_layers=dropped)
    for a, b in zip(hidden(loaded, wavs()), hidden(direct, wavs())):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert n_params(loaded) == n_params(direct)
    # the artifact loads with weights_only=True and is itself a stock checkpoint of the compact model
    artifact = torch.load(path, weights_only=True)
    assert artifact["superb_redundancy"]["dropped_layers"] == dropped
    compact_stock = getattr(hub, f"{family}_local")(ckpt=str(path))
    assert len(get_family(family).layers(compact_stock)) == 3 - len(dropped)
    # and through the hub entry
    via_hub = getattr(hub, f"pruned_{family}_local")(ckpt=str(path))
    assert isinstance(via_hub, PrunedUpstream) and via_hub.dropped_layers == tuple(dropped)


def test_data2vec_artifact_keeps_the_ema_teacher_of_the_kept_layers(tiny_ckpts, tmp_path):
    """data2vec's stock weights carry the EMA teacher ("_ema", deleted by s3prl's loader): compacted like the stack."""
    base = torch.load(tiny_ckpts["data2vec"], weights_only=True)["model_weight"]["_ema"]
    path = save_pruned("data2vec", PruneSpec(base=str(tiny_ckpts["data2vec"]), drop_layers=[0]), tmp_path / "p.pt")
    ema = torch.load(path, weights_only=True)["model_weight"]["_ema"]
    assert {k.split(".")[1] for k in ema if k.startswith("layers.")} == {"0", "1"}
    for key, value in ema.items():
        old = key if not key.startswith("layers.") else f"layers.{int(key.split('.')[1]) + 1}.{key.split('.', 2)[2]}"
        torch.testing.assert_close(value, base[old], **EXACT)


# ------------------------------------------------------------------------------------------- the s3prl contract
@pytest.mark.parametrize("family", FAMILIES)
def test_upstream_contract(family, tiny_ckpts):
    model = pruned(family, tiny_ckpts[family], drop_layers=[1])
    rate = model.get_downsample_rates("hidden_states")
    assert rate == 320
    for lengths in [(800,), (16000,), (16000, 9000), (4000, 16000, 800)]:
        inputs = wavs(1, lengths)
        model.train()
        model.zero_grad()
        out = model(inputs)
        states = out["hidden_states"]
        assert len(states) == 4 and all(s.shape[:1] == (len(lengths),) for s in states)
        assert len({s.shape for s in states}) == 1 and abs(states[0].size(1) - max(lengths) / rate) <= 5
        # forward and backward on the smallest and on mixed batches (a random readout: a plain sum through
        # a LayerNorm has zero gradient)
        readout = torch.randn(states[0].size(-1), generator=torch.Generator().manual_seed(0))
        sum((s * readout).sum() for s in states).backward()
        # s3prl's experts freeze the CNN (feature_grad_mult = 0); the kept transformer layers must learn
        kept = get_family(family).layers(model.upstream)[2]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in kept.parameters())
    model.eval()
    inputs = wavs(2, (16000, 7000))
    first, second = hidden(model, inputs), hidden(model, inputs)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, **EXACT)  # deterministic in eval mode


def test_featurizer_accepts_pruned_upstream(tiny_ckpts):
    from s3prl.upstream.interfaces import Featurizer

    model = pruned("wav2vec2", tiny_ckpts["wav2vec2"], drop_layers=[1])
    featurizer = Featurizer(model, upstream_device="cpu")
    features = featurizer(wavs(3, (16000,)), model(wavs(3, (16000,))))
    assert featurizer.layer_num == 4 and features[0].shape[-1] == 64


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "spec, message",
    [
        (dict(drop_layers=[3]), r"drop_layers \[3\] out of range: this model has 3 transformer layers \(valid 0\.\.2\)"),
        (dict(drop_layers=[-1]), r"out of range"),
        (dict(drop_layers=[0, 1, 2]), r"drops all 3 transformer layers"),
        (dict(keep_layers=[]), r"drops all 3"),
        (dict(), r"names no layers"),
    ],
)
def test_bad_layer_specs_are_refused_before_model_work(spec, message, tiny_ckpts, monkeypatch):
    import superb_redundancy.pruning.upstream as module

    monkeypatch.setattr(module, "stock_expert", lambda *a: pytest.fail("a model was built"))
    with pytest.raises(PrunedUpstreamError, match=message):
        build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), **spec))


def test_duplicate_layers_are_refused():
    with pytest.raises(ValueError, match=r"drop_layers lists layer\(s\) \[1\] more than once"):
        PruneSpec(base="wav2vec2", drop_layers=[1, 1])


def test_unknown_base_names_the_valid_ones():
    with pytest.raises(CheckpointError, match=r"unknown base 'wav2vec3' for the wav2vec2 family; valid hub names: .*wav2vec2_base_960"):
        build_pruned("wav2vec2", PruneSpec(base="wav2vec3", drop_layers=[1]))


def test_missing_and_corrupt_checkpoints(tmp_path, tiny_ckpts):
    with pytest.raises(CheckpointError, match=r"base checkpoint not found: .*nope\.pt"):
        build_pruned("wav2vec2", PruneSpec(base=str(tmp_path / "nope.pt"), drop_layers=[1]))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt or unreadable checkpoint .*corrupt\.pt"):
        build_pruned("wav2vec2", PruneSpec(base=str(corrupt), drop_layers=[1]))
    with pytest.raises(CheckpointError, match=r"tiny_wavlm\.pt is a wavlm checkpoint, not hubert"):
        build_pruned("hubert", PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[1]))


def test_base_that_needs_a_download_while_offline(monkeypatch, tmp_path):
    import s3prl.util.download as download

    monkeypatch.setattr(download, "get_dir", lambda: tmp_path)  # an empty download cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"base 'wav2vec2' must be downloaded from https://\S+ and this machine is offline; .*base: /path/to/checkpoint\.pt"):
        build_pruned("wav2vec2", PruneSpec(base="wav2vec2", drop_layers=[1]))


def test_hub_entry_without_spec_says_what_it_needs(hub):
    with pytest.raises(PrunedUpstreamError, match=r"pruned_wav2vec2 needs a prune spec: pass -g SPEC\.yaml"):
        hub.pruned_wav2vec2()
    with pytest.raises(PrunedUpstreamError, match=r"pruned_wavlm_local needs a pruned artifact: pass -k PATH"):
        hub.pruned_wavlm_local()


def test_plain_checkpoint_is_not_an_artifact(tiny_ckpts, hub):
    with pytest.raises(PrunedUpstreamError, match=r"plain wav2vec2 checkpoint, not a pruned artifact"):
        hub.pruned_wav2vec2_local(ckpt=str(tiny_ckpts["wav2vec2"]))


def test_spec_from_yaml_and_hub_entry(tmp_path, tiny_ckpts, hub):
    spec_path = PruneSpec(base=str(tiny_ckpts["hubert"]), drop_layers=[2]).to_yaml(tmp_path / "spec.yaml")
    model = hub.pruned_hubert(model_config=str(spec_path))
    assert model.dropped_layers == (2,)
    other = hub.pruned_hubert(ckpt=str(tiny_ckpts["hubert"]), model_config=str(spec_path))  # -k overrides base
    assert other.dropped_layers == (2,)
