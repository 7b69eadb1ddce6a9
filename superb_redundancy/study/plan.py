"""Expand a study into runs: data -> fine-tune -> similarity -> prune specs, mimickers -> downstream -> curves.

Every run has a stable id (also its output folder under ``<workdir>/runs/``), a stage, and JSON-able params.
Later stages find earlier outputs by id, so a run needs nothing but its params and the study to execute.
The leaderboard is not a run: it is rebuilt from the records at the end of every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import StudyConfig, UpstreamPlan

__all__ = ["Run", "expand", "STAGES"]

STAGES = ("data", "finetune", "similarity", "derive", "downstream", "curves")


@dataclass(frozen=True)
class Run:
    run_id: str
    kind: str  # data | finetune | similarity | prune | mimic | downstream | curves
    stage: int
    params: dict = field(default_factory=dict)

    def folder(self, workdir: Path) -> Path:
        return Path(workdir) / "runs" / self.run_id


def _amount_label(amount) -> str:
    return f"{amount}".replace(".", "p")


def variants(upstream: UpstreamPlan) -> list[dict]:
    """The upstream variants a study evaluates for one upstream plan (label, kind and what they come from)."""
    found = []
    if upstream.baseline:
        found.append({"label": f"{upstream.name}-base", "kind": "base"})
    for objective in upstream.prune.get("objectives", []):
        for amount in upstream.prune.get("amounts", []):
            found.append({"label": f"{upstream.name}-{objective}-{_amount_label(amount)}", "kind": "pruned",
                          "prune_run": f"prune/{upstream.name}/{objective}-{_amount_label(amount)}"})
    for index, config in enumerate(upstream.mimic):
        from ..mimic import MimicConfig

        name = MimicConfig.from_dict(config).name()
        found.append({"label": f"{upstream.name}-mimic-{name}", "kind": "mimic", "mimic_index": index,
                      "mimic_run": f"mimic/{upstream.name}"})
    return found


def expand(study: StudyConfig) -> list[Run]:
    """Every run of the study, in stage order."""
    runs = [Run("data", "data", 0)]
    for up in study.upstreams:
        if up.finetune:
            runs.append(Run(f"finetune/{up.name}", "finetune", 1, {"upstream": up.name, **up.finetune}))
        needs_similarity = bool(up.prune.get("objectives")) or bool(study.curves)
        if needs_similarity:
            runs.append(Run(f"similarity/{up.name}", "similarity", 2, {"upstream": up.name, **up.similarity}))
        for objective in up.prune.get("objectives", []):
            for amount in up.prune.get("amounts", []):
                runs.append(Run(f"prune/{up.name}/{objective}-{_amount_label(amount)}", "prune", 3,
                                {"upstream": up.name, "objective": objective, "amount": amount,
                                 "iterative": bool(up.prune.get("iterative", False))}))
        if up.mimic:
            runs.append(Run(f"mimic/{up.name}", "mimic", 3, {"upstream": up.name, "configs": list(up.mimic)}))
        for variant in variants(up):
            for task in study.tasks:
                for seed in study.seeds:
                    runs.append(Run(f"downstream/{variant['label']}/{task}/seed{seed}", "downstream", 4,
                                    {"upstream": up.name, "variant": variant, "task": task, "seed": seed}))
    if study.curves:
        for up in study.upstreams:
            if up.baseline:
                runs.append(Run(f"curves/{up.name}", "curves", 5,
                                {"upstream": up.name, "task": study.curves.task, "seed": study.seeds[0],
                                 "objectives": list(study.curves.objectives), "repeats": study.curves.repeats,
                                 "subset": study.curves.subset}))
    return runs
