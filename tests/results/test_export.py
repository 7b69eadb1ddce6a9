"""Export: the fine-tuned upstream of an s3prl `-f` experiment as a pruned / mimic artifact or stock checkpoint,
and s3prl-format wav2vec2 / HuBERT checkpoints to and from Hugging Face save_pretrained folders.

Most experiments here are the checkpoint s3prl's runner would save, made directly: the upstream built by the hub
function the runner calls, its weights perturbed (a stand-in for training), saved with ``Args`` and ``Upstream``
as runner.py does. One test (slow) fine-tunes through s3prl's own runner. Tolerances: the exported model against
the upstream rebuilt from the checkpoint (s3prl's ``-m evaluate`` path) is exact (rtol = atol = 0): the same
modules and weights run the same ops. The transformers conversion is compared at atol 1e-4 / rtol 1e-4 (float32,
another implementation of the same operations; on these tiny models it is exact without waveform normalisation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from helpers import models
from superb_redundancy.core.files import model_sha256
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import save_pruned
from superb_redundancy.results.export import ExportError, export, export_experiment, rebuild_upstream

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec")
EXACT = dict(rtol=0, atol=0)
HF = dict(rtol=1e-4, atol=1e-4)


pytestmark = pytest.mark.usefixtures("one_thread")


def wavs(seed=0, lengths=(16000, 11000)):
    return models.wavs(seed, lengths)


def hidden(model, inputs=None):
    return models.hidden(model, inputs or wavs())


def assert_states(a, b, **tolerance):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **(tolerance or EXACT))


def fake_experiment(expdir: Path, upstream: str, ckpt=None, model_config=None, step=7, seed=1,
                    name="dev-best.ckpt", trainable=True) -> Path:
    """What s3prl's runner saves for `-u upstream -k ckpt -g model_config -f`: the hub upstream's state dict
    (weights moved, as training would) under Upstream, the arguments under Args."""
    import s3prl.hub as hub

    model = getattr(hub, upstream)(ckpt=ckpt, model_config=model_config, refresh=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    args = argparse.Namespace(mode="train", upstream=upstream, upstream_ckpt=ckpt, upstream_model_config=model_config,
                              upstream_trainable=trainable, downstream="speech_commands", expdir=str(expdir))
    states = {"Step": step, "Epoch": 0, "Args": args, "Config": {}, "Featurizer": {}, "Downstream": {}}
    if trainable:
        states["Upstream"] = model.state_dict()
    expdir.mkdir(parents=True, exist_ok=True)
    torch.save(states, expdir / name)
    return expdir / name


@pytest.fixture(scope="module")
def sources(tiny_ckpts, tmp_path_factory, hub):
    """Per family: a pruned artifact (layer 0 dropped: WavLM's position table moves) and its prune spec."""
    root = tmp_path_factory.mktemp("export_sources")
    out = {}
    for family in FAMILIES:
        spec = PruneSpec(base=str(tiny_ckpts[family]), drop_layers=[0])
        out[family] = {"artifact": save_pruned(family, spec, root / f"{family}_pruned.pt"),
                       "spec": spec.to_yaml(root / f"{family}.yaml"), "base": tiny_ckpts[family]}
    return out


# ---------------------------------------------------------------------------------------------- s3prl format
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("how", ["pruned_local", "pruned_spec", "stock"])
def test_exported_upstream_equals_the_fine_tuned_one_bit_for_bit(family, how, sources, tmp_path):
    src = sources[family]
    upstream, ckpt, config, load_as = {
        "pruned_local": (f"pruned_{family}_local", str(src["artifact"]), None, f"pruned_{family}_local"),
        "pruned_spec": (f"pruned_{family}", None, str(src["spec"]), f"pruned_{family}_local"),
        "stock": (f"{family}_local", str(src["base"]), None, f"{family}_local"),
    }[how]
    experiment = fake_experiment(tmp_path / "exp", upstream, ckpt, config)
    path, summary = export_experiment(tmp_path / "exp", tmp_path / "finetuned.pt")
    assert summary["load_as"] == load_as and summary["weights_changed"] == summary["weights"] > 0
    import s3prl.hub as hub

    exported = getattr(hub, load_as)(ckpt=str(path))
    reference = rebuild_upstream(experiment)  # as s3prl's -m evaluate -e rebuilds it
    assert_states(hidden(exported), hidden(reference))
    assert not all(torch.equal(a, b) for a, b in zip(hidden(exported), hidden(getattr(hub, upstream)(
        ckpt=ckpt, model_config=config))))  # the fine-tuning is in it
    artifact = torch.load(path, weights_only=True)  # plain data only
    record = artifact["superb_redundancy"]["finetuned"] if how != "stock" else artifact["finetuned"]
    assert record["expdir"] == str((tmp_path / "exp").resolve()) and record["step"] == 7
    assert record["source"] == (config if how == "pruned_spec" else ckpt)
    if how != "stock":
        meta = artifact["superb_redundancy"]
        assert meta["dropped_layers"] == [0] and meta["kept_layers"] == [1, 2]
        assert len(getattr(hub, load_as)(ckpt=str(path)).upstream.model.encoder.layers) == 3  # L positions
    if family == "data2vec":  # the EMA teacher is no weight of the live model: kept from the source
        assert record["kept_from_source"] == ["model_weight._ema"]


def test_mimic_artifact_export(tiny_ckpts, tmp_path, hub):
    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.baselines import init_artifact

    artifact = init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(kind="transformer"), tmp_path / "mimic.pt")
    experiment = fake_experiment(tmp_path / "exp", "mimic_local", str(artifact))
    path, summary = export_experiment(experiment, tmp_path / "finetuned_mimic.pt")
    assert summary["load_as"] == "mimic_local" and summary["kind"] == "mimic"
    assert_states(hidden(hub.mimic_local(ckpt=str(path))), hidden(rebuild_upstream(experiment)))
    saved = torch.load(path, weights_only=True)
    assert saved["superb_redundancy"]["finetuned"]["source"] == str(artifact)
    assert saved["training"] == torch.load(artifact, weights_only=True)["training"]  # step 1's record stays


