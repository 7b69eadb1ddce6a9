"""The leaderboard: every upstream variant's scores with their evidence, against its compute.

Input: run records (:mod:`superb_redundancy.harvest`), each holding the per-item test outcomes of one
evaluation, and one compute profile per variant (:func:`profile_variants`: parameters, MACs per second of
audio, batch-1 latency of every variant timed together in one process). Output, under ``leaderboard/`` by
default: a Markdown / CSV / LaTeX table per task and an overview, a figure per task of the score (with its 95%
interval) against parameters, MACs and latency, and one self-contained HTML page.

Per row (variant, task), see :mod:`superb_redundancy.evidence`: the score and its 95% interval, the test items
n it rests on, the seeds it averages; chance (majority class; WER: 100); retention against the variant's
unpruned base with its paired-bootstrap interval, and the difference. Marks: ``<=chance`` where the interval
reaches chance, ``~base`` where the variant is not distinguishable from its base. The Pareto frontier is computed
per compute axis (parameters, MACs, latency), on the points shown, and never includes a point at chance: a row is
on it when no other row is at least as good in score and at least as cheap, and strictly better in one.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from . import evidence
from .atomic import atomic_path, write_text
from .harvest import RunRecord, model_identity

__all__ = ["Profile", "profile_variants", "records_frame", "task_tables", "overview", "pareto_mask",
           "write_leaderboard", "format_tables", "build", "TASK_CLASSES", "AXES"]

#: classes of the tasks with a fixed label set (uniform chance 1/K); SID: its test speakers
TASK_CLASSES = {"speech_commands": 12, "speech_commands_35": 35, "emotion": 4}
#: compute axes of the tables and figures: (column, scale, label)
AXES = (("params", 1e6, "parameters (M)"), ("macs", 1e9, "GMACs per second of audio"),
        ("latency_ms", 1.0, "latency, 1 s clip, batch 1 (ms)"))


@dataclass(frozen=True)
class Profile:
    params: int  # inference parameters of the upstream
    macs_per_second: float  # MACs for 1 s of audio, batch 1
    latency_ms: Optional[float] = None  # median over interleaved rounds
    latency_q1_ms: Optional[float] = None
    latency_q3_ms: Optional[float] = None


# ---------------------------------------------------------------------------------------------- compute
def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def profile_variants(records: Sequence[RunRecord], repeats: int = 30, max_passes: int = 32, device: str = "cpu",
                     threads: Optional[int] = 1, warmup: int = 5) -> tuple[dict[str, Profile], dict]:
    """Parameters and MACs of each variant, and the latency of all of them timed together (interleaved).

    ``repeats`` rounds time every variant once each, in a fresh random order. One timing is the mean of
    ``passes`` forward passes; passes double from 1 up to ``max_passes`` until, for every pair of variants whose
    MACs differ by more than 10%, the inter-quartile ranges of their timings do not overlap (averaging passes
    narrows the IQR; more rounds would only estimate the same spread better). Returns (profiles, how it was timed).
    """
    import torch

    from .profile import count_macs, count_parameters, interleaved_latency
    from .registry import build_upstream

    models, profiles, failures = {}, {}, {}
    for record in records:
        if record.variant in models or record.variant in failures:
            continue
        try:
            model = build_upstream(record.upstream, record.upstream_ckpt, record.upstream_model_config).eval()
        except Exception as error:  # a variant whose files are gone still gets its scores listed
            failures[record.variant] = str(error).splitlines()[0] if str(error) else type(error).__name__
            continue
        params = count_parameters(model)["inference"]
        macs = count_macs(model.to(device), 1.0)["macs"]
        models[record.variant] = model
        profiles[record.variant] = (params, macs)
    passes, times = 1, {}
    while models:
        times = interleaved_latency(models, seconds=1.0, repeats=repeats, warmup=warmup, threads=threads,
                                    device=device, passes=passes)
        if _separated(times, profiles) or passes >= max_passes:
            break
        passes = min(2 * passes, max_passes)
    out = {}
    for variant, (params, macs) in profiles.items():
        t = times.get(variant)
        out[variant] = Profile(int(params), float(macs), *(None,) * 3 if t is None else
                               (1e3 * t["median_s"], 1e3 * t["q1_s"], 1e3 * t["q3_s"]))
    any_time = next(iter(times.values()), None)
    info = {"machine": _machine(), "device": device, "threads": any_time["threads"] if any_time else threads,
            "rounds": repeats, "passes": passes, "warmup": warmup, "timer": any_time["timer"] if any_time else None,
            "torch": torch.__version__, "separated": _separated(times, profiles) if times else None,
            "unprofiled": failures}
    return out, info


def _separated(times: dict, profiles: dict) -> bool:
    """Every pair whose MACs differ by > 10% has non-overlapping latency IQRs."""
    names = list(times)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            small, large = sorted((a, b), key=lambda n: profiles[n][1])
            if profiles[small][1] < 0.9 * profiles[large][1] and times[small]["q3_s"] >= times[large]["q1_s"]:
                return False
    return True


# ---------------------------------------------------------------------------------------------- the frame
def _spec(record: RunRecord) -> dict:
    return record.spec if isinstance(record.spec, dict) else {}


def _base_key(record: RunRecord) -> Optional[str]:
    """The checkpoint a variant derives from: the prune spec's / mimic artifact's base, else its own -k file."""
    spec = _spec(record)
    if spec.get("teacher_sha256") or spec.get("base_model_sha256"):  # mimic teacher; pruned artifact's base
        return spec.get("teacher_sha256") or spec["base_model_sha256"]
    if spec.get("base"):
        return model_identity(spec["base"]) or spec["base"]
    return record.upstream_sha256


def _is_base(record: RunRecord) -> bool:
    spec = _spec(record)
    pruned_nothing = "drop_layers" in spec and not spec["drop_layers"] and not spec.get("healed")
    stock = record.upstream.endswith("_local") and not record.upstream.startswith(("pruned_", "mimic"))
    return stock or pruned_nothing


def _label(record: RunRecord) -> str:
    spec = _spec(record)
    mimic = spec.get("mimic")
    if mimic:
        if not mimic.get("n_layers"):
            return "classifier only (no layers)"
        prefix = "non-mimicker" if spec.get("training") == "none" else "mimic"
        label = f"{prefix} {mimic.get('kind')} N={mimic.get('n_layers')} z={mimic.get('z')}"
        span = mimic.get("span")
        return f"{label} replacing {span[0]}-{span[1]}" if span else label  # block replacement
    healed = " healed" if spec.get("healed") else ""
    if spec.get("drop_layers") is not None and spec.get("drop_layers"):
        label = f"{record.upstream.removesuffix('_local')} drop {list(spec['drop_layers'])}"
        objective = (spec.get("notes") or {}).get("objective")
        return (f"{label} ({objective})" if objective else label) + healed
    return record.upstream + healed


def _link(record: RunRecord) -> Optional[str]:
    """What the row's upstream is made of: the prune spec (-g) or the artifact (-k), else the experiment."""
    return record.upstream_model_config or record.upstream_ckpt


