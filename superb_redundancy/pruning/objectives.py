"""Static pruning orders over transformer layers (paper section 2.2): forward, backward, BI, kNN-BI, CKA-BI;
and the best contiguous span (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers").

Orders index transformer layers ``0 .. L-1``. Similarity matrices index hidden states ``0 .. L``: hidden
state 0 is the input of layer 0 and hidden state ``l + 1`` the output of layer ``l``, so layer ``l`` maps
hidden state ``l`` to ``l + 1``. Scores come from the unpruned model and are not recomputed after each
deletion (the paper's code). Layer 0 is never pruned unless ``keep_first=False``.

New objectives register with :func:`register_objective`; an objective returns a full permutation of
``range(num_layers)`` (most prunable first) and :func:`prune_order` removes layer 0 when asked to keep it.

A **span objective** (:func:`register_span_objective`) scores every run of ``n`` consecutive layers and drops
the lowest-scoring one. Its choice for ``n`` need not contain its choice for ``n - 1``, so it has no single
order to take a prefix of: :func:`choose_layers` (one amount) and :func:`drops_per_amount` (every amount) serve
every objective alike, and span objectives are listed in :data:`OBJECTIVES` too so every command accepts them.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from superb_redundancy.core.errors import UserError

__all__ = ["OBJECTIVES", "SPAN_OBJECTIVES", "OBJECTIVE_METRIC", "register_objective", "register_span_objective",
           "block_influence", "angular_distances", "prune_order", "drop_count", "layers_to_drop", "span_scores",
           "ranked_spans", "choose_layers", "drops_per_amount"]

Matrices = Optional[Mapping[str, np.ndarray]]
Objective = Callable[[int, Matrices], Sequence[int]]
SpanScores = Callable[[int, Matrices, int], np.ndarray]

#: name -> objective(num_layers, matrices) -> permutation of range(num_layers), first pruned first
OBJECTIVES: dict[str, Objective] = {}
#: name -> scores(num_layers, matrices, n) -> one score per span of n layers l..l+n-1, indexed by l = 0..L-n;
#: the lowest is dropped (these names are in OBJECTIVES too, with an order function that refuses)
SPAN_OBJECTIVES: dict[str, SpanScores] = {}
#: objective -> the similarity matrix it reads (objectives that read none are absent)
OBJECTIVE_METRIC: dict[str, str] = {}


def register_objective(name: str) -> Callable[[Objective], Objective]:
    """Decorator adding an objective to :data:`OBJECTIVES` under ``name``."""

    def add(fn: Objective) -> Objective:
        if name in OBJECTIVES:
            raise ValueError(f"pruning objective {name!r} is already registered")
        OBJECTIVES[name] = fn
        return fn

    return add


def register_span_objective(name: str, metric: Optional[str] = None) -> Callable[[SpanScores], SpanScores]:
    """Decorator adding a span objective under ``name`` (``metric``: the similarity matrix its scores read)."""

    def add(fn: SpanScores) -> SpanScores:
        register_objective(name)(_no_single_order(name))
        SPAN_OBJECTIVES[name] = fn
        if metric is not None:
            OBJECTIVE_METRIC[name] = metric
        return fn

    return add


def _no_single_order(name: str) -> Objective:
    def order(num_layers: int, matrices: Matrices = None) -> list[int]:
        raise UserError(f"objective {name!r} drops the best contiguous span for each amount and has no single "
                         f"pruning order; use choose_layers() or drops_per_amount()")

    return order


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


def _matrix(matrices: Matrices, metric: str, num_layers: int) -> np.ndarray:
    """``matrices[metric]``, checked to be over the ``num_layers + 1`` hidden states."""
    if not matrices or metric not in matrices:
        have = sorted(matrices) if matrices else []
        raise UserError(f"this objective needs the {metric!r} similarity matrix; got matrices {have}")
    m = np.asarray(matrices[metric], dtype=np.float64)
    if m.shape != (num_layers + 1, num_layers + 1):
        raise UserError(
            f"the {metric!r} matrix must be over the {num_layers + 1} hidden states of a {num_layers}-layer "
            f"model, i.e. {(num_layers + 1, num_layers + 1)}, got {m.shape}"
        )
    return m


def _score_objective(metric: str) -> Objective:
    def order(num_layers: int, matrices: Matrices) -> list[int]:
        scores = block_influence(_matrix(matrices, metric, num_layers))
        if not np.isfinite(scores).all():
            raise ValueError(f"the {metric!r} matrix gives non-finite block influence scores: {scores.tolist()}")
        return _ascending(scores)

    return order


def angular_distances(cosine, n: int) -> np.ndarray:
    """``d(l, n) = arccos(S[l, l + n]) / pi`` for ``l = 0 .. L-n``: the angle between the input of layer ``l``
    and the output of layer ``l + n - 1``, from an ``(L+1)x(L+1)`` cosine matrix over hidden states.

    What the angle is between depends on how the matrix was made. Ours (``similarity.py``) is the mean over
    samples of the cosine of the **centred** pooled vectors (``pool="mean"``: one mean-over-frames vector per
    clip, the default; ``"frames"``: every frame), so this is the arccos of a mean cosine. Gromov et al. take
    the **last token**, uncentred, and average the angle itself over samples; arccos is monotone, so for a given
    matrix the chosen span is the one with the highest mean cosine either way.
    """
    m = np.asarray(cosine, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"expected a square (L+1)x(L+1) hidden-state cosine matrix with L >= 1, got {m.shape}")
    num_layers = m.shape[0] - 1
    if not 1 <= n <= num_layers:
        raise UserError(f"a span has 1..{num_layers} layers in a {num_layers}-layer model, got {n}")
    cos = np.diagonal(m, offset=n)
    # clip: rounding can leave a cosine a hair above 1 (arccos would give NaN)
    return np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi


@register_objective("forward")
def _forward(num_layers: int, matrices=None) -> list[int]:
    return list(range(num_layers))


@register_objective("backward")
def _backward(num_layers: int, matrices=None) -> list[int]:
    return list(range(num_layers - 1, -1, -1))


for _name, _metric in (("bi", "cosine"), ("knn-bi", "knn"), ("cka-bi", "cka")):
    register_objective(_name)(_score_objective(_metric))
    OBJECTIVE_METRIC[_name] = _metric
del _name, _metric


@register_span_objective("span", metric="cosine")
def _span(num_layers: int, matrices: Matrices, n: int) -> np.ndarray:
    # Gromov et al.: drop the n consecutive layers whose input and output are the most alike
    return angular_distances(_matrix(matrices, "cosine", num_layers), n)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise UserError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
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
    ``matrices["cosine"]``, ``["knn"]``, ``["cka"]`` respectively. Span objectives have no order (ValueError):
    :func:`choose_layers` takes any objective.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"unknown pruning objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    num_layers = _check_int("num_layers", num_layers, 1)
    order = [int(i) for i in OBJECTIVES[objective](num_layers, matrices)]
    if sorted(order) != list(range(num_layers)):
        raise ValueError(f"objective {objective!r} returned {order}, not a permutation of 0..{num_layers - 1}")
    return [i for i in order if i != 0] if keep_first else order


def drop_count(amount: int | float, num_layers: int) -> int:
    """How many layers a prune ``amount`` drops: a count (int), or a fraction of ``num_layers`` in ``[0, 1)``
    rounded down (``floor(amount * num_layers)``, with a 1e-9 slack so 0.25 * 12 is 3 despite float rounding)."""
    num_layers = _check_int("num_layers", num_layers, 1)
    if isinstance(amount, bool) or not isinstance(amount, Real):
        raise UserError(f"amount must be a layer count (int) or a fraction in [0, 1) (float), got {amount!r}")
    if isinstance(amount, Integral):
        count = int(amount)
        if count < 0:
            raise UserError(f"cannot drop a negative number of layers: {count}")
    else:
        if not (math.isfinite(amount) and 0.0 <= amount < 1.0):
            raise UserError(f"a fractional amount must lie in [0, 1), got {amount!r}; pass an int for a count")
        count = math.floor(amount * num_layers + 1e-9)
    return count


def layers_to_drop(order: Sequence[int], amount: int | float, num_layers: int) -> list[int]:
    """The first layers of ``order`` to delete for a prune ``amount`` (see :func:`drop_count`)."""
    num_layers = _check_int("num_layers", num_layers, 1)
    order = list(order)
    bad = [i for i in order if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < num_layers]
    if bad or len(set(order)) != len(order):
        raise UserError(f"order must list distinct layers of 0..{num_layers - 1}, got {order}")
    count = drop_count(amount, num_layers)
    if count > len(order):
        raise UserError(
            f"asked to drop {count} layers (amount={amount!r}) but the order offers only {len(order)} "
            f"of the {num_layers} layers"
        )
    return [int(i) for i in order[:count]]


def span_scores(objective: str, num_layers: int, matrices: Matrices, n: int) -> np.ndarray:
    """The span objective's score of every span of ``n`` layers ``l .. l+n-1``, indexed by ``l = 0 .. L-n``."""
    if objective not in SPAN_OBJECTIVES:
        raise UserError(f"{objective!r} is not a span objective; span objectives: {sorted(SPAN_OBJECTIVES)}")
    num_layers = _check_int("num_layers", num_layers, 1)
    n = _check_int("span length", n, 1)
    scores = np.asarray(SPAN_OBJECTIVES[objective](num_layers, matrices, n), dtype=np.float64)
    if scores.shape != (num_layers - n + 1,):
        raise ValueError(f"objective {objective!r} gave {scores.shape[0] if scores.ndim == 1 else scores.shape} "
                         f"span scores; {num_layers - n + 1} spans of {n} fit in {num_layers} layers")
    if not np.isfinite(scores).all():
        raise ValueError(f"objective {objective!r} gives non-finite span scores: {scores.tolist()}")
    return scores


