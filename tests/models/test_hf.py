"""Hugging Face wav2vec2 / HuBERT / WavLM folders: the hf_local upstream, pruning save_pretrained checkpoints.

Tiny models (dim 32, 3 layers, 2 heads, conv stride 320) are built with transformers' own configs and saved with
save_pretrained. Tolerance: a pruned model is compared with the original whose dropped layers are made identity
(monkeypatched forward) at atol 1e-5 / rtol 1e-5 (float32; the same operations run, so it is exact in practice);
hidden states against transformers' own output are compared exactly.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

transformers = pytest.importorskip("transformers")

from helpers.audio import noise_clips
from helpers import models
from superb_redundancy.models.hf import PRUNING_RECORD, HFModelError, HFUpstream, is_hf_model_dir  # noqa: E402
from superb_redundancy.pruning.hf import prune_hf_folder, prune_hf_model  # noqa: E402
from superb_redundancy.pruning.spec import PruneSpec  # noqa: E402
from superb_redundancy.core.variant import VariantKind  # noqa: E402
from superb_redundancy.results.variants import describe_variant  # noqa: E402

ATOL = RTOL = 1e-5
COMMON = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
              conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _config(kind: str):
    if kind == "wav2vec2":  # base-style: post-LN, group-norm CNN
        return transformers.Wav2Vec2Config(**COMMON)
    if kind == "wav2vec2_large":  # large/lv60-style: pre-LN ("stable layer norm"), layer-norm CNN
        return transformers.Wav2Vec2Config(**COMMON, do_stable_layer_norm=True, feat_extract_norm="layer")
    if kind == "hubert":
        return transformers.HubertConfig(**COMMON)
    if kind == "wavlm":
        return transformers.WavLMConfig(**COMMON, num_buckets=16, max_bucket_distance=64)
    raise ValueError(kind)


MODEL_CLASSES = {"wav2vec2": "Wav2Vec2Model", "wav2vec2_large": "Wav2Vec2Model", "hubert": "HubertModel",
                 "wavlm": "WavLMModel"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread avoids OpenMP barrier stalls


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """One save_pretrained folder per kind; wav2vec2_large has no preprocessor_config.json."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for seed, kind in enumerate(MODEL_CLASSES):
        torch.manual_seed(seed)
        model = getattr(transformers, MODEL_CLASSES[kind])(_config(kind)).eval()
        with torch.no_grad():  # make the (otherwise near-zero-init) relative position table matter
            for layer in getattr(model.encoder, "layers"):
                if getattr(layer.attention, "rel_attn_embed", None) is not None:
                    layer.attention.rel_attn_embed.weight.normal_()
        model.save_pretrained(root / kind)
        if kind != "wav2vec2_large":
            transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(
                root / kind)
        dirs[kind] = root / kind
    return dirs


@pytest.fixture(scope="module")
def wavs():
    return models.wavs(0, (16000, 12000, 8137), scale=0.1)


def _reference(path, wavs, model=None):
    """transformers' own hidden states: its feature extractor (with mask) and the base model."""
    extractor = (transformers.Wav2Vec2FeatureExtractor.from_pretrained(path)
                 if (path / "preprocessor_config.json").is_file()
                 else transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True))
    inputs = extractor([w.numpy() for w in wavs], sampling_rate=16000, padding=True, return_attention_mask=True,
                       return_tensors="pt")
    model = model or transformers.AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True)


def _states(upstream, wavs):
    with torch.no_grad():
        return upstream(wavs)["hidden_states"]


def _assert_close(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x, y, atol=ATOL, rtol=RTOL, msg=lambda m: f"hidden state {i}: {m}")


def _identity(layer, kind: str, first: bool):
    """Make ``layer`` return its input (WavLM's layer 0 still hands on the bias its table defines)."""
    if kind != "wavlm":
        layer.forward = lambda hidden_states, *args, **kwargs: hidden_states
    elif not first:
        layer.forward = lambda hidden_states, *args, position_bias=None, **kwargs: (hidden_states, position_bias)
    else:
        def forward(hidden_states, *args, position_bias=None, **kwargs):
            attention, (batch, frames, _) = layer.attention, hidden_states.shape
            bias = attention.compute_bias(frames, frames).unsqueeze(0).repeat(batch, 1, 1, 1)
            return hidden_states, bias.view(batch * attention.num_heads, frames, frames)

        layer.forward = forward


