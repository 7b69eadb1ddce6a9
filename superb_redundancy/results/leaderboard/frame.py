"""The leaderboard's frame: one row per (task, variant) with its score's evidence
(:mod:`superb_redundancy.statistics.evidence`), retention against its unpruned base, compute and Pareto marks."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import pandas as pd

from superb_redundancy.core.variant import VariantKind
from superb_redundancy.data.tasks import TASKS
from superb_redundancy.statistics import evidence
from superb_redundancy.results.leaderboard.profiles import Profile, profile_variants
from superb_redundancy.results.records import RunRecord

__all__ = ["records_frame", "pareto_mask", "build", "TASK_CLASSES", "AXES"]

#: classes of the tasks with a fixed label set (uniform chance 1/K), from the task table; SID, ASR: none (K from
#: the test labels)
TASK_CLASSES = {name: task.num_classes for name, task in TASKS.items() if task.num_classes}
#: compute axes of the tables and figures: (column, scale, label)
AXES = (("params", 1e6, "parameters (M)"), ("macs", 1e9, "GMACs per second of audio"),
        ("latency_ms", 1.0, "latency, 1 s clip, batch 1 (ms)"))


def _base_key(record: RunRecord) -> Optional[str]:
    """The model a variant derives from, by content (a stock model is its own)."""
    return record.description.base_key


def _is_base(record: RunRecord) -> bool:
    # a head on one layer of the base is a reference, not the base
    return record.description.is_base and not record.reading.reads


#: how a mimic row names the step 2 that trained its head (superb_redundancy.study.mimic_step2, kept here in words)
STEP2_LABELS = {"weighted_sum": "weighted sum (s3prl)", "paper": "paper (m_N, teacher's head, early stopping)"}


def _label(record: RunRecord) -> str:
    """The row's name: the variant's (:meth:`~superb_redundancy.core.variant.VariantDescription.label`), a
    reference's where the head read one output of an unpruned model, and the step 2 of a mimicker's head."""
    description, reading = record.description, record.reading
    if reading.reads and description.kind is not VariantKind.MIMIC and not description.drop_layers:
        label = f"reference: head on {record.upstream.removesuffix('_local')}'s {reading.reads.replace('_', ' ')}"
    else:
        label = description.label(record.upstream)
    step2 = reading.step2
    return f"{label}, step 2: {STEP2_LABELS.get(step2, step2)}" if step2 else label


def _link(record: RunRecord) -> Optional[str]:
    """What the row's upstream is made of: the prune spec (-g) or the artifact (-k), else the experiment."""
    return record.upstream_model_config or record.upstream_ckpt


_COLUMNS = ["task", "variant", "label", "metric", "higher_is_better", "value", "low", "high", "n", "seeds",
            "seed_sd", "folds", "chance", "uniform", "at_chance", "method", "cer", "is_base", "base", "retention",
            "retention_low", "retention_high", "base_at_chance", "difference", "difference_low", "difference_high",
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


def _add_retention(frame: pd.DataFrame, seeds_of: dict) -> None:
    """Each row's retention against its base (same task and base key): paired-bootstrap intervals."""
    for column in ("retention", "retention_low", "retention_high", "difference", "difference_low",
                   "difference_high", "shared_items"):
        frame[column] = math.nan
    frame["indistinguishable"] = False
    frame["base_at_chance"] = False
    for index, row in frame.iterrows():
        bases = frame[(frame.task == row.task) & (frame.base == row.base) & frame.is_base]
        if bases.empty:
            continue
        base = bases.iloc[0]
        found = evidence.retention(seeds_of[(base.task, base.variant)], seeds_of[(row.task, row.variant)])
        if found is None:
            continue
        frame.loc[index, ["difference", "difference_low", "difference_high", "shared_items"]] = [
            found.difference, found.difference_low, found.difference_high, found.shared_items]
        # a share of a base at chance is a ratio of two noises (e.g. -93% [-1100, 15] of a WER-98 base): left out
        frame.loc[index, "base_at_chance"] = bool(base.at_chance)
        if not base.at_chance:
            frame.loc[index, ["retention", "retention_low", "retention_high"]] = [found.retention, found.low,
                                                                                   found.high]
        frame.loc[index, "indistinguishable"] = bool(found.indistinguishable) and not row.is_base


def _add_pareto(frame: pd.DataFrame) -> None:
    """The Pareto marks per compute axis, per task; a row at chance is never on the frontier."""
    for column, _, _ in AXES:
        frame[f"pareto_{column}"] = False
        for task, group in frame.groupby("task"):
            frame.loc[group.index, f"pareto_{column}"] = pareto_mask(
                group.value.tolist(), group[column].tolist(), bool(group.higher_is_better.iloc[0]),
                eligible=(~group.at_chance).tolist())


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
    _add_retention(frame, seeds_of)
    _add_pareto(frame)
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


def build(records: Sequence[RunRecord], profile: Optional[Callable[[Sequence[RunRecord]], tuple]] = None,
          **timing) -> tuple[pd.DataFrame, dict]:
    """Profile every variant (together, see :func:`profile_variants`), then build the frame; (frame, timing)."""
    profiles, info = (profile or profile_variants)(records, **timing)
    return records_frame(records, profiles), info
