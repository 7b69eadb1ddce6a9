"""The leaderboard from a fixture set of records: expected rows, retention, Pareto marks, files."""

from __future__ import annotations

import pytest

from superb_redundancy.harvest import RunRecord
from superb_redundancy.leaderboard import Profile, pareto_mask, records_frame, task_tables, write_leaderboard


def record(task, upstream, value, variant, spec=None, metric="acc", higher=True, ckpt_sha="base-sha", seed=1):
    return RunRecord(record_id=f"{variant}-{task}-{seed}", expdir=f"/exp/{variant}/{task}/{seed}", task=task,
                     upstream=upstream, upstream_ckpt=None, upstream_model_config=None,
                     upstream_sha256=ckpt_sha if upstream.endswith("_local") and not upstream.startswith("pruned") else None,
                     model_config_sha256=None, variant=variant, metric=metric, value=value, higher_is_better=higher,
                     seed=seed, config=None, config_sha256=None, step=30, evaluated_at="2026-01-01T00:00:00",
                     spec=spec or {})


@pytest.fixture
def records():
    spec = {"base": "base-sha", "drop_layers": [3, 4, 5], "notes": {"objective": "knn-bi"}}
    return [
        record("speech_commands", "wav2vec2_local", 0.96, "base"),
        record("speech_commands", "pruned_wav2vec2", 0.93, "pruned", spec=spec, seed=1),
        record("speech_commands", "pruned_wav2vec2", 0.91, "pruned", spec=spec, seed=2),
        record("asr", "wav2vec2_local", 6.0, "base", metric="wer", higher=False),
        record("asr", "pruned_wav2vec2", 8.0, "pruned", spec=spec, metric="wer", higher=False),
    ]


PROFILES = {"base": Profile(95_000_000, 6.9e9, 100.0), "pruned": Profile(73_700_000, 5.8e9, 80.0)}


def test_rows_retention_and_pareto(records):
    frame = records_frame(records, PROFILES)
    ks = frame[frame.task == "speech_commands"].set_index("variant")
    assert ks.loc["pruned", "value"] == pytest.approx(0.92) and ks.loc["pruned", "runs"] == 2  # mean over seeds
    assert ks.loc["pruned", "retention_pct"] == pytest.approx(100 * 0.92 / 0.96)
    assert ks.loc["base", "retention_pct"] == pytest.approx(100)
    assert ks.loc["pruned", "label"] == "pruned_wav2vec2 drop [3, 4, 5] (knn-bi)"
    assert bool(ks.loc["pruned", "pareto"]) and bool(ks.loc["base", "pareto"])  # cheaper vs better: both
    asr = frame[frame.task == "asr"].set_index("variant")
    assert asr.loc["pruned", "retention_pct"] == pytest.approx(100 * 6.0 / 8.0)  # error rate: base / variant
    table = task_tables(frame)["asr"]
    assert list(table["params (M)"]) == [73.7, 95.0] and list(table["GMACs / s audio"]) == [5.8, 6.9]


def test_pareto_mask():
    assert pareto_mask([0.9, 0.8, 0.95, 0.85], [5, 4, 6, 5], True) == [True, True, True, False]
    assert pareto_mask([10, 12], [2, 1], False) == [True, True]
    assert pareto_mask([10, 12], [1, 2], False) == [True, False]


def test_files_are_written(records, tmp_path):
    written = write_leaderboard(records_frame(records, PROFILES), tmp_path)
    for name in ("overview.md", "speech_commands.md", "speech_commands.csv", "speech_commands.tex",
                 "speech_commands.png", "asr.png", "index.html"):
        assert written[name].is_file(), name
    page = (tmp_path / "index.html").read_text()
    assert "sortable" in page and "data:image/png;base64," in page and "knn-bi" in page
    assert "| pruned_wav2vec2 drop [3, 4, 5] (knn-bi)" in (tmp_path / "speech_commands.md").read_text()
