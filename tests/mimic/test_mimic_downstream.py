"""Step 2 of mimicking through s3prl's own runner (run_downstream.py in child processes, KS tiny config, synthetic
corpus): a step-1 mimicker trains and evaluates; `-f` adapts its mimicking layers (the CNN stays frozen) and
saves them as `Upstream` in states-*.ckpt, which evaluate loads back; without `-f` they are left unchanged. The
paper's baselines (non-mimicker, classifier only) run too."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from superb_redundancy.data.splits import SplitError, corpus_audio
from superb_redundancy.core.files import sha256_file
from superb_redundancy.mimic.config import MimicConfig
from superb_redundancy.mimic.baselines import init_artifact
from superb_redundancy.mimic.train import train_grid
from superb_redundancy.results.experiment import Variant, train_and_evaluate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread"),
              pytest.mark.xdist_group("mimic_downstream")]  # one worker trains the module's variants once

TASK = "speech_commands"
STEPS = 4
#: a short run: 4 steps, no dev evaluation, one checkpoint (states-4.ckpt, which evaluate then reads)
SHORT = {"config.runner.total_steps": STEPS, "config.runner.eval_step": 1000, "config.runner.save_step": STEPS,
         "config.runner.log_step": STEPS}


@pytest.fixture(scope="module")
def artifacts(tiny_ckpts, corpus_root, tmp_path_factory):
    """A step-1 mimicker (12 KS training clips, 2 epochs), one replacing layer 1 only (block replacement), a
    non-mimicker and a classifier-only baseline."""
    directory = tmp_path_factory.mktemp("mimic_step2")
    teacher = tiny_ckpts["wav2vec2"]
    clips = corpus_audio(corpus_root, TASK, "train")[:12]
    [mimic, span] = train_grid(teacher, clips, [MimicConfig.tiny(epochs=2), MimicConfig.tiny(epochs=2, span=[1, 1])],
                               directory, progress=False)
    return {
        "mimic": mimic,
        "span": span,
        "nonmimic": init_artifact(teacher, MimicConfig.tiny(kind="transformer"), directory / "nonmimic.pt"),
        "classifier": init_artifact(teacher, MimicConfig(n_layers=0), directory / "classifier.pt"),
    }


@pytest.fixture(scope="module")
def runs(artifacts, corpus_root, tmp_path_factory):
    """Five train + evaluate runs through s3prl's runner, two at a time: {name: (expdir, test acc, sha256 before)}."""
    root = tmp_path_factory.mktemp("mimic_exp")
    plan = {
        "frozen": Variant("mimic", "mimic_local", ckpt=str(artifacts["mimic"])),
        "adapted": Variant("mimic -f", "mimic_local", ckpt=str(artifacts["mimic"]), extra_args=("-f",)),
        "nonmimic": Variant("non-mimicker -f", "mimic_local", ckpt=str(artifacts["nonmimic"]), extra_args=("-f",)),
        "classifier": Variant("classifier only", "mimic_local", ckpt=str(artifacts["classifier"])),
        "span": Variant("span [1, 1] -f", "mimic_local", ckpt=str(artifacts["span"]), extra_args=("-f",)),
    }
    before = {name: sha256_file(artifacts[name]) for name in artifacts}

    def run(name):
        return name, train_and_evaluate(plan[name], TASK, corpus_root, root / name, extra_overrides=SHORT)

    with ThreadPoolExecutor(2) as pool:
        metrics = dict(pool.map(run, plan))
    return {"root": root, "metrics": metrics, "before": before}


def states(expdir: Path) -> dict:
    torch.serialization.add_safe_globals([argparse.Namespace])
    return torch.load(expdir / f"states-{STEPS}.ckpt", map_location="cpu", weights_only=True)


def log_text(runs, name) -> str:
    return (runs["root"] / f"{name}.log").read_text(errors="replace")


def test_every_variant_trains_and_evaluates(runs):
    assert set(runs["metrics"]) == {"frozen", "adapted", "nonmimic", "classifier", "span"}
    for name, metric in runs["metrics"].items():
        assert 0.0 <= metric <= 1.0, name
        assert "test acc:" in log_text(runs, name)


