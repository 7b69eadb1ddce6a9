"""The leaderboard's tables: per task (score, chance, retention, delta, compute, marks) and the SUPERB-style
overview, as pandas frames, and as Markdown for the terminal."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

__all__ = ["task_tables", "overview", "format_tables", "mostly_at_chance", "fmt"]


def fmt(x, digits: int) -> str:
    return "" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _score_text(row) -> str:
    digits = 3 if row.metric != "wer" else 1
    return f"{row.value:.{digits}f} [{row.low:.{digits}f}, {row.high:.{digits}f}]"


def _retention_text(row) -> str:
    if pd.isna(row.retention):
        return "- (base at chance)" if getattr(row, "base_at_chance", False) is True else ""
    return f"{row.retention:.1f} [{fmt(row.retention_low, 1)}, {fmt(row.retention_high, 1)}]"


def _difference_text(row) -> str:
    if pd.isna(row.difference):
        return ""
    scale, digits = (100.0, 1) if row.metric != "wer" else (1.0, 1)
    return (f"{scale * row.difference:+.{digits}f} [{scale * row.difference_low:+.{digits}f}, "
            f"{scale * row.difference_high:+.{digits}f}]")


def _marks(row) -> str:
    marks = []
    if row.is_base:
        marks.append("base")
    if row.at_chance:
        marks.append("<=chance")
    if row.indistinguishable:
        marks.append("~base")
    return " ".join(marks)


def _latency_text(row) -> str:
    if pd.isna(row.latency_ms):
        return ""
    return f"{row.latency_ms:.2f} [{row.latency_q1_ms:.2f}, {row.latency_q3_ms:.2f}]"


def _chance_text(row) -> str:
    if row.metric == "wer":
        return "100"
    uniform = "" if row.uniform is None or pd.isna(row.uniform) else f" (1/K {row.uniform:.3f})"
    return f"{row.chance:.3f}{uniform}"


def task_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The presentable table per task."""
    tables = {}
    for task, group in frame.groupby("task"):
        metric = group.metric.iloc[0]
        delta = "delta vs base (acc. points)" if metric != "wer" else "delta vs base (WER points)"
        table = pd.DataFrame({
            "upstream": group.label,
            f"{metric} [95% CI]": group.apply(_score_text, axis=1),
            "n": group.n.astype(int),
            "seeds": group.seeds.astype(int),
            "chance": group.apply(_chance_text, axis=1),
            "% of base [95% CI]": group.apply(_retention_text, axis=1),
            delta: group.apply(_difference_text, axis=1),
            "params (M)": group.params.map(lambda x: fmt(None if pd.isna(x) else x / 1e6, 3)),
            "GMACs / s audio": group.macs.map(lambda x: fmt(None if pd.isna(x) else x / 1e9, 4)),
            "latency ms [IQR]": group.apply(_latency_text, axis=1),
            "Pareto (MACs)": group.pareto_macs.map(lambda x: "*" if x else ""),
            "marks": group.apply(_marks, axis=1),
        })
        if metric == "wer":
            table.insert(2, "CER", group.cer.map(lambda x: fmt(x, 1)))
        if task == "emotion":  # SUPERB averages the 5 folds; a row may hold fewer
            table.insert(4, "folds", group.folds.astype(int))
        tables[task] = table.reset_index(drop=True)
    return tables


def overview(frame: pd.DataFrame) -> pd.DataFrame:
    """SUPERB-style: one row per variant, its score on each task (marked when at chance), params and MACs."""
    if frame.empty:
        return pd.DataFrame()
    cells = frame.assign(cell=frame.apply(lambda r: f"{r.value:.3f}" if r.metric != "wer" else f"{r.value:.1f}",
                                          axis=1) + frame.at_chance.map(lambda x: " (chance)" if x else ""))
    scores = cells.pivot_table(index="label", columns="task", values="cell", aggfunc="first")
    scores.columns = [f"{task} ({frame[frame.task == task].metric.iloc[0]})" for task in scores.columns]
    compute = frame.groupby("label").agg(params=("params", "first"), macs=("macs", "first"))
    table = compute.join(scores).sort_values("macs")
    table["params"] = table["params"].map(lambda x: fmt(None if pd.isna(x) else x / 1e6, 3))
    table["macs"] = table["macs"].map(lambda x: fmt(None if pd.isna(x) else x / 1e9, 4))
    table = table.rename(columns={"params": "params (M)", "macs": "GMACs / s audio"})
    return table.reset_index().rename(columns={"label": "upstream"}).fillna("")


def mostly_at_chance(group: pd.DataFrame) -> bool:
    return bool(group.at_chance.mean() > 0.5)


def format_tables(frame: pd.DataFrame) -> str:
    """Every task's table as Markdown, for the terminal, with a warning line under tasks mostly at chance."""
    parts = []
    for task, table in task_tables(frame).items():
        parts += [f"\n## {task}", tabulate(table, headers="keys", tablefmt="github", showindex=False)]
        group = frame[frame.task == task]
        if mostly_at_chance(group):
            parts.append(f"warning: {int(group.at_chance.sum())} of {len(group)} scores are within their interval "
                         "of chance")
    return "\n".join(parts)
