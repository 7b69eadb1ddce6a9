"""What each kind of study run does. ``execute(run, study)`` is what executors call (picklable, top level).

Each step reads the outputs of earlier runs from their folders (by run id) and writes its own outputs into its
folder; the runner records the step as done only after the step returns.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from superb_redundancy.data.splits import Clips
from superb_redundancy.study.config import StudyConfig, audio_task
from superb_redundancy.study.plan import Run, downstream_id, run_id
from superb_redundancy.study.upstream_plan import Step2Plan, UpstreamPlan

__all__ = ["execute", "base_checkpoint", "data_overrides", "split_audio", "twin_run"]


def _workdir(study: StudyConfig) -> Path:
    return Path(study.workdir).resolve()


def _upstream(study: StudyConfig, name: str) -> UpstreamPlan:
    return next(u for u in study.upstreams if u.name == name)


def _run_folder(study: StudyConfig, run_id: str) -> Path:
    return _workdir(study) / "runs" / run_id


def base_checkpoint(study: StudyConfig, up: UpstreamPlan) -> Path:
    """The local checkpoint an upstream plan starts from (after fine-tuning, when the plan fine-tunes)."""
    if up.finetune:
        return _run_folder(study, run_id("finetune", up.name)) / "base.pt"
    if up.base == "tiny":
        return _workdir(study) / "models" / f"tiny_{up.family}.pt"
    from superb_redundancy.models.shipped import is_shipped, shipped_checkpoint

    if is_shipped(up.base):
        return shipped_checkpoint(up.base)
    from superb_redundancy.models.checkpoints import resolve_base
    from superb_redundancy.models.families import get_family

    return resolve_base(up.base, get_family(up.family))


def _synthetic_root(study: StudyConfig) -> Path:
    return _workdir(study) / "data"


def data_overrides(study: StudyConfig, task: str) -> dict[str, str]:
    """s3prl ``-o`` entries pointing the task's config at the study's corpus."""
    from superb_redundancy.data import tasks

    if task in study.data:
        return {f"config.downstream_expert.datarc.{k}": str(v) for k, v in study.data[task].items()}
    return tasks.data_overrides(task, _synthetic_root(study))


def split_audio(study: StudyConfig, up: UpstreamPlan, split: str, limit: Optional[int] = None) -> Clips:
    """The clips of one official split of the upstream's audio task (dev: similarity and pruning orders, as the
    paper's code takes validation batches; train: step 1 and healing; test is only ever scored): the study's
    corpus of that task, real (its ``data:`` roots) or synthetic. ``limit``: a seeded subset."""
    from superb_redundancy.data.splits import task_clips

    task = audio_task(study, up)
    datarc = study.data.get(task)
    return task_clips(task, split, datarc=datarc, corpus_root=None if datarc else _synthetic_root(study),
                      limit=limit, seed=0)


# ---------------------------------------------------------------------------------------------- the steps
def _data(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.models.tiny import write_all

    outputs = {"models": {k: str(v) for k, v in write_all(_workdir(study) / "models").items()}}
    if "synthetic" in study.data:
        from superb_redundancy.data.corpus.generate import generate
        from superb_redundancy.study.plan import corpus_tasks

        generate(_synthetic_root(study), tasks=corpus_tasks(study), **dict(study.data["synthetic"] or {}))
        outputs["corpus"] = str(_synthetic_root(study))
    return outputs


def _finetune(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    """Fine-tune the whole upstream (s3prl's -f) on a task, then export it as a stock checkpoint."""
    from superb_redundancy.core.files import load_checkpoint
    from superb_redundancy.data import tasks
    from superb_redundancy.models.families import get_family
    from superb_redundancy.results.experiment import resumable_states, run_downstream, trained_checkpoint

    up = _upstream(study, run.params["upstream"])
    family = get_family(up.family)
    start = base_checkpoint(study, replace(up, finetune=None))
    task = run.params["task"]
    steps = int(run.params["steps"])
    runner = tasks.load_config(task, run.params["setting"])["runner"]
    # s3prl saves (and evaluates dev) only every save_step (eval_step) steps: fewer steps would leave no checkpoint
    overrides = {**data_overrides(study, task), "config.runner.total_steps": steps,
                 "config.runner.save_step": min(int(runner["save_step"]), steps),
                 "config.runner.eval_step": min(int(runner["eval_step"]), steps),
                 "args.upstream_trainable": True, "config.optimizer.lr": float(run.params["lr"])}
    expdir = folder / "exp"
    where = ["-p", str(expdir), "--device", study.device, "-o", tasks.format_overrides(overrides)]
    resumed = resumable_states(expdir) if resume and expdir.is_dir() else None
    if resumed is not None:  # s3prl's own resume
        run_downstream(["-m", "train", "-a", *where], folder / "finetune.log")
    else:
        run_downstream(["-m", "train", "-u", family.local_hub_name, "-k", str(start), "-d", task,
                        "-c", str(tasks.config_path(task, run.params["setting"])), *where], folder / "finetune.log")
    # early stopping by the dev split: s3prl keeps the dev-best checkpoint beside the last states (a small model
    # on a small corpus overfits its training split long before the last step)
    states = trained_checkpoint(expdir)
    trained = load_checkpoint(states, "s3prl checkpoint", RuntimeError, safe_globals=[argparse.Namespace])["Upstream"]
    checkpoint = torch.load(start, map_location="cpu", weights_only=True)
    weights = {k[len("model."):]: v for k, v in trained.items() if k.startswith("model.")}
    missing = set(checkpoint[family.weights_key]) - set(weights)
    if missing:
        raise RuntimeError(f"fine-tuned upstream lacks {len(missing)} weights, e.g. {sorted(missing)[0]}")
    checkpoint[family.weights_key] = weights
    from superb_redundancy.core.files import torch_save

    torch_save(checkpoint, folder / "base.pt")
    return {"checkpoint": str(folder / "base.pt"), "from": str(states),
            **({"resumed_from": resumed.name} if resumed is not None else {})}


def _similarity(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.analysis.report import SimilaritySettings, analyse, random_init_upstream
    from superb_redundancy.hub.install import build_upstream
    from superb_redundancy.models.families import get_family

    up = _upstream(study, run.params["upstream"])
    settings_keys = set(SimilaritySettings.__dataclass_fields__)
    settings = SimilaritySettings(**{k: v for k, v in run.params.items() if k in settings_keys})
    clips = split_audio(study, up, "dev", limit=run.params.get("limit"))
    base = base_checkpoint(study, up)
    name = get_family(up.family).local_hub_name
    upstream = build_upstream(name, str(base))
    report = analyse(upstream, list(clips.files), settings, device=study.device,
                     baseline_upstream=random_init_upstream(name, str(base)),
                     source={"upstream": up.name, "ckpt": str(base), "clips": len(clips.files), "split": "dev",
                             "audio": clips.record()})
    paths = report.save(folder, title=f"{up.name} ({report.num_samples} clips)")
    return {"report": str(paths["json"]), "figure": str(paths["figure"]), "blocks": report.blocks,
            "audio": clips.record()}


def _prune(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.analysis.report import SimilarityReport
    from superb_redundancy.pruning.plan import prune_by_objective

    up = _upstream(study, run.params["upstream"])
    base = str(base_checkpoint(study, up))
    report = SimilarityReport.load(_run_folder(study, run_id("similarity", up.name)))
    iterative, files, audio = bool(run.params.get("iterative")), None, {}
    if iterative:
        clips = split_audio(study, up, "dev", limit=up.similarity.limit)
        files, audio = list(clips.files), {"audio": clips.record()}
    amount, read_off = _prune_amount(study, up, run.params["objective"], run.params["amount"])
    read_off_notes = {"read_off_curves": {"as": run.params["amount"], **read_off}} if read_off else {}
    plan, spec = prune_by_objective(up.family, base, run.params["objective"], amount, report=report, files=files,
                                    iterative=iterative, device=study.device, progress=False, **read_off_notes)
    # the same layers: the plan lists them in pruning order, the curves sorted
    if read_off is not None and not run.params.get("iterative") and \
            sorted(plan.drop_layers) != sorted(read_off["dropped_layers"]):
        raise RuntimeError(f"prune plan drops {plan.drop_layers}, but the curves dropped "
                           f"{read_off['dropped_layers']} at {amount} layers: the two read different orders")
    return {"spec": str(spec.to_yaml(folder / "spec.yaml")), "drop_layers": plan.drop_layers, **audio}


def _prune_amount(study: StudyConfig, up: UpstreamPlan, objective: str, amount) -> tuple[int | float, Optional[dict]]:
    """A plan's amount as a count or fraction; ``keep95``/``keep50`` read off the curves' thresholds (with
    what the curves measured there: the retention and its interval, and the largest amount the interval
    supports)."""
    from superb_redundancy.study.upstream_plan import KEEP_AMOUNTS

    if not isinstance(amount, str):
        return amount, None
    import json

    curves = json.loads((_run_folder(study, run_id("curves", up.name)) / "curves.json").read_text())
    threshold = curves["thresholds"][objective][KEEP_AMOUNTS[amount]]
    return int(threshold["amount"]), threshold


def _end_of_first_block(study: StudyConfig, up: UpstreamPlan) -> Optional[int]:
    """The paper's layer i: the last transformer layer of the first CKA block, when the study ran similarity."""
    from superb_redundancy.analysis.report import SimilarityReport

    folder = _run_folder(study, run_id("similarity", up.name))
    if not (folder / "similarity.json").is_file():
        return None
    report = SimilarityReport.load(folder)
    last_layer = report.layer_blocks("cka")[0][1]
    return min(max(last_layer, 0), report.num_layers - 2)


def _mimic_config(study: StudyConfig, up: UpstreamPlan, entry: dict):
    """A plan's mimic entry as trained: (MimicConfig, trained in step 1), with the study's layer i (the end of the
    first similarity block) for the whole stack; a block replacement (span) places its own targets."""
    from superb_redundancy.study.upstream_plan import mimic_entry

    layer_i = _end_of_first_block(study, up)
    return mimic_entry({**({"layer_i": layer_i} if layer_i is not None and "span" not in entry else {}), **entry})


def _teacher_cache_dir(study: StudyConfig, upstream: str) -> Path:
    """The folder of the teacher states an upstream's mimickers and healing runs distil from."""
    return _run_folder(study, run_id("teacher", upstream)) / "cache"


def _teacher(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    """One pass of the teacher over the training audio, caching the states that every step-1 mimicker and every
    healing run of the upstream reads (the union of their layers), so that each reads a cache instead of running
    the teacher again."""
    from superb_redundancy.distill.teacher_cache import build_teacher_cache
    from superb_redundancy.mimic.config import cache_layers
    from superb_redundancy.models.families import get_family

    up = _upstream(study, run.params["upstream"])
    teacher = base_checkpoint(study, up)
    family = get_family(up.family)
    layers = family.num_layers(torch.load(teacher, map_location="cpu", weights_only=True, mmap=True))
    wanted = {t for entry in run.params["configs"] for t in cache_layers(_mimic_config(study, up, entry)[0], layers)}
    if run.params["heal_targets"] is not None:  # the final layer; "mapped" also each kept layer's own position
        wanted |= set(range(layers)) if run.params["heal_targets"] == "mapped" else {layers - 1}
    clips = split_audio(study, up, "train")
    cache = build_teacher_cache(teacher, list(clips.files), folder / "cache", layers=sorted(wanted),
                                family=up.family, device=study.device, progress=False)
    return {"cache": str(cache.directory), "layers": cache.layers, "clips": len(cache), "audio": clips.record()}


def _mimic(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    """Step 1 of one mimicker, on its upstream's cached teacher states (resumed epoch by epoch); a baseline
    (non-mimicker, classifier only) is only initialised."""
    from superb_redundancy.mimic.baselines import baseline_name, init_artifact
    from superb_redundancy.mimic.train import train_mimicker
    from superb_redundancy.study.upstream_plan import is_ceiling

    up = _upstream(study, run.params["upstream"])
    config, step1 = _mimic_config(study, up, run.params["config"])
    teacher = str(base_checkpoint(study, up))
    if is_ceiling(run.params["config"]):
        return {"artifact": str(init_artifact(teacher, config, folder / f"ceiling-{config.name()}.pt",
                                              baseline="ceiling"))}
    if not step1:
        return {"artifact": str(init_artifact(teacher, config, folder / f"{baseline_name(config)}.pt"))}
    head = None
    if run.params.get("select_by"):  # the base's experiment: its Featurizer and head, on its dev split
        head = _run_folder(study, run.params["eval_head_run"]) / "exp"
    artifact = train_mimicker(_teacher_cache_dir(study, up.name), config, folder / f"{config.name()}.pt",
                              resume=resume, device=study.device, progress=False, teacher=teacher, eval_head=head,
                              select_by=run.params.get("select_by") or "mse")
    return {"artifact": str(artifact)}


def _heal(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    """Heal one pruned variant (:mod:`superb_redundancy.pruning.heal`) on the KS training audio, towards the base,
    from the upstream's cached teacher states."""
    from superb_redundancy.pruning.heal.config import HealConfig
    from superb_redundancy.pruning.heal.training import heal

    up = _upstream(study, run.params["upstream"])
    clips = split_audio(study, up, "train")
    result = heal(folder / "healed.pt", family=up.family, spec=_spec_path(study, run.params["prune_run"]),
                  audio=list(clips.files), config=HealConfig(**run.params["config"]),
                  cache_dir=_teacher_cache_dir(study, up.name), device=study.device, resume=resume,
                  progress=False)
    record = result.record
    return {"artifact": str(result.path), "loss_before": record["loss_before"], "loss_after": record["loss_after"],
            "best_epoch": record["best_epoch"], "measured_on": record["measured_on"], "audio": clips.record()}


def _spec_path(study: StudyConfig, prune_run: str) -> Path:
    """The prune spec a prune run writes."""
    return _run_folder(study, prune_run) / "spec.yaml"


def _pruned_model(study: StudyConfig, variant: dict) -> Optional[tuple]:
    """What a pruned variant's spec makes: (base, dropped layers, compact), None before its prune run wrote it."""
    from superb_redundancy.pruning.spec import PruneSpec

    path = _spec_path(study, variant["prune_run"])
    if not path.is_file():
        return None
    spec = PruneSpec.from_yaml(path)
    return spec.base, tuple(spec.drop_layers or ()), spec.compact


def twin_run(run: Run, study: StudyConfig) -> Optional[str]:
    """The downstream run of an earlier pruned variant of the plan that evaluates the very same model on the same
    task and seed (two objectives or amounts choosing the same layers, e.g. BI and kNN-BI at keep95), else None.
    The runner runs a twin after the run it repeats; the step then reuses that run's result instead of training
    the same head on the same model again (and the leaderboard shows the model once)."""
    from superb_redundancy.study.plan import variants

    variant = run.params.get("variant") or {}
    if run.kind != "downstream" or variant.get("kind") != "pruned":
        return None
    model = _pruned_model(study, variant)
    if model is None:
        return None
    for other in variants(_upstream(study, run.params["upstream"])):
        if other["label"] == variant["label"]:
            return None
        if other["kind"] == "pruned" and _pruned_model(study, other) == model:
            return downstream_id(other["label"], run.params["task"], run.params["seed"])
    return None


def _downstream(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.models.families import get_family
    from superb_redundancy.results.experiment import Variant, resumable_states, train_and_evaluate
    from superb_redundancy.results.records import harvest_expdir

    twin = twin_run(run, study)
    if twin is not None:
        import json

        state = _workdir(study) / "state" / f"{twin}.json"
        earlier = json.loads(state.read_text()) if state.is_file() else {}
        if earlier.get("status") == "done":  # no record of its own: one model, one row on the leaderboard
            outputs = earlier["outputs"]
            return {"same_as": twin, "metric": outputs.get("metric"), "value": outputs.get("value")}
    up = _upstream(study, run.params["upstream"])
    variant = run.params["variant"]
    family = get_family(up.family)
    task = run.params["task"]
    overrides = {**data_overrides(study, task), "args.seed": int(run.params["seed"])}
    if variant["kind"] == "base":
        chosen = Variant(variant["label"], family.local_hub_name, ckpt=str(base_checkpoint(study, up)))
    elif variant["kind"] == "reference":  # the teacher's head on its last hidden state alone
        chosen = Variant(variant["label"], family.local_hub_name, ckpt=str(base_checkpoint(study, up)),
                         extra_args=("-s", variant["reads"]))
    elif variant["kind"] == "pruned":
        chosen = Variant(variant["label"], family.pruned_hub_name,
                         model_config=str(_spec_path(study, variant["prune_run"])))
    elif variant["kind"] == "healed":  # a pruned artifact with healed layers: -u pruned_<family>_local -k
        chosen = Variant(variant["label"], family.pruned_local_hub_name,
                         ckpt=str(_run_folder(study, variant["heal_run"]) / "healed.pt"))
    else:  # a mimicker or baseline: the artifact its mimic run wrote
        chosen, more = _mimic_variant(study, run, folder)
        overrides.update(more)
    expdir = folder / "exp"
    resumed = resumable_states(expdir) if resume and expdir.is_dir() else None
    train_and_evaluate(chosen, task, _synthetic_root(study), expdir, setting=study.setting, device=study.device,
                       extra_overrides=overrides, resume=resume)
    record = harvest_expdir(expdir)
    from superb_redundancy.core.files import write_json

    path = write_json(_workdir(study) / "records" / f"{record.record_id}.json", record.to_dict())
    return {"expdir": str(expdir), "metric": record.metric, "value": record.value, "record": str(path),
            **({"resumed_from": resumed.name} if resumed is not None else {})}


def _mimic_variant(study: StudyConfig, run: Run, folder: Path):
    """A mimic variant's step 2 (:mod:`superb_redundancy.study.mimic_step2`): (the Variant, its -o overrides). The
    baselines' layers learn only in step 2, as in the paper; the mimickers' stay frozen there (the authors' code
    default). The paper's step 2 starts its head from the teacher's last-layer head run (``variant["head"]``)."""
    import json

    import yaml

    from superb_redundancy.core.files import write_text
    from superb_redundancy.data.tasks import load_config
    from superb_redundancy.hub.feature_cache import STORE_KEY
    from superb_redundancy.study.mimic_step2 import head_init, step2_arguments
    from superb_redundancy.results.experiment import Variant

    variant = run.params["variant"]
    state = json.loads((_workdir(study) / "state" / f"{variant['mimic_run']}.json").read_text())
    step2 = variant.get("step2") or {"kind": "weighted_sum"}
    step1 = variant.get("step1", True)
    # the mimic runs of a study share their teacher's CNN features through one store (hub/feature_cache.py)
    store = {f"config.runner.{STORE_KEY}": str(_workdir(study) / "frontend_store")}
    if step2["kind"] == "weighted_sum":
        args, _ = step2_arguments("weighted_sum", step1, 1)
        return Variant(variant["label"], "mimic_local", ckpt=state["outputs"]["artifact"], extra_args=args), store
    head = _run_folder(study, downstream_id(variant["head"], run.params["task"], run.params["seed"])) / "exp"
    init = head_init(head, folder / "head_init.ckpt")
    args, frozen = step2_arguments("paper", step1, int(variant["n_layers"]), init,
                                   frontend=bool(variant.get("ceiling")))
    model_config = None
    if frozen:
        model_config = folder / "frozen_frontend.yaml"
        write_text(model_config, yaml.safe_dump({"frozen_frontend": True}))
    runner = load_config(run.params["task"], study.setting)["runner"]
    overrides = {**Step2Plan(**step2).runner_overrides(runner), **store}
    return Variant(variant["label"], "mimic_local", ckpt=state["outputs"]["artifact"],
                   model_config=None if model_config is None else str(model_config), extra_args=args), overrides


def _curves(run: Run, study: StudyConfig, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.pruning.curves.run import pruning_curves
    from superb_redundancy.pruning.curves.settings import CurveSettings

    up = _upstream(study, run.params["upstream"])
    expdir = _run_folder(study, downstream_id(f"{up.name}-base", run.params["task"], run.params["seed"])) / "exp"
    settings = CurveSettings(objectives=tuple(run.params["objectives"]), repeats=int(run.params["repeats"]),
                             subset=float(run.params["subset"]), device=study.device)
    result = pruning_curves(expdir, similarity=_run_folder(study, run_id("similarity", up.name)) / "similarity.json",
                            settings=settings)
    return {"files": {k: str(v) for k, v in result.save(folder).items()}, "thresholds": result.table()}


_STEPS = {"data": _data, "finetune": _finetune, "similarity": _similarity, "prune": _prune, "teacher": _teacher,
          "mimic": _mimic, "heal": _heal, "downstream": _downstream, "curves": _curves}


#: test-only: a module whose ``STEPS`` (kind -> step) replace these, so that the runner's own behaviour (locks,
#: kills, reruns) is tested with quick steps
STEPS_OVERRIDE = "SUPERB_REDUNDANCY_STUDY_STEPS"


#: the runs that continue from their last checkpoint when restarted with the same key: s3prl's experiments (its
#: own resume, from the last states-*.ckpt), step 1 and healing (epoch by epoch); the teacher's cache is reused
#: once complete and verified. The others take minutes and start afresh.
RESUMABLE = ("finetune", "downstream", "mimic", "heal", "teacher")


def execute(run: Run, study: StudyConfig, resume: bool = False) -> dict:
    """Run one step; returns its outputs (the runner records them). ``resume`` (an earlier attempt with the same
    key, killed or failed): a resumable run continues from what that attempt checkpointed; else the folder is
    wiped first. The caller holds the run's lock (``<folder>/.lock``), so no live process still writes into it."""
    if study.executor.gpus_per_run > 1:
        os.environ["SUPERB_REDUNDANCY_GPUS_PER_RUN"] = str(study.executor.gpus_per_run)  # read by experiment.py
    folder = run.folder(_workdir(study))
    resume = resume and run.kind in RESUMABLE
    if folder.exists() and run.kind != "data" and not resume:  # a changed or not resumable attempt: afresh
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.name != ".lock":
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    steps = dict(_STEPS)
    if os.environ.get(STEPS_OVERRIDE):
        steps.update(importlib.import_module(os.environ[STEPS_OVERRIDE]).STEPS)
    try:
        return steps[run.kind](run, study, folder, resume=resume)
    finally:
        _free_device_memory()


def _free_device_memory() -> None:
    """Give CUDA's cached blocks back after a step that ran in this process: the next run (another model, another
    process on the same GPU) gets the memory, not torch's cache of this one."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
