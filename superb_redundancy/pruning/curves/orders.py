"""Which layers each objective drops at each amount ``p = 0 .. L-1`` (layer 0 never), and the variants' masks."""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

from superb_redundancy.pruning.curves.settings import CurvesInputError
from superb_redundancy.pruning.curves.shared_forward import Mask, _mask
from superb_redundancy.pruning.objectives import OBJECTIVE_METRIC, SPAN_OBJECTIVES, drops_per_amount, prune_order
from superb_redundancy.pruning.plan import SCORE_METRIC, plan_pruning

__all__ = ["pruning_orders", "pruning_drops", "drop_masks", "variant_masks"]


def pruning_orders(objectives: Sequence[str], num_layers: int, report=None,
                   reanalyse: Optional[Callable[[list[int]], object]] = None) -> dict[str, list[int]]:
    """Per objective the order layers are dropped in (layer 0 never): static, or iterative with ``reanalyse``.
    Order objectives only (a span objective has no order: :func:`pruning_drops` takes every objective)."""
    orders = {}
    for objective in objectives:
        if objective in OBJECTIVE_METRIC and report is None:
            raise CurvesInputError(f"objective {objective} needs a similarity report")
        matrices = report.matrices if report is not None else None
        if objective in SCORE_METRIC and reanalyse is not None:
            plan = plan_pruning(report, objective, num_layers - 1, keep_first=True, reanalyse=reanalyse)
            orders[objective] = list(plan.drop_layers)
        else:
            orders[objective] = prune_order(objective, num_layers, matrices, keep_first=True)
    return orders


def pruning_drops(objectives: Sequence[str], num_layers: int, report=None,
                  reanalyse: Optional[Callable[[list[int]], object]] = None) -> dict[str, list[list[int]]]:
    """Per objective the layers dropped at each amount ``p = 0 .. L-1`` (layer 0 never): an order objective's
    first ``p`` (as :func:`pruning_orders`), a span objective's best span of ``p`` (always static)."""
    spans = [o for o in objectives if o in SPAN_OBJECTIVES]
    if spans and report is None:
        raise CurvesInputError(f"objective {spans[0]} needs a similarity report "
                               f"(its {OBJECTIVE_METRIC.get(spans[0], 'similarity')} matrix)")
    orders = pruning_orders([o for o in objectives if o not in SPAN_OBJECTIVES], num_layers, report, reanalyse)
    return {o: (drops_per_amount(o, num_layers, report.matrices, keep_first=True) if o in SPAN_OBJECTIVES
                else [list(orders[o][:p]) for p in range(num_layers)]) for o in objectives}


def drop_masks(drops: Mapping[str, Sequence[Sequence[int]]], num_layers: int) -> dict[tuple[str, int], Mask]:
    """``(objective, p) -> keep-mask``: the layers ``drops[objective][p]`` dropped."""
    return {(objective, p): _mask(dropped, num_layers)
            for objective, per_amount in drops.items() for p, dropped in enumerate(per_amount)}


def variant_masks(orders: Mapping[str, Sequence[int]], num_layers: int) -> dict[tuple[str, int], Mask]:
    """``(objective, p) -> keep-mask`` for ``p = 0 .. L-1``: the first ``p`` layers of the objective's order dropped."""
    return drop_masks({o: [order[:p] for p in range(num_layers)] for o, order in orders.items()}, num_layers)
