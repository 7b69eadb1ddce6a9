"""A study's keyword-spotting results beside the paper's (Dorszewski et al., ICASSP 2025, appendix Table 1 and
Sections 3-4 for wav2vec2-base), and which of the paper's claims the study's own evidence reproduces.

A claim counts as reproduced only where the 95% interval supports it (e.g. "keeps 95%": the lower end of the
paired interval of the retention is at or above 95%); where the interval straddles the line it is undecided.
The paper's numbers are transcribed from its Table 1 (wav2vec2-base, 12 layers, 35-word KS) and Fig. 3.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

__all__ = ["PAPER_BASE", "comparison_table", "claims", "write_comparison"]


@dataclass(frozen=True)
class PaperRow:
    params: int
    time_ratio: float
    accuracy: float
    retention: float  # % of the original's accuracy


#: wav2vec2-base in the paper (Table 1; the pruned row from Fig. 3: 3 of 12 layers by kNN-BI, params derived)
PAPER_BASE = {
    "base": PaperRow(94_577_571, 1.0, 0.976, 100.0),
    "pruned": PaperRow(73_314_000, 0.90, 0.96, 98.4),
    "mimic-linear-N1-z32": PaperRow(4_851_331, 0.13, 0.919, 94.2),
    "mimic-linear-N2-z32": PaperRow(4_901_283, 0.14, 0.925, 94.8),
    "mimic-transformer-N1-z32": PaperRow(7_216_707, 0.14, 0.936, 95.9),
    "mimic-transformer-N2-z32": PaperRow(9_632_099, 0.16, 0.934, 95.7),
    "mimic-nonmimic-linear-N1-z32": PaperRow(4_851_331, 0.13, 0.916, 93.9),
    "mimic-nonmimic-transformer-N1-z32": PaperRow(7_216_707, 0.14, 0.93, 95.3),
}
#: the paper's classifier-only baseline: 79% accuracy, model unspecified (Section 4)
PAPER_CLASSIFIER_ONLY = 0.79
PAPER_BASE_ACCURACY = 0.976


#: a whole-stack mimicker's or non-mimicker's label, with the step 2 that trained its head where the record says
_MIMIC_LABEL = re.compile(r"(mimic|non-mimicker) (linear|transformer) N=(\d+) z=(\d+)(?:, step 2: .+)?")
#: the reference rows (leaderboard._label): a head on the teacher's last layer, the front end's ceilings
REFERENCE = "reference: "


def _paper_key(label: str) -> Optional[str]:
    """The paper's row for a leaderboard label (leaderboard._label): ``mimic linear N=1 z=32`` ->
    ``mimic-linear-N1-z32``; a kNN-BI pruned model (``... drop [..] (knn-bi)``) -> ``pruned``."""
    found = _MIMIC_LABEL.fullmatch(label)
    if found:
        kind, layer, n, z = found.groups()
        key = f"mimic-{'nonmimic-' if kind == 'non-mimicker' else ''}{layer}-N{n}-z{z}"
        return key if key in PAPER_BASE else None
    # the paper's pruned row is its kNN-BI model, without healing
    return "pruned" if " drop [" in label and label.endswith("(knn-bi)") else None


def _whole_stack_mimicker(label: str) -> bool:
    """A mimicker trained in step 1 replacing the whole stack (not a non-mimicker, not a block replacement)."""
    found = _MIMIC_LABEL.fullmatch(label)
    return found is not None and found.group(1) == "mimic"


def _pct(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}%"


def verdict(low: float, high: float, line: float = 95.0) -> str:
    """"yes" where the interval lies at or above the line, "no" where it lies below, else "undecided"."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return "yes" if low >= line else "no" if high < line else "undecided"


