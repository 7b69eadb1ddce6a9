"""The curves of one run (:class:`CurveResult`): points, thresholds, the table, files and figures.

Outputs (:meth:`CurveResult.save`, every file written atomically): ``curves.csv`` / ``curves.json`` (objective,
amount in layers and as a fraction, repeat, seed, metric, dropped layers), ``pruning_curves.png`` (Fig. 2b) and
``pruned_layers_knn.png`` (Fig. 2c), ``thresholds.md`` (largest prune fraction keeping >= 95% / >= 50% of the
unpruned metric).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from tabulate import tabulate

from superb_redundancy.core.files import atomic_path
from superb_redundancy.pruning.curves.settings import CurveSettings
from superb_redundancy.pruning.curves.shared_forward import _mask
from superb_redundancy.pruning.objectives import SPAN_OBJECTIVES
from superb_redundancy.statistics.evidence import TestItems  # CurveResult.retention's own name
from superb_redundancy.statistics.evidence import retention as paired_retention, wilson

__all__ = ["CurvePoint", "CurveResult"]


@dataclass(frozen=True)
class CurvePoint:
    objective: str
    amount: int  # layers dropped
    fraction: float  # amount / L
    repeat: int
    seed: int
    samples: int
    metric: float
    dropped_layers: tuple[int, ...]


def _mean(values: Sequence[float]) -> float:
    values = list(values)
    return values[0] if all(v == values[0] for v in values) else math.fsum(values) / len(values)


def _write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix[1:].lower() or "png", dpi=150)
    return _write_bytes(path, buffer.getvalue())


@dataclass
class CurveResult:
    experiment: dict
    task: str
    metric_name: str
    num_layers: int
    chance: Optional[float]
    #: objective -> the layers dropped at each amount p = 0 .. L-1 (for an order objective, its order's first p)
    drops: dict[str, list[list[int]]]
    points: list[CurvePoint]
    settings: CurveSettings
    similarity: object = None  # the SimilarityReport used (Fig. 2c, score orders)
    similarity_source: str = ""
    #: per distinct variant (keep-mask) the per-sample outcomes of the whole test set
    outcomes: dict = field(default_factory=dict, repr=False)
    #: the share of the most frequent test label (None where the expert does not record labels)
    majority: Optional[float] = None

    # -- queries -------------------------------------------------------------------------------------------
    @property
    def orders(self) -> dict[str, list[int]]:
        """The order of each order objective (its drops at ``p = L-1``); span objectives have none."""
        return {o: list(d[-1]) for o, d in self.drops.items() if o not in SPAN_OBJECTIVES}

    def metrics(self, objective: str, amount: int) -> list[float]:
        return [p.metric for p in self.points if p.objective == objective and p.amount == amount]

    def mean(self, objective: str, amount: int) -> float:
        return _mean(self.metrics(objective, amount))

    @property
    def unpruned(self) -> float:
        """The mean over repeats of the unpruned model's metric (amount 0, the same for every objective)."""
        return self.mean(next(iter(self.drops)), 0)

    def largest_amount(self, objective: str, ratio: float) -> int:
        """The largest amount whose mean metric is >= ``ratio`` x unpruned (0 if none above it)."""
        line = ratio * self.unpruned
        passing = [p for p in range(self.num_layers) if self.mean(objective, p) >= line]
        return max(passing, default=0)

    def dropped(self, objective: str, amount: int) -> list[int]:
        return sorted(self.drops[objective][amount])

    def outcomes_at(self, objective: str, amount: int) -> list[float]:
        """The per-item outcomes of the whole test set for the variant at (objective, amount)."""
        return self.outcomes[_mask(self.drops[objective][amount], self.num_layers)]

    def interval(self, objective: str, amount: int) -> tuple[float, float]:
        """Wilson's 95% interval of the variant's accuracy on the whole test set."""
        values = self.outcomes_at(objective, amount)
        return wilson(int(round(sum(values))), len(values))

    def retention(self, objective: str, amount: int):
        """The variant against the unpruned model on the same items: a paired-bootstrap
        :class:`~superb_redundancy.statistics.evidence.Retention` (cached)."""
        cache = self.__dict__.setdefault("_retention", {})
        key = (objective, amount)
        if key not in cache:
            def items(values):
                ids = tuple(str(i) for i in range(len(values)))
                return [[TestItems("accuracy", ids, correct=tuple(int(round(v)) for v in values),
                                   truth=("?",) * len(values))]]

            cache[key] = paired_retention(items(self.outcomes_at(objective, 0)),
                                          items(self.outcomes_at(objective, amount)))
        return cache[key]

    def thresholds(self) -> dict[str, dict]:
        """Per objective and ratio (95%, 50%): the largest amount whose mean stays at or above ratio x unpruned,
        and the largest amount where the paired 95% interval of the retention lies above it (the claim "keeps
        95%" is made only there); each with its retention and interval."""
        out = {}
        for objective in self.drops:
            out[objective] = {}
            for ratio in (0.95, 0.5):
                p = self.largest_amount(objective, ratio)
                kept = self.retention(objective, p)
                supported = [a for a in range(self.num_layers)
                             if self.retention(objective, a) is not None
                             and self.retention(objective, a).low >= 100 * ratio]
                q = max(supported, default=0)
                out[objective][f"{round(ratio * 100)}%"] = {
                    "amount": p, "fraction": p / self.num_layers, "metric": self.mean(objective, p),
                    "interval": list(self.interval(objective, p)), "dropped_layers": self.dropped(objective, p),
                    "retention": None if kept is None else kept.to_dict(),
                    "supported_amount": q, "supported_fraction": q / self.num_layers,
                    "supported_dropped_layers": self.dropped(objective, q)}
        return out

    def table(self) -> str:
        rows = []
        for objective, info in self.thresholds().items():
            a, b = info["95%"], info["50%"]
            r = a["retention"]
            kept = "" if r is None else f"{r['retention']:.1f}% [{r['low']:.1f}, {r['high']:.1f}]"
            rows.append([objective, f"{a['amount']}/{self.num_layers} ({a['fraction']:.0%})", f"{a['metric']:.4f}",
                         kept, " ".join(map(str, a["dropped_layers"])) or "-",
                         f"{a['supported_amount']}/{self.num_layers} ({a['supported_fraction']:.0%})",
                         f"{b['amount']}/{self.num_layers} ({b['fraction']:.0%})", f"{b['metric']:.4f}"])
        return tabulate(rows, tablefmt="github", headers=[
            "objective", "largest prune, mean >= 95%", f"{self.metric_name} there", "% of unpruned [95% CI]",
            "dropped layers", "largest prune, CI above 95%", "largest prune, mean >= 50%", f"{self.metric_name} there"])

    def summary(self) -> str:
        chance = "n/a" if self.chance is None else f"{self.chance:.4f}"
        majority = "" if self.majority is None else f" (majority class {self.majority:.4f})"
        n = len(next(iter(self.outcomes.values()))) if self.outcomes else 0
        low, high = self.interval(next(iter(self.drops)), 0)
        return (f"{self.experiment['upstream']} on {self.task}: unpruned {self.metric_name} {self.unpruned:.4f} "
                f"[{low:.4f}, {high:.4f}] over n = {n} test items, chance 1/K {chance}{majority}, "
                f"{self.num_layers} layers, {self.settings.repeats} repeat(s) of {self.settings.subset:.0%} of the "
                f"test set; orders {'iterative' if self.settings.iterative else 'static'} from "
                f"{self.similarity_source}. 'CI above 95%': the paired 95% interval of the retention lies above 95%.")

    # -- files ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        settings = asdict(self.settings)
        settings.pop("progress", None)
        return {"experiment": self.experiment, "task": self.task, "metric": self.metric_name,
                "higher_is_better": True, "num_layers": self.num_layers, "chance": self.chance,
                "majority": self.majority, "test_items": len(next(iter(self.outcomes.values()), [])),
                "unpruned": self.unpruned, "settings": settings, "orders": self.orders,
                "drops": self.drops,
                "similarity": self.similarity_source, "thresholds": self.thresholds(),
                "points": [dict(asdict(p), dropped_layers=list(p.dropped_layers)) for p in self.points]}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["objective", "amount_layers", "amount_fraction", "repeat", "seed", "samples",
                         self.metric_name, "dropped_layers"])
        for p in self.points:
            writer.writerow([p.objective, p.amount, f"{p.fraction:.6f}", p.repeat, p.seed, p.samples,
                             repr(p.metric), " ".join(map(str, p.dropped_layers))])
        return buffer.getvalue()

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        directory = Path(directory)
        paths = {
            "csv": _write_bytes(directory / "curves.csv", self.to_csv().encode()),
            "json": _write_bytes(directory / "curves.json", json.dumps(self.to_dict(), indent=1).encode()),
            "table": _write_bytes(directory / "thresholds.md",
                                   f"{self.summary()}\n\n{self.table()}\n".encode()),
            "curves_figure": self.plot_curves(directory / "pruning_curves.png"),
        }
        figure = self.plot_pruned_layers(directory / "pruned_layers_knn.png")
        if figure is not None:
            paths["layers_figure"] = figure
        return paths

    def coinciding(self) -> dict[str, str]:
        """objective -> an earlier objective whose curve it repeats at every amount (same dropped layers)."""
        same = {}
        objectives = list(self.drops)
        for k, objective in enumerate(objectives):
            for earlier in objectives[:k]:
                if earlier not in same and all(self.dropped(objective, p) == self.dropped(earlier, p)
                                               for p in range(self.num_layers)):
                    same[objective] = earlier
                    break
        return same

    def plot_curves(self, path: str | os.PathLike) -> Path:
        """Fig. 2b: metric vs. prune amount per objective with its 95% band, 95% of unpruned and chance lines.

        The band is Wilson's 95% interval of each point on the whole test set (and, with repeats on subsets,
        widened to the 2.5-97.5% quantiles over repeats). Objectives get their own marker and line style, and a
        curve that repeats another's (same layers dropped at every amount) says so in the legend.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        x = np.arange(self.num_layers) / self.num_layers * 100
        same = self.coinciding()
        styles = ["-", "--", "-.", ":"]
        markers = ["o", "s", "^", "D", "v", "P"]
        for k, objective in enumerate(self.drops):
            values = np.array([self.metrics(objective, p) for p in range(self.num_layers)])  # [amount, repeat]
            mean = np.array([self.mean(objective, p) for p in range(self.num_layers)])
            wilson_band = np.array([self.interval(objective, p) for p in range(self.num_layers)])
            low = np.minimum(wilson_band[:, 0], np.quantile(values, 0.025, axis=1))
            high = np.maximum(wilson_band[:, 1], np.quantile(values, 0.975, axis=1))
            label = objective + (f" (same as {same[objective]})" if objective in same else "")
            (line,) = ax.plot(x, mean, marker=markers[k % len(markers)], markersize=4 + (2 if objective in same else 0),
                              linestyle=styles[k % len(styles)], label=label,
                              markerfacecolor="none" if objective in same else None)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.axhline(0.95 * self.unpruned, color="red", linestyle="--", linewidth=1, label="95% of unpruned")
        if self.chance is not None:
            ax.axhline(self.chance, color="grey", linestyle="--", linewidth=1,
                       label=f"chance (1/{round(1 / self.chance)})")
        if self.majority is not None and (self.chance is None or abs(self.majority - self.chance) > 1e-9):
            ax.axhline(self.majority, color="grey", linestyle=":", linewidth=1, label="chance (majority class)")
        n = len(next(iter(self.outcomes.values()), []))
        ax.set_xlabel("Prune amount (%)")
        ax.set_ylabel(f"{self.metric_name} (bands: 95% interval, n = {n})")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{self.experiment['upstream']} / {self.task} ({self.num_layers} layers)", fontsize=10)
        ax.legend(fontsize=8)
        return _save_figure(fig, Path(path))

    def plot_pruned_layers(self, path: str | os.PathLike, ratios: tuple[float, ...] = (0.95, 0.5)) -> Optional[Path]:
        """Fig. 2c: per objective (columns) and ratio (rows), the layers dropped at the largest amount keeping >=
        ratio x unpruned, drawn on the kNN similarity matrix (hidden states 0..L: l+1 is the output of layer l, so
        a dropped layer l crosses out row and column l+1). The paper draws the 50% row; the 95% row shows where
        the objectives differ when a small model keeps 50% almost to the last layer. None without a kNN matrix."""
        if self.similarity is None or "knn" not in getattr(self.similarity, "matrices", {}):
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        matrix = np.asarray(self.similarity.matrices["knn"], dtype=float)
        objectives = list(self.drops)
        fig = Figure(figsize=(3.4 * len(objectives) + 0.8, 3.8 * len(ratios) + 0.4), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.subplots(len(ratios), len(objectives), squeeze=False)
        for row, ratio in zip(grid, ratios):
            for ax, objective in zip(row, objectives):
                p = self.largest_amount(objective, ratio)
                # the colour scale of superb_redundancy.analysis.blocks.plot_similarity (the paper's 0.5..1,
                # extended if needed)
                image = ax.imshow(matrix, origin="lower", cmap="viridis", vmin=min(0.5, float(matrix.min())),
                                  vmax=1.0, interpolation="nearest")
                for layer in self.dropped(objective, p):
                    h = layer + 1
                    ax.axhspan(h - 0.5, h + 0.5, color="white", alpha=0.45, linewidth=0)
                    ax.axvspan(h - 0.5, h + 0.5, color="white", alpha=0.45, linewidth=0)
                    ax.plot([h], [h], marker="x", color="red", markersize=7, markeredgewidth=2)
                ax.set_title(f"{objective} at {ratio:.0%}: $N_p$ = {p} ({p / self.num_layers:.0%})", fontsize=9)
                ax.set_xlabel("hidden state")
                ax.set_ylabel("hidden state")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=grid.ravel().tolist(), shrink=0.85)
        fig.suptitle("layers pruned at the largest amount keeping 95% / 50% of the unpruned, on the mutual-kNN "
                     "similarity", fontsize=10)
        return _save_figure(fig, Path(path))
