"""Expand a study into runs: data -> fine-tune -> similarity -> the base's downstream runs -> pruning curves ->
prune specs and the teacher's cached states -> mimickers (one run per configuration) and the healed pruned models
-> the variants' downstream runs. The curves come before the prune specs so that a prune amount can be "the largest
amount the curves show keeping 95%" (``keep95``); one teacher run per upstream caches the states that all its
mimickers and healing runs distil from.

Every run has a stable id (also its output folder under ``<workdir>/runs/``), a stage, JSON-able params, the
ids of the runs it needs, and a ``params_hash``: the sha256 of everything that decides its outputs (its
params, the study-level settings it reads, the content of a base checkpoint file and of its downstream config,
the synthetic corpus's version, and the hashes of the runs whose outputs it reads), so a changed setting, an
edited downstream config, a retrained shipped model or a regenerated corpus changes the hash of the run that reads
it and of every run downstream of it. Where a run executes (device, executor) is not part of it. Later stages
find earlier outputs by id, so a run needs nothing but its params and the study to execute. The leaderboard is
not a run: it is rebuilt from the records at the end.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

from superb_redundancy.study.config import StudyConfig, audio_task, eval_head_task
from superb_redundancy.study.sections import StudyConfigError
from superb_redundancy.study.upstream_plan import UpstreamPlan, amount_label, is_ceiling, mimic_entry, mimic_label

__all__ = ["Run", "expand", "duplicate_runs", "variants", "variant_tasks", "distils", "run_id", "downstream_id", "last_layer_head_label",
           "STAGES"]

STAGES = ("data", "finetune", "similarity", "base", "curves", "derive", "distil", "downstream")


@dataclass(frozen=True)
class Run:
    run_id: str
    kind: str  # data | finetune | similarity | prune | teacher | mimic | heal | downstream | curves
    stage: int
    params: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # runs whose outputs this one reads (a failed one skips it)
    params_hash: str = ""
    resolved: dict = field(default_factory=dict)  # what params_hash is the hash of

    def folder(self, workdir: Path) -> Path:
        return Path(workdir) / "runs" / self.run_id


def run_id(kind: str, upstream: str, detail: str = "") -> str:
    """The id of an upstream's run of ``kind`` (finetune, similarity, curves, teacher; prune and heal with the
    variant's ``<objective>-<amount>`` as ``detail``, mimic with the mimicker's name): every run id but data's and
    downstream's is built here."""
    return f"{kind}/{upstream}/{detail}" if detail else f"{kind}/{upstream}"


def downstream_id(label: str, task: str, seed: int) -> str:
    """The id of the run evaluating variant ``label`` (the base's: ``<upstream>-base``) on a task with a seed."""
    return f"downstream/{label}/{task}/seed{seed}"


def variants(upstream: UpstreamPlan) -> list[dict]:
    """The upstream variants a study evaluates for one upstream plan (label, kind and what they come from)."""
    found = []
    if upstream.baseline:
        found.append({"label": f"{upstream.name}-base", "kind": "base"})
    for objective in upstream.prune.objectives:
        for amount in upstream.prune.amounts:
            stem = f"{objective}-{amount_label(amount)}"
            found.append({"label": f"{upstream.name}-{stem}", "kind": "pruned",
                          "prune_run": run_id("prune", upstream.name, stem)})
            if upstream.heal is not None:
                found.append({"label": f"{upstream.name}-{stem}-healed", "kind": "healed",
                              "heal_run": run_id("heal", upstream.name, stem)})
    paper = upstream.mimic and upstream.mimic_step2.kind == "paper"
    if paper:  # the teacher's head on its last layer: the paper's step 2 starts from it; a reference row
        found.append({"label": last_layer_head_label(upstream), "kind": "reference", "reads": "last_hidden_state"})
    for config in upstream.mimic:
        mimicker, step1 = mimic_entry(config)
        variant = {"label": f"{upstream.name}-mimic-{mimic_label(config)}", "kind": "mimic",
                   "mimic_run": run_id("mimic", upstream.name, mimic_label(config)), "step1": step1}
        if is_ceiling(config):  # a reference: trained with labels, front end projection included
            variant["ceiling"] = True
        if paper:  # (the weighted sum, s3prl's, adds nothing: its runs keep the keys they always had)
            variant.update(step2=asdict(upstream.mimic_step2), head=last_layer_head_label(upstream),
                           n_layers=mimicker.n_layers)
        found.append(variant)
    return found


def last_layer_head_label(upstream: UpstreamPlan) -> str:
    """The variant of the head trained on the teacher's last hidden state alone (``-s last_hidden_state``)."""
    return f"{upstream.name}-last-layer-head"


