"""Registration: our variants and third-party ones become visible to every s3prl entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from superb_redundancy import registry
from superb_redundancy.prune_spec import PruneSpec
from superb_redundancy.pruned_upstream import save_pruned

OURS = [f"pruned_{f}{s}" for f in ("wav2vec2", "hubert", "wavlm", "data2vec") for s in ("", "_local")]


def test_install_sets_every_variant_on_s3prl_hub(hub):
    for name in OURS:
        assert callable(getattr(hub, name)), name
        assert name in registry.UPSTREAMS
    assert set(OURS) <= set(hub.options(only_registered_ckpt=False))
    assert registry.UPSTREAMS["pruned_wavlm_local"].local and not registry.UPSTREAMS["pruned_wavlm"].local


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
    code = ("from superb_redundancy import registry; registry.install(); import s3prl.hub as hub; "
            "assert hub.acme_upstream() == 'acme'; "
            "assert registry.UPSTREAMS['acme_upstream'].description == \"Acme's upstream\"")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
