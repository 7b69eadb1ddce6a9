"""Healing a pruned model (superb_redundancy.pruning.heal) on tiny models and synthetic clips: the distillation loss
falls on the validation clips, the healed artifact loads through s3prl's hub (a fresh process) as the healed model
bit for bit, the frozen parts stay bit for bit, 0 epochs is the unhealed model, resumption, and the command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import soundfile
import torch

from helpers.audio import random_sines
from helpers import models
from helpers.models import hidden
from superb_redundancy.distill.teacher_cache import TeacherCache
from superb_redundancy.distill.split import split_clips
from superb_redundancy.pruning.heal.config import HealConfig, HealError
from superb_redundancy.pruning.heal.student import distillation_loss
from superb_redundancy.pruning.heal.teacher import target_pairs
from superb_redundancy.pruning.heal.training import heal
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import DroppedLayer, load_pruned_artifact, save_pruned

SR = 16000
EXACT = dict(rtol=0, atol=0)
FAST = dict(epochs=3, lr=1e-3, batch_size=4, val_fraction=0.25)  # tiny model, 12 clips: 3 validation clips


pytestmark = pytest.mark.usefixtures("one_thread")  # the subprocess computes the same (bit-for-bit comparisons)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """12 synthetic 16 kHz clips (sines + noise), 0.3-1.0 s."""
    directory = tmp_path_factory.mktemp("heal_audio")
    random_sines(directory, 12, seed=0)
    return directory


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("heal")


@pytest.fixture(scope="module")
def pruned(tiny_ckpts, work):
    """A pruned artifact of the tiny wav2vec2 (3 layers, layer 1 dropped)."""
    return save_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]), work / "pruned.pt")


@pytest.fixture(scope="module")
def healed(pruned, audio, work):
    return heal(work / "healed.pt", artifact=pruned, audio=audio, config=HealConfig(**FAST),
                cache_dir=work / "cache", progress=False)


def wavs(seed=0):
    return models.wavs(seed, lengths=(16000, 12000, 7000))


def load(path):
    return torch.load(path, weights_only=True)


# ---------------------------------------------------------------------------------------------- the loss
def test_healing_lowers_the_validation_loss(healed, pruned, work, tiny_ckpts, hub):
    record = healed.record
    assert record["measured_on"] == "3 validation clips" and record["val_clips"] == 3 and record["train_clips"] == 9
    assert record["best_epoch"] > 0 and record["loss_after"] < 0.5 * record["loss_before"]
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2, 3] and record["epochs"] == 3
    assert record["target_pairs"] == [{"teacher_layer": 2, "hidden_state": 3}]  # final: the teacher's last layer
    # measured again, the same way, on the models as users load them: the recorded numbers, exactly
    cache = TeacherCache(work / "cache")
    _, val_ids = split_clips(len(cache), HealConfig(**FAST))
    pairs = target_pairs("final", [0, 2], 3, 3)
    before = distillation_loss(load_pruned_artifact("wav2vec2", str(pruned)), cache, val_ids, pairs, 4)
    after = distillation_loss(hub.pruned_wav2vec2_local(ckpt=str(healed.path)), cache, val_ids, pairs, 4)
    assert sum(before) == record["loss_before"] and sum(after) == record["loss_after"]
    # ... and from the waveforms, not the cache: the healed model's final state is nearer the teacher's
    teacher = hub.wav2vec2_local(ckpt=str(tiny_ckpts["wav2vec2"])).eval()
    unhealed, healed_model = load_pruned_artifact("wav2vec2", str(pruned)), healed.upstream
    errors = {"unhealed": 0.0, "healed": 0.0}
    for i in val_ids:
        wav = torch.from_numpy(soundfile.read(cache.manifest["sources"][int(cache.index[i, 2])]["path"],
                                              dtype="float32")[0])
        target = hidden(teacher, [wav])[-1]
        errors["unhealed"] += float(((hidden(unhealed, [wav])[-1] - target) ** 2).sum())
        errors["healed"] += float(((hidden(healed_model, [wav])[-1] - target) ** 2).sum())
    assert errors["healed"] < 0.5 * errors["unhealed"]


# ---------------------------------------------------------------------------------------------- the artifact
@pytest.mark.slow
def test_healed_artifact_loads_in_a_fresh_process_bit_for_bit(healed, work):
    """s3prl's hub as a user reaches it, in a new interpreter: the healed model's hidden states exactly."""
    script = (
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "import superb_redundancy.hub.upstreams as registry\n"
        "from superb_redundancy.hub.install import install\n"
        "install()\n"
        "import s3prl.hub as hub\n"
        "model = hub.pruned_wav2vec2_local(ckpt=sys.argv[1]).eval()\n"
        "g = torch.Generator().manual_seed(0)\n"
        "wavs = [torch.randn(n, generator=g) for n in (16000, 12000, 7000)]\n"
        "with torch.no_grad():\n"
        "    states = [h.clone() for h in model(wavs)['hidden_states']]\n"
        "torch.save({'hidden': states, 'healed': model.healed}, sys.argv[2])\n"
    )
    out = work / "loaded.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", SUPERB_REDUNDANCY_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script, str(healed.path), str(out)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = load(out)
    expected = hidden(healed.upstream, wavs())
    assert len(loaded["hidden"]) == len(expected) == 4
    for a, b in zip(loaded["hidden"], expected):
        torch.testing.assert_close(a, b, **EXACT)
    assert loaded["healed"]["loss_after"] == healed.record["loss_after"]


def test_frozen_parts_are_unchanged_and_the_record_says_what_was_healed(healed, pruned, tiny_ckpts):
    before, after = load(pruned), load(healed.path)
    assert before.keys() == after.keys() and before["model_cfg"] == after["model_cfg"]
    weights_before, weights_after = before["model_weight"], after["model_weight"]
    assert weights_before.keys() == weights_after.keys()
    layer_keys = [k for k in weights_before if k.startswith("encoder.layers.")]
    frozen = [k for k in weights_before if k not in layer_keys]
    assert any(k.startswith("feature_extractor.") for k in frozen) and "post_extract_proj.weight" in frozen
    for key in frozen:  # CNN, feature projection, positional convolution, encoder LayerNorm
        torch.testing.assert_close(weights_after[key], weights_before[key], **EXACT)
    assert all(not torch.equal(weights_after[k], weights_before[k]) for k in layer_keys if k.endswith(".weight")
               and "layer_norm" not in k)  # the kept layers' matrices all moved
    # the spec, the dropped layers: as pruned; the record says from what, towards what, how
    meta_before, meta_after = before["superb_redundancy"], dict(after["superb_redundancy"])
    record = meta_after.pop("healed")
    # the variant description: the pruned one's, with what healing did
    described, described_before = meta_after.pop("variant"), dict(meta_before).pop("variant")
    assert {**described, "healing": None} == described_before and described["healing"] == {
        "targets": record["targets"], "epochs": record["epochs"], "best_epoch": record["best_epoch"],
        "loss_before": record["loss_before"], "loss_after": record["loss_after"]}
    assert meta_after == {k: v for k, v in meta_before.items() if k != "variant"}
    assert record["input"]["artifact"] == str(pruned) and record["input"]["healed"] is None
    assert record["base"] == str(tiny_ckpts["wav2vec2"]) and record["spec"]["drop_layers"] == [1]
    assert record["teacher"]["path"] == str(tiny_ckpts["wav2vec2"]) and record["teacher"]["is_base"]
    assert record["config"]["lr"] == 1e-3 and record["kept_layers"] == [0, 2]
    # the dropped layer is still a parameter-free identity: its hidden state repeats its input
    model = healed.upstream
    assert isinstance(model.upstream.model.encoder.layers[1], DroppedLayer) and model.healed == record
    states = hidden(model, wavs())
    torch.testing.assert_close(states[2], states[1], **EXACT)


def test_zero_epochs_is_the_unhealed_model_bit_for_bit(pruned, audio, work, hub):
    result = heal(work / "zero.pt", artifact=pruned, audio=audio, config=HealConfig(**dict(FAST, epochs=0)),
                  cache_dir=work / "cache", progress=False)
    assert result.record["best_epoch"] == 0 and result.record["loss_after"] == result.record["loss_before"]
    for key, value in load(pruned)["model_weight"].items():
        torch.testing.assert_close(load(result.path)["model_weight"][key], value, **EXACT)
    healed0 = hidden(hub.pruned_wav2vec2_local(ckpt=str(result.path)), wavs())
    for a, b in zip(healed0, hidden(hub.pruned_wav2vec2_local(ckpt=str(pruned)), wavs())):
        torch.testing.assert_close(a, b, **EXACT)


def test_mapped_targets_from_a_spec_equal_healing_its_artifact(tiny_ckpts, audio, tmp_path, hub):
    """WavLM with layer 0 dropped (its position-bias table moves to the first kept layer); -g SPEC and -k of the
    same spec's artifact heal identically."""
    spec = PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[0])
    config = HealConfig(**dict(FAST, epochs=2, targets="mapped"))
    from_spec = heal(tmp_path / "a.pt", family="wavlm", spec=spec, audio=audio, config=config,
                     cache_dir=tmp_path / "cache", progress=False)
    artifact = save_pruned("wavlm", spec, tmp_path / "pruned.pt")
    from_artifact = heal(tmp_path / "b.pt", artifact=artifact, audio=audio, config=config,
                         cache_dir=tmp_path / "cache", progress=False)
    record = from_spec.record
    assert record["target_pairs"] == [{"teacher_layer": 1, "hidden_state": 2}, {"teacher_layer": 2, "hidden_state": 3}]
    assert record["loss_after"] < record["loss_before"] and record["input"]["artifact"] is None
    assert TeacherCache(tmp_path / "cache").layers == [1, 2]
    a, b = load(from_spec.path)["model"], load(from_artifact.path)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], **EXACT)
    assert "encoder.layers.0.self_attn.relative_attention_bias.weight" in a
    states = hidden(hub.pruned_wavlm_local(ckpt=str(from_spec.path)), wavs())
    for x, y in zip(states, hidden(from_spec.upstream, wavs())):
        torch.testing.assert_close(x, y, **EXACT)


