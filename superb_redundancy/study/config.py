"""A study is one YAML file: what to analyse, prune, mimic, evaluate and compare. Loaded into dataclasses.

Minimal example (the embedded default is ``studies/embedded_default.yaml``)::

    name: my-study
    workdir: work/my-study
    data:                      # synthetic: generated; or per-task roots of real corpora
      synthetic: {scale: 1.0}
    upstreams:
      - name: w2v2
        family: wav2vec2
        base: wav2vec2                   # s3prl hub name, checkpoint path, a shipped model (ks_w2v2_8l), or "tiny"
        finetune: {task: speech_commands, steps: 200}   # optional: fine-tune on KS first (the paper did)
        similarity: {pool: mean, limit: 400}
        prune: {objectives: [bi, knn-bi], amounts: [0.25, keep95]}   # keep95: read off the curves
        heal: {epochs: 4, lr: 3.0e-4}     # optional: heal each pruned variant too (superb-redundancy heal)
        mimic: [{kind: linear, n_layers: 1, z: 32}, {kind: linear, n_layers: 1, z: 32, span: [6, 7]}]
    tasks: [speech_commands, emotion]
    setting: tiny              # downstream_configs/<task>/<setting>.yaml
    seeds: [1337]
    curves: {task: speech_commands, objectives: [forward, backward, bi, knn-bi], repeats: 5}
    executor: {kind: local}    # local | slurm (submitit)

Every section is a frozen dataclass checked on load: :meth:`StudyConfig.load` collects every problem of a file
(unknown or missing fields, wrong types, bad values, duplicates, missing configs), one line each, instead of
stopping at the first; :meth:`StudyConfig.problems` adds what only the disk can tell (data roots, checkpoints,
prune amounts against the base model's layer count).
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..config_io import from_mapping, read_yaml
from ..shipped_models import is_shipped

__all__ = ["StudyConfig", "UpstreamPlan", "FinetunePlan", "SimilarityPlan", "PrunePlan", "ExecutorConfig",
           "CurvesPlan", "SyntheticData", "StudyConfigError", "amount_label", "mimic_entry", "mimic_label",
           "KEEP_AMOUNTS", "eval_head_task"]


class StudyConfigError(ValueError):
    """A study file that cannot run; ``problems`` holds one line per problem (field, bad value, what is valid)."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class FinetunePlan:
    task: str = "speech_commands"
    steps: int = 200
    lr: float = 1e-3
    setting: Optional[str] = None  # None: the study's setting


@dataclass(frozen=True)
class SimilarityPlan:
    """``data``: an audio folder instead of the study's KS corpus; ``limit``: a seeded subset of clips; the
    other keys of the YAML section are :class:`superb_redundancy.analysis.SimilaritySettings` fields."""

    data: Optional[str] = None
    limit: Optional[int] = None
    settings: dict = field(default_factory=dict)  # the given SimilaritySettings fields

    def params(self) -> dict:
        """Every setting resolved (defaults filled in): what a similarity run is keyed by."""
        from ..analysis import SimilaritySettings

        return {"data": self.data, "limit": self.limit, **asdict(SimilaritySettings(**self.settings))}


@dataclass(frozen=True)
class PrunePlan:
    objectives: tuple[str, ...] = ()
    #: a layer count (int), a fraction of the layers in [0, 1), or ``keep95``/``keep50``: the largest amount whose
    #: mean on the curves' test set stays at or above 95%/50% of the unpruned model (needs the study's curves)
    amounts: tuple[Union[int, float, str], ...] = ()
    iterative: bool = False


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


@dataclass(frozen=True)
class CurvesPlan:
    task: str = "speech_commands"
    objectives: tuple[str, ...] = ("forward", "backward", "bi", "knn-bi")
    repeats: int = 5
    subset: float = 1.0


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"  # local | slurm
    workers: int = 1  # local: parallel processes
    folder: Optional[str] = None  # submitit logs (default <workdir>/submitit)
    cluster: Optional[str] = None  # submitit: None = auto (slurm when available), "local", "debug"
    slurm: dict = field(default_factory=dict)  # e.g. {slurm_partition: gpu, gpus_per_node: 1, timeout_min: 600}
    gpus_per_run: int = 0  # > 1: s3prl's runner under torchrun