def test_provenance_is_not_part_of_the_model_identity(sources, tmp_path):
    src = sources["wav2vec2"]
    first = fake_experiment(tmp_path / "a", "pruned_wav2vec2_local", str(src["artifact"]))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dev-best.ckpt").write_bytes(first.read_bytes())  # the same experiment elsewhere
    a, _ = export_experiment(tmp_path / "a", tmp_path / "a.pt")
    b, _ = export_experiment(tmp_path / "b", tmp_path / "b.pt")
    loaded_a, loaded_b = (torch.load(p, weights_only=True) for p in (a, b))
    assert loaded_a["superb_redundancy"]["finetuned"]["expdir"] != loaded_b["superb_redundancy"]["finetuned"]["expdir"]
    assert model_sha256(loaded_a) == model_sha256(loaded_b)
    assert model_sha256(loaded_a) != model_sha256(torch.load(src["artifact"], weights_only=True))


def test_folder_takes_dev_best_else_the_last_states(sources, tmp_path):
    from superb_redundancy.results.export import find_experiment_checkpoint

    art = str(sources["hubert"]["artifact"])
    fake_experiment(tmp_path / "exp", "pruned_hubert_local", art, step=5, name="states-5.ckpt")
    fake_experiment(tmp_path / "exp", "pruned_hubert_local", art, step=20, name="states-20.ckpt")
    assert find_experiment_checkpoint(tmp_path / "exp").name == "states-20.ckpt"
    fake_experiment(tmp_path / "exp", "pruned_hubert_local", art, step=10, name="dev-best.ckpt")
    _, summary = export_experiment(tmp_path / "exp", tmp_path / "out.pt")
    assert summary["step"] == 10 and Path(summary["checkpoint"]).name == "dev-best.ckpt"


