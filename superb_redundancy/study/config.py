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
    leaderboard: leaderboard   # or {path: leaderboard, rounds: 30, max_passes: 32}: how variants are timed

Every section is a frozen dataclass checked on load: :meth:`StudyConfig.load` collects every problem of a file
(unknown or missing fields, wrong types, bad values, duplicates, missing configs), one line each, instead of
stopping at the first; :meth:`StudyConfig.problems` adds what only the disk can tell (data roots, checkpoints,
prune amounts against the base model's layer count). The per-upstream plans are
:mod:`superb_redundancy.study.upstream_plan`; the checked loading of a section is :mod:`superb_redundancy.study.sections`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from superb_redundancy.study.overrides import read_study
from superb_redundancy.study.sections import StudyConfigError, is_int, typed, unique
from superb_redundancy.study.upstream_plan import (KEEP_AMOUNTS, UpstreamPlan, check_objectives, upstream_disk_problems,
                                                   upstream_plan)

__all__ = ["StudyConfig", "ExecutorConfig", "CurvesPlan", "LeaderboardPlan", "SyntheticData", "StudyConfigError",
           "audio_task", "eval_head_task", "KINDS", "check_parameters"]

_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
#: the kinds of run a study makes (``executor.resources`` is keyed by them)
KINDS = ("data", "finetune", "similarity", "prune", "teacher", "mimic", "heal", "downstream", "curves")
#: submitit's AutoExecutor names common to its clusters (the Slurm-only ones are ``slurm_<sbatch option>``)
_GENERIC = ("timeout_min", "mem_gb", "nodes", "gpus_per_node", "cpus_per_task", "tasks_per_node", "name",
            "stderr_to_stdout")


# ------------------------------------------------------------------------------------------------ sections
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
    slurm: dict = field(default_factory=dict)  # every run's submitit parameters, e.g. {slurm_partition: gpu}
    # per run kind (data, prune, ..., downstream) or downstream/<task>: submitit parameters over ``slurm``
    resources: dict = field(default_factory=dict)
    margin: float = 2.0  # time and memory asked for: the run's cost estimate times this (study/resources.py)
    max_jobs: Optional[int] = None  # Slurm: jobs in flight at a time (None: no cap)
    max_requeues: int = 10  # Slurm: how often a run that reaches its time limit is requeued to continue
    gpus_per_run: int = 0  # > 1: s3prl's runner under torchrun


@dataclass(frozen=True)
class LeaderboardPlan:
    """``leaderboard:`` where the study's leaderboard is written and how its variants are timed (a string: the
    path alone). Every variant is timed in ``rounds`` interleaved rounds, each timing the mean of 1 to
    ``max_passes`` forward passes (doubled until variants whose MACs differ by more than 10% separate)."""

    path: str = "leaderboard"
    device: Optional[str] = None  # None: the study's device
    where: Optional[str] = None  # job (a Slurm job of its own) | here (the runner's process); None: job on Slurm
    retime: bool = False  # time every variant again (else the profiles cached in <workdir>/profiles are reused)
    rounds: int = 30
    max_passes: int = 32


@dataclass(frozen=True)
class SyntheticData:
    """``data.synthetic``: the arguments of :func:`superb_redundancy.data.corpus.generate`."""

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
    leaderboard: LeaderboardPlan = field(default_factory=LeaderboardPlan)

    @classmethod
    def load(cls, path: str | Path,
             overrides: Sequence[str | Path] = ()) -> tuple[Optional["StudyConfig"], list[str]]:
        """The study and every problem found in the file (one line each); None when it cannot be built. The file is
        read with what it ``extends:`` and the ``overrides`` merged over it (:mod:`superb_redundancy.study.overrides`)."""
        try:
            data = read_study(path, overrides)
        except StudyConfigError as error:
            return None, error.problems
        problems: list[str] = []
        study = _study(data, str(path), problems)
        return study, problems

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str | Path] = ()) -> "StudyConfig":
        study, problems = cls.load(path, overrides)
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
            found.extend(upstream_disk_problems(up))
        board = str(self.leaderboard.device or self.device)
        if leaderboard_where(self) == "here" and _DEVICE.fullmatch(board) and board.startswith("cuda"):
            from superb_redundancy.study.devices import local_gpus

            gpus = local_gpus(board) or 0
            if gpus <= (int(board.split(":")[1]) if ":" in board else 0):
                found.append(f"leaderboard.device: {board}, but this machine has {gpus} GPU(s) to time the variants "
                             "on; set leaderboard.device: cpu, or leaderboard.where: job (built on the cluster)")
        if self.executor.kind == "local" and _DEVICE.fullmatch(str(self.device)):
            from superb_redundancy.study.devices import check_workers

            try:
                check_workers(self.executor.workers, self.device)
            except ValueError as error:
                found.append(str(error))
        return found

    def to_dict(self) -> dict:
        return asdict(self)