@dataclass(frozen=True)
class SyntheticData:
    """``data.synthetic``: the arguments of :func:`superb_redundancy.corpus.generate`."""

    scale: float = 1.0
    seed: int = 0
    workers: Optional[int] = None


@dataclass
class StudyConfig:
    name: str
    workdir: str = "work/study"
    data: dict = field(default_factory=lambda: {"synthetic": {"scale": 1.0}})
    upstreams: tuple[UpstreamPlan, ...] = ()
    tasks: tuple[str, ...] = ("speech_commands",)
    setting: str = "tiny"
    seeds: tuple[int, ...] = (1337,)
    device: str = "cpu"
    curves: Optional[CurvesPlan] = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    leaderboard: str = "leaderboard"

    @classmethod
    def load(cls, path: str | Path) -> tuple[Optional["StudyConfig"], list[str]]:
        """The study and every problem found in the file (one line each); None when it cannot be built."""
        try:
            data = read_yaml(path, "study file", StudyConfigError)
        except StudyConfigError as error:
            return None, error.problems
        problems: list[str] = []
        study = _study(data, str(path), problems)
        return study, problems

    @classmethod
    def from_yaml(cls, path: str | Path) -> "StudyConfig":
        study, problems = cls.load(path)
        if problems or study is None:
            raise StudyConfigError(problems)
        return study

    def problems(self) -> list[str]:
        """What would make runs fail that a look at the disk can tell now, one line each (empty: none)."""
        found = []
        for task, roots in sorted(self.data.items()):
            if task == "synthetic" or not isinstance(roots, dict):
                continue
            for key, value in roots.items():
                if not Path(str(value)).expanduser().exists():
                    found.append(f"data.{task}.{key}: {value} not found")
        if not _DEVICE.fullmatch(str(self.device)):
            found.append(f"device: {self.device!r}; valid: cpu, cuda, cuda:N, mps")
        for up in self.upstreams:
            where = f"upstreams[{up.name}]"
            if up.similarity.data and not Path(up.similarity.data).expanduser().exists():
                found.append(f"{where}.similarity.data: {up.similarity.data} not found")
            if up.base != "tiny" and not is_shipped(up.base) and _is_path_like(up.base) \
                    and not Path(up.base).expanduser().is_file():
                found.append(f"{where}.base: checkpoint {up.base} not found")
                continue
            layers = _layer_count(up)
            for amount in up.prune.amounts:  # layer 0 is never pruned: at most L - 1 layers go
                if layers and _is_int(amount) and amount > layers - 1:
                    found.append(f"{where}.prune.amounts: {amount} layers, but the {layers}-layer base can drop at "
                                 f"most {layers - 1} (layer 0 is kept)")
        return found

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ building
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # upstream names become folder names and run ids
Builder = Callable[[Any, str, list], Any]
_SIZES = {"batch_size", "k", "max_samples", "n_blocks", "forward_batch_size"}  # similarity settings that are >= 1


#: prune amounts read off the study's pruning curves: the ratio of the unpruned metric their mean keeps
KEEP_AMOUNTS = {"keep95": "95%", "keep50": "50%"}


def eval_head_task(study: "StudyConfig") -> str:
    """The task whose experiment on the base is the mimickers' eval head: the curves' (keyword spotting by
    default; the head evaluator reads KS, SID and emotion experiments)."""
    return study.curves.task if study.curves else "speech_commands"


def amount_label(amount) -> str:
    return f"{amount}".replace(".", "p")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_path_like(base: str) -> bool:
    """A checkpoint path rather than a hub name (the rule of ``pruned_upstream.resolve_base``)."""
    return os.sep in base or base.endswith((".pt", ".ckpt", ".pth", ".bin")) or Path(base).exists()