_COLUMNS = ["task", "variant", "label", "metric", "higher_is_better", "value", "low", "high", "n", "seeds",
            "seed_sd", "folds", "chance", "uniform", "at_chance", "method", "cer", "is_base", "base", "retention",
            "retention_low", "retention_high", "difference", "difference_low", "difference_high",
            "indistinguishable", "shared_items", "params", "macs", "latency_ms", "latency_q1_ms", "latency_q3_ms",
            "pareto_params", "pareto_macs", "pareto_latency_ms", "expdir", "made_of"]


def _groups(records: Sequence[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        if record.items:
            groups.setdefault((record.task, record.variant), []).append(record)
    return groups


def _by_seed(members: Sequence[RunRecord]) -> list[list[evidence.TestItems]]:
    seeds: dict = {}
    for record in sorted(members, key=lambda r: (str(r.seed), str(r.fold))):
        seeds.setdefault(record.seed, []).extend(evidence.TestItems.from_dict(i) for i in record.items)
    return list(seeds.values())


def records_frame(records: Sequence[RunRecord], profiles: dict[str, Profile]) -> pd.DataFrame:
    """One row per (task, variant) with its score's evidence, retention against its base, compute, Pareto marks."""
    groups = _groups(records)
    rows, seeds_of = [], {}
    for (task, variant), members in groups.items():
        first = members[0]
        seeds = _by_seed(members)
        seeds_of[(task, variant)] = seeds
        s = evidence.score(seeds, TASK_CLASSES.get(task))
        p = profiles.get(variant)
        rows.append(dict(
            task=task, variant=variant, label=_label(first), metric=first.metric,
            higher_is_better=first.higher_is_better, value=s.value, low=s.low, high=s.high, n=s.n, seeds=s.seeds,
            seed_sd=s.seed_sd, folds=s.folds, chance=s.chance, uniform=s.uniform, at_chance=s.at_chance,
            method=s.method,
            cer=s.cer, is_base=_is_base(first), base=_base_key(first),
            params=p.params if p else None, macs=p.macs_per_second if p else None,
            latency_ms=p.latency_ms if p else None, latency_q1_ms=p.latency_q1_ms if p else None,
            latency_q3_ms=p.latency_q3_ms if p else None, expdir=first.expdir, made_of=_link(first)))
    if not rows:
        return pd.DataFrame(columns=_COLUMNS)
    frame = pd.DataFrame(rows)
    for column in ("retention", "retention_low", "retention_high", "difference", "difference_low",
                   "difference_high", "shared_items"):
        frame[column] = math.nan
    frame["indistinguishable"] = False
    for index, row in frame.iterrows():
        bases = frame[(frame.task == row.task) & (frame.base == row.base) & frame.is_base]
        if bases.empty:
            continue
        base = bases.iloc[0]
        found = evidence.retention(seeds_of[(base.task, base.variant)], seeds_of[(row.task, row.variant)])
        if found is None:
            continue
        frame.loc[index, ["retention", "retention_low", "retention_high", "difference", "difference_low",
                          "difference_high", "shared_items"]] = [
            found.retention, found.low, found.high, found.difference, found.difference_low, found.difference_high,
            found.shared_items]
        frame.loc[index, "indistinguishable"] = bool(found.indistinguishable) and not row.is_base
    for column, _, _ in AXES:
        frame[f"pareto_{column}"] = False
        for task, group in frame.groupby("task"):
            frame.loc[group.index, f"pareto_{column}"] = pareto_mask(
                group.value.tolist(), group[column].tolist(), bool(group.higher_is_better.iloc[0]),
                eligible=(~group.at_chance).tolist())
    return frame[_COLUMNS].sort_values(["task", "macs", "label"], na_position="last").reset_index(drop=True)


def pareto_mask(values: Sequence[float], costs: Sequence[Optional[float]], higher_is_better: bool,
                eligible: Optional[Sequence[bool]] = None) -> list[bool]:
    """True where the point is eligible and no other eligible point is at least as good and as cheap, and
    strictly better in one. Points without a cost, or not eligible (at chance), are never on the frontier."""
    sign = 1 if higher_is_better else -1
    eligible = list(eligible) if eligible is not None else [True] * len(values)
    ok = [bool(e) and c is not None and not pd.isna(c) and not pd.isna(v) for v, c, e in zip(values, costs, eligible)]
    marks = []
    for i, (v, c) in enumerate(zip(values, costs)):
        if not ok[i]:
            marks.append(False)
            continue
        dominated = any(
            ok[j] and j != i and sign * values[j] >= sign * v and costs[j] <= c
            and (sign * values[j] > sign * v or costs[j] < c)
            for j in range(len(values))
        )
        marks.append(not dominated)
    return marks


# ---------------------------------------------------------------------------------------------- presentation
def _fmt(x, digits: int) -> str:
    return "" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _score_text(row) -> str:
    digits = 3 if row.metric != "wer" else 1
    return f"{row.value:.{digits}f} [{row.low:.{digits}f}, {row.high:.{digits}f}]"


def _retention_text(row) -> str:
    if pd.isna(row.retention):
        return ""
    return f"{row.retention:.1f} [{_fmt(row.retention_low, 1)}, {_fmt(row.retention_high, 1)}]"


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
            "params (M)": group.params.map(lambda x: _fmt(None if pd.isna(x) else x / 1e6, 3)),
            "GMACs / s audio": group.macs.map(lambda x: _fmt(None if pd.isna(x) else x / 1e9, 4)),
            "latency ms [IQR]": group.apply(_latency_text, axis=1),
            "Pareto (MACs)": group.pareto_macs.map(lambda x: "*" if x else ""),
            "marks": group.apply(_marks, axis=1),
        })
        if metric == "wer":
            table.insert(2, "CER", group.cer.map(lambda x: _fmt(x, 1)))
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
    table["params"] = table["params"].map(lambda x: _fmt(None if pd.isna(x) else x / 1e6, 3))
    table["macs"] = table["macs"].map(lambda x: _fmt(None if pd.isna(x) else x / 1e9, 4))
    table = table.rename(columns={"params": "params (M)", "macs": "GMACs / s audio"})
    return table.reset_index().rename(columns={"label": "upstream"}).fillna("")