def audio_task(study: "StudyConfig", up: UpstreamPlan) -> str:
    """The task whose official splits an upstream's analysis reads (dev: similarity and pruning orders; train: step 1
    of mimicking and healing): its ``audio_task``, else the task it is fine-tuned on, else the curves', else
    keyword spotting."""
    if up.audio_task:
        return up.audio_task
    if up.finetune:
        return up.finetune.task
    return study.curves.task if study.curves else "speech_commands"


def eval_head_task(study: "StudyConfig") -> str:
    """The task whose experiment on the base is the mimickers' eval head: the curves' (keyword spotting by
    default; the head evaluator reads KS, SID and emotion experiments)."""
    return study.curves.task if study.curves else "speech_commands"


# ------------------------------------------------------------------------------------------------ building
def _curves(data, where: str, problems: list[str]) -> Optional[CurvesPlan]:
    if data is None:  # `curves: null`: none
        return None
    curves = typed(CurvesPlan, data, where, problems)
    if curves is None:
        return None
    check_objectives(curves.objectives, f"{where}.objectives", problems)
    if not curves.objectives:
        problems.append(f"{where}.objectives: empty")
    if curves.repeats < 1:
        problems.append(f"{where}.repeats: {curves.repeats}; must be >= 1")
    if not 0 < curves.subset <= 1:
        problems.append(f"{where}.subset: {curves.subset}; a fraction in (0, 1]")
    return curves


def _executor(data, where: str, problems: list[str]) -> ExecutorConfig:
    executor = typed(ExecutorConfig, data, where, problems) or ExecutorConfig()
    if executor.kind not in ("local", "slurm"):
        problems.append(f"{where}.kind: {executor.kind!r}; valid: ['local', 'slurm']")
    if executor.workers < 1:
        problems.append(f"{where}.workers: {executor.workers}; must be >= 1")
    if executor.gpus_per_run < 0:
        problems.append(f"{where}.gpus_per_run: {executor.gpus_per_run}; must be >= 0")
    if executor.cluster not in (None, "slurm", "local", "debug"):
        problems.append(f"{where}.cluster: {executor.cluster!r}; valid: null (auto), slurm, local, debug")
    if executor.margin < 1:
        problems.append(f"{where}.margin: {executor.margin}; must be >= 1 (the estimate times the margin)")
    if executor.max_jobs is not None and executor.max_jobs < 1:
        problems.append(f"{where}.max_jobs: {executor.max_jobs}; must be >= 1 (or null: no cap)")
    if executor.max_requeues < 0:
        problems.append(f"{where}.max_requeues: {executor.max_requeues}; must be >= 0")
    check_parameters(executor.slurm, f"{where}.slurm", problems)
    for key, value in executor.resources.items():
        check_parameters(value, f"{where}.resources.{key}", problems, kind=key)
    return executor


def check_parameters(parameters, where: str, problems: list[str], kind: Optional[str] = None) -> None:
    """One line per problem: not a mapping, an unknown run kind (``kind``), an unknown submitit parameter."""
    if kind is not None:
        task_kind, _, task = kind.partition("/")
        if (task_kind not in KINDS and kind != "leaderboard") or (task and task_kind != "downstream"):
            problems.append(f"{where}: unknown run kind {kind!r}; valid: {list(KINDS)}, downstream/<task> or "
                            "leaderboard")
    if not isinstance(parameters, dict):
        problems.append(f"{where}: {parameters!r}; a mapping of submitit parameters")
        return
    from submitit.slurm.slurm import SlurmExecutor

    valid = set(_GENERIC) | {f"slurm_{name}" for name in SlurmExecutor._valid_parameters()}
    unknown = sorted(set(parameters) - valid)
    if unknown:
        problems.append(f"{where}: unknown submitit parameter(s) {unknown}; valid: {sorted(_GENERIC)} or "
                        "slurm_<name> for submitit's Slurm parameters (e.g. slurm_partition)")


def _leaderboard(data, where: str, problems: list[str]) -> LeaderboardPlan:
    plan = LeaderboardPlan(path=data) if isinstance(data, str) else \
        typed(LeaderboardPlan, data, where, problems) or LeaderboardPlan()
    for name in ("rounds", "max_passes"):
        if getattr(plan, name) < 1:
            problems.append(f"{where}.{name}: {getattr(plan, name)}; must be >= 1")
    if plan.device is not None and not _DEVICE.fullmatch(plan.device):
        problems.append(f"{where}.device: {plan.device!r}; valid: cpu, cuda, cuda:N, mps")
    if plan.where not in (None, "job", "here"):
        problems.append(f"{where}.where: {plan.where!r}; valid: job, here (null: job on Slurm, else here)")
    return plan