def _layer_count(up: UpstreamPlan) -> Optional[int]:
    """The base model's transformer layers when they can be told without a download (tiny, shipped, a file)."""
    if up.base == "tiny":
        from ..tiny_models import TinyConfig

        return TinyConfig().num_layers
    if not (is_shipped(up.base) or _is_path_like(up.base)):
        return None
    try:
        import torch

        from ..bundles import get_family
        from ..shipped_models import shipped_checkpoint

        path = shipped_checkpoint(up.base) if is_shipped(up.base) else Path(up.base).expanduser()
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return get_family(up.family).num_layers(checkpoint)
    except Exception:  # not readable here (an older format, another family): the run itself will say why
        return None


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        return f"a list of ({_describe(args[0])})"
    names = {type(None): "null", bool: "true/false", int: "an int", float: "a number", str: "a string",
             dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _typed(cls, data: Any, where: str, problems: list[str], nested: Optional[dict[str, Builder]] = None,
           also_valid: tuple[str, ...] = (), label: str = ""):
    """``cls`` from a mapping, every problem appended (not raised): unknown or missing fields, wrong types.
    A bad field falls back to its default so that the rest can still be checked; None: nothing to build.
    ``where``: the dotted path of the section (fields are ``where.field``); ``label``: names the mapping itself
    when ``where`` is empty (the top level)."""
    label = label or where
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{label}: expected a mapping, got {data!r}")
        return None
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names) - set(also_valid))
    if unknown:
        problems.append(f"{label}: unknown field(s) {unknown}; valid: {sorted(set(names) | set(also_valid))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name in names:
        if name not in data:
            continue
        value, path = data[name], f"{where}.{name}" if where else name
        if nested and name in nested:
            value = nested[name](value, path, problems)
            if value is None and data[name] is not None:
                continue
        elif not _fits(value, hints[name]):
            problems.append(f"{path}: {value!r} is not {_describe(hints[name])}")
            continue
        elif isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            value = tuple(value)
        values[name] = value
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        problems.append(f"{label}: missing field(s) {missing}")
    if any(name not in values for name in required):  # missing, or a bad value already reported
        return None
    try:
        return from_mapping(cls, values, label, StudyConfigError)
    except (TypeError, ValueError) as error:  # a __post_init__ of the library's own dataclass refused it
        problems.append(f"{label}: {error}")
        return None


def _unique(values, where: str, problems: list[str], key=lambda v: v) -> None:
    seen: set = set()
    for value in values:
        if key(value) in seen:
            problems.append(f"{where}: {value!r} is listed twice (the same runs would run twice)")
        seen.add(key(value))


def _check_objectives(objectives, where: str, problems: list[str]) -> None:
    from ..pruning_order import OBJECTIVES

    for objective in objectives:
        if objective not in OBJECTIVES:
            problems.append(f"{where}: {objective!r}; valid: {sorted(OBJECTIVES)}")
    _unique(objectives, where, problems)


def _finetune(data, where: str, problems: list[str]) -> Optional[FinetunePlan]:
    from ..tasks import TASKS

    if data is None:  # `finetune: null`: none
        return None
    plan = _typed(FinetunePlan, data, where, problems)
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
    from ..analysis import SimilaritySettings
    from ..similarity import AVERAGING_MODES, POOL_MODES

    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {data!r}")
        return SimilarityPlan()
    own = [f.name for f in fields(SimilarityPlan) if f.name != "settings"]
    plan = _typed(SimilarityPlan, {k: v for k, v in data.items() if k in own}, where, problems) or SimilarityPlan()
    settings = _typed(SimilaritySettings, {k: v for k, v in data.items() if k not in own}, where, problems,
                      also_valid=tuple(own)) or SimilaritySettings()
    if plan.limit is not None and plan.limit < 1:
        problems.append(f"{where}.limit: {plan.limit}; must be >= 1 (clips analysed)")
    if settings.pool not in POOL_MODES:
        problems.append(f"{where}.pool: {settings.pool!r}; valid: {list(POOL_MODES)}")
    if settings.averaging not in AVERAGING_MODES:
        problems.append(f"{where}.averaging: {settings.averaging!r}; valid: {list(AVERAGING_MODES)}")
    for f in fields(SimilaritySettings):  # counts: >= 0 (e.g. permutations: 0 is none), sizes: >= 1
        value, floor = getattr(settings, f.name), 1 if f.name in _SIZES else 0
        if _is_int(value) and value < floor:
            problems.append(f"{where}.{f.name}: {value}; must be >= {floor}")
        elif isinstance(value, float) and not (math.isfinite(value) and value > 0):
            problems.append(f"{where}.{f.name}: {value}; must be > 0")
    given = {k: v for k, v in data.items() if k not in own and k in {f.name for f in fields(SimilaritySettings)}}
    return SimilarityPlan(plan.data, plan.limit, {k: getattr(settings, k) for k in given})


def _prune(data, where: str, problems: list[str]) -> PrunePlan:
    plan = _typed(PrunePlan, data, where, problems) or PrunePlan()
    _check_objectives(plan.objectives, f"{where}.objectives", problems)
    for amount in plan.amounts:
        fraction = isinstance(amount, float) and math.isfinite(amount) and 0.0 <= amount < 1.0
        if not (fraction or (_is_int(amount) and amount >= 0) or amount in KEEP_AMOUNTS):
            problems.append(f"{where}.amounts: {amount!r}; a layer count (int >= 0), a fraction in [0, 1), or one "
                            f"of {list(KEEP_AMOUNTS)} (the largest amount the curves show keeping 95% / 50%)")
    _unique(plan.amounts, f"{where}.amounts", problems, key=amount_label)
    if bool(plan.objectives) != bool(plan.amounts):
        given, absent = ("objectives", "amounts") if plan.objectives else ("amounts", "objectives")
        problems.append(f"{where}: {given} without {absent}: no prune run would be made")
    return plan


def mimic_entry(entry: dict, where: str = "mimic") -> tuple["MimicConfig", bool]:
    """A study's mimic entry: its :class:`~superb_redundancy.mimic.MimicConfig` and whether step 1 trains it.
    ``step1: false`` makes the paper's non-mimicker (initialised, not distilled); ``n_layers: 0`` (classifier
    only) has no step 1 either. Both are trained only in step 2 (s3prl's runner with ``-f``)."""
    from ..mimic import MimicConfig, MimicError

    if not isinstance(entry, dict):
        raise MimicError(f"{where}: expected a mapping (a mimic config), got {entry!r}")
    step1 = entry.get("step1", True)
    if not isinstance(step1, bool):
        raise MimicError(f"{where}.step1: {step1!r}; valid: true (distil in step 1) or false (the non-mimicker)")
    config = MimicConfig.from_dict({k: v for k, v in entry.items() if k != "step1"}, where)
    return config, step1 and not config.classifier_only


def mimic_label(entry: dict) -> str:
    """The variant's name: the config's stem, ``nonmimic-`` in front for a non-mimicker."""
    from ..mimic_train import baseline_name

    config, step1 = mimic_entry(entry)
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


def _heal(data, where: str, problems: list[str]) -> Optional[dict]:
    """``heal:`` a :class:`~superb_redundancy.heal.HealConfig` mapping (``{}``: its defaults), kept as a dict (run
    params are JSON)."""
    from ..heal import HealConfig

    if data is None:
        return None
    config = _typed(HealConfig, data, where, problems)
    return None if config is None else config.to_dict()


def _upstream(data, where: str, problems: list[str]) -> Optional[UpstreamPlan]:
    from ..bundles import FAMILIES

    nested = {"finetune": _finetune, "similarity": _similarity, "prune": _prune, "mimic": _mimic, "heal": _heal}
    up = _typed(UpstreamPlan, data, where, problems, nested=nested)
    if up is None:
        return None
    if not _NAME.fullmatch(up.name):
        problems.append(f"{where}.name: {up.name!r}; letters, digits, '.', '_', '-' (it names folders)")
    if up.family not in FAMILIES:
        problems.append(f"{where}.family: {up.family!r}; valid: {sorted(FAMILIES)}")
    if not up.base:
        problems.append(f"{where}.base: empty; an s3prl hub name, a checkpoint path, a shipped model, or 'tiny'")
    if up.mimic_select_by is not None:
        from ..mimic_train import SELECT_BY

        if up.mimic_select_by not in SELECT_BY:
            problems.append(f"{where}.mimic_select_by: {up.mimic_select_by!r}; valid: null (no head), "
                            + ", ".join(SELECT_BY))
        elif not up.baseline:
            problems.append(f"{where}.mimic_select_by: the head is the base's experiment, which needs baseline: true")
    if up.heal is not None and not up.prune.objectives:
        problems.append(f"{where}.heal: nothing to heal; it heals the pruned variants, and prune names none")
    if up.mimic_tasks is not None:
        from ..tasks import TASKS

        for task in up.mimic_tasks:
            if task not in TASKS:
                problems.append(f"{where}.mimic_tasks: {task!r}; valid: {sorted(TASKS)}")
    return up


def _curves(data, where: str, problems: list[str]) -> Optional[CurvesPlan]:
    if data is None:  # `curves: null`: none
        return None
    curves = _typed(CurvesPlan, data, where, problems)
    if curves is None:
        return None
    _check_objectives(curves.objectives, f"{where}.objectives", problems)
    if not curves.objectives:
        problems.append(f"{where}.objectives: empty")
    if curves.repeats < 1:
        problems.append(f"{where}.repeats: {curves.repeats}; must be >= 1")
    if not 0 < curves.subset <= 1:
        problems.append(f"{where}.subset: {curves.subset}; a fraction in (0, 1]")
    return curves


def _executor(data, where: str, problems: list[str]) -> ExecutorConfig:
    executor = _typed(ExecutorConfig, data, where, problems) or ExecutorConfig()
    if executor.kind not in ("local", "slurm"):
        problems.append(f"{where}.kind: {executor.kind!r}; valid: ['local', 'slurm']")
    if executor.workers < 1:
        problems.append(f"{where}.workers: {executor.workers}; must be >= 1")
    if executor.gpus_per_run < 0:
        problems.append(f"{where}.gpus_per_run: {executor.gpus_per_run}; must be >= 0")
    if executor.cluster not in (None, "slurm", "local", "debug"):
        problems.append(f"{where}.cluster: {executor.cluster!r}; valid: null (auto), slurm, local, debug")
    return executor


def _data(data, where: str, problems: list[str]) -> dict:
    from ..tasks import TASKS

    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping (synthetic: {{...}} and/or a datarc mapping per task), "
                        f"got {data!r}")
        return {}
    kept = {}
    for key, value in data.items():
        if key == "synthetic":
            synthetic = _typed(SyntheticData, value, f"{where}.synthetic", problems)
            if synthetic is not None:
                if not synthetic.scale > 0:
                    problems.append(f"{where}.synthetic.scale: {synthetic.scale}; must be > 0")
                if synthetic.workers is not None and synthetic.workers < 1:
                    problems.append(f"{where}.synthetic.workers: {synthetic.workers}; must be >= 1")
                kept[key] = dict(value or {})
        elif key not in TASKS:
            problems.append(f"{where}: unknown field {key!r}; valid: synthetic, or a task: {sorted(TASKS)}")
        elif not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            problems.append(f"{where}.{key}: expected a mapping of datarc keys to paths, got {value!r}")
        else:
            kept[key] = value
    return kept