# ---------------------------------------------------------------------------------------------- bad input
def test_experiment_without_f_is_refused(sources, tmp_path):
    fake_experiment(tmp_path / "exp", "pruned_wav2vec2_local", str(sources["wav2vec2"]["artifact"]), trainable=False)
    with pytest.raises(ExportError, match=r"holds no fine-tuned upstream: it was trained without -f"):
        export_experiment(tmp_path / "exp", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_moved_source_names_source_flag_and_another_artifact_does_not_fit(sources, tmp_path, tiny_ckpts):
    moved = tmp_path / "moved.pt"
    moved.write_bytes(Path(sources["wavlm"]["artifact"]).read_bytes())
    experiment = fake_experiment(tmp_path / "exp", "pruned_wavlm_local", str(moved))
    moved.unlink()
    with pytest.raises(ExportError, match=r"pruned artifact .*moved\.pt is not found .*pass --source PATH"):
        export_experiment(experiment, tmp_path / "out.pt")
    path, _ = export_experiment(experiment, tmp_path / "out.pt", source=str(sources["wavlm"]["artifact"]))
    assert path.is_file()
    other = save_pruned("wavlm", PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[2]), tmp_path / "other.pt")
    with pytest.raises(ExportError, match=r"does not fit .*other\.pt \(\d+ fine-tuned weight\(s\) the source lacks, "
                                          r"e\.g\. upstream\.model\.encoder\.layers\.2\."):
        export_experiment(experiment, tmp_path / "out2.pt", source=str(other))
    assert not (tmp_path / "out2.pt").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", r"experiment not found: .*nope"),
    ("not_experiment", r"is not an s3prl experiment checkpoint \(no Args\)"),
    ("empty_dir", r"holds no dev-best\.ckpt or states-\*\.ckpt"),
    ("unsupported", r"upstream 'fbank' cannot be exported; supported: pruned_<family>_local"),
])
def test_bad_experiments_are_one_line_errors(case, message, tmp_path, tiny_ckpts):
    if case == "missing":
        source = tmp_path / "nope"
    elif case == "not_experiment":
        source = tiny_ckpts["wav2vec2"]
    elif case == "empty_dir":
        source = tmp_path / "empty"
        source.mkdir()
    else:
        source = tmp_path / "exp" / "dev-best.ckpt"
        source.parent.mkdir()
        torch.save({"Args": argparse.Namespace(upstream="fbank", upstream_ckpt=None, upstream_model_config=None),
                    "Upstream": {"w": torch.zeros(1)}, "Step": 1}, source)
    with pytest.raises(ExportError, match=message) as info:
        export_experiment(source, tmp_path / "out.pt")
    assert "\n" not in str(info.value)


def test_output_must_be_a_new_file(sources, tmp_path):
    experiment = fake_experiment(tmp_path / "exp", "pruned_wav2vec2_local", str(sources["wav2vec2"]["artifact"]))
    with pytest.raises(ExportError, match=r"--output .* is a folder"):
        export_experiment(experiment, tmp_path)
    with pytest.raises(ExportError, match=r"is the experiment file itself"):
        export_experiment(experiment, experiment)