# ---------------------------------------------------------------------------------------------- the upstream
def test_is_hf_model_dir(hf_dirs, tmp_path):
    assert all(is_hf_model_dir(d) for d in hf_dirs.values())
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "file.pt").write_bytes(b"x")
    for path in (tmp_path, tmp_path / "bert", tmp_path / "file.pt", tmp_path / "missing", None, "wav2vec2"):
        assert not is_hf_model_dir(path)


@pytest.mark.parametrize("kind", list(MODEL_CLASSES))
def test_hidden_states_match_transformers(hf_dirs, wavs, kind):
    upstream = HFUpstream(hf_dirs[kind])
    assert upstream.get_downsample_rates("hidden_states") == 320
    ours = _states(upstream, wavs)
    reference = _reference(hf_dirs[kind], wavs)
    assert len(ours) == 4 and ours[0].shape == (3, 49, 32)
    for i in range(3):  # input of layer i: transformers' own entries, exactly
        assert torch.equal(ours[i], reference.hidden_states[i])
    assert torch.equal(ours[3], reference.last_hidden_state)  # the encoder output
    if kind == "wav2vec2_large":  # transformers 5: its last entry lacks the final LayerNorm
        assert not torch.allclose(reference.hidden_states[3], reference.last_hidden_state)
    else:
        assert torch.equal(ours[3], reference.hidden_states[3])


def test_model_without_mask_gets_per_clip_normalisation_and_zero_padding(hf_dirs, wavs):
    model = transformers.AutoModel.from_pretrained(hf_dirs["wav2vec2"]).eval()
    extractor = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False)  # as wav2vec2-base ships
    upstream = HFUpstream(model=model, feature_extractor=extractor)
    inputs = upstream.prepare(wavs)
    assert set(inputs) == {"input_values"}
    short = inputs["input_values"][2]
    assert abs(float(short[:8137].mean())) < 1e-4 and abs(float(short[:8137].std()) - 1) < 1e-3
    assert torch.count_nonzero(short[8137:]) == 0
    with torch.no_grad():
        expected = model(inputs["input_values"], output_hidden_states=True).hidden_states
    assert all(torch.equal(a, b) for a, b in zip(_states(upstream, wavs), expected))


# ---------------------------------------------------------------------------------------------- pruning
def test_pruning_nothing_reproduces_the_original(hf_dirs, wavs, tmp_path):
    out = prune_hf_model(hf_dirs["wavlm"], [], tmp_path / "same")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", PRUNING_RECORD} <= {
        p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["same"]  # no temp folder left behind
    assert all(torch.equal(a, b) for a, b in zip(_states(HFUpstream(out), wavs),
                                                 _states(HFUpstream(hf_dirs["wavlm"]), wavs)))


@pytest.mark.parametrize("kind,dropped", [("wav2vec2", [1]), ("wav2vec2", [2]), ("wav2vec2_large", [0, 2]),
                                          ("hubert", [1]), ("wavlm", [0]), ("wavlm", [0, 1]), ("wavlm", [2])])
def test_dropping_equals_identity_layers(hf_dirs, wavs, tmp_path, kind, dropped):
    src = hf_dirs[kind]
    out = prune_hf_model(src, dropped, tmp_path / "pruned")
    pruned = HFUpstream(out)
    assert pruned.num_layers == 3 - len(dropped)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3 - len(dropped)

    reference = HFUpstream(src)
    for i in dropped:
        _identity(reference.model.encoder.layers[i], kind, first=(i == 0))
    full = _states(reference, wavs)  # L+1 states; a dropped layer's output repeats its input
    kept = [i for i in range(3) if i not in dropped]
    _assert_close(_states(pruned, wavs), [full[i] for i in [0] + [i + 1 for i in kept[:-1]] + [3]])
    # in memory, at the original L+1 positions (what iterative pruning scores)
    _assert_close(_states(HFUpstream(src, drop_layers=dropped, full_positions=True), wavs), full)


