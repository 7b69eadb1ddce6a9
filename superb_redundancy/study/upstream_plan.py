"""One upstream of a study (``upstreams:`` entries): its base model and what is done with it, checked on load.

Every sub-plan is a frozen dataclass, loaded through :func:`superb_redundancy.study.sections.typed`, so that a
misspelt key (``prune: {amountz: [0.5]}``, ``similarity: {pooll: frames}``) is a problem naming it and the valid
ones: ``finetune`` (:class:`FinetunePlan`), ``similarity`` (:class:`SimilarityPlan`, whose other keys are
:class:`~superb_redundancy.analysis.report.SimilaritySettings` fields), ``prune`` (:class:`PrunePlan`), ``mimic``
(a list of :class:`~superb_redundancy.mimic.MimicConfig` mappings, each checked by ``MimicConfig.from_dict``) and
``heal`` (a :class:`~superb_redundancy.pruning.heal.HealConfig` mapping). The mimic and heal entries are kept as
plain mappings: they go into run params (JSON), whose hashes must not change.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from superb_redundancy.models.shipped import is_shipped
from superb_redundancy.study.sections import is_int, typed, unique

if TYPE_CHECKING:  # the annotation only: mimic imports torch
    from superb_redundancy.mimic.config import MimicConfig

__all__ = ["UpstreamPlan", "FinetunePlan", "SimilarityPlan", "PrunePlan", "Step2Plan", "KEEP_AMOUNTS", "amount_label",
           "mimic_entry", "mimic_label", "is_ceiling", "check_objectives", "upstream_plan", "upstream_disk_problems"]

#: prune amounts read off the study's pruning curves: the ratio of the unpruned metric their mean keeps
KEEP_AMOUNTS = {"keep95": "95%", "keep50": "50%"}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # upstream names become folder names and run ids
_SIZES = {"batch_size", "k", "max_samples", "n_blocks", "forward_batch_size"}  # similarity settings that are >= 1


@dataclass(frozen=True)
class FinetunePlan:
    task: str = "speech_commands"
    steps: int = 200
    lr: float = 1e-3
    setting: Optional[str] = None  # None: the study's setting


@dataclass(frozen=True)
class SimilarityPlan:
    """``limit``: a seeded subset of the dev clips; the other keys of the YAML section are
    :class:`superb_redundancy.analysis.report.SimilaritySettings` fields."""

    limit: Optional[int] = None
    settings: dict = field(default_factory=dict)  # the given SimilaritySettings fields

    def params(self) -> dict:
        """Every setting resolved (defaults filled in): what a similarity run is keyed by."""
        from superb_redundancy.analysis.report import SimilaritySettings

        return {"limit": self.limit, **asdict(SimilaritySettings(**self.settings))}


@dataclass(frozen=True)
class PrunePlan:
    objectives: tuple[str, ...] = ()
    #: a layer count (int), a fraction of the layers in [0, 1), or ``keep95``/``keep50``: the largest amount whose
    #: mean on the curves' test set stays at or above 95%/50% of the unpruned model (needs the study's curves)
    amounts: tuple[Union[int, float, str], ...] = ()
    iterative: bool = False


@dataclass(frozen=True)
class Step2Plan:
    """Step 2 of the mimickers (:mod:`superb_redundancy.study.mimic_step2`): ``kind`` ``weighted_sum`` (s3prl's weighted
    sum over [features, m_1..m_N], fresh head, the setting's fixed steps) or ``paper`` (the head reads m_N, starts
    from the head of a run on the teacher's last layer, stops after ``patience`` dev evaluations without a new
    best; ``eval_step``: steps between them, null: the setting's; ``max_steps``: the cap, null: ten times the
    setting's steps). A study gives ``mimic_step2: paper`` or the mapping."""

    kind: str = "weighted_sum"
    patience: int = 5
    eval_step: Optional[int] = None
    max_steps: Optional[int] = None

    #: the cap when none is given: this many times the setting's fixed number of steps
    MAX_STEPS_FACTOR = 10

    def runner_overrides(self, runner: dict) -> dict:
        """The ``-o`` overrides of the paper's step 2 given the setting's ``runner`` section: the cap, a dev
        evaluation and a checkpoint every ``eval_step`` steps, and the patience (in dev evaluations)."""
        every = int(self.eval_step or runner["eval_step"])
        cap = int(self.max_steps or self.MAX_STEPS_FACTOR * int(runner["total_steps"]))
        return {"config.runner.total_steps": cap, "config.runner.eval_step": min(every, cap),
                "config.runner.save_step": min(every, cap), "config.runner.early_stopping_patience": int(self.patience)}


@dataclass(frozen=True)
class UpstreamPlan:
    name: str
    family: str = "wav2vec2"
    base: str = "tiny"
    finetune: Optional[FinetunePlan] = None
    similarity: SimilarityPlan = field(default_factory=SimilarityPlan)
    prune: PrunePlan = field(default_factory=PrunePlan)
    mimic: tuple[dict, ...] = ()  # MimicConfig mappings, each validated
    baseline: bool = True  # evaluate the unpruned base too
    mimic_tasks: Optional[tuple[str, ...]] = None  # the tasks the mimickers are evaluated on (None: the study's)
    #: evaluate the mimickers in step 1 through the head of the base's experiment on ``eval_head_task`` (the
    #: curves' task) and keep the epoch of the best head accuracy ("acc") or of the best MSE ("mse", recorded
    #: only); None: no head
    mimic_select_by: Optional[str] = None
    #: a HealConfig mapping: heal every pruned variant (kept layers distilled towards the base) and evaluate the
    #: healed model beside the pruned one
    heal: Optional[dict] = None
    #: the task whose official splits the analysis reads: dev for similarity and pruning orders, train for step 1
    #: and healing (None: the fine-tuning task, else the curves' task, else speech_commands; see ``audio_task``)
    audio_task: Optional[str] = None
    #: MimicConfig keys every ``mimic`` entry takes unless it gives its own (``{epochs: 50, lr: 1.0e-3}``)
    mimic_defaults: Optional[dict] = None
    #: step 2 of the mimickers: s3prl's weighted sum (the default) or the paper's (:class:`Step2Plan`)
    mimic_step2: Step2Plan = field(default_factory=Step2Plan)


def amount_label(amount) -> str:
    return f"{amount}".replace(".", "p")


def check_objectives(objectives, where: str, problems: list[str]) -> None:
    from superb_redundancy.pruning.objectives import OBJECTIVES

    for objective in objectives:
        if objective not in OBJECTIVES:
            problems.append(f"{where}: {objective!r}; valid: {sorted(OBJECTIVES)}")
    unique(objectives, where, problems)


# ------------------------------------------------------------------------------------------------ sub-plans
def _finetune(data, where: str, problems: list[str]) -> Optional[FinetunePlan]:
    from superb_redundancy.data.tasks import TASKS

    if data is None:  # `finetune: null`: none
        return None
    plan = typed(FinetunePlan, data, where, problems)
    if plan is None:
        return None
    if plan.task not in TASKS:
        problems.append(f"{where}.task: {plan.task!r}; valid: {sorted(TASKS)}")
    if plan.steps < 1:
        problems.append(f"{where}.steps: {plan.steps}; must be >= 1")
    if not plan.lr > 0:
        problems.append(f"{where}.lr: {plan.lr}; must be > 0")
    return plan


def _similarity(data, where: str, problems: list[str]) -> SimilarityPlan:
    from superb_redundancy.analysis.report import SimilaritySettings
    from superb_redundancy.analysis.similarity import AVERAGING_MODES, POOL_MODES

    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {data!r}")
        return SimilarityPlan()
    own = [f.name for f in fields(SimilarityPlan) if f.name != "settings"]
    plan = typed(SimilarityPlan, {k: v for k, v in data.items() if k in own}, where, problems) or SimilarityPlan()
    settings = typed(SimilaritySettings, {k: v for k, v in data.items() if k not in own}, where, problems,
                     also_valid=tuple(own)) or SimilaritySettings()
    if plan.limit is not None and plan.limit < 1:
        problems.append(f"{where}.limit: {plan.limit}; must be >= 1 (clips analysed)")
    if settings.pool not in POOL_MODES:
        problems.append(f"{where}.pool: {settings.pool!r}; valid: {list(POOL_MODES)}")
    if settings.pool == "flatten" and settings.clip_seconds is None:  # a split's clips have many lengths
        problems.append(f"{where}.pool: 'flatten' needs every clip of one length; give clip_seconds (the paper fits "
                        "Speech Commands clips to 1.0 s, padded or cut)")
    if settings.averaging not in AVERAGING_MODES:
        problems.append(f"{where}.averaging: {settings.averaging!r}; valid: {list(AVERAGING_MODES)}")
    for f in fields(SimilaritySettings):  # counts: >= 0 (e.g. permutations: 0 is none), sizes: >= 1
        value, floor = getattr(settings, f.name), 1 if f.name in _SIZES else 0
        if is_int(value) and value < floor:
            problems.append(f"{where}.{f.name}: {value}; must be >= {floor}")
        elif isinstance(value, float) and not (math.isfinite(value) and value > 0):
            problems.append(f"{where}.{f.name}: {value}; must be > 0")
    given = {k: v for k, v in data.items() if k not in own and k in {f.name for f in fields(SimilaritySettings)}}
    return SimilarityPlan(plan.limit, {k: getattr(settings, k) for k in given})


def _prune(data, where: str, problems: list[str]) -> PrunePlan:
    plan = typed(PrunePlan, data, where, problems) or PrunePlan()
    check_objectives(plan.objectives, f"{where}.objectives", problems)
    for amount in plan.amounts:
        fraction = isinstance(amount, float) and math.isfinite(amount) and 0.0 <= amount < 1.0
        if not (fraction or (is_int(amount) and amount >= 0) or amount in KEEP_AMOUNTS):
            problems.append(f"{where}.amounts: {amount!r}; a layer count (int >= 0), a fraction in [0, 1), or one "
                            f"of {list(KEEP_AMOUNTS)} (the largest amount the curves show keeping 95% / 50%)")
    unique(plan.amounts, f"{where}.amounts", problems, key=amount_label)
    if bool(plan.objectives) != bool(plan.amounts):
        given, absent = ("objectives", "amounts") if plan.objectives else ("amounts", "objectives")
        problems.append(f"{where}: {given} without {absent}: no prune run would be made")
    return plan


def mimic_entry(entry: dict, where: str = "mimic") -> tuple["MimicConfig", bool]:
    """A study's mimic entry: its :class:`~superb_redundancy.mimic.MimicConfig` and whether step 1 trains it.
    ``step1: false`` makes the paper's non-mimicker (initialised, not distilled); ``n_layers: 0`` (classifier
    only) has no step 1 either. Both are trained only in step 2 (s3prl's runner with ``-f``). ``ceiling: true``
    (with ``step1: false``) makes a reference row instead: the same untrained layers, trained in step 2 with labels
    together with the front end's projection and LayerNorm (:func:`is_ceiling`)."""
    from superb_redundancy.mimic.config import MimicConfig, MimicError

    if not isinstance(entry, dict):
        raise MimicError(f"{where}: expected a mapping (a mimic config), got {entry!r}")
    step1 = entry.get("step1", True)
    if not isinstance(step1, bool):
        raise MimicError(f"{where}.step1: {step1!r}; valid: true (distil in step 1) or false (the non-mimicker)")
    ceiling = entry.get("ceiling", False)
    if not isinstance(ceiling, bool):
        raise MimicError(f"{where}.ceiling: {ceiling!r}; valid: true (a reference trained with labels) or false")
    config = MimicConfig.from_dict({k: v for k, v in entry.items() if k not in ("step1", "ceiling")}, where)
    if ceiling and (step1 or config.classifier_only):
        raise MimicError(f"{where}.ceiling: a ceiling is trained with labels only, from layers of its own; give it "
                         "step1: false and n_layers >= 1")
    return config, step1 and not config.classifier_only


def is_ceiling(entry: dict) -> bool:
    """Whether a mimic entry is a ceiling: the best its layers on the teacher's front end do when trained with
    labels (step 2 only, front end projection included), a reference row rather than a baseline."""
    return bool(entry.get("ceiling", False))


def mimic_label(entry: dict) -> str:
    """The variant's name: the config's stem, ``nonmimic-`` in front for a non-mimicker."""
    from superb_redundancy.mimic.baselines import baseline_name

    config, step1 = mimic_entry(entry)
    if is_ceiling(entry):
        return f"ceiling-{config.name()}"
    return config.name() if step1 else baseline_name(config)


def _mimic(data, where: str, problems: list[str]) -> tuple[dict, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.append(f"{where}: expected a list of mimic configs, got {data!r}")
        return ()
    kept, names = [], {}
    for index, entry in enumerate(data):
        try:
            mimic_entry(entry, f"{where}[{index}]")
            name = mimic_label(entry)
        except (TypeError, ValueError) as error:  # MimicError is a ValueError
            problems.append(str(error))
            continue
        if name in names:  # the downstream runs are named after the mimicker
            problems.append(f"{where}[{index}]: the same mimicker ({name}) as {where}[{names[name]}]")
            continue
        names[name] = index
        kept.append(entry)
    return tuple(kept)


def _step2(data, where: str, problems: list[str]) -> Step2Plan:
    """``mimic_step2:`` a kind (``paper``) or a :class:`Step2Plan` mapping, every bad value one problem."""
    from superb_redundancy.study.mimic_step2 import STEP2

    if data is None:
        return Step2Plan()
    plan = Step2Plan(kind=data) if isinstance(data, str) else typed(Step2Plan, data, where, problems)
    if plan is None:
        return Step2Plan()
    if plan.kind not in STEP2:
        problems.append(f"{where}: {plan.kind!r}; valid: {', '.join(STEP2)} (or a mapping with kind, patience, "
                        "eval_step, max_steps)")
    for name in ("patience", "eval_step", "max_steps"):
        value = getattr(plan, name)
        if (value is not None or name == "patience") and not (is_int(value) and value >= 1):
            problems.append(f"{where}.{name}: {value!r}; valid: an integer >= 1"
                            + ("" if name == "patience" else " or null (the setting's)"))
    return plan


def _heal(data, where: str, problems: list[str]) -> Optional[dict]:
    """``heal:`` a :class:`~superb_redundancy.pruning.heal.HealConfig` mapping (``{}``: its defaults), kept as a
    dict (run params are JSON)."""
    from superb_redundancy.pruning.heal.config import HealConfig

    if data is None:
        return None
    config = typed(HealConfig, data, where, problems)
    return None if config is None else config.to_dict()


def _with_mimic_defaults(data, where: str, problems: list[str]):
    """The entry with ``mimic_defaults`` filled into each ``mimic`` entry (an entry's own keys win), so that the
    runs are keyed by each mimicker's whole config, as if every entry gave the keys itself."""
    defaults = data.get("mimic_defaults") if isinstance(data, dict) else None
    if defaults is None:
        return data
    if not isinstance(defaults, dict):
        problems.append(f"{where}.mimic_defaults: expected a mapping of mimic config keys, got {defaults!r}")
        return {k: v for k, v in data.items() if k != "mimic_defaults"}
    entries = data.get("mimic")
    if isinstance(entries, list):
        data = {**data, "mimic": [{**defaults, **e} if isinstance(e, dict) else e for e in entries]}
    return data


# ------------------------------------------------------------------------------------------------ the plan
def upstream_plan(data, where: str, problems: list[str]) -> Optional[UpstreamPlan]:
    """One ``upstreams:`` entry, its problems appended; None when it cannot be built."""
    from superb_redundancy.data.tasks import TASKS
    from superb_redundancy.models.families import FAMILIES

    nested = {"finetune": _finetune, "similarity": _similarity, "prune": _prune, "mimic": _mimic, "heal": _heal,
              "mimic_step2": _step2}
    if isinstance(data, dict) and "data" in (data.get("similarity") or {}):
        problems.append(f"{where}.similarity.data: a study reads a task's official splits (dev for similarity and "
                        "pruning orders, train for mimicking and healing), not a folder; name the task with "
                        "audio_task (a folder of loose audio is for the single commands: similarity --data)")
        data = {**data, "similarity": {k: v for k, v in data["similarity"].items() if k != "data"}}
    up = typed(UpstreamPlan, _with_mimic_defaults(data, where, problems), where, problems, nested=nested)
    if up is None:
        return None
    if not _NAME.fullmatch(up.name):
        problems.append(f"{where}.name: {up.name!r}; letters, digits, '.', '_', '-' (it names folders)")
    if up.family not in FAMILIES:
        problems.append(f"{where}.family: {up.family!r}; valid: {sorted(FAMILIES)}")
    if not up.base:
        problems.append(f"{where}.base: empty; an s3prl hub name, a checkpoint path, a shipped model, or 'tiny'")
    if up.mimic_select_by is not None:
        from superb_redundancy.mimic.train import SELECT_BY

        if up.mimic_select_by not in SELECT_BY:
            problems.append(f"{where}.mimic_select_by: {up.mimic_select_by!r}; valid: null (no head), "
                            + ", ".join(SELECT_BY))
        elif not up.baseline:
            problems.append(f"{where}.mimic_select_by: the head is the base's experiment, which needs baseline: true")
        whole = [mimic_label(e) for e in up.mimic if "span" not in e and mimic_entry(e)[1]]
        if whole:  # the base's head weights every layer: it cannot score a mimicker that replaces them all
            problems.append(f"{where}.mimic_select_by: the base's head weights all the teacher's layers, so it cannot "
                            f"score whole-stack mimickers {whole}; give them a span or leave mimic_select_by out")
    if up.heal is not None and not up.prune.objectives:
        problems.append(f"{where}.heal: nothing to heal; it heals the pruned variants, and prune names none")
    if up.mimic_tasks is not None:
        for task in up.mimic_tasks:
            if task not in TASKS:
                problems.append(f"{where}.mimic_tasks: {task!r}; valid: {sorted(TASKS)}")
    if up.audio_task is not None and up.audio_task not in TASKS:
        problems.append(f"{where}.audio_task: {up.audio_task!r}; valid: {sorted(TASKS)}")
    return up


# ------------------------------------------------------------------------------------------------ on disk
def is_path_like(base: str) -> bool:
    """A checkpoint path rather than a hub name (the rule of ``pruned_upstream.resolve_base``)."""
    return os.sep in base or base.endswith((".pt", ".ckpt", ".pth", ".bin")) or Path(base).exists()


def _layer_count(up: UpstreamPlan) -> Optional[int]:
    """The base model's transformer layers when they can be told without a download (tiny, shipped, a file)."""
    if up.base == "tiny":
        from superb_redundancy.models.config import ModelConfig

        return ModelConfig().num_layers
    if not (is_shipped(up.base) or is_path_like(up.base)):
        return None
    try:
        import torch

        from superb_redundancy.models.families import get_family
        from superb_redundancy.models.shipped import shipped_checkpoint

        path = shipped_checkpoint(up.base) if is_shipped(up.base) else Path(up.base).expanduser()
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return get_family(up.family).num_layers(checkpoint)
    except Exception:  # not readable here (an older format, another family): the run itself will say why
        return None


def upstream_disk_problems(up: UpstreamPlan) -> list[str]:
    """What the disk tells about one upstream now (its similarity data, its base checkpoint, prune amounts
    against the base's layer count), one line each."""
    found, where = [], f"upstreams[{up.name}]"
    if up.base != "tiny" and not is_shipped(up.base) and is_path_like(up.base) \
            and not Path(up.base).expanduser().is_file():
        found.append(f"{where}.base: checkpoint {up.base} not found")
        return found
    layers = _layer_count(up)
    for amount in up.prune.amounts:  # layer 0 is never pruned: at most L - 1 layers go
        if layers and is_int(amount) and amount > layers - 1:
            found.append(f"{where}.prune.amounts: {amount} layers, but the {layers}-layer base can drop at "
                         f"most {layers - 1} (layer 0 is kept)")
    return found
