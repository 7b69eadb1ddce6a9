"""A variant's hidden states against its teacher's: `similarity --against`, and cross_analyse under it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.audio import pitched_sines
from helpers.commands import cli as user_cli
from helpers.commands import in_process
from superb_redundancy.analysis.cross import CrossSimilarityReport, cross_analyse
from superb_redundancy.analysis.report import SimilaritySettings, analyse
from superb_redundancy.core.audio import list_audio
from superb_redundancy.hub.install import build_upstream

SELF_ATOL = 1e-12  # a model against itself: its own matrices up to float64 rounding
SETTINGS = SimilaritySettings(batch_size=12, permutations=0)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    # sines of varied pitch with noise, of three lengths (padding matters)
    return pitched_sines(tmp_path_factory.mktemp("cross_audio"), 24, lambda i: 0.4 + (i % 3) * 0.2, 120, 25, seed=2,
                         name="{i:02d}.wav")


@pytest.fixture(scope="module")
def variants(tmp_path_factory, tiny_ckpts):
    """A pruned artifact (layer 1 dropped) and an untrained one-layer mimicker of the tiny wav2vec2."""
    from superb_redundancy.cli import main

    out = tmp_path_factory.mktemp("cross_variants")
    base = str(tiny_ckpts["wav2vec2"])
    assert main(["prune-spec", "--family", "wav2vec2", "--base", base, "--drop", "1",
                 "--artifact", str(out / "pruned.pt")]) == 0
    assert main(["mimic", "init", "--teacher", base, "--tiny-grid", "--output-dir", str(out / "mimic")]) == 0
    return {"base": base, "pruned": str(out / "pruned.pt"),
            "mimic": str(out / "mimic" / "nonmimic-transformer-N1-z32.pt")}




def test_a_model_against_itself_gives_its_own_matrices(tiny_ckpts, audio_dir):
    files = list_audio(audio_dir)
    own = analyse(build_upstream("wav2vec2_local", str(tiny_ckpts["wav2vec2"])), files, SETTINGS, progress=False)
    # two separately loaded copies, as the command loads the variant and the reference
    cross = cross_analyse(build_upstream("wav2vec2_local", str(tiny_ckpts["wav2vec2"])),
                          build_upstream("wav2vec2_local", str(tiny_ckpts["wav2vec2"])), files, SETTINGS,
                          progress=False)
    assert cross.num_samples == own.num_samples == 24 and set(cross.matrices) == {"cosine", "cka", "knn"}
    for metric, matrix in own.matrices.items():
        np.testing.assert_allclose(cross.matrices[metric], matrix, atol=SELF_ATOL, rtol=0, err_msg=metric)
    assert cross.best_matches()["cka"] == [0, 1, 2, 3]


def test_a_pruned_model_reproduces_its_teachers_layers(variants, audio_dir):
    cross = cross_analyse(build_upstream("pruned_wav2vec2_local", variants["pruned"]),
                          build_upstream("wav2vec2_local", variants["base"]), list_audio(audio_dir), SETTINGS,
                          progress=False)
    assert cross.shape == (4, 4)
    for metric, m in cross.matrices.items():
        # hidden states 0 and 1 (input, output of the kept layer 0) are the teacher's own
        np.testing.assert_allclose([m[0, 0], m[1, 1]], 1.0, atol=SELF_ATOL, err_msg=metric)
        # layer 1 is dropped: its output repeats its input, row for row
        np.testing.assert_allclose(m[2], m[1], atol=SELF_ATOL, rtol=0, err_msg=metric)


@pytest.mark.slow
def test_command_writes_labelled_cross_matrices_for_a_mimicker(variants, audio_dir, tmp_path):
    out = tmp_path / "cross"
    result = user_cli("similarity", "-u", "mimic_local", "-k", variants["mimic"], "--against", "wav2vec2_local",
                 "--against-ckpt", variants["base"], "--data", str(audio_dir), "--batch-size", "12",
                 "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["cross_similarity.json", "cross_similarity.png"]
    data = json.loads((out / "cross_similarity.json").read_text())
    assert data["kind"] == "cross_similarity"
    for metric in ("cosine", "cka", "knn"):  # the mimicker's 1 layer + 1 rows, the teacher's 3 + 1 columns
        assert np.asarray(data["matrices"][metric]).shape == (2, 4) and len(data["best_match"][metric]) == 2
    assert data["source"]["reference"]["ckpt"] == variants["base"] and data["source"]["clips"] == 24
    assert data["variant"].startswith("mimic_local") and data["reference"].startswith("wav2vec2_local")
    assert "most similar wav2vec2_local" in result.stdout and "hidden state | cosine" in result.stdout
    loaded = CrossSimilarityReport.load(out)
    assert loaded.shape == (2, 4) and loaded.settings.batch_size == 12


def test_axis_labels_name_both_models(variants, audio_dir, tmp_path, monkeypatch):
    from superb_redundancy.analysis import blocks

    seen = {}
    real = blocks.plot_similarity

    def spy(matrices, blocks_, path, **kwargs):
        seen.update(kwargs)
        return real(matrices, blocks_, path, **kwargs)

    monkeypatch.setattr("superb_redundancy.analysis.cross.plot_similarity", spy)
    report = CrossSimilarityReport({"cka": np.full((2, 4), 0.9)}, SETTINGS, 24, "mimic_local", "wav2vec2_local")
    report.save(tmp_path)
    assert seen["axis_label"] == ("mimic_local hidden state", "wav2vec2_local hidden state")
    assert (tmp_path / "cross_similarity.png").stat().st_size > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--against-ckpt", "{base}"], "--against-ckpt names the reference's checkpoint or config: give --against"),
        (["--against", "wav2vec3_local"], "reference (--against wav2vec3_local): unknown upstream 'wav2vec3_local'"),
        (["--against", "wav2vec2_local", "--against-ckpt", "{missing}"],
         "reference (--against wav2vec2_local): checkpoint not found"),
        (["--against", "wav2vec2_local", "--against-ckpt", "{base}", "--blocks", "3"], "--blocks is for one model"),
        (["--against", "wav2vec2_local", "--against-ckpt", "{base}", "--no-random-baseline"],
         "--no-random-baseline is for one model"),
    ],
)
def test_bad_input_is_one_line_before_any_work(extra, message, variants, audio_dir, tmp_path):
    extra = [a.format(base=variants["base"], missing=tmp_path / "missing.pt") for a in extra]
    result = in_process("similarity", "-u", "pruned_wav2vec2_local", "-k", variants["pruned"], "--data", audio_dir,
                        "--output-dir", tmp_path / "out", *extra)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in lines[-1], result.stderr[-1500:]
    assert "Traceback" not in result.stderr and "hidden states:" not in result.stderr  # no forward pass ran
    assert not (tmp_path / "out").exists()
