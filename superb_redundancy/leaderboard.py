"""The leaderboard: accuracy versus compute for every upstream variant, per task and SUPERB-style overall.

Input: run records (:mod:`superb_redundancy.harvest`) and one compute profile per variant
(:mod:`superb_redundancy.profile`: inference parameters, MACs per second of audio, CPU latency at batch 1).
Output, under ``leaderboard/`` by default: a Markdown / CSV / LaTeX table per task and an overview, a figure
per task of the metric against parameters, MACs and latency with a line at 95% of the unpruned base (like the
paper's Fig. 3), and one self-contained HTML page (sortable tables, figures inlined).

Retention is the metric as a percentage of the variant's unpruned base on the same task (for an error rate,
base / variant): the base of a pruned variant is its spec's base checkpoint, evaluated as the stock upstream.
A variant is on the Pareto frontier of a task if no other variant is at least as good on the metric and at
least as cheap in MACs, and strictly better in one of the two.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from .atomic import write_text
from .harvest import RunRecord, file_sha256, fold_averages

__all__ = ["Profile", "variant_profile", "records_frame", "task_tables", "overview", "pareto_mask",
           "write_leaderboard"]


@dataclass(frozen=True)
class Profile:
    params: int  # inference parameters of the upstream
    macs_per_second: float  # MACs for 1 s of audio, batch 1
    latency_ms: Optional[float]  # median CPU latency for 1 s of audio, batch 1

    @classmethod
    def from_profile(cls, profile: dict) -> "Profile":
        """From ``profile.profile_upstream``'s result (with 1 s among its ``seconds``)."""
        one = next((m for m in profile["macs"] if abs(m["seconds"] - 1.0) < 1e-9), profile["macs"][0])
        latency = next((l for l in profile.get("latency") or [] if abs(l["seconds"] - 1.0) < 1e-9), None)
        return cls(int(profile["parameters"]["inference"]), one["macs"] / one["seconds"],
                   None if latency is None else 1000 * latency["median_s"])


def variant_profile(record: RunRecord, repeats: int = 5, device: str = "cpu") -> Profile:
    """Profile the upstream a record ran (params, MACs and latency at 1 s of audio on ``device``)."""
    from .profile import profile_upstream

    return Profile.from_profile(profile_upstream(record.upstream, ckpt=record.upstream_ckpt,
                                                 model_config=record.upstream_model_config,
                                                 seconds=(1.0,), repeats=repeats, device=device))


def _base_sha(record: RunRecord) -> Optional[str]:
    """The checkpoint a variant derives from: the -k file, else the prune spec's / mimic artifact's base."""
    spec = record.spec if isinstance(record.spec, dict) else {}
    if spec.get("teacher_sha256"):
        return spec["teacher_sha256"]
    if spec.get("base"):
        return file_sha256(spec["base"]) or spec["base"]
    return record.upstream_sha256


def _is_base(record: RunRecord) -> bool:
    spec = record.spec if isinstance(record.spec, dict) else {}
    pruned_nothing = "drop_layers" in spec and not spec["drop_layers"]
    return record.upstream.endswith("_local") and not record.upstream.startswith(("pruned_", "mimic")) \
        or pruned_nothing


def _label(record: RunRecord) -> str:
    spec = record.spec if isinstance(record.spec, dict) else {}
    mimic = spec.get("mimic")
    if mimic:
        if not mimic.get("n_layers"):
            return "classifier only (no layers)"
        prefix = "non-mimicker" if spec.get("training") == "none" else "mimic"
        return f"{prefix} {mimic.get('kind')} N={mimic.get('n_layers')} z={mimic.get('z')}"
    if spec.get("drop_layers") is not None:
        label = f"{record.upstream} drop {list(spec['drop_layers'])}"
        objective = (spec.get("notes") or {}).get("objective")
        return f"{label} ({objective})" if objective else label
    return record.upstream


