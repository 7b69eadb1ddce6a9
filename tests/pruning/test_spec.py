"""Prune specs: YAML round trip and one-line errors naming the bad value."""

from __future__ import annotations

import pytest

from superb_redundancy.pruning.spec import PruneSpec, PruneSpecError


def test_yaml_round_trip(tmp_path):
    spec = PruneSpec(base="wav2vec2", drop_layers=[5, 3], compact=True, notes={"objective": "knn-bi"})
    assert PruneSpec.from_yaml(spec.to_yaml(tmp_path / "s.yaml")) == spec
    assert not list(tmp_path.glob("*.tmp"))  # written through a temp file, renamed


def test_keep_layers_is_the_complement():
    assert PruneSpec(keep_layers=[0, 2]).resolve(4) == (1, 3)
    assert PruneSpec(drop_layers=[3, 1]).resolve(4) == (1, 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: x\ndrop_layers: [1]\nlayers: [2]\n", r"unknown field\(s\) \['layers'\]; valid: "),
        ("drop_layers: one\n", r"drop_layers must be a list of 0-based layer indices, got 'one'"),
        ("drop_layers: [1]\nkeep_layers: [2]\n", r"either drop_layers or keep_layers, not both"),
        ("drop_layers: [true]\n", r"got \[True\]"),
        ("compact: maybe\ndrop_layers: [1]\n", r"compact must be true or false, got 'maybe'"),
        ("[1, 2]\n", r"expected a mapping"),
        ("base: [\n", r"is not valid YAML"),
    ],
)
def test_bad_specs(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(PruneSpecError, match=message):
        PruneSpec.from_yaml(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(PruneSpecError, match=r"prune spec not found: .*nope\.yaml"):
        PruneSpec.from_yaml(tmp_path / "nope.yaml")


def test_a_described_spec_carries_its_variant_through_yaml(tmp_path, tiny_ckpts):
    """`described` is what `prune` writes: the variant (family, base by content, dropped layers, objective) rides in
    the spec's YAML; building the model ignores it, and the artifact's copy of the spec leaves it out."""
    from superb_redundancy.core.files import checkpoint_sha256
    from superb_redundancy.core.variant import VariantKind

    base = str(tiny_ckpts["wav2vec2"])
    spec = PruneSpec(base=base, keep_layers=[0, 2], notes={"objective": "bi"}).described("wav2vec2", num_layers=3)
    assert (spec.variant.kind, spec.variant.family, spec.variant.drop_layers, spec.variant.objective) == \
        (VariantKind.PRUNED, "wav2vec2", (1,), "bi")
    assert spec.variant.base_sha256 == checkpoint_sha256(base)
    assert PruneSpec.from_yaml(spec.to_yaml(tmp_path / "s.yaml")) == spec
    assert spec.with_base(base).variant is None
    with pytest.raises(PruneSpecError, match="needs the model's layer count"):
        PruneSpec(keep_layers=[0]).described("wav2vec2")


def test_a_bad_variant_in_a_spec_is_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("drop_layers: [1]\nvariant: {kind: pruned, drop_layers: [x]}\n")
    with pytest.raises(PruneSpecError, match=r"^prune spec: variant drop_layers 'x' is invalid; valid: an integer"):
        PruneSpec.from_yaml(path)
