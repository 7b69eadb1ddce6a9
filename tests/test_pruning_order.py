"""superb_redundancy.pruning_order on hand-made matrices with hand-computed orders."""

from __future__ import annotations

import numpy as np
import pytest

from superb_redundancy.pruning_order import (
    OBJECTIVES,
    block_influence,
    layers_to_drop,
    prune_order,
    register_objective,
)


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
