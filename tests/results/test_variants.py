"""What variant an experiment evaluated, read from its -k / -g files: the description they carry; files written
before descriptions (or specs written by hand) described as their writers would; anything else a stock model."""

from __future__ import annotations

import pytest
import torch
import yaml

from superb_redundancy.core.files import checkpoint_sha256, torch_save
from superb_redundancy.core.variant import (ARTIFACT_KEY, DESCRIPTION_KEY, MIMIC_ARTIFACT_KIND, MimicSetup,
                                            VariantDescription, VariantKind)
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import save_pruned
from superb_redundancy.results.variants import HarvestError, describe_variant


@pytest.fixture
def pruned(tiny_ckpts, tmp_path):
    spec = PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1], notes={"objective": "bi"})
    return save_pruned("wav2vec2", spec.described("wav2vec2"), tmp_path / "pruned.pt")


def test_an_artifact_from_before_descriptions_reads_as_a_new_one(pruned, tmp_path):
    described = describe_variant(str(pruned), None)
    assert (described.kind, described.drop_layers, described.objective) == (VariantKind.PRUNED, (1,), "bi")
    old = torch.load(pruned, map_location="cpu", weights_only=True)
    del old[ARTIFACT_KEY][DESCRIPTION_KEY]
    assert describe_variant(str(torch_save(old, tmp_path / "old.pt")), None) == described


def test_a_spec_written_by_hand_is_described_on_its_base(tiny_ckpts, tmp_path):
    base = str(tiny_ckpts["hubert"])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"base": base, "keep_layers": [0, 2]}))
    described = describe_variant(None, str(spec))
    assert (described.kind, described.family, described.base, described.drop_layers) == \
        (VariantKind.PRUNED, "hubert", base, (1,))
    assert described.base_sha256 == checkpoint_sha256(base) and not described.is_base
    spec.write_text(yaml.safe_dump({"base": "hubert", "keep_layers": [0, 2]}))  # a hub name: no layers to count
    with pytest.raises(HarvestError, match="keep_layers of a base whose layers cannot be counted"):
        describe_variant(None, str(spec))


def test_anything_else_is_a_stock_model_its_own_base(tiny_ckpts, tmp_path):
    base = str(tiny_ckpts["wavlm"])
    options = tmp_path / "mimic.yaml"
    options.write_text("teacher: x.pt\ncompact: true\n")  # another upstream's -g, not a prune spec
    for config in (None, str(options)):
        described = describe_variant(base, config)
        assert (described.kind, described.family, described.base) == (VariantKind.STOCK, "wavlm", base)
        assert described.is_base and described.base_key == checkpoint_sha256(base)
    assert not describe_variant(None, None).is_base  # a hub name alone: nothing to measure others against


def test_a_mimic_upstream_given_by_its_options_is_its_artifact(tmp_path):
    """`mimic -g CONFIG.yaml` with `artifact: PATH` and no -k evaluates that artifact: described by it."""
    setup = MimicSetup(kind="transformer", n_layers=2, z=64)
    description = VariantDescription(kind=VariantKind.MIMIC, family="wav2vec2", base="t.pt", base_sha256="ab" * 32,
                                     mimic=setup)
    artifact = torch_save({ARTIFACT_KEY: {"kind": MIMIC_ARTIFACT_KIND, DESCRIPTION_KEY: description.to_dict()}},
                          tmp_path / "mimic.pt")
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"artifact": str(artifact), "compact": True}))
    assert describe_variant(None, str(options)) == description == describe_variant(str(artifact), None)
    assert describe_variant(None, str(options)).label("mimic") == "mimic transformer N=2 z=64"


def test_a_bad_description_is_a_harvest_error_naming_the_file(pruned, tmp_path):
    artifact = torch.load(pruned, map_location="cpu", weights_only=True)
    artifact[ARTIFACT_KEY][DESCRIPTION_KEY]["drop_layers"] = ["one"]
    path = torch_save(artifact, tmp_path / "bad.pt")
    with pytest.raises(HarvestError, match=f"^{path}: variant drop_layers 'one' is invalid"):
        describe_variant(str(path), None)