def comparison_table(frame: pd.DataFrame, task: str = "speech_commands") -> pd.DataFrame:
    """One row per variant of the task's base: ours (params, reduction, GMACs, time ratio, accuracy [CI], % of
    base [CI]) beside the paper's row for the same kind of variant, and whether ours keeps 95%."""
    group = frame[frame.task == task]
    bases = group[group.is_base]
    if bases.empty:
        return pd.DataFrame()
    base = bases.iloc[0]
    rows = []
    for _, row in group[group.base == base.base].iterrows():
        key = "base" if row.is_base else _paper_key(row.label)
        paper = PAPER_BASE.get(key) if key else None
        time_ratio = row.latency_ms / base.latency_ms if base.latency_ms and not pd.isna(row.latency_ms) else math.nan
        reduction = 100 * (1 - row.params / base.params) if base.params and not pd.isna(row.params) else math.nan
        rows.append({
            "variant": row.label,
            "params": f"{row.params / 1e6:.3f} M" if not pd.isna(row.params) else "",
            "param red.": _pct(reduction) if not row.is_base else "-",
            "GMACs/s": f"{row.macs / 1e9:.3f}" if not pd.isna(row.macs) else "",
            "time ratio": f"{time_ratio:.2f}" if not math.isnan(time_ratio) else "",
            "acc [95% CI]": f"{row.value:.3f} [{row.low:.3f}, {row.high:.3f}]",
            "% of base [95% CI]": "100" if row.is_base else
            f"{row.retention:.1f} [{row.retention_low:.1f}, {row.retention_high:.1f}]",
            "keeps 95%?": "-" if row.is_base else "(reference)" if row.label.startswith(REFERENCE) else
            verdict(row.retention_low, row.retention_high),
            "paper: param red.": "-" if not paper or key == "base" else _pct(100 * (1 - paper.params / 94_577_571)),
            "paper: time ratio": f"{paper.time_ratio:.2f}" if paper else "",
            "paper: acc": f"{paper.accuracy:.3f}" if paper else
            (f"{PAPER_CLASSIFIER_ONLY:.2f}" if row.label.startswith("classifier only") else ""),
            "paper: % of base": _pct(paper.retention) if paper else
            (_pct(100 * PAPER_CLASSIFIER_ONLY / PAPER_BASE_ACCURACY) if row.label.startswith("classifier only") else ""),
        })
    return pd.DataFrame(rows)


#: the paper's largest 95% amounts for wav2vec2-base (read off its Fig. 2b, +-1 layer): a share of the layers
PAPER_KEEP95 = {"forward": "~25%", "backward": "~8%", "bi": "25-33%", "knn-bi": "~25%"}


def _curves_claims(curves_json: Path) -> list[str]:
    """Per objective: the largest amount whose mean keeps 95%, and the largest the paired interval supports;
    the paper's "BI and kNN-BI drop 25-42% keeping 95%" is reproduced only where the interval supports >= 25%."""
    curves = json.loads(curves_json.read_text())
    L, lines = curves["num_layers"], []
    for objective, info in curves["thresholds"].items():
        t = info["95%"]
        r = t.get("retention") or {}
        kept = f"{r['retention']:.1f}% [{r['low']:.1f}, {r['high']:.1f}]" if r else "n/a"
        supported = t["supported_amount"]
        line = (f"- {objective}: the mean keeps 95% up to {t['amount']} of {L} layers ({t['amount'] / L:.0%}; "
                f"{kept} of the unpruned there); the interval supports {supported} of {L} ({supported / L:.0%}); "
                f"paper (wav2vec2-base): {PAPER_KEEP95.get(objective, 'n/a')}")
        if objective in ("bi", "knn-bi"):
            line += (" -> the paper's 25-42% claim: " +
                     ("reproduced" if supported / L >= 0.25 else
                      "the mean reaches it, the interval does not" if t["amount"] / L >= 0.25 else "not reproduced"))
        lines.append(line)
    return lines


