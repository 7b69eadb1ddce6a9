"""Step 1 of mimicking on a tiny teacher: the teacher cache (one teacher pass for a grid), the loss falling,
resumption, and the artifact (weights_only, standalone upstream); the baselines (non-mimicker, classifier only)
and `superb-redundancy mimic`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from helpers.audio import random_sines
from superb_redundancy.core.files import sha256_file
from superb_redundancy.distill import teacher_cache
from superb_redundancy.distill.teacher_cache import TeacherCache, build_teacher_cache
from superb_redundancy.mimic import train as mimic_train
from superb_redundancy.mimic.artifact import describe_artifact, load_mimic_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.modules import Mimicker, mimicker_parameter_count
from superb_redundancy.mimic.baselines import baseline_name, init_artifact
from superb_redundancy.mimic.train import train_grid, train_mimicker

SR = 16000

pytestmark = pytest.mark.usefixtures("one_thread")


def write_clips(directory, count=10, seed=0):
    """Synthetic 16 kHz clips (sines + noise), 0.3-1.0 s, in nested folders, wav and flac, one stereo."""
    paths = random_sines(directory, count, seed=seed, nested=True, stereo=(2,))
    (directory / "notes.txt").write_text("not audio")
    return paths


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mimic_audio")
    write_clips(directory)
    return directory


@pytest.fixture
def counted(monkeypatch):
    """Counts teacher forward passes (one per clip while a cache is built)."""
    calls = {"n": 0}
    original = teacher_cache.Teacher.run

    def run(self, wav, layers):
        calls["n"] += 1
        return original(self, wav, layers)

    monkeypatch.setattr(teacher_cache.Teacher, "run", run)
    return calls


@pytest.fixture(scope="module")
def cache(tiny_ckpts, audio, tmp_path_factory):
    return build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path_factory.mktemp("c") / "cache",
                               layers=[0, 2], progress=False)


def test_cache_contents(cache, tiny_ckpts, hub):
    manifest = json.loads((cache.directory / "manifest.json").read_text())
    assert manifest["teacher"]["sha256"] == sha256_file(tiny_ckpts["wav2vec2"])
    assert manifest["teacher"]["num_layers"] == 3 and manifest["layers"] == [0, 2]
    assert manifest["dtype"] == "float16" and len(manifest["sources"]) == 10 == len(cache)
    assert cache.features.dtype == np.float16 and isinstance(cache.features, np.memmap)
    assert (cache.offsets[1:] == cache.offsets[:-1] + cache.lengths[:-1]).all()
    assert cache.features.shape == (manifest["num_frames"], 64)
    # the stored features / layers are the stock expert's, to float16 precision
    stock = hub.wav2vec2_local(ckpt=str(tiny_ckpts["wav2vec2"])).eval()
    k = 4
    wav, _ = soundfile.read(manifest["sources"][int(cache.index[k, 2])]["path"], dtype="float32")
    with torch.no_grad():
        hidden = stock([torch.from_numpy(wav)])["hidden_states"]
    start, length = int(cache.offsets[k]), int(cache.lengths[k])
    assert hidden[0].shape[1] == length
    for t in (0, 2):
        np.testing.assert_allclose(cache.hidden[t][start:start + length], hidden[t + 1][0].numpy(), rtol=2e-3, atol=2e-3)
    # ... and the projected features are what the artifact's front end computes
    artifact = train_mimicker(cache, MimicConfig.tiny(epochs=1), cache.directory.parent / "one.pt", progress=False)
    upstream = load_mimic_artifact(artifact).eval()
    with torch.no_grad():
        upstream_features = upstream([torch.from_numpy(wav)])["hidden_states"][0][0].numpy()
    np.testing.assert_allclose(cache.features[start:start + length], upstream_features, rtol=2e-3, atol=2e-3)


def test_grid_costs_one_teacher_pass(tiny_ckpts, audio, tmp_path, counted):
    configs = [MimicConfig.tiny(epochs=2), MimicConfig.tiny(n_layers=2, layer_i=0, epochs=2),
               MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=1, teacher_forcing=True, epochs=2)]
    paths = train_grid(tiny_ckpts["wav2vec2"], audio, configs, tmp_path / "grid", progress=False)
    assert counted["n"] == 10  # one pass over the 10 clips for 3 configurations x 2 epochs
    assert TeacherCache(tmp_path / "grid" / "teacher_cache").layers == [0, 1, 2]
    assert [p.name for p in paths] == ["linear-N1-z32.pt", "linear-N2-z32-i0.pt", "transformer-N2-z32-i1-tf.pt"]
    # a second grid over the same teacher and audio reuses the cache
    train_grid(tiny_ckpts["wav2vec2"], audio, configs[:1], tmp_path / "grid", progress=False)
    assert counted["n"] == 10


def test_cache_reuse_and_rebuild(tiny_ckpts, audio, tmp_path, counted):
    build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[2], progress=False)
    assert counted["n"] == 10
    build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[2], progress=False)
    assert counted["n"] == 10  # reused
    rebuilt = build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[1], progress=False)
    assert counted["n"] == 20 and rebuilt.layers == [1, 2]  # rebuilt with the union
    other = build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[1], dtype="float32",
                                progress=False)
    assert counted["n"] == 30 and other.features.dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp dirs left behind


def test_a_batch_is_the_clips_frames_padded_with_zeros(cache):
    """The bulk read (one indexed read per array, converted and padded in one go) against reading clip by clip;
    :meth:`TeacherCache.batches` yields the same batches, each read ahead of its use."""
    def by_clip(array, ids, frames):
        out = np.zeros((len(ids), frames, array.shape[1]), dtype=np.float32)
        for b, i in enumerate(ids):
            start, length = int(cache.offsets[i]), int(cache.lengths[i])
            out[b, :length] = array[start:start + length]
        return torch.from_numpy(out)

    ids = [3, 0, 7, 7, 1]
    frames = int(cache.lengths[ids].max())
    features, mask, targets = cache.batch(ids, cache.layers, torch.device("cpu"))
    assert torch.equal(features, by_clip(cache.features, ids, frames))
    for layer, target in zip(cache.layers, targets):
        assert torch.equal(target, by_clip(cache.hidden[layer], ids, frames))
    assert torch.equal(mask, torch.arange(frames)[None, :] >= torch.as_tensor(cache.lengths[ids])[:, None])
    source = cache.layers[0]
    assert torch.equal(cache.batch(ids, [], torch.device("cpu"), source)[0], by_clip(cache.hidden[source], ids, frames))
    lists = [[0, 1], [2], [9, 4, 5]]
    for got, ids in zip(cache.batches(lists, cache.layers, torch.device("cpu")), lists, strict=True):
        want = cache.batch(ids, cache.layers, torch.device("cpu"))
        assert torch.equal(got[0], want[0]) and all(torch.equal(a, b) for a, b in zip(got[2], want[2]))


def test_step1_loss_falls(cache, tmp_path):
    for config in (MimicConfig.tiny(n_layers=2, layer_i=0, epochs=8),
                   MimicConfig.tiny(kind="transformer", epochs=8)):
        path = train_mimicker(cache, config, tmp_path / f"{config.name()}.pt", progress=False)
        training = torch.load(path, weights_only=True)["training"]
        losses = [h["val_loss"] for h in training["history"]]
        assert len(losses) == 9 and training["val_clips"] == 1 and training["train_clips"] == 9
        assert losses[-1] < 0.7 * losses[0], losses
        assert training["best_loss"] == min(losses[1:])


def test_artifact_round_trip(cache, tmp_path, tiny_ckpts, hub):
    config = MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=2)
    path = train_mimicker(cache, config, tmp_path / "m.pt", progress=False)
    artifact = torch.load(path, map_location="cpu", weights_only=True)
    assert artifact["superb_redundancy"]["kind"] == "mimicker"
    assert MimicConfig.from_dict(artifact["config"]) == config
    assert artifact["targets"] == [0, 2]
    teacher = artifact["teacher"]
    assert (teacher["family"], teacher["num_layers"], teacher["hidden_size"]) == ("wav2vec2", 3, 64)
    assert teacher["sha256"] == sha256_file(tiny_ckpts["wav2vec2"]) and teacher["path"] == str(tiny_ckpts["wav2vec2"])
    assert [h["epoch"] for h in artifact["training"]["history"]] == [0, 1, 2]
    assert artifact["training"]["best_epoch"] in (1, 2)
    assert artifact["parameters"]["mimicker"] == sum(v.numel() for v in artifact["mimicker"].values())
    assert all(k.split(".")[0] in ("feature_extractor", "layer_norm", "post_extract_proj") for k in artifact["frontend"])
    # the upstream runs standalone (teacher file not needed) and applies the best weights
    upstream = hub.mimic_local(ckpt=str(path), model_config=None, refresh=False).eval()
    for key, value in upstream.mimicker.state_dict().items():
        torch.testing.assert_close(value, artifact["mimicker"][key], rtol=0, atol=0)
    with torch.no_grad():
        out = upstream([torch.randn(9000), torch.randn(4000)])["hidden_states"]
    assert len(out) == 3 and all(h.shape == (2, 27, 64) for h in out)


def test_resume_equals_uninterrupted(cache, tmp_path):
    config = MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=3)
    straight = train_mimicker(cache, config, tmp_path / "a.pt", progress=False)
    train_mimicker(cache, MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=2), tmp_path / "b.pt",
                   progress=False)
    state = torch.load(tmp_path / "b.pt.state.pt", weights_only=True)
    assert state["epoch"] == 2 and "state" in state["optimizer"]
    resumed = train_mimicker(cache, config, tmp_path / "b.pt", resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert [h["val_loss"] for h in a["training"]["history"]] == [h["val_loss"] for h in b["training"]["history"]]
    for key in a["mimicker"]:
        torch.testing.assert_close(a["mimicker"][key], b["mimicker"][key], rtol=0, atol=0)
    with pytest.raises(MimicError, match="only epochs may change on resume"):
        train_mimicker(cache, MimicConfig.tiny(kind="transformer", n_layers=2, layer_i=0, epochs=3, lr=0.1),
                       tmp_path / "b.pt", resume=True, progress=False)


def test_training_errors(cache, tmp_path, tiny_ckpts, audio):
    with pytest.raises(MimicError, match=r"stores layers \[0, 2\]; config linear-N2-z32-i1 needs \[1, 2\]"):
        train_mimicker(cache, MimicConfig.tiny(n_layers=2, layer_i=1), tmp_path / "x.pt", progress=False)
    with pytest.raises(MimicError, match="layer_i=3 is outside the teacher's transformer stack; valid 0..2"):
        train_mimicker(cache, MimicConfig.tiny(n_layers=2, layer_i=3), tmp_path / "x.pt", progress=False)
    with pytest.raises(MimicError, match="cache layer 3 is outside"):
        build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "c", layers=[3], progress=False)
    slow = tmp_path / "slow"
    slow.mkdir()
    soundfile.write(slow / "a.wav", np.zeros(8000, dtype=np.float32), 8000)
    with pytest.raises(MimicError, match="sample rate 8000 Hz"):
        build_teacher_cache(tiny_ckpts["wav2vec2"], slow, tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MimicError, match="no .wav/.flac files under"):
        build_teacher_cache(tiny_ckpts["wav2vec2"], tmp_path / "empty", tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    with pytest.raises(MimicError, match="exists and is not a teacher cache"):
        build_teacher_cache(tiny_ckpts["wav2vec2"], audio, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_command_line(tiny_ckpts, audio, tmp_path):
    from superb_redundancy.cli import main

    config = tmp_path / "c.yaml"
    MimicConfig.tiny(epochs=1).to_yaml(config)
    code = main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", str(audio), "--config",
                 str(config), "--output-dir", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "linear-N1-z32.pt").is_file()


# ---------------------------------------------------------------------------------------------- baselines
def test_non_mimicker_artifact(tiny_ckpts, cache, tmp_path, hub):
    """Seeded random layers, `training: none`; the same weights step 1 starts from."""
    config = MimicConfig.tiny(kind="transformer", seed=3)
    path = init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "random.pt")
    artifact = torch.load(path, weights_only=True)
    assert artifact["training"]["training"] == "none" and artifact["training"]["baseline"] == "non-mimicker"
    assert artifact["targets"] == [2] and MimicConfig.from_dict(artifact["config"]) == config
    again = init_artifact(tiny_ckpts["wav2vec2"], config.to_dict(), tmp_path / "again.pt")
    other = init_artifact(tiny_ckpts["wav2vec2"], MimicConfig.tiny(kind="transformer", seed=4), tmp_path / "other.pt")
    weights = {p.name: torch.load(p, weights_only=True)["mimicker"] for p in (path, again, other)}
    for key, value in weights["random.pt"].items():
        torch.testing.assert_close(weights["again.pt"][key], value, rtol=0, atol=0)
    assert any(not torch.equal(weights["other.pt"][k], v) for k, v in weights["random.pt"].items())
    # the weights step 1 starts from with the same seed: its epoch-0 validation loss is the baseline's
    trained = torch.load(train_mimicker(cache, config.to_dict() | {"epochs": 1}, tmp_path / "t.pt", progress=False),
                         weights_only=True)["training"]
    assert trained["training"] == "mimicking"
    model = Mimicker.from_config(config, 64)
    model.load_state_dict(weights["random.pt"])
    _, val_ids = mimic_train.split_clips(len(cache), config)
    val = mimic_train._evaluate(model, cache, val_ids, [2], config, torch.device("cpu"),
                                scales=trained["target_variance"])
    assert sum(val) == pytest.approx(trained["history"][0]["val_loss"], rel=1e-6)
    upstream = hub.mimic_local(ckpt=str(path)).eval()
    assert upstream.training_record["training"] == "none"
    with torch.no_grad():
        assert len(upstream([torch.randn(8000)])["hidden_states"]) == 2
    assert "step 1: none (random layers, seed 3)" in describe_artifact(path)


def test_classifier_only(tiny_ckpts, cache, tmp_path, hub):
    config = MimicConfig(n_layers=0)
    assert config.name() == "classifier-only" and config.resolve_targets(12) == []
    assert mimicker_parameter_count("linear", 0, 768, 32) == 0 == mimicker_parameter_count("transformer", 0, 768, 768)
    assert sum(p.numel() for p in Mimicker("linear", 0, 64, 32).parameters()) == 0
    path = init_artifact(tiny_ckpts["wav2vec2"], config, tmp_path / "clf.pt")
    artifact = torch.load(path, weights_only=True)
    assert artifact["mimicker"] == {} and artifact["targets"] == [] and artifact["parameters"]["mimicker"] == 0
    assert artifact["training"]["baseline"] == "classifier only"
    upstream = hub.mimic_local(ckpt=str(path)).eval()
    with torch.no_grad():
        out = upstream([torch.randn(9000), torch.randn(4000)])
    assert len(out["hidden_states"]) == 1 and out["hidden_states"][0].shape == (2, 27, 64)
    torch.testing.assert_close(out["last_hidden_state"], out["hidden_states"][0])
    assert "classifier only (no mimicking layer); 0 mimicker" in describe_artifact(path)
    with pytest.raises(MimicError, match=r"classifier-only \(n_layers=0\) has no mimicking layer to train in step 1; "
                                         r"write it with init_artifact") as error:
        train_mimicker(cache, config, tmp_path / "x.pt", progress=False)
    assert "\n" not in str(error.value)
    with pytest.raises(MimicError, match="has no mimicking layer to train"):
        train_grid(tiny_ckpts["wav2vec2"], tmp_path, [config], tmp_path / "grid", progress=False)
    assert not (tmp_path / "grid").exists()


def test_config_selection(tmp_path):
    from superb_redundancy.mimic.config import select_configs

    assert len(select_configs(grid="paper")) == 12 and len(select_configs(grid="tiny")) == 4
    baselines = select_configs(grid="paper", baselines=True)
    assert [c.n_layers for c in baselines] == [1] * 6 + [0]
    assert [baseline_name(c) for c in select_configs(grid="tiny", baselines=True)] == \
        ["nonmimic-linear-N1-z32", "nonmimic-transformer-N1-z32", "classifier-only"]
    assert {c.layer_i for c in select_configs(grid="paper", layer_i=5) if c.n_layers == 2} == {5}
    path = tmp_path / "c.yaml"
    MimicConfig.tiny(n_layers=0).to_yaml(path)
    assert select_configs([path], grid="tiny")[0].classifier_only
    with pytest.raises(MimicError, match="no mimic configuration given"):
        select_configs()
    with pytest.raises(MimicError, match="unknown mimic grid 'huge'"):
        select_configs(grid="huge")


# ---------------------------------------------------------------------------------------------- superb-redundancy mimic
def test_cli_mimic_train_and_init(tiny_ckpts, audio, tmp_path, capsys):
    from superb_redundancy.cli import main

    config = tmp_path / "c.yaml"
    MimicConfig.tiny(epochs=2).to_yaml(config)
    out = tmp_path / "out"
    assert main(["mimic", "train", "--teacher", str(tiny_ckpts["wav2vec2"]), "--data", str(audio), "--limit", "6",
                 "--config", str(config), "--output-dir", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1 mimicker(s) from 6 clips" in printed
    assert f"{out / 'linear-N1-z32.pt'}: linear N=1 z=32, targets [2]" in printed
    assert "step 1: best val loss" in printed and "at epoch" in printed
    assert len(TeacherCache(out / "teacher_cache")) == 6

    assert main(["mimic", "init", "--teacher", str(tiny_ckpts["wav2vec2"]), "--tiny-grid",
                 "--output-dir", str(tmp_path / "base")]) == 0
    printed = capsys.readouterr().out
    assert "3 baseline(s)" in printed and "step 1: none" in printed
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == \
        ["classifier-only.pt", "nonmimic-linear-N1-z32.pt", "nonmimic-transformer-N1-z32.pt"]


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "{audio}", "--config", "{clf}"], "classifier-only (n_layers=0) has no mimicking layer"),
    (["train", "--corpus", "{audio}", "--tiny-grid"], "a corpus split needs its task"),
    (["train", "--data", "/nonexistent", "--tiny-grid"], "audio folder not found: /nonexistent"),
    (["train", "--data", "{audio}", "--tiny-grid", "--limit", "0"], "limit must be >= 1"),
    (["init", "--config", "{bad}"], "z=0 is invalid"),
])
def test_cli_mimic_bad_input_is_one_line(args, message, tiny_ckpts, audio, tmp_path, capsys):
    from superb_redundancy.cli import main

    MimicConfig(n_layers=0).to_yaml(tmp_path / "clf.yaml")
    (tmp_path / "bad.yaml").write_text("z: 0\n")
    args = [a.format(audio=audio, clf=tmp_path / "clf.yaml", bad=tmp_path / "bad.yaml") for a in args]
    code = main(["mimic", *args, "--teacher", str(tiny_ckpts["wav2vec2"]), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith(f"superb-redundancy mimic {args[0]}: error:")


# ---------------------------------------------------------------------------------------------- loss balance
@pytest.fixture(scope="module")
def preln_cache(tiny_preln_wav2vec2, audio, tmp_path_factory):
    """A pre-LN teacher whose layer 1 writes 200 times its feed-forward output into the residual stream: the raw
    scale of layer 1's output is then >= 40 times the final output's (after the encoder's LayerNorm)."""
    folder = tmp_path_factory.mktemp("preln_scaled")
    checkpoint = torch.load(tiny_preln_wav2vec2, weights_only=True)
    for key in ("encoder.layers.1.fc2.weight", "encoder.layers.1.fc2.bias"):
        checkpoint["model_weight"][key] = checkpoint["model_weight"][key] * 200
    torch.save(checkpoint, folder / "scaled.pt")
    return build_teacher_cache(folder / "scaled.pt", audio, folder / "cache", layers=[1, 3], dtype="float32",
                               progress=False)


def test_normalised_terms_balance_a_preln_teacher(preln_cache, tmp_path):
    """Each step-1 term is divided by its target's variance over the training frames: on a pre-LN teacher whose
    two targets differ 40x in raw scale, the two terms of an untrained mimicker are within a factor of 3 of each
    other (the raw MSEs differ over 100x), and the recorded variances are the targets' (relative 1e-6)."""
    cache = preln_cache
    rms = [float(np.sqrt(np.mean(np.asarray(cache.hidden[layer], dtype=np.float64) ** 2))) for layer in (1, 3)]
    assert rms[0] >= 40 * rms[1], rms
    config = MimicConfig.tiny(n_layers=2, layer_i=1, epochs=1)
    path = train_mimicker(cache, config, tmp_path / "m.pt", progress=False)
    training = torch.load(path, weights_only=True)["training"]
    train_ids, _ = mimic_train.split_clips(len(cache), config)
    rows = np.concatenate([np.arange(o, o + n) for o, n in zip(cache.offsets[train_ids], cache.lengths[train_ids])])
    expected = [torch.from_numpy(np.asarray(cache.hidden[layer])[rows]).double().var(dim=0, unbiased=False).mean()
                for layer in (1, 3)]
    assert training["target_variance"] == pytest.approx([float(v) for v in expected], rel=1e-6)
    first, final = training["history"][0]["val_terms"]
    raw = training["history"][0]["val_mse"]
    assert raw[0] > 100 * raw[1], raw
    assert 1 / 3 < first / final < 3, (first, final)
    assert raw == pytest.approx([t * v for t, v in zip((first, final), training["target_variance"])], rel=1e-9)
    assert "divided by its target's variance" in training["loss"]
    # the raw sum (the authors' code) is kept as an option, and records no variance
    raw_run = torch.load(train_mimicker(cache, MimicConfig.tiny(n_layers=2, layer_i=1, epochs=1,
                                                                normalize_terms=False), tmp_path / "r.pt",
                                        progress=False), weights_only=True)["training"]
    assert raw_run["target_variance"] is None
    assert raw_run["history"][0]["val_terms"] == pytest.approx(raw, rel=1e-6)
    # a state written before the terms were normalised is not resumed with normalised terms
    state_path = tmp_path / "m.pt.state.pt"
    state = torch.load(state_path, weights_only=True)
    del state["target_variance"]
    torch.save(state, state_path)
    with pytest.raises(MimicError, match="trained on the raw sum of the step-1 terms"):
        train_mimicker(cache, config, tmp_path / "m.pt", resume=True, progress=False)
