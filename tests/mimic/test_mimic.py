"""Mimicking networks: parameter formulas vs modules (and the paper's tables), the front end vs s3prl's stock
models, the s3prl upstream contract, and bad input."""

from __future__ import annotations

import pytest
import torch
import yaml

from helpers import models
from helpers.models import n_params
from superb_redundancy.core.files import sha256_file
from superb_redundancy.distill.frontend import build_frontend, frontend_state, teacher_record
from superb_redundancy.mimic.artifact import load_mimic_artifact, save_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError, paper_grid
from superb_redundancy.mimic.modules import Mimicker, mimicker_parameter_count
from superb_redundancy.mimic.upstream import MimicUpstream
from superb_redundancy.models.families import get_family

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec")


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("kind", ["linear", "transformer"])
@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("d,z", [(768, 32), (768, 768), (1024, 4096), (64, 16), (64, 1)])
def test_formula_equals_module_count(kind, n_layers, d, z):
    assert n_params(Mimicker(kind, n_layers, d, z)) == mimicker_parameter_count(kind, n_layers, d, z)


def test_linear_mimicker_shares_one_layernorm():
    model = Mimicker("linear", 3, 64, 16)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 1
    assert [k for k in model.state_dict() if "norm" in k] == ["norm.weight", "norm.bias"]
    assert n_params(model) == mimicker_parameter_count("linear", 3, 64, 16)


def test_paper_example_50016():
    assert mimicker_parameter_count("linear", 1, 768, 32) == 50_016
    assert n_params(Mimicker("linear", 1, 768, 32)) == 50_016


# (kind, N, z, Table params): Table 1 (wav2vec2-base) and Table 4 (wavLM-large) rows
TABLE_1 = [("linear", 1, 32, 4_851_331), ("linear", 2, 32, 4_901_283), ("linear", 1, 768, 5_984_035),
           ("linear", 2, 768, 7_165_219), ("linear", 1, 4096, 11_105_827), ("linear", 2, 4096, 17_402_147),
           ("transformer", 1, 32, 7_216_707), ("transformer", 2, 32, 9_632_099),
           ("transformer", 1, 768, 8_347_939), ("transformer", 2, 768, 11_894_563),
           ("transformer", 1, 4096, 13_463_075), ("transformer", 2, 4096, 22_124_835)]
TABLE_4 = [("linear", 1, 32, 5_070_979), ("linear", 2, 768, 8_155_171), ("transformer", 1, 4096, 17_600_547),
           ("transformer", 2, 4096, 30_196_771)]
BASE_CONSTANT, WAVLM_LARGE_CONSTANT = 4_801_315, 5_004_323
HEAD = {768: 768 * 256 + 256 + 256 * 35 + 35, 1024: 1024 * 256 + 256 + 256 * 35 + 35}  # projector + classifier


@pytest.mark.parametrize("kind,n,z,params", TABLE_1)
def test_table1_rows_mimicker_part(kind, n, z, params):
    assert mimicker_parameter_count(kind, n, 768, z) == params - BASE_CONSTANT


@pytest.mark.parametrize("kind,n,z,params", TABLE_4)
def test_table4_rows_mimicker_part(kind, n, z, params):
    assert mimicker_parameter_count(kind, n, 1024, z) == params - WAVLM_LARGE_CONSTANT


def test_table_rows_whole_model_from_real_modules():
    """Front end built by s3prl's classes (base / wavLM-large configs) + mimicker + HF head = Table rows."""
    base = build_frontend("wav2vec2", {"task_cfg": {"normalize": False}, "model_cfg": {"encoder_layers": 12}})
    assert n_params(base) + HEAD[768] == BASE_CONSTANT
    assert n_params(base) + n_params(Mimicker("linear", 2, 768, 32)) + HEAD[768] == 4_901_283
    assert n_params(base) + n_params(Mimicker("transformer", 1, 768, 32)) + HEAD[768] == 7_216_707
    large = build_frontend("wavlm", {"cfg": {"encoder_embed_dim": 1024, "extractor_mode": "layer_norm"}})
    assert n_params(large) + HEAD[1024] == WAVLM_LARGE_CONSTANT