def test_wavlm_relative_position_table_moves_to_the_new_first_layer(hf_dirs, tmp_path):
    from safetensors.torch import load_file

    original = load_file(hf_dirs["wavlm"] / "model.safetensors")
    pruned = load_file(prune_hf_model(hf_dirs["wavlm"], [0], tmp_path / "p") / "model.safetensors")
    key = "encoder.layers.0.attention.rel_attn_embed.weight"
    assert torch.equal(pruned[key], original[key])
    assert [k for k in pruned if "rel_attn_embed" in k] == [key]
    assert torch.equal(pruned["encoder.layers.0.attention.q_proj.weight"],
                       original["encoder.layers.1.attention.q_proj.weight"])


@pytest.mark.parametrize("kind,s3prl_name", [("wav2vec2", "hf_wav2vec2_custom"), ("hubert", "hf_hubert_custom"),
                                             ("wav2vec2_large", "hf_wav2vec2_custom"), ("wavlm", None)])
def test_pruned_folder_loads_with_transformers_and_s3prl(hf_dirs, wavs, tmp_path, hub, kind, s3prl_name):
    out = prune_hf_model(hf_dirs[kind], [1], tmp_path / "pruned")
    model = transformers.AutoModel.from_pretrained(out)
    assert type(model).__name__ == MODEL_CLASSES[kind] and model.config.num_hidden_layers == 2
    ours = _states(HFUpstream(out), wavs)
    _assert_close([*_reference(out, wavs, model.eval()).hidden_states[:2]], ours[:2])
    if s3prl_name is None:  # s3prl 0.4.18 has no HF WavLM expert
        return
    assert (out / "preprocessor_config.json").is_file()  # written even where the source had none
    theirs = _states(getattr(hub, s3prl_name)(str(out)), wavs)
    assert len(theirs) == 3
    _assert_close(theirs[:2], ours[:2])
    if kind == "wav2vec2_large":  # s3prl returns transformers' tuple: no final LayerNorm on the last entry
        assert not torch.allclose(theirs[2], ours[2])
    else:
        _assert_close(theirs[2:], ours[2:])


def test_classification_head_is_kept_and_computes_what_it_did(hf_dirs, wavs, tmp_path):
    torch.manual_seed(5)
    config = transformers.Wav2Vec2Config(**COMMON, num_labels=4, use_weighted_layer_sum=True,
                                         classifier_proj_size=16)
    classifier = transformers.Wav2Vec2ForSequenceClassification(config).eval()
    with torch.no_grad():
        classifier.layer_weights.copy_(torch.tensor([0.3, -1.0, 0.7, 2.0]))
    classifier.save_pretrained(tmp_path / "cls")
    out = prune_hf_model(tmp_path / "cls", [1, 2], tmp_path / "pruned")

    pruned = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(out).eval()
    assert torch.equal(pruned.classifier.weight, classifier.classifier.weight)
    assert pruned.layer_weights.shape == (2,)
    inputs = transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True)(
        [w.numpy() for w in wavs], sampling_rate=16000, padding=True, return_tensors="pt")
    for i in (1, 2):
        _identity(classifier.wav2vec2.encoder.layers[i], "wav2vec2", first=False)
    with torch.no_grad():
        torch.testing.assert_close(pruned(**inputs).logits, classifier(**inputs).logits, atol=ATOL, rtol=RTOL)
    # the upstream loads the base model of a head checkpoint
    upstream = HFUpstream(out)
    assert type(upstream.model).__name__ == "Wav2Vec2Model" and upstream.num_layers == 1


# ---------------------------------------------------------------------------------------------- analysis, CLI
@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    # >= k+1 = 9 clips (the prune subcommand's default k)
    return noise_clips(tmp_path_factory.mktemp("audio"), 10, samples=[8000 + 800 * i for i in range(10)],
                       name="clip{i}.wav")


def test_analyse_and_similarity_cli_on_an_hf_model(hf_dirs, audio_dir, tmp_path):
    from superb_redundancy import cli
    from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings, analyse
    from superb_redundancy.core.audio import list_audio

    settings = SimilaritySettings(batch_size=5, k=2, forward_batch_size=5)
    report = analyse(HFUpstream(hf_dirs["wavlm"]), list_audio(audio_dir), settings, progress=False)
    assert report.num_samples == 10
    for matrix in report.matrices.values():
        assert matrix.shape == (4, 4) and np.allclose(np.diag(matrix), 1, atol=1e-4)

    code = cli.main(["similarity", "-u", "hf_local", "-k", str(hf_dirs["hubert"]), "--data", str(audio_dir),
                     "--k", "2", "--batch-size", "5", "--output-dir", str(tmp_path / "sim")])
    assert code == 0 and SimilarityReport.load(tmp_path / "sim").num_layers == 3


