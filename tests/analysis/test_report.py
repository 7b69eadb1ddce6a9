"""Similarity analysis of a real (tiny) upstream, its report, and pruning plans read off it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.audio import pitched_sines
from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings, analyse
from superb_redundancy.pruning.plan import plan_pruning
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import build_pruned


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    # sines of varied pitch with noise: enough structure for neighbours to mean something
    return pitched_sines(tmp_path_factory.mktemp("audio"), 40, lambda i: 0.5 + (i % 3) * 0.25, 100, 20, seed=0)


@pytest.fixture(scope="module")
def report(tiny_ckpts, audio_dir):
    from superb_redundancy.core.audio import list_audio

    model = build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[]))
    return analyse(model, list_audio(audio_dir), SimilaritySettings(batch_size=16, forward_batch_size=8),
                   progress=False)


def test_report_has_all_hidden_states_and_blocks(report):
    assert set(report.matrices) == {"cosine", "cka", "knn"} and report.num_layers == 3
    for metric, matrix in report.matrices.items():
        assert matrix.shape == (4, 4)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)
        blocks = report.blocks[metric]  # over the transformer-layer outputs 0..L-1, as the paper's heat maps
        assert len(blocks) == 2 and blocks[0][0] == 0 and blocks[-1][1] == 2  # contiguous, covering
        assert blocks[0][1] + 1 == blocks[1][0]
        strength = report.strength[metric]
        assert strength["strength"] == pytest.approx(strength["within"] - strength["between"])
        assert 0 < strength["permutation_p"] <= 1
    assert report.num_samples == 40
    assert report.layer_blocks("cka") == report.blocks["cka"]


def test_blocks_can_include_the_input_state(report):
    from superb_redundancy.analysis.report import report_from_matrices

    settings = SimilaritySettings(include_input=True, permutations=0)
    with_input = report_from_matrices(report.matrices, settings, report.num_samples)
    for metric, blocks in with_input.blocks.items():
        assert blocks[0][0] == 0 and blocks[-1][1] == 3  # hidden states 0..L
        assert with_input.layer_blocks(metric)[-1][1] == 2


def test_report_round_trips(report, tmp_path):
    paths = report.save(tmp_path)
    assert paths["figure"].stat().st_size > 0
    loaded = SimilarityReport.load(tmp_path)
    for metric in report.matrices:
        np.testing.assert_array_equal(loaded.matrices[metric], report.matrices[metric])
    assert loaded.blocks == report.blocks and loaded.settings == report.settings


def test_dropped_layer_shows_as_identical_neighbours(tiny_ckpts, audio_dir):
    from superb_redundancy.core.audio import list_audio

    model = build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[1]))
    pruned = analyse(model, list_audio(audio_dir), SimilaritySettings(batch_size=16), progress=False)
    for metric in ("cosine", "cka", "knn"):  # hidden state 2 repeats hidden state 1
        assert pruned.matrices[metric][1, 2] == pytest.approx(1.0, abs=1e-9)


def test_static_plan_follows_block_influence(report):
    plan = plan_pruning(report, "bi", 1)
    scores = 1 - np.array([report.matrices["cosine"][l, l + 1] for l in range(3)])
    assert plan.drop_layers == [1 + int(np.argmin(scores[1:]))] and not plan.iterative
    np.testing.assert_allclose(plan.scores, scores)
    assert plan_pruning(report, "backward", 2).drop_layers == [2, 1]
    assert plan_pruning(report, "forward", 0.5).drop_layers == [1]  # floor(0.5 * 3) = 1


def test_span_plan_drops_the_closest_span_and_prints_its_scores(report):
    cosine = report.matrices["cosine"]
    for n in (1, 2):
        plan = plan_pruning(report, "span", n)
        d = np.arccos(np.clip([cosine[l, l + n] for l in range(4 - n)], -1, 1)) / np.pi  # spans l..l+n-1, L = 3
        best = 1 + int(np.argmin(d[1:]))  # layer 0 is kept
        assert plan.drop_layers == list(range(best, best + n)) and plan.span == n and not plan.iterative
        np.testing.assert_allclose(plan.scores, d)
        assert plan.order[0] == best and sorted(plan.order) == list(range(1, 4 - n))
        text = plan.describe()
        assert f"score {d[best]:.4f}  <- dropped" in text and f"spans of {n} consecutive layer(s)" in text
    assert plan_pruning(report, "span", 2, keep_first=False).drop_layers == [int(np.argmin(d)), int(np.argmin(d)) + 1]
    assert plan_pruning(report, "span", 0).drop_layers == []
    # a span is chosen once for the amount: --iterative does not apply (no reanalysis)
    calls = []
    assert plan_pruning(report, "span", 2, reanalyse=lambda dropped: calls.append(dropped)).drop_layers == [1, 2]
    assert not calls


def test_iterative_plan_reanalyses_the_pruned_model(report, tiny_ckpts, audio_dir):
    from superb_redundancy.core.audio import list_audio

    calls = []

    def reanalyse(dropped):
        calls.append(list(dropped))
        model = build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=dropped))
        return analyse(model, list_audio(audio_dir), report.settings, progress=False)

    plan = plan_pruning(report, "knn-bi", 2, reanalyse=reanalyse)
    assert plan.iterative and len(calls) == 1 and calls[0] == plan.drop_layers[:1]
    assert sorted(plan.drop_layers) == [1, 2]  # layer 0 is never pruned


def test_bad_objective(report):
    with pytest.raises(ValueError, match=r"unknown pruning objective 'middle'; valid: "):
        plan_pruning(report, "middle", 1)


def test_flatten_fits_clips_of_any_length_as_the_paper_did(tiny_ckpts, audio_dir, tmp_path):
    """``pool: flatten`` on clips of 0.5, 0.75 and 1 s (as real Speech Commands has): refused without a clip length
    (fails on the main before issue 25 with clip_seconds, which did not exist: it cropped and never padded); with
    ``clip_seconds`` the clips are zero-padded at the end, counted in the report, and the matrices are those of
    clips padded by hand."""
    import soundfile

    from superb_redundancy.core.audio import list_audio

    files = list_audio(audio_dir)
    model = build_pruned("wav2vec2", PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[]))
    settings = dict(pool="flatten", batch_size=16, forward_batch_size=8)
    with pytest.raises(ValueError):
        analyse(model, files, SimilaritySettings(**settings), progress=False)
    fitted = analyse(model, files, SimilaritySettings(**settings, clip_seconds=1.0), progress=False)
    assert fitted.source["fit"] == {"seconds": 1.0, "cut": 0, "padded": 27, "clips": 40}  # i % 3 in (0, 1): short
    for path in files:
        wav, rate = soundfile.read(str(path), dtype="float32")
        soundfile.write(str(tmp_path / path.name), np.pad(wav, (0, rate - len(wav))), rate, subtype="FLOAT")
    by_hand = analyse(model, list_audio(tmp_path), SimilaritySettings(**settings), progress=False)
    for metric, matrix in by_hand.matrices.items():
        np.testing.assert_allclose(fitted.matrices[metric], matrix, atol=1e-6, err_msg=metric)
    cut = analyse(model, files, SimilaritySettings(**settings, clip_seconds=0.5), progress=False)
    assert (cut.source["fit"]["cut"], cut.source["fit"]["padded"]) == (26, 0)