def _tasks(data, where: str, problems: list[str]) -> tuple[str, ...]:
    from ..tasks import TASKS

    if not isinstance(data, list) or not data or not all(isinstance(t, str) for t in data):
        problems.append(f"{where}: expected a non-empty list of tasks, got {data!r}; valid: {sorted(TASKS)}")
        return ()
    for task in data:
        if task not in TASKS:
            problems.append(f"{where}: {task!r}; valid: {sorted(TASKS)}")
    _unique(data, where, problems)
    return tuple(t for t in dict.fromkeys(data) if t in TASKS)


def _seeds(data, where: str, problems: list[str]) -> tuple[int, ...]:
    if not isinstance(data, list) or not data or not all(_is_int(s) for s in data):
        problems.append(f"{where}: a non-empty list of ints, got {data!r}")
        return (1337,)
    _unique(data, where, problems)
    return tuple(dict.fromkeys(data))


def _upstreams(data, where: str, problems: list[str]) -> tuple[UpstreamPlan, ...]:
    if not isinstance(data, list) or not data:
        problems.append(f"{where}: the study names no upstream" if not data else
                        f"{where}: expected a list of upstream plans, got {data!r}")
        return ()
    found = []
    for index, entry in enumerate(data):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = name if isinstance(name, str) and name else index
        up = _upstream(entry, f"{where}[{label}]", problems)
        if up is not None:
            found.append(up)
    names = [u.name for u in found]
    if len(set(names)) != len(names):
        problems.append(f"{where}: names must be unique, got {names}")
    return tuple(found)