def ranked_spans(objective: str, num_layers: int, matrices: Matrices, n: int, keep_first: bool = True) -> list[int]:
    """The first layer of every allowed span of ``n`` layers, most prunable (lowest score) first, ties to the
    lower layer; with ``keep_first`` no span holds layer 0. Empty for ``n = 0``."""
    first = 1 if keep_first else 0
    if n == 0:
        return []
    if n > num_layers - first:
        raise UserError(f"asked to drop {n} layers but a span can hold only the {num_layers - first} layers "
                         f"{first}..{num_layers - 1} of {num_layers}" + (" (layer 0 is kept)" if keep_first else ""))
    scores = span_scores(objective, num_layers, matrices, n)
    return [first + i for i in _ascending(scores[first:])]


def choose_layers(objective: str, num_layers: int, matrices: Matrices = None, amount: int | float = 0,
                  keep_first: bool = True) -> list[int]:
    """The layers ``objective`` drops for ``amount``, for any objective: the prefix of its order, or the best
    span (ascending layers)."""
    if objective not in OBJECTIVES:
        raise UserError(f"unknown pruning objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    if objective not in SPAN_OBJECTIVES:
        return layers_to_drop(prune_order(objective, num_layers, matrices, keep_first), amount, num_layers)
    n = drop_count(amount, num_layers)
    starts = ranked_spans(objective, num_layers, matrices, n, keep_first)
    return list(range(starts[0], starts[0] + n)) if starts else []


def drops_per_amount(objective: str, num_layers: int, matrices: Matrices = None,
                     keep_first: bool = True) -> list[list[int]]:
    """``[choose_layers(objective, ..., n) for n = 0 .. the most it can drop]`` (``num_layers - 1`` with
    ``keep_first``), with an order objective's order computed once."""
    num_layers = _check_int("num_layers", num_layers, 1)
    most = num_layers - (1 if keep_first else 0)
    if objective in SPAN_OBJECTIVES:
        return [choose_layers(objective, num_layers, matrices, n, keep_first) for n in range(most + 1)]
    order = prune_order(objective, num_layers, matrices, keep_first)
    return [order[:n] for n in range(most + 1)]