def test_paper_grid_has_twelve_configs():
    grid = paper_grid(layer_i=7)
    assert len(grid) == 12 and len({c.name() for c in grid}) == 12
    assert all(c.lr == 1e-3 and c.batch_size == 128 and c.epochs == 50 for c in grid)


# ---------------------------------------------------------------------------------------------- config
def test_config_yaml_round_trip(tmp_path):
    config = MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=1, teacher_forcing=True)
    path = tmp_path / "c.yaml"
    config.to_yaml(path)
    assert MimicConfig.from_yaml(path) == config
    assert config.resolve_targets(3) == [1, 2]
    assert MimicConfig(n_layers=2).resolve_targets(12) == [7, 11]
    assert MimicConfig(n_layers=2).resolve_targets(24) == [15, 23]
    assert MimicConfig().resolve_targets(12) == [11]


@pytest.mark.parametrize("values,needle", [
    ({"z": 0}, "z=0"),
    ({"n_layers": -1}, "n_layers=-1"),
    ({"kind": "conv"}, "kind='conv'"),
    ({"layer_i": -1}, "layer_i=-1"),
    ({"lr": 0}, "lr=0"),
    ({"n_layers": 2, "target_layers": [2]}, "target_layers"),
    ({"n_layers": 2, "target_layers": [2, 1]}, "non-decreasing"),
])
def test_config_errors_are_one_clear_line(values, needle):
    with pytest.raises(MimicError) as error:
        MimicConfig(**values)
    assert needle in str(error.value) and "valid" in str(error.value) and "\n" not in str(error.value)


def test_layer_i_outside_stack():
    with pytest.raises(MimicError, match=r"layer_i=3 is outside the teacher's transformer stack; valid 0\.\.2"):
        MimicConfig(n_layers=2, layer_i=3).resolve_targets(3)


def test_unknown_config_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: linear\nzz: 3\n")
    with pytest.raises(MimicError, match=r"unknown mimic config field\(s\) \['zz'\]"):
        MimicConfig.from_yaml(path)


# ---------------------------------------------------------------------------------------------- modules
def test_transformer_layer_ignores_padded_frames():
    torch.manual_seed(0)
    model = Mimicker("transformer", 2, 64, 32).eval()
    short = torch.randn(1, 5, 64)
    padded = torch.cat([short, 100 * torch.randn(1, 3, 64)], dim=1)
    mask = torch.tensor([[False] * 5 + [True] * 3])
    with torch.no_grad():
        alone = model(short)[-1]
        batched = model(padded, mask)[-1][:, :5]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)


def test_teacher_forcing_feeds_teacher_output():
    torch.manual_seed(0)
    model = Mimicker("linear", 2, 16, 8).eval()
    x, teacher = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    forced = model(x, teacher_inputs=[teacher])
    torch.testing.assert_close(forced[2], model.layers[1](teacher))
    torch.testing.assert_close(model(x)[2], model.layers[1](model.layers[0](x)))


# ---------------------------------------------------------------------------------------------- artifacts
def make_artifact(path, ckpt, family, config=None, seed=0):
    """An artifact with an untrained mimicker (training is covered by test_mimic_train.py)."""
    fam = get_family(family)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    config = config or MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0)
    record = teacher_record(checkpoint, fam, ckpt, sha256_file(ckpt))
    torch.manual_seed(seed)
    mimicker = Mimicker.from_config(config, record["hidden_size"])
    targets = config.resolve_targets(record["num_layers"])
    return save_artifact(path, config, record, frontend_state(checkpoint, fam), mimicker.state_dict(), targets,
                         {"history": [], "best_epoch": None})


@pytest.fixture(scope="module")
def artifacts(tiny_ckpts, tmp_path_factory):
    directory = tmp_path_factory.mktemp("mimic_artifacts")
    return {family: make_artifact(directory / f"{family}.pt", tiny_ckpts[family], family) for family in FAMILIES}