def _settings_problems(study: StudyConfig) -> list[str]:
    """Every (task, setting) the runs use must have a shipped config (downstream_configs/<task>/<setting>.yaml)."""
    from ..tasks import TASKS, configs_dir

    def valid(task: str) -> set[str]:
        return {p.stem for p in (configs_dir() / task).glob("*.yaml")}

    found = []
    lacking = [t for t in study.tasks if study.setting not in valid(t)]
    if lacking:
        found.append(f"setting: {study.setting!r} has no config for {', '.join(lacking)}; valid settings: "
                     f"{sorted(set.intersection(*(valid(t) for t in lacking)))}")
    for up in study.upstreams:
        plan = up.finetune
        if plan is not None and plan.task in TASKS and (plan.setting or study.setting) not in valid(plan.task):
            found.append(f"upstreams[{up.name}].finetune.setting: {plan.setting or study.setting!r} has no config "
                         f"for {plan.task}; valid settings: {sorted(valid(plan.task))}")
    return found


def _study(data: Any, source: str, problems: list[str]) -> Optional[StudyConfig]:
    nested = {"data": _data, "upstreams": _upstreams, "tasks": _tasks, "seeds": _seeds, "curves": _curves,
              "executor": _executor}
    before = len(problems)
    if isinstance(data, dict) and "name" not in data:  # reported; a stand-in lets the rest be checked too
        problems.append(f"{source}: missing field(s) ['name']")
        data = {**data, "name": "(no name)"}
    study = _typed(StudyConfig, data, "", problems, nested=nested, label=source)
    if isinstance(data, dict) and "upstreams" not in data:
        problems.append("upstreams: the study names no upstream")
    if study is None:
        return None
    if not _DEVICE.fullmatch(study.device):
        problems.append(f"device: {study.device!r}; valid: cpu, cuda, cuda:N, mps")
    if study.curves:
        if study.curves.task not in study.tasks:
            problems.append(f"curves.task: {study.curves.task!r} is not among the study's tasks {list(study.tasks)}")
        if not any(u.baseline for u in study.upstreams):
            problems.append("curves: no upstream has baseline: true, and curves start from the base's experiment")
    for up in study.upstreams:
        keep = [a for a in up.prune.amounts if a in KEEP_AMOUNTS]
        if not keep:
            continue
        where = f"upstreams[{up.name}].prune.amounts"
        if not study.curves or not up.baseline:
            problems.append(f"{where}: {keep[0]!r} is read off the pruning curves, but the study has no curves "
                            f"(add a curves section)" if not study.curves else
                            f"{where}: {keep[0]!r} is read off the pruning curves, which need baseline: true")
            continue
        missing = [o for o in up.prune.objectives if o not in study.curves.objectives]
        if missing:
            problems.append(f"{where}: {keep[0]!r} is read off the curves, which lack objective(s) {missing}; "
                            f"add them to curves.objectives {list(study.curves.objectives)}")
    for up in study.upstreams:
        if up.mimic_select_by is not None and eval_head_task(study) not in study.tasks:
            problems.append(f"upstreams[{up.name}].mimic_select_by: the head is the base's experiment on "
                            f"{eval_head_task(study)}, which is not among the study's tasks {list(study.tasks)}")
    if "synthetic" not in study.data and isinstance(data.get("data", {}), dict):
        missing = [t for t in study.tasks if t not in study.data]
        if missing:
            problems.append(f"data: no corpus root for {missing}; give data.synthetic or a root per task")
    problems.extend(_settings_problems(study))
    if len(problems) == before:  # a plan that expands: its run ids must be distinct
        from .plan import expand

        ids = [run.run_id for run in expand(study)]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            problems.append(f"upstreams: these runs would be made twice: {twice}")
    return study