def _block_claim(similarity_json: Path) -> list[str]:
    """The detected blocks (transformer layers, 0-based), their strength (within minus between) with the
    permutation p, and the same architecture at random initialisation on the same clips."""
    report = json.loads(similarity_json.read_text())
    lines = []
    for metric in ("cka", "knn"):
        blocks, s = report["blocks"].get(metric), report["strength"].get(metric) or {}
        if blocks is None:
            continue
        text = f"- blocks ({metric}, layers): {' | '.join(f'{a}-{b}' for a, b in blocks)}"
        if "strength" in s:
            text += f"; strength {s['strength']:+.3f}"
        if s.get("permutation_p") is not None:
            text += f", permutation p = {s['permutation_p']:.3f}"
        base = (report.get("baseline") or {}).get(metric)
        if base:
            text += f"; random init: strength {base['strength']:+.3f}"
            text += (" -> two blocks as in the paper, stronger than at random init" if s.get("strength", 0) >
                     base["strength"] and (s.get("permutation_p") or 1) < 0.05 else
                     " -> not distinguishable from what the architecture alone gives")
        lines.append(text)
    return lines


def claims(frame: pd.DataFrame, workdir: Path, upstream: str, task: str = "speech_commands") -> list[str]:
    """The paper's claims checked against the study's evidence, one line each."""
    lines = []
    similarity = workdir / "runs" / "similarity" / upstream / "similarity.json"
    if similarity.is_file():
        lines += _block_claim(similarity)
    curves = workdir / "runs" / "curves" / upstream / "curves.json"
    if curves.is_file():
        lines += _curves_claims(curves)
    group = frame[(frame.task == task) & ~frame.is_base]
    # whole-stack mimickers (not the non-mimicker, not a block replacement "... replacing i-j")
    mimics = group[group.label.map(_whole_stack_mimicker)]
    references = group[group.label.str.startswith(REFERENCE)]
    for _, row in references.iterrows():  # what the model allows, which the paper does not show
        lines.append(f"- {row.label}: {row.value:.3f} [{row.low:.3f}, {row.high:.3f}], {row.retention:.1f}% "
                     f"[{row.retention_low:.1f}, {row.retention_high:.1f}] of the base")
    ceilings = references[references.label.str.startswith(f"{REFERENCE}ceiling")]
    ceiling = None if ceilings.empty else ceilings.loc[ceilings.value.idxmax()]
    for _, row in mimics.iterrows():
        against = "" if ceiling is None else \
            f"; {100 * row.value / ceiling.value:.1f}% of the front end's best ceiling ({ceiling.value:.3f})"
        lines.append(f"- {row.label}: {row.retention:.1f}% [{row.retention_low:.1f}, {row.retention_high:.1f}] of the "
                     f"base -> keeps 95%: {verdict(row.retention_low, row.retention_high)} (paper: 94-96% for z = 32)"
                     + against)
    only = group[group.label.str.startswith("classifier only")]
    if not only.empty and not mimics.empty:
        worse = only.iloc[0].high < mimics.low.max()
        lines.append(f"- some non-linearity is needed (classifier only below the best mimicker, intervals apart): "
                     f"{'reproduced' if worse else 'not shown'} (classifier only "
                     f"{only.iloc[0].value:.3f} [{only.iloc[0].low:.3f}, {only.iloc[0].high:.3f}])")
    return lines


def write_comparison(frame: pd.DataFrame, workdir: Path, upstream: str, output: Path,
                     task: str = "speech_commands") -> Optional[str]:
    """The table and claims as Markdown (written to ``output``); None when the task has no base."""
    from tabulate import tabulate

    from superb_redundancy.core.files import write_text

    table = comparison_table(frame, task)
    if table.empty:
        return None
    text = (f"## {task}: the study beside the paper (wav2vec2-base, Table 1 / Fig. 3)\n\n"
            + tabulate(table, headers="keys", tablefmt="github", showindex=False)
            + "\n\ntime ratio: median latency at batch 1 over the base's, measured together; the paper's is its "
              "normalised inference time. Its pruned row is Fig. 3's 3-of-12-layer kNN-BI model.\n\n"
            + "### the paper's claims on this study's evidence\n" + "\n".join(claims(frame, workdir, upstream, task))
            + "\n")
    write_text(output, text)
    return text
