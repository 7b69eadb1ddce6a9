"""The variant description: round trips through plain data, one-line errors naming the bad field, and what readers
ask of it (label, is_base, base_key) for each kind; reading it back from an artifact or a prune spec."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from superb_redundancy.core.variant import (ARTIFACT_KEY, DESCRIPTION_KEY, Healing, MimicSetup, VariantDescription,
                                            VariantError, VariantKind, read_description)

STOCK = VariantDescription(VariantKind.STOCK, family="wav2vec2", base="/m/base.pt", base_sha256="abc")
PRUNED = VariantDescription(VariantKind.PRUNED, family="wav2vec2", base="/m/base.pt", base_sha256="abc",
                            drop_layers=(5, 3, 4), objective="knn-bi")
HEALED = PRUNED.healed(Healing(targets="final", epochs=3, best_epoch=2, loss_before=1.5, loss_after=0.5))
MIMIC = VariantDescription(VariantKind.MIMIC, family="hubert", base="/m/teacher.pt", base_sha256="def",
                           mimic=MimicSetup("transformer", 2, z=32, span=[6, 7], training="mimicking"))


@pytest.mark.parametrize("description", [STOCK, PRUNED, HEALED, MIMIC])
def test_a_description_survives_json_yaml_and_torch(description, tmp_path):
    data = description.to_dict()
    assert VariantDescription.from_dict(json.loads(json.dumps(data))) == description
    assert VariantDescription.from_dict(yaml.safe_load(yaml.safe_dump(data))) == description
    torch.save({"d": data}, tmp_path / "d.pt")
    assert VariantDescription.from_dict(torch.load(tmp_path / "d.pt", weights_only=True)["d"]) == description


def test_dropped_layers_are_kept_sorted():
    assert PRUNED.drop_layers == (3, 4, 5)


@pytest.mark.parametrize("change, message", [
    ({"kind": "distilled"}, "variant kind 'distilled' is invalid; valid: stock, pruned, mimic"),
    ({"drop_layers": [3, -1]}, "variant drop_layers -1 is invalid; valid: an integer >= 0"),
    ({"drop_layers": "3"}, "variant drop_layers '3' is invalid; valid: a list of 0-based layer indices"),
    ({"family": 2}, "variant family 2 is invalid; valid: a string or null"),
    ({"healing": {"epochs": 1.5}}, "variant healing.epochs 1.5 is invalid"),
    ({"healing": {"loss_after": float("nan")}}, "variant healing.loss_after nan is invalid; valid: a finite number"),
    ({"healing": {"rounds": 2}}, "variant healing has unknown field(s) ['rounds']"),
    ({"colour": "red"}, "variant description has unknown field(s) ['colour']"),
])
def test_a_bad_pruned_description_is_one_line_naming_the_field(change, message):
    data = {**PRUNED.to_dict(), **change}
    with pytest.raises(VariantError) as error:
        VariantDescription.from_dict(data, "spec.yaml")
    assert str(error.value).startswith("spec.yaml: ") and message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("data, message", [
    ({**MIMIC.to_dict(), "mimic": {"kind": "transformer", "n_layers": 1, "span": [1]}}, "variant mimic.span [1]"),
    ({**MIMIC.to_dict(), "mimic": {"n_layers": 1}}, "variant mimic.kind None is invalid"),
    ({**MIMIC.to_dict(), "mimic": None}, "a mimic variant needs its mimic settings"),
    ({**STOCK.to_dict(), "drop_layers": [1]}, "a stock variant has no drop_layers"),
    ({**STOCK.to_dict(), "mimic": MIMIC.mimic.to_dict()}, "mimic settings belong to a mimic variant, not a stock"),
    ([1, 2], "variant description must be a mapping"),
])
def test_a_description_at_odds_with_its_kind_is_refused(data, message):
    with pytest.raises(VariantError, match="^a.pt: .*" + message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        VariantDescription.from_dict(data, "a.pt")


def test_what_readers_ask_of_each_kind():
    assert STOCK.label("wav2vec2_local") == "wav2vec2_local" and STOCK.is_base and STOCK.base_key == "abc"
    assert PRUNED.label("pruned_wav2vec2_local") == "pruned_wav2vec2 drop [3, 4, 5] (knn-bi)"
    assert not PRUNED.is_base and PRUNED.base_key == "abc"
    assert HEALED.label("pruned_wav2vec2_local") == "pruned_wav2vec2 drop [3, 4, 5] (knn-bi) healed"
    assert not HEALED.is_base
    nothing = VariantDescription(VariantKind.PRUNED, base="wav2vec2")  # a spec dropping nothing: the base itself
    assert nothing.is_base and nothing.base_key == "wav2vec2" and nothing.label("pruned_wav2vec2") == "pruned_wav2vec2"
    assert not nothing.healed(Healing()).is_base
    assert VariantDescription(VariantKind.STOCK).is_base is False  # a hub name without a file: no identity
    assert MIMIC.label("mimic_local") == "mimic transformer N=2 z=32 replacing 6-7"
    assert not MIMIC.is_base and MIMIC.base_key == "def"


@pytest.mark.parametrize("setup, label", [
    (MimicSetup("linear", 1, z=32, training="mimicking"), "mimic linear N=1 z=32"),
    (MimicSetup("linear", 1, z=32, training="none", baseline="non-mimicker"), "non-mimicker linear N=1 z=32"),
    (MimicSetup("linear", 0, training="none", baseline="classifier only"), "classifier only (no layers)"),
    (MimicSetup("transformer", 1, z=512, training="none", baseline="ceiling (labels only)"),
     "reference: ceiling, transformer N=1 z=512 trained with labels on the front end"),
])
def test_mimic_labels(setup, label):
    assert VariantDescription(VariantKind.MIMIC, mimic=setup).label("mimic") == label


def test_read_from_an_artifact_or_a_spec(tmp_path):
    artifact, spec, plain = tmp_path / "a.pt", tmp_path / "spec.yaml", tmp_path / "plain.pt"
    torch.save({"model": {}, ARTIFACT_KEY: {"kind": "pruned_upstream", DESCRIPTION_KEY: HEALED.to_dict()}}, artifact)
    torch.save({"model": {"w": torch.zeros(2)}}, plain)
    spec.write_text(yaml.safe_dump({"base": "/m/base.pt", "drop_layers": [3, 4, 5], "variant": PRUNED.to_dict()}))
    assert read_description(str(artifact), None) == HEALED
    assert read_description(str(artifact), str(spec)) == HEALED  # the artifact is what is loaded
    assert read_description(None, str(spec)) == PRUNED
    # s3prl's pruned entry prunes -k when one is given: the spec's variant on that base
    from_k = read_description(str(plain), str(spec))
    assert (from_k.base, from_k.drop_layers) == (str(plain), (3, 4, 5)) and from_k.base_sha256 not in (None, "abc")
    assert read_description(str(plain), None) is None and read_description(None, None) is None
    spec.write_text(yaml.safe_dump({"variant": {**PRUNED.to_dict(), "kind": "shrunk"}}))
    with pytest.raises(VariantError, match=f"^{spec}: variant kind 'shrunk' is invalid"):
        read_description(None, str(spec))