def leaderboard_where(study: "StudyConfig", executor: Optional[str] = None) -> str:
    """Where the leaderboard is built: ``job`` or ``here`` (``executor``: the command line's override)."""
    if study.leaderboard.where:
        return study.leaderboard.where
    return "job" if (executor or study.executor.kind) == "slurm" else "here"


def _data(data, where: str, problems: list[str]) -> dict:
    from superb_redundancy.data.tasks import TASKS

    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping (synthetic: {{...}} and/or a datarc mapping per task), "
                        f"got {data!r}")
        return {}
    kept = {}
    for key, value in data.items():
        if key == "synthetic":
            synthetic = typed(SyntheticData, value, f"{where}.synthetic", problems)
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
    from superb_redundancy.data.tasks import TASKS

    if not isinstance(data, list) or not data or not all(isinstance(t, str) for t in data):
        problems.append(f"{where}: expected a non-empty list of tasks, got {data!r}; valid: {sorted(TASKS)}")
        return ()
    for task in data:
        if task not in TASKS:
            problems.append(f"{where}: {task!r}; valid: {sorted(TASKS)}")
    unique(data, where, problems)
    return tuple(t for t in dict.fromkeys(data) if t in TASKS)


def _seeds(data, where: str, problems: list[str]) -> tuple[int, ...]:
    if not isinstance(data, list) or not data or not all(is_int(s) for s in data):
        problems.append(f"{where}: a non-empty list of ints, got {data!r}")
        return (1337,)
    unique(data, where, problems)
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
        up = upstream_plan(entry, f"{where}[{label}]", problems)
        if up is not None:
            found.append(up)
    names = [u.name for u in found]
    if len(set(names)) != len(names):
        problems.append(f"{where}: names must be unique, got {names}")
    return tuple(found)


def _settings_problems(study: StudyConfig) -> list[str]:
    """Every (task, setting) the runs use must have a shipped config (downstream_configs/<task>/<setting>.yaml)."""
    from superb_redundancy.data.tasks import TASKS, configs_dir

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


def _curves_problems(study: StudyConfig) -> list[str]:
    """The curves against what reads them: their task, the base they start from, ``keep95``-like amounts."""
    problems = []
    if study.curves:
        from superb_redundancy.pruning.curves.settings import SUPPORTED_TASKS

        if study.curves.task not in study.tasks:
            problems.append(f"curves.task: {study.curves.task!r} is not among the study's tasks {list(study.tasks)}")
        if study.curves.task not in SUPPORTED_TASKS:
            problems.append(f"curves.task: {study.curves.task!r} has no accuracy to draw curves of; valid: "
                            f"{', '.join(SUPPORTED_TASKS)}")
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
    return problems


def _study(data: Any, source: str, problems: list[str]) -> Optional[StudyConfig]:
    nested = {"data": _data, "upstreams": _upstreams, "tasks": _tasks, "seeds": _seeds, "curves": _curves,
              "executor": _executor, "leaderboard": _leaderboard}
    if isinstance(data, dict) and "name" not in data:  # reported; a stand-in lets the rest be checked too
        problems.append(f"{source}: missing field(s) ['name']")
        data = {**data, "name": "(no name)"}
    study = typed(StudyConfig, data, "", problems, nested=nested, label=source)
    if isinstance(data, dict) and "upstreams" not in data:
        problems.append("upstreams: the study names no upstream")
    if study is None:
        return None
    if not _DEVICE.fullmatch(study.device):
        problems.append(f"device: {study.device!r}; valid: cpu, cuda, cuda:N, mps")
    problems.extend(_curves_problems(study))
    for up in study.upstreams:
        if up.mimic_select_by is not None and eval_head_task(study) not in study.tasks:
            problems.append(f"upstreams[{up.name}].mimic_select_by: the head is the base's experiment on "
                            f"{eval_head_task(study)}, which is not among the study's tasks {list(study.tasks)}")
    if "synthetic" not in study.data and isinstance(data.get("data", {}), dict):
        missing = [t for t in study.tasks if t not in study.data]
        if missing:
            problems.append(f"data: no corpus root for {missing}; give data.synthetic or a root per task")
    problems.extend(_settings_problems(study))
    if "synthetic" not in study.data:
        for up in study.upstreams:
            if audio_task(study, up) not in study.data:
                problems.append(f"upstreams[{up.name}]: its analysis reads the splits of {audio_task(study, up)}, "
                                f"which has no corpus root; give data.{audio_task(study, up)} (or set audio_task)")
    return study
