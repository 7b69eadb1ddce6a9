"""The leaderboard's figure per task: the score (with its 95% interval) against each compute axis, the Pareto
frontier, 95% of the base and chance; as PNG bytes."""

from __future__ import annotations

import io

import pandas as pd

from superb_redundancy.results.leaderboard.frame import AXES

__all__ = ["task_figure", "png_bytes"]


def task_figure(group: pd.DataFrame, task: str):
    """One panel per compute axis (:data:`AXES`): hollow points at chance, large ones on that panel's frontier."""
    # lazy: matplotlib is needed for the figures only (the terminal tables do without it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    metric = group.metric.iloc[0]
    higher = bool(group.higher_is_better.iloc[0])
    bases = group[group.is_base]
    colours = {label: f"C{i % 10}" for i, label in enumerate(sorted(group.label.unique()))}
    for ax, (column, scale, xlabel) in zip(figure.subplots(1, 3), AXES):
        data = group.dropna(subset=[column]).sort_values(column)
        for _, row in data.iterrows():
            x = row[column] / scale
            # a percentile interval need not hold its point estimate: a bar never goes below zero length
            below, above = max(0.0, row.value - row.low), max(0.0, row.high - row.value)
            ax.errorbar(x, row.value, yerr=[[below], [above]], fmt="none",
                        ecolor=colours[row.label], alpha=0.7, capsize=3)
            ax.scatter(x, row.value, s=70 if row[f"pareto_{column}"] else 35, marker="*" if row.is_base else "o",
                       facecolors="none" if row.at_chance else colours[row.label], edgecolors=colours[row.label],
                       label=row.label, zorder=3)
        front = data[data[f"pareto_{column}"]].sort_values(column)
        if len(front):
            ax.step(front[column] / scale, front.value, where="post", color="black", linewidth=0.8,
                    linestyle=":", label="Pareto frontier" if ax is figure.axes[0] else None)
        for _, base in bases.iterrows():
            line = 0.95 * base.value if higher else 100 - 0.95 * (100 - base.value)
            ax.axhline(line, color="red", linestyle="--", linewidth=1,
                       label="95% of the base" if ax is figure.axes[0] else None)
        chance = group.chance.iloc[0]
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1,
                   label=("chance (majority)" if metric != "wer" else "empty output (WER 100)")
                   if ax is figure.axes[0] else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric + (" (higher is better)" if higher else " (lower is better)"))
        ax.grid(alpha=0.3)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figure.legend(unique.values(), unique.keys(), loc="outside lower center", ncol=min(4, max(1, len(unique))),
                  fontsize=8)
    figure.suptitle(f"{task}: {metric} with 95% intervals vs compute (hollow: at chance; large: Pareto "
                    "frontier of that panel)", fontsize=11)
    return figure


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