def test_cli_export_with_verify(sources, tmp_path, capsys):
    from superb_redundancy.cli import main

    fake_experiment(tmp_path / "exp", "pruned_data2vec", None, str(sources["data2vec"]["spec"]))
    assert main(["export", str(tmp_path / "exp"), "--output", str(tmp_path / "out.pt"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"use: -u pruned_data2vec_local -k {tmp_path / 'out.pt'}" in out
    assert "verify: largest hidden-state difference 0" in out
    assert main(["export", str(tmp_path / "nope"), "--output", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("superb-redundancy export: error: not found:")


# ---------------------------------------------------------------------------------------------- Hugging Face
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("family, preln", [("wav2vec2", False), ("wav2vec2", True), ("hubert", False)])
def test_pruned_artifact_to_hf_and_back(family, preln, tmp_path, hub):
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.hf import PRUNING_RECORD, HFUpstream
    from superb_redundancy.models.hf_convert import hf_to_s3prl, s3prl_to_hf
    from superb_redundancy.models.tiny import write_tiny_checkpoint
    from superb_redundancy.pruning.upstream import build_pruned

    base = write_tiny_checkpoint(family, tmp_path / "base.pt", ModelConfig(layer_norm_first=preln, num_layers=4),
                                 seed=2)
    artifact = save_pruned(family, PruneSpec(base=str(base), drop_layers=[1, 2]), tmp_path / "pruned.pt")
    folder = s3prl_to_hf(artifact, tmp_path / "hf")
    model_class = {"wav2vec2": transformers.Wav2Vec2Model, "hubert": transformers.HubertModel}[family]
    model = model_class.from_pretrained(folder).eval()  # plain transformers loads it
    assert model.config.num_hidden_layers == 2 and len(model.encoder.layers) == 2
    card = (folder / "README.md").read_text()
    assert "layers [1, 2] (0-based, of the base) were dropped" in card and str(base) in card
    assert json.loads((folder / PRUNING_RECORD).read_text())["kept_layers"] == [0, 3]
    # hidden states of the kept layers: ours (compact) == transformers' within the stated tolerance; single clips
    # and a padded batch (s3prl's HuBERT counts padding frames differently: equal-length clips there)
    ours = build_pruned(family, PruneSpec(base=str(base), drop_layers=[1, 2], compact=True)).eval()
    theirs = HFUpstream(folder).eval()
    batches = [wavs(3, (16000,)), wavs(4, (12000,)), wavs(5, (16000, 11000) if family == "wav2vec2" else (9000, 9000))]
    for batch in batches:
        assert_states(hidden(theirs, batch), hidden(ours, batch), **HF)
    with torch.no_grad():  # transformers' own output, without our adapter (post-LN: its last entry is ours too)
        raw = model(torch.stack(batches[0]), output_hidden_states=True)
    torch.testing.assert_close(raw.last_hidden_state, hidden(ours, batches[0])[-1], **HF)
    # and back: the weights are the artifact's, bit for bit; the pretraining heads are filled afresh
    back = hf_to_s3prl(folder, tmp_path / "back.pt")
    original, returned = (torch.load(p, weights_only=True) for p in (artifact, back))
    filled = set(returned["converted_from"]["filled_afresh"])
    assert filled and all(k.startswith(("project_q", "final_proj", "label_embs")) for k in filled)
    for key, value in original["model_weight"].items():
        if key not in filled:
            torch.testing.assert_close(returned["model_weight"][key], value, **EXACT)
    assert_states(hidden(getattr(hub, f"{family}_local")(ckpt=str(back))),
                  hidden(getattr(hub, f"{family}_local")(ckpt=str(artifact))))


def test_fine_tuned_experiment_to_hf(sources, tmp_path):
    from superb_redundancy.models.hf import HFUpstream

    experiment = fake_experiment(tmp_path / "exp", "pruned_wav2vec2_local", str(sources["wav2vec2"]["artifact"]))
    summary = export(tmp_path / "exp", tmp_path / "hf", format="hf", verify=True)
    assert summary["kind"] == "experiment_to_hf" and summary["max_difference"] <= 1e-4
    reference = rebuild_upstream(experiment)
    reference.compact = True  # the HF folder holds the kept layers only
    for batch in (wavs(6, (16000,)), wavs(7, (16000, 9000))):
        assert_states(hidden(HFUpstream(tmp_path / "hf"), batch), hidden(reference, batch), **HF)
    assert "Fine-tuned (s3prl `-f`, task speech_commands, step 7)" in (tmp_path / "hf" / "README.md").read_text()


def test_hf_folder_made_by_transformers_exports_to_s3prl(tmp_path, hub, capsys):
    from superb_redundancy.cli import main

    config = transformers.HubertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
                                       conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    transformers.HubertModel(config).save_pretrained(tmp_path / "hf")
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(tmp_path / "hf")
    assert main(["export", str(tmp_path / "hf"), "--output", str(tmp_path / "h.pt"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"use: -u hubert_local -k {tmp_path / 'h.pt'}" in out
    # normalisation: transformers' eps 1e-7 against s3prl's layer_norm 1e-5
    assert float(out.split("largest hidden-state difference ")[1].split()[0]) <= 1e-4
    assert torch.load(tmp_path / "h.pt", weights_only=True)["task_cfg"]["normalize"] is True


def test_a_cnn_as_wide_as_the_model_has_an_identity_projection_in_transformers(tmp_path, hub):
    """fairseq builds no post_extract_proj when the CNN's width is the model's; transformers always has one."""
    from superb_redundancy.models.config import ModelConfig
    from superb_redundancy.models.hf import HFModelError, HFUpstream
    from superb_redundancy.models.hf_convert import hf_to_s3prl, s3prl_to_hf
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    base = write_tiny_checkpoint("wav2vec2", tmp_path / "wide.pt", ModelConfig(conv_dim=64))
    assert "post_extract_proj.weight" not in torch.load(base, weights_only=True)["model_weight"]
    folder = s3prl_to_hf(base, tmp_path / "hf")
    assert_states(hidden(HFUpstream(folder), wavs(8, (16000,))), hidden(hub.wav2vec2_local(ckpt=str(base)),
                                                                         wavs(8, (16000,))), **HF)
    back = hf_to_s3prl(folder, tmp_path / "back.pt")
    assert "post_extract_proj.weight" not in torch.load(back, weights_only=True)["model_weight"]
    model = transformers.Wav2Vec2Model.from_pretrained(folder)
    with torch.no_grad():
        model.feature_projection.projection.weight.mul_(2)
    model.save_pretrained(tmp_path / "not_identity")
    with pytest.raises(HFModelError, match=r"feature projection maps the CNN's width 64 to the same width and is not "
                                           r"the identity"):
        hf_to_s3prl(tmp_path / "not_identity", tmp_path / "x.pt")


def test_hf_conversion_refusals(sources, tmp_path):
    with pytest.raises(ValueError, match=r"wavlm checkpoint; conversion to transformers covers wav2vec2, hubert"):
        export(sources["wavlm"]["artifact"], tmp_path / "hf")
    with pytest.raises(ExportError, match=r"already an s3prl-format checkpoint: it exports to a Hugging Face folder "
                                          r"\(--output-dir DIR\)"):
        export(sources["wav2vec2"]["artifact"], tmp_path / "x.pt", format="s3prl")
    fake_experiment(tmp_path / "exp", "pruned_wavlm_local", str(sources["wavlm"]["artifact"]))
    with pytest.raises(ExportError,
                       match=r"a fine-tuned wavlm upstream exports to an s3prl-format file \(--output FILE\) only"):
        export(tmp_path / "exp", tmp_path / "hf", format="hf")
    assert not (tmp_path / "hf").exists()


# ---------------------------------------------------------------------------------------------- s3prl's runner
@pytest.mark.slow
def test_runner_fine_tuned_pruned_upstream_exports_bit_for_bit(sources, corpus_root, tmp_path, monkeypatch, hub):
    """A real `-f` run (4 steps of speech commands through s3prl's runner) on a pruned tiny wav2vec2."""
    from superb_redundancy.data import tasks
    from superb_redundancy.results.experiment import run_downstream

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    artifact = sources["wav2vec2"]["artifact"]
    overrides = {**tasks.data_overrides("speech_commands", corpus_root), "config.runner.total_steps": 4,
                 "config.runner.eval_step": 1000, "config.runner.save_step": 4, "config.runner.log_step": 4}
    expdir = tmp_path / "exp"
    run_downstream(["-m", "train", "-u", "pruned_wav2vec2_local", "-k", str(artifact), "-f", "-d", "speech_commands",
                    "-c", str(tasks.config_path("speech_commands", "tiny")), "-p", str(expdir), "--device", "cpu",
                    "-o", tasks.format_overrides(overrides)], tmp_path / "train.log")
    path, summary = export_experiment(expdir, tmp_path / "finetuned.pt")
    assert Path(summary["checkpoint"]).name == "states-4.ckpt" and summary["step"] == 4
    assert summary["weights_changed"] > 0  # training moved the transformer layers
    exported = hub.pruned_wav2vec2_local(ckpt=str(path))
    assert_states(hidden(exported), hidden(rebuild_upstream(expdir)))
    before, after = (torch.load(p, weights_only=True)["model_weight"] for p in (artifact, path))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("feature_extractor."))  # CNN frozen
    assert not torch.equal(before["encoder.layers.0.fc1.weight"], after["encoder.layers.0.fc1.weight"])
