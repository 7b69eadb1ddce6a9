"""Scores as evidence: the test items a score rests on, its 95% interval, chance, and retention against a base.

A score is computed from per-item outcomes (:class:`TestItems`): an accuracy from one 0/1 outcome per test item,
a word error rate from each utterance's word errors and reference length. Intervals (95%):

* one accuracy: Wilson's score interval on k correct of n;
* one WER: a percentile bootstrap over utterances (WER = summed errors / summed reference words, recomputed on
  each resample of the utterances);
* a score over several test sets (emotion's folds, averaged as SUPERB does) or several seeds (the mean over
  seeds): a bootstrap that resamples the seeds, then the items within each fold, and recomputes the average;
* retention against the base (the variant's score as a share of its unpruned base's; for WER, of the word
  accuracy 100 - WER) and the difference to the base: a paired bootstrap over the test items both runs scored
  (matched by id within each fold; outcomes averaged over seeds first), so the item-to-item difficulty that
  both share cancels.

Chance: for accuracy the majority-class share of the test items and the uniform 1/K; for WER 100 (an empty
hypothesis deletes every word). A score is *at chance* when its interval reaches the majority share (WER: when
it reaches 100); a variant is *not distinguishable from its base* when the retention interval holds 100%.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = ["Z95", "RESAMPLES", "TestItems", "Score", "Retention", "wilson", "bootstrap_wer", "score",
           "retention", "chance_levels"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
RESAMPLES = 2000


@dataclass(frozen=True)
class TestItems:
    """The outcome of every test item of one evaluation (one fold of one seed).

    Accuracy tasks: ``correct`` (0/1 per item) and ``truth`` (the reference label, for the majority class).
    WER tasks: ``errors`` (word edit distance) and ``ref_words`` per utterance, optionally ``char_errors`` and
    ``ref_chars`` for the CER.
    """

    kind: str  # "accuracy" | "wer"
    ids: tuple[str, ...]
    correct: tuple[int, ...] = ()
    truth: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    ref_words: tuple[int, ...] = ()
    char_errors: tuple[int, ...] = ()
    ref_chars: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in ("accuracy", "wer"):
            raise ValueError(f"kind must be 'accuracy' or 'wer', got {self.kind!r}")
        n = len(self.ids)
        columns = ("correct", "truth") if self.kind == "accuracy" else ("errors", "ref_words")
        for name in columns:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} items")
        if len(set(self.ids)) != n:
            raise ValueError("test item ids repeat")

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def value(self) -> float:
        """Accuracy in [0, 1], or WER in percent."""
        if self.kind == "accuracy":
            return sum(self.correct) / self.n
        return 100.0 * sum(self.errors) / max(sum(self.ref_words), 1)

    @property
    def cer(self) -> Optional[float]:
        if self.kind != "wer" or not self.char_errors:
            return None
        return 100.0 * sum(self.char_errors) / max(sum(self.ref_chars), 1)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "ids": list(self.ids)}
        for name in ("correct", "truth", "errors", "ref_words", "char_errors", "ref_chars"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TestItems":
        return cls(kind=data["kind"], ids=tuple(data["ids"]),
                   **{k: tuple(data.get(k, ())) for k in ("correct", "truth", "errors", "ref_words", "char_errors",
                                                          "ref_chars")})


TestItems.__test__ = False  # a data class, not a pytest test class


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (95% at the default ``z``)."""
    if n <= 0:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # exact at the ends (0 and n successes): rounding left 7e-18 above an accuracy of 0, outside its own interval
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def _percentiles(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_wer(errors: Sequence[int], ref_words: Sequence[int], resamples: int = RESAMPLES,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (95%) over utterances of the corpus WER in percent."""
    e, r = np.asarray(errors, dtype=float), np.asarray(ref_words, dtype=float)
    if len(e) == 0:
        raise ValueError("no utterances")
    index = np.random.default_rng(seed).integers(0, len(e), size=(resamples, len(e)))
    totals = r[index].sum(axis=1)
    return _percentiles(100.0 * e[index].sum(axis=1) / np.maximum(totals, 1))


@dataclass(frozen=True)
class Score:
    """A score with its evidence: value, 95% interval, items per evaluation, seeds, chance."""

    kind: str
    value: float
    low: float
    high: float
    n: int  # test items one evaluation rests on (summed over folds)
    seeds: int
    seed_sd: Optional[float]  # standard deviation of the score over seeds (None for one seed)
    chance: float  # majority share (accuracy) or 100 (WER)
    uniform: Optional[float]  # 1 / K for accuracy
    method: str  # how the interval was computed
    cer: Optional[float] = None
    folds: int = 1

    @property
    def at_chance(self) -> bool:
        """The interval reaches chance: the score is not shown to be better than guessing."""
        return self.low <= self.chance if self.kind == "accuracy" else self.high >= self.chance

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"at_chance": self.at_chance}


def _fold_values(folds: Sequence[TestItems], index: Optional[list[np.ndarray]] = None) -> float:
    """The SUPERB average over folds of each fold's score (items resampled by ``index`` when given)."""
    values = []
    for k, fold in enumerate(folds):
        pick = slice(None) if index is None else index[k]
        if fold.kind == "accuracy":
            values.append(float(np.asarray(fold.correct, dtype=float)[pick].mean()))
        else:
            e, r = np.asarray(fold.errors, dtype=float)[pick], np.asarray(fold.ref_words, dtype=float)[pick]
            values.append(100.0 * e.sum() / max(r.sum(), 1.0))
    return float(np.mean(values))


def chance_levels(folds: Sequence[TestItems], num_classes: Optional[int] = None) -> tuple[float, Optional[float]]:
    """(majority share of the test labels, 1 / K) for accuracy; (100, None) for WER."""
    if folds[0].kind == "wer":
        return 100.0, None
    counts = Counter(label for fold in folds for label in fold.truth)
    total = sum(counts.values())
    majority = max(counts.values()) / total if total else 0.0
    k = num_classes or len(counts)
    return majority, (1.0 / k if k else None)


def score(seeds: Sequence[Sequence[TestItems]], num_classes: Optional[int] = None, resamples: int = RESAMPLES,
          seed: int = 0) -> Score:
    """The score of one (variant, task): ``seeds[s]`` is the list of folds evaluated for seed s (one fold for
    every task but emotion). Value: the mean over seeds of the mean over folds; interval as the module says."""
    seeds = [list(folds) for folds in seeds if folds]
    if not seeds:
        raise ValueError("no evaluations")
    kind = seeds[0][0].kind
    per_seed = [_fold_values(folds) for folds in seeds]
    value = float(np.mean(per_seed))
    n = sum(f.n for f in seeds[0])
    chance, uniform = chance_levels(seeds[0], num_classes)
    cers = [c for c in (f.cer for folds in seeds for f in folds) if c is not None]
    cer = float(np.mean(cers)) if cers else None
    if len(seeds) == 1 and len(seeds[0]) == 1:
        only = seeds[0][0]
        if kind == "accuracy":
            low, high = wilson(int(sum(only.correct)), only.n)
            method = "Wilson"
        else:
            low, high = bootstrap_wer(only.errors, only.ref_words, resamples, seed)
            method = f"bootstrap over utterances ({resamples})"
    else:
        rng = np.random.default_rng(seed)
        draws = np.empty(resamples)
        for b in range(resamples):
            chosen = rng.integers(0, len(seeds), size=len(seeds))
            draws[b] = np.mean([_fold_values(seeds[s], [rng.integers(0, f.n, size=f.n) for f in seeds[s]])
                                for s in chosen])
        low, high = _percentiles(draws)
        method = f"bootstrap over seeds, then items within folds ({resamples})"
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    return Score(kind, value, low, high, n, len(seeds), sd, chance, uniform, method, cer, len(seeds[0]))


@dataclass(frozen=True)
class Retention:
    """A variant against its base on the items both scored: retention (%) and difference, each with its 95% interval.

    Accuracy: retention = 100 * variant / base, difference = variant - base (in accuracy).
    WER: retention = 100 * (100 - variant) / (100 - base) (the share of word accuracy kept), difference =
    variant - base in WER points (positive: worse).
    """

    retention: float
    low: float
    high: float
    difference: float
    difference_low: float
    difference_high: float
    shared_items: int

    @property
    def indistinguishable(self) -> bool:
        """The retention interval holds 100%: no difference to the base is shown."""
        return self.low <= 100.0 <= self.high

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"indistinguishable": self.indistinguishable}


def _per_item(seeds: Sequence[Sequence[TestItems]]) -> dict[tuple[int, str], tuple[float, float]]:
    """(fold, item id) -> (outcome, weight) averaged over seeds: accuracy (correct, 1); WER (errors, ref words)."""
    sums: dict[tuple[int, str], list[float]] = {}
    for folds in seeds:
        for k, fold in enumerate(folds):
            values = zip(fold.correct, [1] * fold.n) if fold.kind == "accuracy" else zip(fold.errors, fold.ref_words)
            for item, (a, b) in zip(fold.ids, values):
                entry = sums.setdefault((k, item), [0.0, 0.0, 0])
                entry[0] += a
                entry[1] += b
                entry[2] += 1
    return {key: (a / c, b / c) for key, (a, b, c) in sums.items()}


def retention(base: Sequence[Sequence[TestItems]], variant: Sequence[Sequence[TestItems]],
              resamples: int = RESAMPLES, seed: int = 0) -> Optional[Retention]:
    """Paired bootstrap over shared test items; None when the two share no item."""
    kind = base[0][0].kind
    b, v = _per_item(base), _per_item(variant)
    shared = sorted(set(b) & set(v))
    if not shared:
        return None
    folds = sorted({k for k, _ in shared})
    strata = [[i for i, (k, _) in enumerate(shared) if k == fold] for fold in folds]
    bo, bw = np.array([b[key][0] for key in shared]), np.array([b[key][1] for key in shared])
    vo, vw = np.array([v[key][0] for key in shared]), np.array([v[key][1] for key in shared])

    def statistic(index_sets: list[np.ndarray]) -> tuple[float, float]:
        base_values, variant_values = [], []
        for index in index_sets:
            if kind == "accuracy":
                base_values.append(bo[index].mean())
                variant_values.append(vo[index].mean())
            else:
                base_values.append(100.0 * bo[index].sum() / max(bw[index].sum(), 1e-12))
                variant_values.append(100.0 * vo[index].sum() / max(vw[index].sum(), 1e-12))
        bv, vv = float(np.mean(base_values)), float(np.mean(variant_values))
        if kind == "accuracy":
            return (100.0 * vv / bv if bv > 0 else math.nan), vv - bv
        return (100.0 * (100.0 - vv) / (100.0 - bv) if bv < 100 else math.nan), vv - bv

    point = statistic([np.asarray(s) for s in strata])
    rng = np.random.default_rng(seed)
    draws = np.array([statistic([np.asarray(s)[rng.integers(0, len(s), size=len(s))] for s in strata])
                      for _ in range(resamples)])
    finite = draws[np.isfinite(draws[:, 0])]
    low, high = _percentiles(finite[:, 0]) if len(finite) else (math.nan, math.nan)
    d_low, d_high = _percentiles(draws[:, 1])
    return Retention(point[0], low, high, point[1], d_low, d_high, len(shared))
