"""Static pruning orders over transformer layers (paper section 2.2): forward, backward, BI, kNN-BI, CKA-BI.

Orders index transformer layers ``0 .. L-1``. Similarity matrices index hidden states ``0 .. L``: hidden
state 0 is the input of layer 0 and hidden state ``l + 1`` the output of layer ``l``, so layer ``l`` maps
hidden state ``l`` to ``l + 1``. Scores come from the unpruned model and are not recomputed after each
deletion (the paper's code). Layer 0 is never pruned unless ``keep_first=False``.

New objectives register with :func:`register_objective`; an objective returns a full permutation of
``range(num_layers)`` (most prunable first) and :func:`prune_order` removes layer 0 when asked to keep it.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["OBJECTIVES", "register_objective", "block_influence", "prune_order", "layers_to_drop"]

Objective = Callable[[int, Optional[Mapping[str, np.ndarray]]], Sequence[int]]

#: name -> objective(num_layers, matrices) -> permutation of range(num_layers), first pruned first
OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str) -> Callable[[Objective], Objective]:
    """Decorator adding an objective to :data:`OBJECTIVES` under ``name``."""

    def add(fn: Objective) -> Objective:
        if name in OBJECTIVES:
            raise ValueError(f"pruning objective {name!r} is already registered")
        OBJECTIVES[name] = fn
        return fn

    return add


def block_influence(matrix) -> np.ndarray:
    """``BI[l] = 1 - S(l, l + 1)`` for each transformer layer ``l`` (ShortGPT), from an ``(L+1)x(L+1)`` matrix.

    The cosine matrix gives BI, the mutual-kNN matrix kNN-BI, the CKA matrix CKA-BI.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"expected a square (L+1)x(L+1) hidden-state similarity matrix with L >= 1, got {m.shape}")
    return 1.0 - np.diagonal(m, offset=1).copy()


def _ascending(scores: np.ndarray) -> list[int]:
    # stable sort: equal scores keep index order, i.e. ties go to the lower layer
    return [int(i) for i in np.argsort(scores, kind="stable")]


def _score_objective(metric: str) -> Objective:
    def order(num_layers: int, matrices: Optional[Mapping[str, np.ndarray]]) -> list[int]:
        if not matrices or metric not in matrices:
            have = sorted(matrices) if matrices else []
            raise ValueError(f"this objective needs the {metric!r} similarity matrix; got matrices {have}")
        m = np.asarray(matrices[metric])
        if m.shape != (num_layers + 1, num_layers + 1):
            raise ValueError(
                f"the {metric!r} matrix must be over the {num_layers + 1} hidden states of a {num_layers}-layer "
                f"model, i.e. {(num_layers + 1, num_layers + 1)}, got {m.shape}"
            )
        scores = block_influence(m)
        if not np.isfinite(scores).all():
            raise ValueError(f"the {metric!r} matrix gives non-finite block influence scores: {scores.tolist()}")
        return _ascending(scores)

    return order


@register_objective("forward")
def _forward(num_layers: int, matrices=None) -> list[int]:
    return list(range(num_layers))


@register_objective("backward")
def _backward(num_layers: int, matrices=None) -> list[int]:
    return list(range(num_layers - 1, -1, -1))


register_objective("bi")(_score_objective("cosine"))
register_objective("knn-bi")(_score_objective("knn"))
register_objective("cka-bi")(_score_objective("cka"))


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def prune_order(
    objective: str,
    num_layers: int,
    matrices: Optional[Mapping[str, np.ndarray]] = None,
    keep_first: bool = True,
) -> list[int]:
    """The full pruning order of transformer layers, most prunable first.

    Length ``num_layers - 1`` (layer 0 left out) with ``keep_first``, else ``num_layers``. Score objectives
    ("bi", "knn-bi", "cka-bi") sort block influence ascending, ties to the lower layer, and read
    ``matrices["cosine"]``, ``["knn"]``, ``["cka"]`` respectively.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown pruning objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    num_layers = _check_int("num_layers", num_layers, 1)
    order = [int(i) for i in OBJECTIVES[objective](num_layers, matrices)]
    if sorted(order) != list(range(num_layers)):
        raise ValueError(f"objective {objective!r} returned {order}, not a permutation of 0..{num_layers - 1}")
    return [i for i in order if i != 0] if keep_first else order


def layers_to_drop(order: Sequence[int], amount: int | float, num_layers: int) -> list[int]:
    """The first layers of ``order`` to delete for a prune ``amount``.

    ``amount`` is a count (int) or a fraction of ``num_layers`` in ``[0, 1)``, rounded down
    (``floor(amount * num_layers)``, with a 1e-9 slack so 0.25 * 12 is 3 despite float rounding).
    """
    num_layers = _check_int("num_layers", num_layers, 1)
    order = list(order)
    bad = [i for i in order if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < num_layers]
    if bad or len(set(order)) != len(order):
        raise ValueError(f"order must list distinct layers of 0..{num_layers - 1}, got {order}")
    if isinstance(amount, bool) or not isinstance(amount, Real):
        raise ValueError(f"amount must be a layer count (int) or a fraction in [0, 1) (float), got {amount!r}")
    if isinstance(amount, Integral):
        count = int(amount)
        if count < 0:
            raise ValueError(f"cannot drop a negative number of layers: {count}")
    else:
        if not (math.isfinite(amount) and 0.0 <= amount < 1.0):
            raise ValueError(f"a fractional amount must lie in [0, 1), got {amount!r}; pass an int for a count")
        count = math.floor(amount * num_layers + 1e-9)
    if count > len(order):
        raise ValueError(
            f"asked to drop {count} layers (amount={amount!r}) but the order offers only {len(order)} "
            f"of the {num_layers} layers"
        )
    return [int(i) for i in order[:count]]
