"""superb_redundancy.pruning.objectives on hand-made matrices with hand-computed orders."""

from __future__ import annotations

import numpy as np
import pytest

from superb_redundancy.pruning.objectives import (OBJECTIVES, SPAN_OBJECTIVES, angular_distances, block_influence,
                                                  choose_layers, drops_per_amount, layers_to_drop, prune_order,
                                                  ranked_spans, register_objective, register_span_objective)


def chain(adjacent: list[float]) -> np.ndarray:
    """An (L+1)x(L+1) matrix whose first off-diagonal is ``adjacent`` (other entries are irrelevant to BI)."""
    size = len(adjacent) + 1
    m = np.full((size, size), 0.1)
    np.fill_diagonal(m, 1.0)
    for i, s in enumerate(adjacent):
        m[i, i + 1] = m[i + 1, i] = s
    return m


# L = 5 transformer layers, 6 hidden states. S(l, l+1):
COS = chain([0.99, 0.50, 0.90, 0.90, 0.70])  # BI = [0.01, 0.50, 0.10, 0.10, 0.30]
KNN = chain([0.20, 0.80, 0.30, 0.95, 0.60])  # BI = [0.80, 0.20, 0.70, 0.05, 0.40]
CKA = chain([0.40, 0.40, 0.40, 0.40, 0.40])  # all tied
MATRICES = {"cosine": COS, "knn": KNN, "cka": CKA}


def test_block_influence_uses_the_first_off_diagonal():
    np.testing.assert_allclose(block_influence(COS), [0.01, 0.50, 0.10, 0.10, 0.30])
    assert block_influence(np.eye(3)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="square"):
        block_influence(np.ones((3, 4)))


@pytest.mark.parametrize(
    "objective, keep_first, want",
    [
        ("forward", True, [1, 2, 3, 4]),
        ("forward", False, [0, 1, 2, 3, 4]),
        ("backward", True, [4, 3, 2, 1]),
        ("backward", False, [4, 3, 2, 1, 0]),
        ("bi", True, [2, 3, 4, 1]),  # 0.10 (2) ties 0.10 (3): lower index first
        ("bi", False, [0, 2, 3, 4, 1]),
        ("knn-bi", True, [3, 1, 4, 2]),
        ("knn-bi", False, [3, 1, 4, 2, 0]),
        ("cka-bi", True, [1, 2, 3, 4]),  # all tied: index order
    ],
)
def test_hand_computed_orders(objective, keep_first, want):
    assert prune_order(objective, 5, MATRICES, keep_first=keep_first) == want


