"""The pipeline: :func:`pruning_curves` loads the experiment, orders the layers, scores every variant once with
shared computation, averages the repeats and writes the curves with the similarity report they used as one unit."""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Callable, Mapping, Optional, Sequence

from superb_redundancy.analysis.report import SimilarityReport
from superb_redundancy.core.files import atomic_dir
from superb_redundancy.pruning.curves.evaluate import evaluate_shared, similarity_on_split
from superb_redundancy.pruning.curves.experiment import Experiment, load_experiment, test_loader
from superb_redundancy.pruning.curves.orders import drop_masks, pruning_drops
from superb_redundancy.pruning.curves.result import CurvePoint, CurveResult
from superb_redundancy.pruning.curves.settings import SUPPORTED_TASKS, CurveSettings, CurvesInputError
from superb_redundancy.pruning.curves.shared_forward import Mask, SharedPrunedForward, _dropped
from superb_redundancy.pruning.objectives import OBJECTIVE_METRIC

__all__ = ["pruning_curves", "CURVE_FILES"]

#: what one curves run writes; they are swapped in together (atomic.atomic_dir), so no old file stays beside new
CURVE_FILES = ("curves.csv", "curves.json", "thresholds.md", "pruning_curves.png", "pruned_layers_knn.png")


def _subset(n: int, fraction: float, seed: int) -> list[int]:
    if fraction >= 1.0:
        return list(range(n))
    count = max(1, round(fraction * n))
    return sorted(random.Random(seed).sample(range(n), count))


def _given_report(similarity: Optional[str | os.PathLike]) -> Optional[SimilarityReport]:
    if similarity is None:
        return None
    try:
        return SimilarityReport.load(similarity)
    except FileNotFoundError as error:
        raise CurvesInputError(str(error)) from None
    except (ValueError, KeyError, TypeError) as error:
        raise CurvesInputError(f"{similarity} is not a similarity report: {error}") from None


def _check_against(experiment: Experiment, report: Optional[SimilarityReport], settings: CurveSettings) -> None:
    """The experiment's upstream must have layers to prune, and a given report must be of it."""
    L = experiment.num_layers
    if L < 2:
        raise CurvesInputError(f"the upstream has {L} transformer layer(s); nothing to prune with layer 0 kept")
    if report is None:
        return
    if report.num_layers != L:
        raise CurvesInputError(f"the similarity report is of a {report.num_layers}-layer model; the experiment's "
                               f"upstream has {L} layers")
    missing = sorted({OBJECTIVE_METRIC[o] for o in settings.objectives if o in OBJECTIVE_METRIC}
                     - set(report.matrices))
    if missing:
        raise CurvesInputError(f"the similarity report has no {missing} matrix for the objectives asked for")


def _reanalyse(experiment: Experiment, report: SimilarityReport, settings: CurveSettings,
               engine: SharedPrunedForward) -> Callable[[list[int]], SimilarityReport]:
    """For iterative orders: the report of the model with the given layers dropped, on the report's split."""
    split = report.source.get("split") or settings.similarity_split
    split_loader = experiment.downstream.get_dataloader(split)

    def reanalyse(dropped: list[int]):
        return similarity_on_split(experiment, report.settings, dropped, loader=split_loader,
                                   progress=settings.progress, engine=engine, split=split)
    return reanalyse


def _points(variants: Mapping[tuple[str, int], Mask], outcomes: Mapping[Mask, Sequence[float]],
            average: Callable[[Sequence[float]], float], settings: CurveSettings, L: int) -> list[CurvePoint]:
    """One point per variant and repeat: the expert's average over the repeat's subset of the test items."""
    n = len(next(iter(outcomes.values())))
    subsets = [_subset(n, settings.subset, settings.seed + r) for r in range(settings.repeats)]
    points = []
    for (objective, p), mask in variants.items():
        values = outcomes[mask]
        for r, indices in enumerate(subsets):
            points.append(CurvePoint(objective, p, p / L, r, settings.seed + r, len(indices),
                                     average([values[i] for i in indices]), _dropped(mask)))
    return points


def pruning_curves(expdir: str | os.PathLike, similarity: Optional[str | os.PathLike] = None,
                   settings: CurveSettings = CurveSettings(), output: Optional[str | os.PathLike] = None
                   ) -> CurveResult:
    """Evaluate the experiment's checkpoint with the upstream pruned by each objective at every amount.

    ``similarity``: a SimilarityReport (``similarity.json`` or its folder) of the same upstream; None: computed
    on the audio of ``settings.similarity_split`` (dev by default; saved to ``output`` as ``similarity.json`` /
    ``.png``). ``output``: where
    :meth:`CurveResult.save` writes (nothing written if None). Bad input raises :class:`CurvesInputError`
    before any evaluation.
    """
    settings = settings.validate()
    report = _given_report(similarity)
    experiment = load_experiment(expdir, device=settings.device, workdir=output)
    _check_against(experiment, report, settings)
    L = experiment.num_layers

    loader = test_loader(experiment)
    engine = SharedPrunedForward(experiment.expert, experiment.family)
    source = str(similarity) if report is not None else f"the {settings.similarity_split} split (unpruned upstream)"
    computed = report is None
    if report is None:
        split_loader = experiment.downstream.get_dataloader(settings.similarity_split)
        report = similarity_on_split(experiment, loader=split_loader, progress=settings.progress, engine=engine,
                                     split=settings.similarity_split)
    reanalyse = _reanalyse(experiment, report, settings, engine) if settings.iterative else None
    drops = pruning_drops(settings.objectives, L, report, reanalyse)
    variants = drop_masks(drops, L)
    truth: list = []
    outcomes = evaluate_shared(experiment, list(variants.values()), loader=loader, progress=settings.progress,
                               engine=engine, truth=truth)
    majority = max(Counter(truth).values()) / len(truth) if truth else None
    points = _points(variants, outcomes, SUPPORTED_TASKS[experiment.task], settings, L)
    result = CurveResult(experiment.describe(), experiment.task, "acc", L, experiment.chance, drops, points,
                         settings, report, source, outcomes, majority)
    if output is not None:
        _save_unit(result, output, report if computed else None, experiment.args.upstream)
    return result


def _save_unit(result: CurveResult, output: str | os.PathLike, computed_report, upstream: str) -> None:
    """The curves (and the similarity report they computed) written into ``output`` as one unit."""
    with atomic_dir(output, unit=SimilarityReport.FILES + CURVE_FILES) as tmp:
        if computed_report is not None:
            computed_report.write_files(tmp, title=f"{upstream}: {computed_report.source.get('split')} audio "
                                                   f"({computed_report.num_samples} clips)")
        result.save(tmp)