def test_without_f_the_mimicker_is_left_unchanged(runs, artifacts):
    for name in ("frozen", "classifier"):
        saved = states(runs["root"] / name)
        assert "Upstream" not in saved and {"Featurizer", "Downstream"} <= set(saved)
        assert saved["Args"].upstream_trainable is False
        assert "Loading Upstream weights" not in log_text(runs, name)  # evaluate rebuilds it from the artifact
    for name in artifacts:
        assert sha256_file(artifacts[name]) == runs["before"][name]


@pytest.mark.parametrize("name,artifact", [("adapted", "mimic"), ("nonmimic", "nonmimic")])
def test_with_f_the_mimicking_layers_train_and_the_cnn_stays_frozen(runs, artifacts, name, artifact):
    saved = states(runs["root"] / name)
    assert saved["Args"].upstream_trainable is True
    upstream = saved["Upstream"]
    original = torch.load(artifacts[artifact], weights_only=True)
    mimicker = {k.removeprefix("mimicker."): v for k, v in upstream.items() if k.startswith("mimicker.")}
    assert set(mimicker) == set(original["mimicker"]) and mimicker
    changed = [k for k, v in mimicker.items() if not torch.equal(v, original["mimicker"][k])]
    assert changed == list(mimicker), f"unchanged: {set(mimicker) - set(changed)}"
    frontend = {k.removeprefix("frontend."): v for k, v in upstream.items() if k.startswith("frontend.")}
    assert set(frontend) == set(original["frontend"])
    for key, value in frontend.items():
        if key.startswith("feature_extractor."):  # the CNN: no gradient, as in s3prl's stock experts
            torch.testing.assert_close(value, original["frontend"][key], rtol=0, atol=0)
        else:  # layer_norm and post_extract_proj adapt with the mimicker
            assert not torch.equal(value, original["frontend"][key]), key
    # evaluate (-e states-*.ckpt) loads the adapted upstream back
    evaluate = log_text(runs, name).split("-m evaluate", 1)[1]
    assert "Loading Upstream weights from the previous experiment" in evaluate


def test_span_with_f_adapts_the_mimicker_and_keeps_the_teacher_layers(runs, artifacts):
    """Block replacement through the runner: the head reads the teacher's L+1 positions; -f adapts the mimicking
    layer (and the front end's projection) while the kept teacher layers stay exactly the teacher's."""
    saved = states(runs["root"] / "span")["Upstream"]
    original = torch.load(artifacts["span"], weights_only=True)
    encoder = {k.removeprefix("encoder."): v for k, v in saved.items() if k.startswith("encoder.")}
    assert set(encoder) == set(original["encoder"])
    assert {k.split(".")[1] for k in encoder if k.startswith("layers.")} == {"0", "2"}
    for key, value in encoder.items():
        torch.testing.assert_close(value, original["encoder"][key], rtol=0, atol=0)
    mimicker = {k.removeprefix("mimicker."): v for k, v in saved.items() if k.startswith("mimicker.")}
    assert all(not torch.equal(v, original["mimicker"][k]) for k, v in mimicker.items()) and mimicker
    assert "Take a list of 4 features" in log_text(runs, "span")
    evaluate = log_text(runs, "span").split("-m evaluate", 1)[1]
    assert "Loading Upstream weights from the previous experiment" in evaluate


def test_classifier_only_feeds_one_hidden_state(runs):
    assert "Take a list of" not in log_text(runs, "classifier")  # a single feature: no weighted sum
    assert "Take a list of 2 features" in log_text(runs, "frozen")


def test_corpus_splits(corpus_root):
    train, dev, test = (corpus_audio(corpus_root, TASK, split) for split in ("train", "dev", "test"))
    assert train and dev and test and not set(train) & set(dev)
    assert all("_background_noise_" not in str(p) for p in train + dev)
    assert all("test_set" in str(p) for p in test)
    for task in ("voxceleb1", "asr"):
        assert corpus_audio(corpus_root, task, "train") and corpus_audio(corpus_root, task, "test")
    assert corpus_audio(corpus_root, "emotion", "train")
    with pytest.raises(SplitError, match="emotion has no fixed dev split"):
        corpus_audio(corpus_root, "emotion", "dev")
    with pytest.raises(SplitError, match="unknown task 'kws'"):
        corpus_audio(corpus_root, "kws")