def distils(upstream: UpstreamPlan) -> bool:
    """Whether the upstream has a teacher run: a mimicker trained in step 1, or healing, distils from it."""
    return upstream.heal is not None or any(mimic_entry(config)[1] for config in upstream.mimic)


def variant_tasks(study: StudyConfig, upstream: UpstreamPlan, variant: dict) -> tuple[str, ...]:
    """The study's tasks a variant is evaluated on: all of them, except mimickers when ``mimic_tasks`` narrows
    theirs (a grid of mimickers on every task is what costs most)."""
    if variant["kind"] in ("mimic", "reference") and upstream.mimic_tasks is not None:
        return tuple(t for t in study.tasks if t in upstream.mimic_tasks)
    return study.tasks


def corpus_tasks(study: StudyConfig) -> list[str]:
    from superb_redundancy.data.tasks import get_task

    # keyword spotting always: it is the default audio for similarity, mimicking and fine-tuning
    return sorted({get_task(t).corpus_task for t in study.tasks} | {"speech_commands"})


def base_content(base: str) -> Optional[str]:
    """The sha256 of the checkpoint file a base names (a shipped model's stem or a path); None for a hub name or
    ``tiny``, which their name decides (hashing one would mean downloading it)."""
    from superb_redundancy.core.files import file_sha256
    from superb_redundancy.models.shipped import is_shipped, shipped_checkpoint

    path = shipped_checkpoint(base) if is_shipped(base) else Path(base).expanduser()
    return file_sha256(str(path))  # cached by path, size and mtime; None when there is no such file


def setting_content(task: str, setting: str) -> Optional[str]:
    """The sha256 of a downstream config's content, comments aside (``downstream_configs/<task>/<setting>.yaml``,
    parsed): a run trained with an edited setting (more steps, the feature cache) is not the run on disk."""
    from superb_redundancy.data import tasks

    try:
        config = tasks.load_config(task, setting)
    except (ValueError, OSError):  # no such task or setting: the config check names it
        return None
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _inputs(run: Run, study: StudyConfig) -> dict:
    """The study-level settings a run reads besides its params (see steps.py)."""
    from superb_redundancy.data.corpus.generate import CORPUS_VERSION

    corpus = {"corpus_version": CORPUS_VERSION} if study.data.get("synthetic") is not None else {}
    if run.kind == "data":
        synthetic = study.data.get("synthetic")
        return {"synthetic": synthetic, "corpus_tasks": corpus_tasks(study) if synthetic is not None else [],
                **corpus}
    up = next(u for u in study.upstreams if u.name == run.params["upstream"])
    inputs: dict = {"family": up.family, "base": up.base, "base_sha256": base_content(up.base), **corpus}
    if run.kind in ("finetune", "downstream"):
        inputs["data"] = {k: study.data.get(k) for k in ("synthetic", run.params["task"])}
    if run.kind == "downstream":
        inputs["setting"] = study.setting
    if run.kind in ("finetune", "downstream"):
        inputs["setting_sha256"] = setting_content(run.params["task"], run.params.get("setting") or study.setting)
    if run.kind in ("similarity", "prune", "teacher", "mimic", "heal"):  # the clips of a split of the audio task
        task = audio_task(study, up)
        inputs["audio"] = {"task": task, "data": {k: study.data.get(k) for k in ("synthetic", task)}}
    if run.kind == "mimic":
        from dataclasses import asdict

        config, step1 = mimic_entry(run.params["config"])
        inputs["config"] = dict(asdict(config), step1=step1)
    return inputs


def _keyed(runs: list[Run], study: StudyConfig) -> list[Run]:
    """Each run with its params_hash. The data run's outputs only grow (a new task adds its corpus), so the
    runs after it take the data settings they read rather than its hash."""
    hashes: dict[str, str] = {}
    keyed = []
    for run in runs:
        resolved = {"kind": run.kind, "params": run.params, "inputs": _inputs(run, study),
                    "needs": {n: hashes[n] for n in run.needs if n != "data"}}
        digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]
        hashes[run.run_id] = digest
        keyed.append(replace(run, params_hash=digest, resolved=json.loads(json.dumps(resolved, default=str))))
    return keyed