def records_frame(records: Sequence[RunRecord], profiles: dict[str, Profile]) -> pd.DataFrame:
    """One row per (variant, task) with the mean metric over seeds/runs, retention, compute and Pareto mark."""
    records = list(records) + fold_averages(list(records))
    rows = []
    for r in records:
        if r.task == "emotion" and r.fold and r.fold.startswith("fold") and any(
                a.variant == r.variant and a.fold == "mean of 5 folds" for a in records):
            continue  # the 5-fold mean stands for its folds
        p = profiles.get(r.variant)
        rows.append(dict(task=r.task, variant=r.variant, label=_label(r), metric=r.metric, value=r.value,
                         higher_is_better=r.higher_is_better, base=_base_sha(r), is_base=_is_base(r),
                         params=p.params if p else None, macs=p.macs_per_second if p else None,
                         latency_ms=p.latency_ms if p else None))
    if not rows:
        return pd.DataFrame(columns=["task", "variant", "label", "metric", "value", "runs", "retention_pct",
                                     "params", "macs", "latency_ms", "pareto"])
    frame = pd.DataFrame(rows)
    keys = ["task", "variant", "label", "metric", "higher_is_better", "base", "is_base"]
    frame = frame.groupby(keys, dropna=False).agg(value=("value", "mean"), runs=("value", "size"),
                                                  params=("params", "first"), macs=("macs", "first"),
                                                  latency_ms=("latency_ms", "first")).reset_index()
    retention = []
    for _, row in frame.iterrows():
        bases = frame[(frame.task == row.task) & (frame.base == row.base) & frame.is_base]
        if bases.empty or not bases.value.iloc[0]:
            retention.append(None)
            continue
        base = bases.value.iloc[0]
        retention.append(100 * (row.value / base if row.higher_is_better else base / max(row.value, 1e-12)))
    frame["retention_pct"] = retention
    frame["pareto"] = False
    for task, group in frame.groupby("task"):
        frame.loc[group.index, "pareto"] = pareto_mask(group.value.tolist(), group.macs.tolist(),
                                                       bool(group.higher_is_better.iloc[0]))
    return frame.sort_values(["task", "macs", "label"], na_position="last").reset_index(drop=True)


def pareto_mask(values: Sequence[float], costs: Sequence[Optional[float]], higher_is_better: bool) -> list[bool]:
    """True where no other point is at least as good and as cheap, and strictly better in one."""
    sign = 1 if higher_is_better else -1
    marks = []
    for i, (v, c) in enumerate(zip(values, costs)):
        if c is None or pd.isna(c):
            marks.append(False)
            continue
        dominated = any(
            j != i and cj is not None and not pd.isna(cj) and sign * vj >= sign * v and cj <= c
            and (sign * vj > sign * v or cj < c)
            for j, (vj, cj) in enumerate(zip(values, costs))
        )
        marks.append(not dominated)
    return marks


_COLUMNS = {"label": "upstream", "metric": "metric", "value": "score", "retention_pct": "% of base",
            "params": "params (M)", "macs": "GMACs / s audio", "latency_ms": "latency (ms, 1 s)",
            "runs": "runs", "pareto": "Pareto"}


def task_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The presentable table per task (columns renamed, units applied)."""
    tables = {}
    for task, group in frame.groupby("task"):
        table = group[list(_COLUMNS)].copy()
        table["params"] = table["params"].map(lambda x: None if pd.isna(x) else round(x / 1e6, 3))
        table["macs"] = table["macs"].map(lambda x: None if pd.isna(x) else round(x / 1e9, 4))
        table["latency_ms"] = table["latency_ms"].map(lambda x: None if pd.isna(x) else round(x, 2))
        table["value"] = table["value"].map(lambda x: round(x, 4))
        table["retention_pct"] = table["retention_pct"].map(lambda x: None if pd.isna(x) else round(x, 1))
        table["pareto"] = table["pareto"].map(lambda x: "*" if x else "")
        tables[task] = table.rename(columns=_COLUMNS).reset_index(drop=True)
    return tables


def overview(frame: pd.DataFrame) -> pd.DataFrame:
    """SUPERB-style: one row per variant, its score on each task, params and MACs."""
    if frame.empty:
        return pd.DataFrame()
    scores = frame.pivot_table(index="label", columns="task", values="value", aggfunc="first")
    scores.columns = [f"{task} ({frame[frame.task == task].metric.iloc[0]})" for task in scores.columns]
    compute = frame.groupby("label").agg(params=("params", "first"), macs=("macs", "first"))
    table = compute.join(scores)
    table["params"] = table["params"].map(lambda x: None if pd.isna(x) else round(x / 1e6, 3))
    table["macs"] = table["macs"].map(lambda x: None if pd.isna(x) else round(x / 1e9, 4))
    table = table.rename(columns={"params": "params (M)", "macs": "GMACs / s audio"}).round(4)
    return table.reset_index().rename(columns={"label": "upstream"}).sort_values("GMACs / s audio")


def _figure(group: pd.DataFrame, task: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axes_spec = [("params", 1e6, "parameters (M)"), ("macs", 1e9, "GMACs per second of audio"),
                 ("latency_ms", 1, "latency, 1 s clip (ms, CPU)")]
    figure = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(figure)
    metric = group.metric.iloc[0]
    bases = group[group.is_base]
    for ax, (column, scale, xlabel) in zip(figure.subplots(1, 3), axes_spec):
        data = group.dropna(subset=[column])
        for _, row in data.iterrows():
            ax.scatter(row[column] / scale, row.value, s=60 if row.pareto else 30,
                       marker="*" if row.is_base else "o", label=row.label)
        for _, base in bases.iterrows():
            line = 0.95 * base.value if base.higher_is_better else base.value / 0.95
            ax.axhline(line, color="red", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(4, max(1, len(labels))), fontsize=8,
                  bbox_to_anchor=(0.5, 1.02))
    figure.suptitle(f"{task}: {metric} vs compute (red: 95% of the unpruned base)", y=1.1, fontsize=11)
    figure.tight_layout()
    return figure


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


_SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.dataset.asc !== '1';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.asc); th.dataset.asc = asc ? '1' : '0';
  const key = r => { const t = r.cells[col].innerText.trim(), n = parseFloat(t); return isNaN(n) ? t : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
</script>"""