def test_prune_hf_folder_plans_and_writes_the_pruned_folder(hf_dirs, audio_dir, tmp_path):
    request = dict(objective="knn-bi", amount=2, data=str(audio_dir), iterative=True,
                   output_dir=str(tmp_path / "out"), spec_path=str(tmp_path / "spec.yaml"))
    plan, spec, path = prune_hf_folder(hf_dirs["wav2vec2"], family="wav2vec2", **request)
    assert path == tmp_path / "out" and sorted(plan.drop_layers) == [1, 2] and spec.notes["iterative"] is True
    record = json.loads((tmp_path / "out" / PRUNING_RECORD).read_text())
    assert record["dropped_layers"] == [1, 2] and record["notes"]["iterative"] is True
    assert HFUpstream(tmp_path / "out").num_layers == 1
    assert PruneSpec.from_yaml(tmp_path / "spec.yaml").drop_layers == (1, 2)
    with pytest.raises(HFModelError, match="does not match"):
        prune_hf_folder(hf_dirs["wav2vec2"], family="wavlm", **request)


def test_a_pruned_folder_is_described_as_a_variant_of_its_source(hf_dirs, tmp_path, monkeypatch):
    """What the leaderboard reads of `hf_local -k DIR`: the pruned folder a pruned variant whose base is the folder
    it came from, that folder (named by any path to it) the stock base."""
    pruned = prune_hf_model(hf_dirs["hubert"], [0, 2], tmp_path / "pruned", notes={"objective": "bi"})
    described = describe_variant(str(pruned), None)
    assert (described.kind, described.family, described.drop_layers, described.objective) == \
        (VariantKind.PRUNED, "hubert", (0, 2), "bi")
    monkeypatch.chdir(hf_dirs["hubert"].parent)
    source = describe_variant("./hubert", None)
    assert source.kind is VariantKind.STOCK and source.is_base and not described.is_base
    assert source.base_key == described.base_key == str(hf_dirs["hubert"].resolve())
    assert described.label("hf_local") == "hf drop [0, 2] (bi)"


def test_prune_cli_on_an_hf_base(hf_dirs, audio_dir, tmp_path, capsys):
    from superb_redundancy import cli

    code = cli.main(["prune", "--family", "wav2vec2", "--base", str(hf_dirs["wav2vec2"]), "--objective", "knn-bi",
                     "--amount", "2", "--data", str(audio_dir), "--output", str(tmp_path / "spec.yaml"),
                     "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and out.index("objective knn-bi") < out.index("prune spec (record of the plan): ") < out.index(
        f"pruned model: {tmp_path / 'out'}  (1 of 3 layers; use: -u hf_local -k {tmp_path / 'out'}")
    assert (tmp_path / "spec.yaml").is_file() and HFUpstream(tmp_path / "out").num_layers == 1


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors(hf_dirs, tmp_path, hub):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(HFModelError, match="no config.json"):
        HFUpstream(tmp_path)
    with pytest.raises(HFModelError, match="not found"):
        HFUpstream(tmp_path / "missing")
    with pytest.raises(HFModelError, match="'bert' is not supported"):
        HFUpstream(tmp_path / "bert")
    with pytest.raises(HFModelError, match="pass -k DIR"):
        hub.hf_local(ckpt=None)
    with pytest.raises(HFModelError, match="no -g config"):
        hub.hf_local(ckpt=str(hf_dirs["wav2vec2"]), model_config="spec.yaml")
    src = hf_dirs["wav2vec2"]
    with pytest.raises(HFModelError, match=r"\[3\] out of range: this model has 3 transformer layers \(valid 0..2\)"):
        prune_hf_model(src, [3], tmp_path / "out")
    with pytest.raises(HFModelError, match="drops all 3"):
        prune_hf_model(src, [0, 1, 2], tmp_path / "out")
    with pytest.raises(HFModelError, match="more than once"):
        prune_hf_model(src, [1, 1], tmp_path / "out")
    with pytest.raises(HFModelError, match="out of range"):
        HFUpstream(src, drop_layers=[-1])
    with pytest.raises(HFModelError, match="not empty"):
        prune_hf_model(src, [1], tmp_path)
    assert not (tmp_path / "out").exists()
