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