def test_an_artifact_describes_its_variant(artifacts, tiny_ckpts, tmp_path):
    """The artifact's entry carries the variant description (the teacher as base, by content; the mimic setup);
    a baseline's says it was not trained in step 1."""
    from superb_redundancy.core.variant import VariantKind, read_description
    from superb_redundancy.mimic.baselines import init_artifact

    described = read_description(str(artifacts["hubert"]), None)
    teacher = torch.load(artifacts["hubert"], map_location="cpu", weights_only=True)["teacher"]
    assert (described.kind, described.family, described.base) == (VariantKind.MIMIC, "hubert", teacher["path"])
    assert described.base_sha256 == (teacher.get("content_sha256") or teacher["sha256"])
    assert described.label("mimic_local") == f"mimic transformer N=2 z={MimicConfig.tiny().z}"
    assert not described.is_base
    config = MimicConfig.tiny(kind="linear", n_layers=1)
    baseline = read_description(str(init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "b.pt")), None)
    assert (baseline.mimic.training, baseline.mimic.baseline) == ("none", "non-mimicker")
    assert baseline.label("mimic") == f"non-mimicker linear N=1 z={config.z}"

def wavs(lengths, seed=0):
    return models.wavs(seed, lengths)


@pytest.mark.parametrize("family", FAMILIES)
def test_frontend_matches_stock_model(family, tiny_ckpts, artifacts, hub):
    """Projected features and the frame padding mask equal what the stock expert feeds its encoder."""
    stock = getattr(hub, f"{family}_local")(ckpt=str(tiny_ckpts[family])).eval()
    captured = {}

    def grab(module, args, kwargs):
        captured["x"], captured["mask"] = args[0], kwargs.get("padding_mask")

    stock.model.encoder.register_forward_pre_hook(grab, with_kwargs=True)
    upstream = load_mimic_artifact(artifacts[family]).eval()
    batch = wavs([16000, 11000, 5123])
    with torch.no_grad():
        stock(batch)
        ours = upstream(batch)["hidden_states"][0]
        lengths = torch.tensor([len(w) for w in batch])
        padding = torch.arange(16000)[None] >= lengths[:, None]
        _, mask = upstream.frontend(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), padding)
    torch.testing.assert_close(mask, captured["mask"], rtol=0, atol=0)
    valid = ~mask
    torch.testing.assert_close(ours[valid], captured["x"][valid], rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_upstream_contract(family, artifacts, hub):
    upstream = getattr(hub, "mimic_local")(ckpt=str(artifacts[family]), model_config=None, refresh=False)
    assert isinstance(upstream, MimicUpstream)
    assert upstream.get_downsample_rates("hidden_states") == 320
    for lengths in ([800], [16000], [16000, 800], [12345, 16000, 4000]):
        upstream.train()
        upstream.zero_grad()
        batch = wavs(lengths)
        hidden = upstream(batch)["hidden_states"]
        assert len(hidden) == 3  # projected features + 2 mimicking layers
        assert len({h.shape[-1] for h in hidden}) == 1 and all(h.shape[0] == len(lengths) for h in hidden)
        assert abs(hidden[-1].shape[1] - max(lengths) / 320) <= 5
        sum(h.pow(2).mean() for h in hidden).backward()
        assert all(p.grad is not None for p in upstream.mimicker.parameters())
        assert upstream.frontend.post_extract_proj.weight.grad is not None
        upstream.eval()
        with torch.no_grad():
            first, second = upstream(batch)["hidden_states"], upstream(batch)["hidden_states"]
        for a, b in zip(first, second):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_featurizer_accepts_upstream(artifacts, hub):
    from s3prl.upstream.interfaces import Featurizer

    upstream = hub.mimic_local(ckpt=str(artifacts["wavlm"]), model_config=None, refresh=False).eval()
    featurizer = Featurizer(upstream, "hidden_states", upstream_device="cpu")
    batch = wavs([16000, 7000])
    with torch.no_grad():
        features = featurizer(batch, upstream(batch))
    assert len(features) == 2 and features[0].shape[-1] == 64


def test_registered_names(hub):
    from superb_redundancy.hub import upstreams as registry

    assert registry.UPSTREAMS["mimic_local"].local and not registry.UPSTREAMS["mimic"].local
    assert callable(hub.mimic) and callable(hub.mimic_local)


def test_normalize_follows_teacher_task_config(tiny_dir, tmp_path):
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint("hubert", tmp_path / "norm.pt", ModelConfig(normalize=True))
    upstream = load_mimic_artifact(make_artifact(tmp_path / "m.pt", ckpt, "hubert")).eval()
    assert upstream.frontend.normalize
    wav = wavs([8000])[0]
    with torch.no_grad():
        torch.testing.assert_close(upstream([wav * 7 + 3])["hidden_states"][-1], upstream([wav])["hidden_states"][-1],
                                   rtol=1e-4, atol=1e-4)


def test_mimic_g_config_checks_teacher(artifacts, tiny_ckpts, tmp_path, hub):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"teacher": str(tiny_ckpts["wav2vec2"]), "family": "wav2vec2"}))
    assert isinstance(hub.mimic_local(ckpt=str(artifacts["wav2vec2"]), model_config=str(good)), MimicUpstream)
    by_artifact = tmp_path / "artifact.yaml"
    by_artifact.write_text(yaml.safe_dump({"artifact": str(artifacts["wav2vec2"])}))
    assert isinstance(hub.mimic(ckpt=None, model_config=str(by_artifact)), MimicUpstream)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"teacher": str(tiny_ckpts["hubert"])}))
    with pytest.raises(MimicError, match="was distilled from teacher .* not from .*tiny_hubert.pt") as error:
        hub.mimic_local(ckpt=str(artifacts["wav2vec2"]), model_config=str(bad))
    assert "\n" not in str(error.value)
    with pytest.raises(MimicError, match="not from the given teacher"):
        load_mimic_artifact(artifacts["wav2vec2"], teacher_sha256="0" * 64)
    with pytest.raises(MimicError, match="from a wav2vec2 teacher, not wavlm"):
        load_mimic_artifact(artifacts["wav2vec2"], family="wavlm")