def test_resume_equals_uninterrupted(pruned, audio, work):
    straight = heal(work / "straight.pt", artifact=pruned, audio=audio, config=HealConfig(**FAST),
                    cache_dir=work / "cache", progress=False)
    heal(work / "resumed.pt", artifact=pruned, audio=audio, config=HealConfig(**dict(FAST, epochs=2)),
         cache_dir=work / "cache", progress=False)
    assert load(work / "resumed.pt.state.pt")["epoch"] == 2
    resumed = heal(work / "resumed.pt", artifact=pruned, audio=audio, config=HealConfig(**FAST),
                   cache_dir=work / "cache", resume=True, progress=False)
    assert [h["loss"] for h in straight.record["history"]] == [h["loss"] for h in resumed.record["history"]]
    a, b = load(straight.path)["model_weight"], load(resumed.path)["model_weight"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], **EXACT)
    with pytest.raises(HealError, match="only --epochs may change on resume"):
        heal(work / "resumed.pt", artifact=pruned, audio=audio, config=HealConfig(**dict(FAST, lr=0.1)),
             cache_dir=work / "cache", resume=True, progress=False)


@pytest.mark.parametrize("kwargs,message", [
    (dict(config=dict(epochs=-1)), "heal config: epochs=-1 is invalid; valid: an integer >= 0"),
    (dict(config=dict(targets="all")), "targets='all' is invalid; valid: final or mapped"),
    (dict(config=dict(lr=float("nan"))), "lr=nan is invalid; valid: a finite number > 0"),
    (dict(artifact="{base}"), "is not a pruned artifact"),
    (dict(artifact="{pruned}", family="hubert"), "is a wav2vec2 checkpoint, not hubert"),
    (dict(artifact="{pruned}", teacher="{hubert}"), "is a hubert checkpoint, not wav2vec2"),
    (dict(artifact="{pruned}", teacher="{other}"), "has another front end"),
    (dict(artifact="{pruned}", output="{pruned}"), "is the pruned artifact it heals"),
    (dict(spec="{spec}"), "a prune spec (-g) needs --family"),
    (dict(spec="{spec}", family="wav2vec2", base="{pruned}"), "is already a pruned artifact"),
])
def test_bad_input_is_refused_before_any_work(kwargs, message, pruned, audio, tiny_ckpts, tmp_path, monkeypatch):
    from superb_redundancy.distill import teacher_cache
    from superb_redundancy.models.tiny import write_tiny_checkpoint

    monkeypatch.setattr(teacher_cache.Teacher, "run", lambda *a: pytest.fail("the teacher ran"))
    other = write_tiny_checkpoint("wav2vec2", tmp_path / "other.pt", seed=5)
    PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]).to_yaml(tmp_path / "spec.yaml")
    names = dict(base=tiny_ckpts["wav2vec2"], pruned=pruned, hubert=tiny_ckpts["hubert"], other=other,
                 spec=tmp_path / "spec.yaml")
    kwargs = {k: v.format(**names) if isinstance(v, str) else v for k, v in kwargs.items()}
    if "config" in kwargs:
        with pytest.raises(HealError, match=re.escape(message)):
            HealConfig(**kwargs["config"])
        return
    output = kwargs.pop("output", tmp_path / "out.pt")
    with pytest.raises(HealError) as error:
        heal(output, audio=audio, progress=False, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out.teacher_cache").exists()


# ---------------------------------------------------------------------------------------------- the command
@pytest.mark.slow
def test_command_in_a_fresh_process(pruned, audio, work):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", SUPERB_REDUNDANCY_OFFLINE="1")
    out = work / "cli" / "healed.pt"
    done = subprocess.run([sys.executable, "-m", "superb_redundancy.cli", "heal", "-k", str(pruned), "--data",
                           str(audio), "--output", str(out), "--epochs", "2", "--lr", "1e-3", "--batch-size", "4",
                           "--targets", "mapped", "--no-progress"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"healed artifact: {out}  (use: -u pruned_wav2vec2_local -k {out})" in done.stdout
    assert "distillation loss (mapped) on 1 validation clips" in done.stdout
    record = load(out)["superb_redundancy"]["healed"]
    assert record["targets"] == "mapped" and record["epochs"] == 2 and (work / "cli" / "healed.teacher_cache").is_dir()
    # bad input: one line naming it, nothing written
    bad = subprocess.run([sys.executable, "-m", "superb_redundancy.cli", "heal", "-k", str(pruned), "--data",
                          str(audio), "--output", str(work / "cli" / "bad.pt"), "--epochs", "-2"],
                         capture_output=True, text=True, timeout=600, env=env)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert lines[0] == "superb-redundancy heal: error: heal config: epochs=-2 is invalid; valid: an integer >= 0 " \
                       "(0: the unhealed model, with its losses recorded)"
    assert not (work / "cli" / "bad.pt").exists()


@pytest.mark.parametrize("args,message", [
    (["--targets", "all"], "argument --targets: invalid choice: 'all' (choose from 'final', 'mapped')"),
    (["--batch-size", "two"], "argument --batch-size: invalid int value: 'two'"),
    (["-g", "{spec}"], "argument -g/--upstream-model-config: not allowed with argument -k/--upstream-ckpt"),
    (["--base", "{base}"], "--base is for a prune spec (-g)"),
    (["--lr", "0"], "lr=0.0 is invalid; valid: a finite number > 0"),
    (["--output", "{folder}"], "is a folder; give a file path"),
    (["--data", "/nonexistent"], "audio folder not found: /nonexistent"),
])
def test_command_refuses_bad_input_in_one_line(args, message, pruned, audio, tiny_ckpts, tmp_path, capsys):
    from superb_redundancy.cli import main

    names = dict(spec=tmp_path / "spec.yaml", base=tiny_ckpts["wav2vec2"], folder=tmp_path)
    args = [a.format(**names) for a in args]
    defaults = {"--data": str(audio), "--output": str(tmp_path / "out.pt")}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    try:
        code = main(["heal", "-k", str(pruned), *args])
    except SystemExit as exit_:  # argparse's own refusals exit
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("superb-redundancy heal: error:") and message in err[0]
    assert not (tmp_path / "out.pt").exists()
