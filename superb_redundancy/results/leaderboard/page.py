"""The leaderboard written out: tables (md, csv, tex), figures (png) and one self-contained, sortable HTML page
explaining every column, each file written atomically."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Optional

import pandas as pd
from tabulate import tabulate

from superb_redundancy.core.files import atomic_path, write_text
from superb_redundancy.results.leaderboard.figures import png_bytes, task_figure
from superb_redundancy.results.leaderboard.tables import mostly_at_chance, overview, task_tables

__all__ = ["write_leaderboard"]


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
        png = png_bytes(task_figure(group, task))
        with atomic_path(output / f"{task}.png") as tmp:
            tmp.write_bytes(png)
        written[f"{task}.png"] = output / f"{task}.png"
        parts.append(f"<h2>{html.escape(task)}</h2>")
        if mostly_at_chance(group):
            parts.append(f"<p class='warn'>{int(group.at_chance.sum())} of {len(group)} scores on {html.escape(task)} "
                         "are within their interval of chance: on this test set they show no learned skill, and "
                         "their differences are noise (toy data or too little training).</p>")
        parts += [_html_table(table, group, output),
                  f"<img alt='{html.escape(task)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"]
    parts += [_SORT_SCRIPT, "</body></html>"]
    written["index.html"] = write_text(output / "index.html", "\n".join(parts))
    return written