def write_leaderboard(frame: pd.DataFrame, output: str | Path = "leaderboard") -> dict[str, Path]:
    """Tables (md, csv, tex), figures (png) and index.html under ``output``; every file written atomically."""
    from tabulate import tabulate

    output = Path(output)
    written: dict[str, Path] = {}
    tables = task_tables(frame)
    html_parts = ["<!doctype html><html><head><meta charset='utf-8'><title>superb-redundancy leaderboard</title>",
                  "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;"
                  "margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{cursor:pointer;"
                  "background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
                  "<h1>superb-redundancy leaderboard</h1>",
                  "<p>Score, retention (% of the unpruned base), compute per second of audio (batch 1), "
                  "CPU latency. * marks the Pareto frontier (score vs MACs). Click a header to sort.</p>"]
    summary = overview(frame)
    if not summary.empty:
        written["overview.md"] = write_text(output / "overview.md", tabulate(summary, headers="keys",
                                                                            tablefmt="github", showindex=False))
        written["overview.csv"] = write_text(output / "overview.csv", summary.to_csv(index=False))
        html_parts += ["<h2>Overview</h2>", summary.to_html(index=False, classes="sortable", na_rep="")]
    for task, table in tables.items():
        written[f"{task}.md"] = write_text(output / f"{task}.md",
                                           tabulate(table, headers="keys", tablefmt="github", showindex=False))
        written[f"{task}.csv"] = write_text(output / f"{task}.csv", table.to_csv(index=False))
        written[f"{task}.tex"] = write_text(output / f"{task}.tex", table.to_latex(index=False, na_rep="--"))
        png = _png_bytes(_figure(frame[frame.task == task], task))
        from .atomic import atomic_path

        with atomic_path(output / f"{task}.png") as tmp:
            tmp.write_bytes(png)
        written[f"{task}.png"] = output / f"{task}.png"
        html_parts += [f"<h2>{html.escape(task)}</h2>", table.to_html(index=False, classes="sortable", na_rep=""),
                       f"<img alt='{html.escape(task)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"]
    html_parts += [_SORT_SCRIPT, "</body></html>"]
    written["index.html"] = write_text(output / "index.html", "\n".join(html_parts))
    return written


def format_tables(frame: pd.DataFrame) -> str:
    """Every task's table as Markdown, for the terminal."""
    from tabulate import tabulate

    parts = []
    for task, table in task_tables(frame).items():
        parts += [f"\n## {task}", tabulate(table, headers="keys", tablefmt="github", showindex=False)]
    return "\n".join(parts)


def build(records: Sequence[RunRecord], profile: Callable[[RunRecord], Profile] = variant_profile) -> pd.DataFrame:
    """Profile each variant once, then build the frame."""
    profiles: dict[str, Profile] = {}
    for record in records:
        if record.variant not in profiles:
            try:
                profiles[record.variant] = profile(record)
            except Exception as error:  # a variant that cannot be profiled still gets its scores listed
                import warnings

                warnings.warn(f"no compute profile for {record.variant}: {error}", stacklevel=2)
    return records_frame(records, profiles)