@pytest.mark.parametrize("objective", ["forward", "backward", "bi", "knn-bi", "cka-bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 12, 24])
def test_layer_zero_never_pruned_with_keep_first(objective, num_layers):
    rng = np.random.default_rng(num_layers)
    mats = {name: rng.uniform(size=(num_layers + 1, num_layers + 1)) for name in ("cosine", "knn", "cka")}
    for name in mats:
        mats[name][0, 1] = mats[name][1, 0] = 1.0  # layer 0 the most redundant by every score
    order = prune_order(objective, num_layers, mats)
    assert 0 not in order and sorted(order) == list(range(1, num_layers))
    assert sorted(prune_order(objective, num_layers, mats, keep_first=False)) == list(range(num_layers))


def test_prune_order_errors():
    with pytest.raises(ValueError, match=r"'random'.*backward.*bi.*cka-bi.*forward.*knn-bi"):
        prune_order("random", 5, MATRICES)
    with pytest.raises(ValueError, match="'knn'"):
        prune_order("knn-bi", 5, {"cosine": COS})
    with pytest.raises(ValueError, match="'cka'"):
        prune_order("cka-bi", 5, None)
    with pytest.raises(ValueError, match=r"\(7, 7\)"):
        prune_order("bi", 6, MATRICES)
    with pytest.raises(ValueError, match="num_layers"):
        prune_order("forward", 0)


def test_register_objective():
    @register_objective("test-even-first")
    def even_first(num_layers, matrices=None):
        return sorted(range(num_layers), key=lambda i: (i % 2, i))

    try:
        assert prune_order("test-even-first", 5) == [2, 4, 1, 3]
        with pytest.raises(ValueError, match="already registered"):
            register_objective("test-even-first")(even_first)
        OBJECTIVES["test-broken"] = lambda n, m=None: [1, 1]
        with pytest.raises(ValueError, match="permutation"):
            prune_order("test-broken", 2)
    finally:
        OBJECTIVES.pop("test-even-first", None)
        OBJECTIVES.pop("test-broken", None)


def test_layers_to_drop():
    order = prune_order("backward", 12)  # [11, 10, ..., 1]
    assert layers_to_drop(order, 3, 12) == [11, 10, 9]
    assert layers_to_drop(order, 0, 12) == []
    assert layers_to_drop(order, np.int64(2), 12) == [11, 10]
    assert layers_to_drop(order, 0.25, 12) == [11, 10, 9]  # 3.0 exactly
    assert layers_to_drop(order, 0.3, 12) == [11, 10, 9]  # 3.6 rounds down
    assert layers_to_drop(order, 0.0, 12) == []
    assert len(layers_to_drop(list(range(100)), 0.29, 100)) == 29  # 0.29 * 100 = 28.999... in floats
    assert len(layers_to_drop(order, 0.95, 12)) == 11


@pytest.mark.parametrize(
    "order, amount, match",
    [
        ([3, 2, 1], 4, "only 3"),
        ([3, 2, 1], -1, "negative"),
        ([3, 2, 1], 1.0, r"\[0, 1\)"),
        ([3, 2, 1], -0.1, r"\[0, 1\)"),
        ([3, 2, 1], float("nan"), r"\[0, 1\)"),
        ([3, 2, 1], "2", "count"),
        ([3, 2, 1], True, "count"),
        ([3, 3, 1], 1, "distinct"),
        ([3, 2, 12], 1, "distinct"),
        ([0, 1, 2, 3], 0.9, "only 4"),  # floor(0.9 * 12) = 10
    ],
)
def test_layers_to_drop_errors(order, amount, match):
    with pytest.raises(ValueError, match=match):
        layers_to_drop(order, amount, 12)


# ------------------------------------------------------------------------------------------- span (Gromov et al.)
def direct_span(cosine: np.ndarray, n: int, keep_first: bool) -> list[int]:
    """The definition, by loops: the n layers l..l+n-1 minimising arccos(S[l, l+n]) / pi (first l on ties)."""
    num_layers = cosine.shape[0] - 1
    starts = range(1 if keep_first else 0, num_layers - n + 1)
    d = {l: np.arccos(np.clip(cosine[l, l + n], -1, 1)) / np.pi for l in starts}
    best = min(starts, key=lambda l: (d[l], l))
    return list(range(best, best + n))


def test_span_on_a_hand_made_matrix():
    # L = 5: spans of 2 from l = 1: S[1,3] = 0.2, S[2,4] = 0.9, S[3,5] = 0.6 -> layers 2, 3
    cos = np.full((6, 6), 0.1)
    np.fill_diagonal(cos, 1.0)
    for (a, b), value in {(0, 2): 0.95, (1, 3): 0.2, (2, 4): 0.9, (3, 5): 0.6, (1, 4): 0.7, (2, 5): 0.3}.items():
        cos[a, b] = cos[b, a] = value
    mats = {"cosine": cos}
    assert choose_layers("span", 5, mats, 2) == [2, 3]
    assert choose_layers("span", 5, mats, 2, keep_first=False) == [0, 1]  # S[0,2] = 0.95 is the closest
    assert choose_layers("span", 5, mats, 3) == [1, 2, 3]  # S[1,4] = 0.7 beats S[2,5] = 0.3
    np.testing.assert_allclose(angular_distances(cos, 2), np.arccos([0.95, 0.2, 0.9, 0.6]) / np.pi)
    assert ranked_spans("span", 5, mats, 2) == [2, 3, 1]
    assert choose_layers("span", 5, mats, 0) == [] and ranked_spans("span", 5, mats, 0) == []


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("keep_first", [True, False])
def test_span_equals_the_definition_for_every_amount(seed, keep_first):
    rng = np.random.default_rng(seed)
    num_layers = 8
    cos = rng.uniform(-0.2, 1.0, size=(num_layers + 1, num_layers + 1))
    cos = (cos + cos.T) / 2
    np.fill_diagonal(cos, 1.0)
    cos[3, 5] = cos[4, 6] = 0.5  # a tie: the lower span wins
    drops = drops_per_amount("span", num_layers, {"cosine": cos}, keep_first=keep_first)
    assert len(drops) == num_layers + (0 if keep_first else 1)
    for n, dropped in enumerate(drops):
        want = direct_span(cos, n, keep_first) if n else []
        assert dropped == want == choose_layers("span", num_layers, {"cosine": cos}, n, keep_first=keep_first)
        assert not (keep_first and 0 in dropped)
    assert choose_layers("span", num_layers, {"cosine": cos}, 0.25) == direct_span(cos, 2, True)  # floor(0.25 * 8)


def test_span_from_hidden_states_equals_arccos_of_the_mean_cosine_by_numpy():
    """Through similarity.py: its cosine is the mean over samples of the cosine of the centred vectors."""
    import torch

    from superb_redundancy.analysis.similarity import similarity_matrices

    rng = np.random.default_rng(0)
    states = [rng.standard_normal((40, 6)) + 1.0]
    for _ in range(6):  # 6 layers, each a residual-style update of the last
        states.append(states[-1] + rng.uniform(0.2, 1.5) * rng.standard_normal((40, 6)))
    mats = similarity_matrices([torch.from_numpy(h) for h in states], k=4)
    centred = [h - h.mean(axis=0) for h in states]
    for n in range(1, 6):
        d = []
        for l in range(1, 6 - n + 1):  # spans l..l+n-1 inside layers 1..5
            a, b = centred[l], centred[l + n]
            cos = np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
            d.append(np.arccos(cos) / np.pi)
        best = 1 + int(np.argmin(d))
        assert choose_layers("span", 6, mats, n) == list(range(best, best + n)), n


def test_span_has_no_single_order_and_clear_errors():
    with pytest.raises(ValueError, match="'span'.*no single pruning order"):
        prune_order("span", 5, MATRICES)
    with pytest.raises(ValueError, match="'cosine'"):
        choose_layers("span", 5, {"knn": KNN}, 2)
    with pytest.raises(ValueError, match=r"only the 4 layers 1..4 of 5 \(layer 0 is kept\)"):
        choose_layers("span", 5, MATRICES, 5)
    with pytest.raises(ValueError, match="unknown pruning objective 'spam'"):
        choose_layers("spam", 5, MATRICES, 1)
    bad = MATRICES["cosine"].copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite span scores"):
        choose_layers("span", 5, {"cosine": bad}, 2)


def test_choose_layers_takes_order_objectives_too():
    for objective in ("forward", "backward", "bi", "knn-bi", "cka-bi"):
        order = prune_order(objective, 5, MATRICES)
        assert choose_layers(objective, 5, MATRICES, 3) == order[:3]
        assert drops_per_amount(objective, 5, MATRICES) == [order[:n] for n in range(5)]


def test_register_span_objective():
    @register_span_objective("test-last-span")
    def last(num_layers, matrices, n):  # prefers the span ending at the last layer
        return -np.arange(num_layers - n + 1, dtype=float)

    try:
        assert "test-last-span" in OBJECTIVES and "test-last-span" in SPAN_OBJECTIVES
        assert choose_layers("test-last-span", 6, None, 2) == [4, 5]
        SPAN_OBJECTIVES["test-short"] = lambda num_layers, matrices, n: np.zeros(2)
        OBJECTIVES["test-short"] = OBJECTIVES["test-last-span"]
        with pytest.raises(ValueError, match="gave 2 span scores; 5 spans of 2 fit in 6 layers"):
            choose_layers("test-short", 6, None, 2)
    finally:
        for name in ("test-last-span", "test-short"):
            OBJECTIVES.pop(name, None)
            SPAN_OBJECTIVES.pop(name, None)
