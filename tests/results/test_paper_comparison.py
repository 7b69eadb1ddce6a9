"""The paper comparison: which leaderboard rows meet which of the paper's rows, and the verdict rule."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from superb_redundancy.results.paper_comparison import _paper_key, claims, comparison_table, verdict


@pytest.mark.parametrize("label, key", [
    ("mimic linear N=1 z=32", "mimic-linear-N1-z32"),
    ("non-mimicker transformer N=1 z=32", "mimic-nonmimic-transformer-N1-z32"),
    ("mimic linear N=1 z=64", None),  # the paper's Table 1 row for z = 64 is not transcribed
    ("mimic linear N=1 z=32 replacing 6-7", None),  # block replacement: the paper replaces the whole stack
    ("pruned_wav2vec2 drop [1, 3, 5] (knn-bi)", "pruned"),
    ("pruned_wav2vec2 drop [1, 3, 5] (bi)", None),  # the paper's pruned row is its kNN-BI model
    ("pruned_wav2vec2 drop [1, 3, 5] (knn-bi) healed", None),  # the paper does not heal
    ("classifier only (no layers)", None),
    ("mimic linear N=1 z=32, step 2: paper (m_N, teacher's head, early stopping)", "mimic-linear-N1-z32"),
    ("reference: ceiling, linear N=1 z=512 trained with labels on the front end", None),
])
def test_labels_meet_the_papers_rows(label, key):
    assert _paper_key(label) == key


@pytest.mark.parametrize("low, high, expected", [(95.0, 99.0, "yes"), (90.0, 96.0, "undecided"),
                                                 (80.0, 94.9, "no"), (math.nan, 1.0, "n/a")])
def test_a_claim_holds_only_where_the_interval_supports_it(low, high, expected):
    assert verdict(low, high) == expected


def _row(label, value, low, high, retention, r_low, r_high, params, is_base=False):
    return dict(task="speech_commands", label=label, value=value, low=low, high=high, retention=retention,
                retention_low=r_low, retention_high=r_high, params=params, macs=1e8, latency_ms=10.0 * params / 2e6,
                is_base=is_base, base="b")


def test_the_table_and_claims_of_a_small_study(tmp_path):
    frame = pd.DataFrame([
        _row("wav2vec2_local", 0.8, 0.76, 0.84, 100.0, 100.0, 100.0, 2e6, is_base=True),
        _row("pruned_wav2vec2 drop [1, 3] (knn-bi)", 0.79, 0.75, 0.83, 98.0, 96.0, 100.0, 1.5e6),
        _row("mimic linear N=1 z=32 replacing 6-7", 0.6, 0.55, 0.65, 75.0, 70.0, 80.0, 1.8e6),
        _row("mimic transformer N=1 z=32", 0.5, 0.45, 0.55, 62.0, 57.0, 67.0, 0.2e6),
        _row("classifier only (no layers)", 0.3, 0.26, 0.34, 37.0, 33.0, 41.0, 0.1e6),
    ])
    table = comparison_table(frame).set_index("variant")
    assert table.loc["pruned_wav2vec2 drop [1, 3] (knn-bi)", "keeps 95%?"] == "yes"
    assert table.loc["pruned_wav2vec2 drop [1, 3] (knn-bi)", "param red."] == "25.0%"
    assert table.loc["pruned_wav2vec2 drop [1, 3] (knn-bi)", "paper: % of base"] == "98.4%"
    assert table.loc["mimic linear N=1 z=32 replacing 6-7", "paper: acc"] == ""  # no paper row to stand beside
    assert table.loc["mimic transformer N=1 z=32", "keeps 95%?"] == "no"
    assert table.loc["classifier only (no layers)", "paper: acc"] == "0.79"
    lines = claims(frame, tmp_path, "w")  # no similarity or curves on disk: the variants' claims only
    assert len([l for l in lines if "(paper: 94-96% for z = 32)" in l]) == 1  # whole-stack mimickers only
    assert any(l.startswith("- some non-linearity is needed") and "reproduced" in l for l in lines)


def test_references_stand_beside_the_mimickers(tmp_path):
    """The reference rows are marked as such in the table, listed in the claims, and each whole-stack mimicker's
    line says how much of the front end's best ceiling it reaches."""
    frame = pd.DataFrame([
        _row("wav2vec2_local", 0.8, 0.76, 0.84, 100.0, 100.0, 100.0, 2e6, is_base=True),
        _row("mimic linear N=1 z=32, step 2: paper (m_N, teacher's head, early stopping)", 0.5, 0.45, 0.55, 62.5,
             57.0, 67.0, 0.2e6),
        _row("reference: head on wav2vec2's last hidden state", 0.78, 0.74, 0.82, 97.5, 95.0, 99.0, 2e6),
        _row("reference: ceiling, linear N=1 z=512 trained with labels on the front end", 0.6, 0.55, 0.65, 75.0,
             70.0, 80.0, 0.5e6),
        _row("reference: ceiling, transformer N=1 z=512 trained with labels on the front end", 0.64, 0.6, 0.68, 80.0,
             75.0, 85.0, 0.7e6),
    ])
    table = comparison_table(frame).set_index("variant")
    assert table.loc["reference: head on wav2vec2's last hidden state", "keeps 95%?"] == "(reference)"
    lines = claims(frame, tmp_path, "w")
    assert sum(l.startswith("- reference: ") for l in lines) == 3
    mimic = next(l for l in lines if l.startswith("- mimic linear"))
    assert mimic.endswith(f"; {100 * 0.5 / 0.64:.1f}% of the front end's best ceiling (0.640)")