def _mostly_at_chance(group: pd.DataFrame) -> bool:
    return bool(group.at_chance.mean() > 0.5)


def _figure(group: pd.DataFrame, task: str):
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
            ax.errorbar(x, row.value, yerr=[[row.value - row.low], [row.high - row.value]], fmt="none",
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


def _png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


_SORT_SCRIPT = """<script>
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => {
  const col = th.cellIndex, body = th.closest('table').tBodies[0], asc = th.dataset.asc !== '1';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.asc); th.dataset.asc = asc ? '1' : '0';
  const key = r => { const t = r.cells[col].innerText.trim(), n = parseFloat(t); return isNaN(n) ? t : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    if (typeof x !== typeof y) return (typeof x === 'number' ? -1 : 1) * (asc ? 1 : -1);
    return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
</script>"""

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0;"
          "font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{cursor:pointer;"
          "background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}.warn{background:#fff3cd;"
          "border:1px solid #e0c060;padding:.6em 1em}.chance{color:#999}dt{font-weight:bold}dd{margin:0 0 .4em 1.5em}")


def _header(timing: Optional[dict]) -> list[str]:
    timed = ""
    if timing:
        timed = (f"Latency was measured on {html.escape(str(timing.get('machine')))}, device "
                 f"{html.escape(str(timing.get('device')))}, {timing.get('threads')} thread(s), torch "
                 f"{html.escape(str(timing.get('torch')))}: every variant in one process, {timing.get('warmup')} "
                 f"warm-up passes each, then {timing.get('rounds')} rounds that time every variant once in a fresh "
                 f"random order, one timing being the mean of {timing.get('passes', 1)} back-to-back passes "
                 f"({html.escape(str(timing.get('timer')))}).")
        if timing.get("separated") is False:
            timed += (" <b>Even after the rounds above, some variants whose MACs differ by more than 10% have "
                      "overlapping latency IQRs: their latency order is not established.</b>")
    return [
        "<h1>superb-redundancy leaderboard</h1>",
        "<dl>",
        "<dt>score [95% CI]</dt><dd>the test metric (accuracy, or WER in percent), with its 95% interval: Wilson "
        "for one accuracy, a bootstrap over utterances for one WER, a bootstrap over seeds and items where a row "
        "averages several seeds or emotion's folds.</dd>",
        "<dt>n, seeds</dt><dd>test items one evaluation rests on (summed over folds), and seeds averaged.</dd>",
        "<dt>chance</dt><dd>the share of the most frequent test label (and 1/K); for WER, 100 (an empty output). "
        "Rows marked <i>&lt;=chance</i> have an interval that reaches chance: they show no learned skill.</dd>",
        "<dt>% of base, delta vs base</dt><dd>the score as a percentage of the unpruned base's on the same test "
        "items (WER: of its word accuracy, 100 - WER) and the difference, each with a paired-bootstrap 95% "
        "interval over the items both scored. <i>~base</i>: the interval holds 100%, no difference shown.</dd>",
        "<dt>params, MACs</dt><dd>inference parameters of the upstream (the downstream head not counted); "
        "MACs of one forward pass over 1 s of audio at batch 1 (torch FlopCounterMode / 2).</dd>",
        f"<dt>latency</dt><dd>median [inter-quartile range] of a batch-1 forward pass over 1 s of audio. "
        f"{timed}</dd>",
        "<dt>Pareto</dt><dd>on the frontier of score vs that panel's compute axis (tables: MACs); a row at "
        "chance is never on it.</dd>",
        "</dl><p>Click a column header to sort.</p>",
    ]


