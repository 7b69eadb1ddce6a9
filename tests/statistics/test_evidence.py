"""Intervals against hand-computed values; retention for accuracy and WER; chance; seeds and folds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from superb_redundancy.statistics.evidence import TestItems, bootstrap_wer, retention, score, wilson


def _wilson_by_bisection(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's interval from its definition: the p whose score test |p_hat - p| <= z sqrt(p (1 - p) / n) accepts."""
    p_hat = k / n

    def accepted(p):
        return abs(p_hat - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(inside, outside):
        for _ in range(200):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if accepted(mid) else (inside, mid)
        return inside

    return (0.0 if accepted(0.0) else edge(p_hat, 0.0)), (1.0 if accepted(1.0) else edge(p_hat, 1.0))


@pytest.mark.parametrize("k, n", [(9, 40), (0, 10), (10, 10), (437, 480), (1, 3)])
def test_wilson_matches_its_definition(k, n):
    low, high = wilson(k, n)
    want_low, want_high = _wilson_by_bisection(k, n)
    assert low == pytest.approx(want_low, abs=1e-9) and high == pytest.approx(want_high, abs=1e-9)


def test_wilson_hand_values():
    # 9 of 40: centre (0.225 + z^2/80) / (1 + z^2/40), half z sqrt(0.225*0.775/40 + z^2/6400) / (1 + z^2/40)
    assert wilson(9, 40) == pytest.approx((0.12315, 0.37503), abs=5e-5)
    # 0 of 10: the upper end is z^2 / (n + z^2)
    assert wilson(0, 10) == pytest.approx((0.0, 3.8414588 / 13.8414588), abs=1e-7)


@pytest.mark.parametrize("n", [1, 7, 35, 408, 4482])
def test_wilson_holds_an_accuracy_of_zero_or_one_exactly(n):
    """An interval holds its own estimate at the ends too (rounding put the lower end of 0 of 35 at 7e-18, and the
    leaderboard's figure refused the negative error bar: seen in the paper study's CPU rehearsal)."""
    assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


def test_bootstrap_wer_of_two_utterances_spans_their_wers():
    # resamples are {a, a} (10%), {a, b} / {b, a} (30%) and {b, b} (50%): the 2.5% and 97.5% points are 10 and 50
    assert bootstrap_wer([1, 5], [10, 10]) == pytest.approx((10.0, 50.0))
    assert bootstrap_wer([2, 2, 2], [10, 10, 10]) == pytest.approx((20.0, 20.0))  # no spread, no width


def _acc(correct, truth=None, prefix="u") -> TestItems:
    ids = tuple(f"{prefix}{i}" for i in range(len(correct)))
    return TestItems("accuracy", ids, correct=tuple(correct), truth=tuple(truth or ["a"] * len(correct)))


def _wer(errors, words, prefix="u") -> TestItems:
    ids = tuple(f"{prefix}{i}" for i in range(len(errors)))
    return TestItems("wer", ids, errors=tuple(errors), ref_words=tuple(words))


def test_one_accuracy_uses_wilson_and_the_majority_class_for_chance():
    items = _acc([1] * 30 + [0] * 10, truth=["yes"] * 20 + ["no"] * 12 + ["up"] * 8)
    s = score([[items]], num_classes=12)
    assert s.value == 0.75 and (s.low, s.high) == pytest.approx(wilson(30, 40))
    assert s.n == 40 and s.seeds == 1 and s.method == "Wilson"
    assert s.chance == 0.5 and s.uniform == pytest.approx(1 / 12)
    assert not s.at_chance  # the interval (0.60, 0.86) stays above the majority share 0.5
    assert score([[_acc([1] * 22 + [0] * 18, truth=["yes"] * 20 + ["no"] * 20)]]).at_chance


def test_wer_chance_is_an_empty_output():
    s = score([[_wer([5, 5, 5, 5], [5, 5, 5, 5])]])
    assert s.value == 100.0 and s.chance == 100.0 and s.at_chance
    assert not score([[_wer([1, 0, 1, 0], [5, 5, 5, 5])]]).at_chance


def test_seeds_give_mean_sd_and_a_wider_interval():
    a, b = _acc([1] * 30 + [0] * 10), _acc([1] * 20 + [0] * 20)
    s = score([[a], [b]])
    assert s.value == pytest.approx(0.625) and s.seeds == 2
    assert s.seed_sd == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert "bootstrap over seeds" in s.method and s.low < 0.5 < 0.75 < s.high


def test_folds_are_averaged_as_superb_does():
    fold1, fold2 = _acc([1, 1, 1, 0], prefix="f1-"), _acc([1, 0], prefix="f2-")
    s = score([[fold1, fold2]])
    assert s.value == pytest.approx((0.75 + 0.5) / 2) and s.n == 6 and s.folds == 2


def test_retention_of_an_accuracy_is_a_paired_ratio():
    base = _acc([1] * 40 + [0] * 10)
    same = retention([[base]], [[base]])
    assert (same.retention, same.low, same.high, same.difference) == (100.0, 100.0, 100.0, 0.0)
    assert same.indistinguishable and same.shared_items == 50
    worse = retention([[base]], [[_acc([1] * 20 + [0] * 30)]])
    assert worse.retention == pytest.approx(50.0) and worse.difference == pytest.approx(-0.4)
    assert worse.high < 100.0 and not worse.indistinguishable


def test_retention_of_a_wer_is_of_word_accuracy():
    base, variant = _wer([2] * 10, [10] * 10), _wer([4] * 10, [10] * 10)  # WER 20 -> 40
    r = retention([[base]], [[variant]])
    assert r.retention == pytest.approx(100 * 60 / 80) and r.difference == pytest.approx(20.0)
    assert r.low == r.high == pytest.approx(75.0)  # every utterance moved alike: no spread


def test_retention_only_pairs_the_items_both_scored():
    base = _acc([1, 1, 0, 0])
    variant = TestItems("accuracy", ("u0", "u1", "x"), correct=(1, 0, 1), truth=("a", "a", "a"))
    r = retention([[base]], [[variant]])
    assert r.shared_items == 2 and r.retention == pytest.approx(50.0)
    assert retention([[base]], [[_acc([1], prefix="other")]]) is None
