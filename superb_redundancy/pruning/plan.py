"""Pruning plans read off a similarity report (paper section 2.2): which layers to drop, and why.

``plan_pruning`` turns a report into a plan for an objective and amount: statically (scores from the unpruned
model, the paper's choice) or iteratively (scores recomputed on the pruned model after each removal). A span
objective ("span") drops the best run of consecutive layers for the amount, always statically.
``PruningPlan.to_spec`` is the one place a plan becomes a prune spec with its notes. ``prune_by_objective`` is
the one way a base is pruned by an objective (scores from a report or computed on clips, static or iterative):
``superb-redundancy prune``, Hugging Face folders and studies all call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from superb_redundancy.analysis.report import SimilarityReport, SimilaritySettings, analyse
from superb_redundancy.pruning.objectives import (OBJECTIVES, SPAN_OBJECTIVES, block_influence, choose_layers,
                                                  drop_count, layers_to_drop, prune_order, ranked_spans, span_scores)
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.core.errors import UserError

__all__ = ["SCORE_METRIC", "objective_scores", "PruningPlan", "plan_pruning"]

#: score objectives and the matrix their block influence reads
SCORE_METRIC = {"bi": "cosine", "knn-bi": "knn", "cka-bi": "cka"}


def objective_scores(objective: str, report: SimilarityReport) -> Optional[np.ndarray]:
    """Block influence per transformer layer for score objectives; None for forward/backward."""
    metric = SCORE_METRIC.get(objective)
    return None if metric is None else block_influence(report.matrices[metric])


@dataclass(frozen=True)
class PruningPlan:
    """Which layers to drop, and why.

    Order objectives: ``order`` ranks the layers, most prunable first (layer 0 left out unless asked), and
    ``scores[l]`` is layer ``l``'s score (None: positional objective). Span objectives (``span`` is the number
    of layers dropped, n): ``order`` ranks the allowed spans by their first layer, and ``scores[l]`` is the score
    of the span ``l .. l+n-1`` (for "span": the angular distance between its input and its output).
    """

    objective: str
    order: list[int]
    scores: Optional[list[float]]  # on the unpruned model
    drop_layers: list[int]
    iterative: bool
    span: Optional[int] = None

    def notes(self, amount: int | float, **extra: Any) -> dict:
        """The record a prune spec keeps of this plan (``amount`` as asked: a count or a fraction)."""
        return {"objective": self.objective, "amount": amount, "iterative": self.iterative, "order": self.order,
                "scores": self.scores, **extra}

    def to_spec(self, base: str, amount: int | float, **extra: Any) -> PruneSpec:
        """The prune spec of this plan on ``base``, its notes recording the plan."""
        return PruneSpec(base=base, drop_layers=self.drop_layers, notes=self.notes(amount, **extra))

    def describe(self) -> str:
        lines = [f"objective {self.objective} ({'iterative' if self.iterative else 'static'}): "
                 f"drop {sorted(self.drop_layers)}"]
        if self.span is not None:
            if self.order:
                lines.append(f"  spans of {self.span} consecutive layer(s), most prunable first:")
            for rank, start in enumerate(self.order):
                end = start + self.span - 1
                where = f"layer {start}" if end == start else f"layers {start}-{end}"
                mark = "  <- dropped" if start == min(self.drop_layers) else ""
                lines.append(f"  {rank + 1:>2}. {where:<12} score {self.scores[start]:.4f}{mark}")
            return "\n".join(lines)
        for rank, layer in enumerate(self.order):
            score = "" if self.scores is None else f"  score {self.scores[layer]:.4f}"
            mark = "  <- dropped" if layer in self.drop_layers else ""
            lines.append(f"  {rank + 1:>2}. layer {layer:>2}{score}{mark}")
        return "\n".join(lines)


def _span_plan(report: SimilarityReport, objective: str, amount: int | float, keep_first: bool) -> PruningPlan:
    num_layers = report.num_layers
    n = drop_count(amount, num_layers)
    order = ranked_spans(objective, num_layers, report.matrices, n, keep_first)
    scores = span_scores(objective, num_layers, report.matrices, n).tolist() if n else []
    drop = choose_layers(objective, num_layers, report.matrices, n, keep_first)
    return PruningPlan(objective, order, scores, drop, False, span=n)


def plan_pruning(report: SimilarityReport, objective: str, amount: int | float, keep_first: bool = True,
                 reanalyse: Optional[Callable[[list[int]], SimilarityReport]] = None) -> PruningPlan:
    """Which layers to drop for ``objective`` and ``amount`` (a count, or a fraction of L).

    Static (default): one order from the unpruned model's report. Iterative: pass ``reanalyse(dropped) ->
    report of the model with those layers dropped``; after each removal the scores are recomputed and the
    lowest-scoring remaining layer goes next (positional and span objectives are the same either way).
    """
    if objective not in OBJECTIVES:
        raise UserError(f"unknown pruning objective {objective!r}; valid: {sorted(OBJECTIVES)}")
    if objective in SPAN_OBJECTIVES:
        return _span_plan(report, objective, amount, keep_first)
    num_layers = report.num_layers
    order = prune_order(objective, num_layers, report.matrices, keep_first=keep_first)
    scores = objective_scores(objective, report)
    count = len(layers_to_drop(order, amount, num_layers))
    if reanalyse is None or scores is None:
        return PruningPlan(objective, order, None if scores is None else scores.tolist(), order[:count], False)
    dropped: list[int] = []
    current = report
    for _ in range(count):
        current_scores = objective_scores(objective, current)
        candidates = [i for i in range(num_layers) if i not in dropped and not (keep_first and i == 0)]
        dropped.append(min(candidates, key=lambda i: (current_scores[i], i)))
        if len(dropped) < count:
            current = reanalyse(list(dropped))
    remaining = [i for i in order if i not in dropped]
    return PruningPlan(objective, dropped + remaining, scores.tolist(), dropped, True)


def prune_by_objective(family: str, base: str, objective: str, amount: int | float, *,
                       report: Optional[SimilarityReport] = None, files: Optional[Sequence[Path]] = None,
                       settings: Optional[SimilaritySettings] = None, iterative: bool = False,
                       keep_first: bool = True, device: str = "cpu", progress: bool = True,
                       variant: Optional[Callable[[list[int]], Any]] = None, source: Optional[dict] = None,
                       **notes: Any) -> tuple[PruningPlan, PruneSpec]:
    """The pruning of ``base`` (of ``family``) by ``objective``: its plan, and the prune spec dropping ``amount``
    layers (a count or a fraction of L; ``notes`` go into the spec's notes beside the plan's), with its variant
    description (:meth:`~superb_redundancy.pruning.spec.PruneSpec.described`).

    The scores come from ``report`` (a similarity report of ``base``), else are computed on ``files`` with
    ``settings`` (default: the report's, else the paper's); ``iterative`` recomputes them on the pruned model
    after each removal (it needs ``files``). ``variant(dropped)`` builds the model with those layers dropped
    (default: :func:`~superb_redundancy.pruning.upstream.build_pruned` of a spec of ``base``; a Hugging Face
    folder passes its own).
    """
    if report is None and not files:
        raise UserError("pruning by an objective needs a similarity report of the base or audio clips to compute one")
    if iterative and not files:
        raise UserError("iterative pruning recomputes scores on the pruned model: it needs audio clips")
    if variant is None:
        from superb_redundancy.pruning.upstream import build_pruned

        def variant(dropped: list[int]):
            return build_pruned(family, PruneSpec(base=base, drop_layers=dropped))
    settings = settings or (report.settings if report is not None else SimilaritySettings())

    def analyse_with(dropped: list[int]) -> SimilarityReport:
        return analyse(variant(dropped), list(files), settings, device=device, progress=progress, source=source)

    if report is None:
        report = analyse_with([])
    plan = plan_pruning(report, objective, amount, keep_first=keep_first,
                        reanalyse=analyse_with if iterative else None)
    # the spec says what the variant is (core/variant.py): harvest and the leaderboard read it from there
    return plan, plan.to_spec(base, amount, **notes).described(family)