def _edited(artifact_path, tmp_path, edit):
    artifact = torch.load(artifact_path, weights_only=True)
    edit(artifact)
    path = tmp_path / "edited.pt"
    torch.save(artifact, path)
    return path


@pytest.mark.parametrize("edit,needle", [
    (lambda a: a["config"].update(z=0), "z=0 is invalid"),
    (lambda a: a["config"].update(layer_i=7), "layer_i=7 is outside the teacher's transformer stack; valid 0..2"),
    (lambda a: a["config"].update(n_layers=-1), "n_layers=-1 is invalid"),
    (lambda a: a["config"].update(n_layers=0), "targets [0, 2] do not match its config ([])"),
    (lambda a: a["mimicker"].pop("layers.0.layer.linear1.weight"), "weights do not fit its config"),
    (lambda a: a.pop("teacher"), "missing 'teacher'"),
])
def test_bad_artifacts(edit, needle, artifacts, tmp_path, hub):
    path = _edited(artifacts["wav2vec2"], tmp_path, edit)
    with pytest.raises(MimicError) as error:
        hub.mimic_local(ckpt=str(path), model_config=None, refresh=False)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_corrupt_foreign_and_missing_files(tmp_path, tiny_ckpts, hub):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(MimicError, match="corrupt or unreadable mimicker artifact"):
        hub.mimic_local(ckpt=str(garbage))
    with pytest.raises(MimicError, match="not a mimicker artifact: it is a stock wavlm checkpoint"):
        hub.mimic_local(ckpt=str(tiny_ckpts["wavlm"]))
    with pytest.raises(MimicError, match="mimicker artifact not found"):
        hub.mimic_local(ckpt=str(tmp_path / "nope.pt"))
    with pytest.raises(MimicError, match="mimic_local needs a mimicker artifact"):
        hub.mimic_local(ckpt=None)
    with pytest.raises(MimicError, match="mimic needs a mimicker artifact"):
        hub.mimic()
    config = tmp_path / "g.yaml"
    config.write_text("teachr: x\n")
    with pytest.raises(MimicError, match=r"unknown key\(s\) \['teachr'\]"):
        hub.mimic_local(ckpt=str(garbage), model_config=str(config))