def _html_table(table: pd.DataFrame, group: pd.DataFrame, output: Path) -> str:
    rows = ["<table class='sortable'><thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
            + "</tr></thead><tbody>"]
    for (_, cells), (_, row) in zip(table.iterrows(), group.iterrows()):
        parts = []
        for k, value in enumerate(cells):
            text = html.escape(str(value))
            if k == 0:
                links = [f"<a href='{html.escape(_relative(row.expdir, output))}'>experiment</a>"]
                if isinstance(row.made_of, str) and row.made_of:
                    links.append(f"<a href='{html.escape(_relative(row.made_of, output))}'>"
                                 f"{html.escape(Path(row.made_of).name)}</a>")
                text += " <small>(" + ", ".join(links) + ")</small>"
            parts.append(f"<td>{text}</td>")
        rows.append(f"<tr{' class=chance' if row.at_chance else ''}>" + "".join(parts) + "</tr>")
    return "\n".join(rows + ["</tbody></table>"])


def _relative(path: str, output: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), output.resolve())
    except ValueError:  # another drive
        return Path(path).resolve().as_uri()


def write_leaderboard(frame: pd.DataFrame, output: str | Path = "leaderboard",
                      timing: Optional[dict] = None) -> dict[str, Path]:
    """Tables (md, csv, tex), figures (png) and index.html under ``output``; every file written atomically."""
    from tabulate import tabulate

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tables = task_tables(frame)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>superb-redundancy leaderboard</title>",
             f"<style>{_STYLE}</style></head><body>", *_header(timing)]
    summary = overview(frame)
    if not summary.empty:
        written["overview.md"] = write_text(output / "overview.md",
                                            tabulate(summary, headers="keys", tablefmt="github", showindex=False))
        written["overview.csv"] = write_text(output / "overview.csv", summary.to_csv(index=False))
        parts += ["<h2>Overview</h2>", summary.to_html(index=False, classes="sortable", na_rep="")]
    for task, table in tables.items():
        group = frame[frame.task == task]
        written[f"{task}.md"] = write_text(output / f"{task}.md",
                                           tabulate(table, headers="keys", tablefmt="github", showindex=False))
        written[f"{task}.csv"] = write_text(output / f"{task}.csv",
                                            group.drop(columns=["base"]).to_csv(index=False))
        written[f"{task}.tex"] = write_text(output / f"{task}.tex", table.to_latex(index=False, na_rep="--"))
        png = _png_bytes(_figure(group, task))
        with atomic_path(output / f"{task}.png") as tmp:
            tmp.write_bytes(png)
        written[f"{task}.png"] = output / f"{task}.png"
        parts.append(f"<h2>{html.escape(task)}</h2>")
        if _mostly_at_chance(group):
            parts.append(f"<p class='warn'>{int(group.at_chance.sum())} of {len(group)} scores on {html.escape(task)} "
                         "are within their interval of chance: on this test set they show no learned skill, and "
                         "their differences are noise (toy data or too little training).</p>")
        parts += [_html_table(table, group, output),
                  f"<img alt='{html.escape(task)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"]
    parts += [_SORT_SCRIPT, "</body></html>"]
    written["index.html"] = write_text(output / "index.html", "\n".join(parts))
    return written


def format_tables(frame: pd.DataFrame) -> str:
    """Every task's table as Markdown, for the terminal, with a warning line under tasks mostly at chance."""
    from tabulate import tabulate

    parts = []
    for task, table in task_tables(frame).items():
        parts += [f"\n## {task}", tabulate(table, headers="keys", tablefmt="github", showindex=False)]
        group = frame[frame.task == task]
        if _mostly_at_chance(group):
            parts.append(f"warning: {int(group.at_chance.sum())} of {len(group)} scores are within their interval "
                         "of chance")
    return "\n".join(parts)


def build(records: Sequence[RunRecord], profile: Optional[Callable[[Sequence[RunRecord]], tuple]] = None,
          **timing) -> tuple[pd.DataFrame, dict]:
    """Profile every variant (together, see :func:`profile_variants`), then build the frame; (frame, timing)."""
    profiles, info = (profile or profile_variants)(records, **timing)
    return records_frame(records, profiles), info