def _distillation(study: StudyConfig, up: UpstreamPlan, base: tuple[str, ...],
                  similarity: tuple[str, ...]) -> list[Run]:
    """The teacher run (its states cached once, for every mimicker and healing run of the upstream) and one mimic
    run per configuration (the baselines are only initialised). The first similarity block, when there is one,
    places a mimicker's layer i."""
    runs = []
    teacher = ()
    if distils(up):
        runs.append(Run(run_id("teacher", up.name), "teacher", 5,
                        {"upstream": up.name, "configs": [c for c in up.mimic if mimic_entry(c)[1]],
                         "heal_targets": up.heal["targets"] if up.heal is not None else None},
                        needs=base + similarity))
        teacher = (run_id("teacher", up.name),)
    head: dict = {}
    if up.mimic_select_by is not None:  # step 1 evaluated through the base's head (its experiment)
        head = {"select_by": up.mimic_select_by,
                "eval_head_run": downstream_id(f"{up.name}-base", eval_head_task(study), study.seeds[0])}
    for config in up.mimic:
        params: dict = {"upstream": up.name, "config": config}
        needs = base + similarity
        if mimic_entry(config)[1]:  # step 1: distilled from the cached teacher (and watched through the head)
            params.update(head)
            needs += teacher + ((head["eval_head_run"],) if head else ())
        runs.append(Run(run_id("mimic", up.name, mimic_label(config)), "mimic", 6, params, needs=needs))
    return runs


def expand(study: StudyConfig) -> list[Run]:
    """Every run of the study, in stage order, each with its params_hash."""
    runs = [Run("data", "data", 0)]
    for up in study.upstreams:
        base = ("data",)  # what the upstream's checkpoint comes from
        if up.finetune:
            plan = up.finetune
            runs.append(Run(run_id("finetune", up.name), "finetune", 1,
                            {"upstream": up.name, "task": plan.task, "steps": plan.steps, "lr": plan.lr,
                             "setting": plan.setting or study.setting}, needs=base))
            base = ("data", run_id("finetune", up.name))
        similarity = ()
        if up.prune.objectives or study.curves:
            runs.append(Run(run_id("similarity", up.name), "similarity", 2,
                            {"upstream": up.name, **up.similarity.params()}, needs=base))
            similarity = (run_id("similarity", up.name),)
        if study.curves and up.baseline:
            experiment = downstream_id(f"{up.name}-base", study.curves.task, study.seeds[0])
            runs.append(Run(run_id("curves", up.name), "curves", 4,
                            {"upstream": up.name, "task": study.curves.task, "seed": study.seeds[0],
                             "objectives": list(study.curves.objectives), "repeats": study.curves.repeats,
                             "subset": study.curves.subset}, needs=base + (experiment,) + similarity))
        for objective in up.prune.objectives:
            for amount in up.prune.amounts:
                curves = (run_id("curves", up.name),) if isinstance(amount, str) else ()  # keep95: read off the curves
                stem = f"{objective}-{amount_label(amount)}"
                prune_run = run_id("prune", up.name, stem)
                runs.append(Run(prune_run, "prune", 5,
                                {"upstream": up.name, "objective": objective, "amount": amount,
                                 "iterative": up.prune.iterative}, needs=base + similarity + curves))
                if up.heal is not None:  # distil the pruned model's kept layers towards the base, on the KS audio
                    runs.append(Run(run_id("heal", up.name, stem), "heal", 6,
                                    {"upstream": up.name, "prune_run": prune_run, "config": dict(up.heal)},
                                    needs=base + (prune_run, run_id("teacher", up.name))))
        runs.extend(_distillation(study, up, base, similarity))
        for variant in variants(up):
            source = tuple(variant[k] for k in ("prune_run", "mimic_run", "heal_run") if k in variant)
            stage = 3 if variant["kind"] in ("base", "reference") else 7  # the base's runs first (curves, heads)
            for task in variant_tasks(study, up, variant):
                for seed in study.seeds:
                    head = (downstream_id(variant["head"], task, seed),) if variant.get("head") else ()
                    runs.append(Run(downstream_id(variant["label"], task, seed), "downstream", stage,
                                    {"upstream": up.name, "variant": variant, "task": task, "seed": seed},
                                    needs=base + source + head))
    runs.sort(key=lambda run: run.stage)  # stable: the order within a stage is the order above
    problems = _duplicates(runs)
    if problems:
        raise StudyConfigError(problems)
    return _keyed(runs, study)


def _duplicates(runs: list[Run]) -> list[str]:
    ids = [run.run_id for run in runs]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    return [f"upstreams: these runs would be made twice: {twice}"] if twice else []


def duplicate_runs(study: StudyConfig) -> list[str]:
    """The problem of a study whose plan makes some run twice (one line; none: ``[]``), found before any run."""
    try:
        expand(study)
    except StudyConfigError as error:
        return error.problems
    return []
