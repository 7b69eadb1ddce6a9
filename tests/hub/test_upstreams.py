"""Registration: our variants and third-party ones become visible to every s3prl entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from superb_redundancy.hub import upstreams as registry
from superb_redundancy.models.config import ModelConfig
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import save_pruned

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec")
#: the names this project must register: discovery that lost one would shrink the contract test below silently
OURS = [f"pruned_{f}{s}" for f in FAMILIES for s in ("", "_local")] + ["mimic", "mimic_local", "hf_local"]
#: s3prl's frame rate for every upstream of the wav2vec2 family (samples per frame at 16 kHz)
DOWNSAMPLE_RATE = 320


def pytest_generate_tests(metafunc):
    """``upstream_name``: every name the registry holds after discovery (ours and the entry-point group's)."""
    if "upstream_name" in metafunc.fixturenames:
        metafunc.parametrize("upstream_name", sorted(registry.discover()))


def test_install_sets_every_variant_on_s3prl_hub(hub):
    assert set(OURS) <= set(registry.UPSTREAMS)
    for name in registry.UPSTREAMS:
        assert callable(getattr(hub, name)), name
    assert set(registry.UPSTREAMS) <= set(hub.options(only_registered_ckpt=False))
    assert registry.UPSTREAMS["pruned_wavlm_local"].local and not registry.UPSTREAMS["pruned_wavlm"].local


# ---------------------------------------------------------------------------------------------- s3prl's contract
def _pruned(name, directory, tiny_ckpts):
    """``pruned_<family>``: a prune spec over the tiny checkpoint (-g); ``_local``: the saved artifact (-k)."""
    family = name.removeprefix("pruned_").removesuffix("_local")
    spec = PruneSpec(base=str(tiny_ckpts[family]), drop_layers=[1])
    if name.endswith("_local"):
        return dict(ckpt=str(save_pruned(family, spec, directory / "pruned.pt"))), ModelConfig().num_layers
    config = directory / "prune.yaml"
    config.write_text(f"base: {tiny_ckpts[family]}\ndrop_layers: [1]\n")
    return dict(model_config=str(config)), ModelConfig().num_layers


def _mimic(name, directory, tiny_ckpts):
    """An untrained mimicker (2 mimicking layers) over the tiny wav2vec2, as ``-k ARTIFACT``."""
    from superb_redundancy.mimic.baselines import init_artifact
    from superb_redundancy.mimic.config import MimicConfig

    config = MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0)
    return dict(ckpt=str(init_artifact(tiny_ckpts["wav2vec2"], config, directory / "mimic.pt"))), 2


def _hf(name, directory, tiny_ckpts):
    """A tiny save_pretrained wav2vec2 folder (transformers' own classes; nothing downloaded) as ``-k DIR``."""
    transformers = pytest.importorskip("transformers")
    layers = ModelConfig().num_layers
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(32,) * 7,
                                         conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(directory / "hf")
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory / "hf")
    return dict(ckpt=str(directory / "hf")), layers


#: how each of our names is built on a tiny model: (name, folder, tiny_ckpts) -> (factory kwargs, layers L)
BUILDERS = {**{f"pruned_{f}{s}": _pruned for f in FAMILIES for s in ("", "_local")},
            "mimic": _mimic, "mimic_local": _mimic, "hf_local": _hf}


def test_every_upstream_keeps_s3prl_contract(upstream_name, hub, tiny_ckpts, tmp_path):
    """Built as s3prl builds it (``getattr(s3prl.hub, NAME)(ckpt=, model_config=, refresh=)``) on a tiny model, the
    upstream returns ``hidden_states``: L+1 tensors [B, T, D] at the rate ``get_downsample_rates`` states (320)."""
    entry = registry.UPSTREAMS[upstream_name]
    build = BUILDERS.get(upstream_name)
    if build is None:
        assert not entry.factory.__module__.startswith("superb_redundancy"), \
            f"{upstream_name} is ours but has no tiny builder in BUILDERS: add one"
        pytest.skip(f"{upstream_name} comes from the entry-point group ({entry.factory.__module__}); no tiny offline "
                    "model is known for a third-party upstream")
    kwargs, layers = build(upstream_name, tmp_path, tiny_ckpts)
    upstream = getattr(hub, upstream_name)(**{"ckpt": None, "model_config": None, "refresh": False, **kwargs}).eval()
    assert upstream.get_downsample_rates("hidden_states") == DOWNSAMPLE_RATE
    generator = torch.Generator().manual_seed(0)
    lengths = (16000, 12000, 8000)
    with torch.no_grad():
        output = upstream([torch.randn(n, generator=generator) for n in lengths])
    assert isinstance(output, dict) and isinstance(output["hidden_states"], (list, tuple))
    hidden = output["hidden_states"]
    assert len(hidden) == layers + 1, f"{len(hidden)} hidden states for L = {layers} layers"
    batch, frames, dim = hidden[0].shape
    assert batch == len(lengths) and abs(frames - max(lengths) / DOWNSAMPLE_RATE) <= 2, hidden[0].shape
    for i, state in enumerate(hidden):
        assert isinstance(state, torch.Tensor) and state.shape == (batch, frames, dim), (i, state.shape)
        assert torch.isfinite(state).all(), i


def test_s3prl_nn_upstream_sees_the_variants(tiny_ckpts, tmp_path, hub):
    from s3prl.nn import S3PRLUpstream

    artifact = save_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]),
                           tmp_path / "a.pt")
    model = S3PRLUpstream("pruned_wav2vec2_local", path_or_url=str(artifact)).eval()
    with torch.no_grad():
        states, lengths = model(torch.randn(2, 16000), torch.LongTensor([16000, 12000]))
    assert len(states) == 4 and states[0].shape[-1] == 64


def test_a_name_cannot_be_taken_twice():
    @registry.register_upstream("test_only_variant")
    def first(ckpt=None, model_config=None, refresh=False, **kwargs):
        """first"""

    try:
        with pytest.raises(ValueError, match="upstream name 'test_only_variant' is already registered"):
            registry.register_upstream("test_only_variant")(lambda **kwargs: None)
        assert registry.UPSTREAMS["test_only_variant"].description == "first"
    finally:
        registry.UPSTREAMS.pop("test_only_variant")


@pytest.mark.slow
def test_third_party_variants_come_through_the_entry_point_group(tmp_path):
    """A package nobody imports adds a variant by declaring the entry-point group only."""
    (tmp_path / "acme_variant.py").write_text(textwrap.dedent('''
        def acme_upstream(ckpt=None, model_config=None, refresh=False, **kwargs):
            """Acme's upstream"""
            return "acme"
    '''))
    info = tmp_path / "acme_variant-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-variant\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\nacme_upstream = acme_variant:acme_upstream\n")
    code = ("from superb_redundancy.hub import upstreams as registry; from superb_redundancy.hub.install import install; "
            "install(); import s3prl.hub as hub; "
            "assert hub.acme_upstream() == 'acme'; "
            "assert registry.UPSTREAMS['acme_upstream'].description == \"Acme's upstream\"")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
