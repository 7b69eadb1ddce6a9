"""A study is one YAML file: what to analyse, prune, mimic, evaluate and compare. Loaded into dataclasses.

Minimal example (the embedded default is ``studies/embedded_default.yaml``)::

    name: my-study
    workdir: work/my-study
    data:                      # synthetic: generated; or per-task roots of real corpora
      synthetic: {scale: 1.0}
    upstreams:
      - name: w2v2
        family: wav2vec2
        base: wav2vec2                   # s3prl hub name, checkpoint path, or "tiny" (a random tiny model)
        finetune: {task: speech_commands, steps: 200}   # optional: fine-tune on KS first (the paper did)
        similarity: {pool: mean, limit: 400}
        prune: {objectives: [bi, knn-bi], amounts: [0.25]}
        mimic: [{kind: linear, n_layers: 1, z: 32}]
    tasks: [speech_commands, emotion]
    setting: tiny              # downstream_configs/<task>/<setting>.yaml
    seeds: [1337]
    curves: {task: speech_commands, objectives: [forward, backward, bi, knn-bi], repeats: 5}
    executor: {kind: local}    # local | slurm (submitit)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config_io import from_mapping, read_yaml

__all__ = ["StudyConfig", "UpstreamPlan", "ExecutorConfig", "CurvesPlan", "StudyConfigError"]


class StudyConfigError(ValueError):
    """A study file that cannot run; the message names the field, the bad value and what is valid."""


def _build(cls, data: Any, where: str):
    return from_mapping(cls, {} if data is None else data, where, StudyConfigError)


@dataclass
class UpstreamPlan:
    name: str
    family: str = "wav2vec2"
    base: str = "tiny"
    finetune: Optional[dict] = None  # {task, steps, setting}
    similarity: dict = field(default_factory=dict)  # SimilaritySettings fields + data/limit
    prune: dict = field(default_factory=dict)  # {objectives: [...], amounts: [...], iterative: false}
    mimic: list = field(default_factory=list)  # MimicConfig dicts
    baseline: bool = True  # evaluate the unpruned base too


@dataclass
class CurvesPlan:
    task: str = "speech_commands"
    objectives: list = field(default_factory=lambda: ["forward", "backward", "bi", "knn-bi"])
    repeats: int = 5
    subset: float = 1.0


@dataclass
class ExecutorConfig:
    kind: str = "local"  # local | slurm
    workers: int = 1  # local: parallel processes
    folder: Optional[str] = None  # submitit logs (default <workdir>/submitit)
    cluster: Optional[str] = None  # submitit: None = auto (slurm when available), "local", "debug"
    slurm: dict = field(default_factory=dict)  # e.g. {slurm_partition: gpu, gpus_per_node: 1, timeout_min: 600}
    gpus_per_run: int = 0  # > 1: s3prl's runner under torchrun


@dataclass
class StudyConfig:
    name: str
    workdir: str = "work/study"
    data: dict = field(default_factory=lambda: {"synthetic": {"scale": 1.0}})
    upstreams: list = field(default_factory=list)
    tasks: list = field(default_factory=lambda: ["speech_commands"])
    setting: str = "tiny"
    seeds: list = field(default_factory=lambda: [1337])
    device: str = "cpu"
    curves: Optional[CurvesPlan] = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    leaderboard: str = "leaderboard"

    def __post_init__(self):
        from ..bundles import FAMILIES
        from ..pruning_order import OBJECTIVES
        from ..tasks import TASKS

        self.upstreams = [u if isinstance(u, UpstreamPlan) else _build(UpstreamPlan, u, f"upstreams[{i}]")
                          for i, u in enumerate(self.upstreams or [])]
        if isinstance(self.curves, dict):
            self.curves = _build(CurvesPlan, self.curves, "curves")
        if isinstance(self.executor, dict):
            self.executor = _build(ExecutorConfig, self.executor, "executor")
        if not self.upstreams:
            raise StudyConfigError("upstreams: the study names no upstream")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise StudyConfigError(f"upstreams: names must be unique, got {names}")
        for u in self.upstreams:
            if u.family not in FAMILIES:
                raise StudyConfigError(f"upstreams[{u.name}].family: {u.family!r}; valid: {sorted(FAMILIES)}")
            for objective in u.prune.get("objectives", []):
                if objective not in OBJECTIVES:
                    raise StudyConfigError(
                        f"upstreams[{u.name}].prune.objectives: {objective!r}; valid: {sorted(OBJECTIVES)}")
        for task in self.tasks:
            if task not in TASKS:
                raise StudyConfigError(f"tasks: {task!r}; valid: {sorted(TASKS)}")
        if self.curves and self.curves.task not in self.tasks:
            raise StudyConfigError(f"curves.task: {self.curves.task!r} is not among the study's tasks {self.tasks}")
        if self.executor.kind not in ("local", "slurm"):
            raise StudyConfigError(f"executor.kind: {self.executor.kind!r}; valid: ['local', 'slurm']")
        if not self.seeds or not all(isinstance(s, int) for s in self.seeds):
            raise StudyConfigError(f"seeds: a list of ints, got {self.seeds!r}")
        if "synthetic" not in self.data and not all(t in self.data for t in self.tasks):
            missing = [t for t in self.tasks if t not in self.data]
            raise StudyConfigError(f"data: no corpus root for {missing}; give data.synthetic or a root per task")

    def problems(self) -> list[str]:
        """What would make runs fail that a look at the disk can tell now, one line each (empty: none)."""
        found = []
        for task, roots in sorted(self.data.items()):
            if task == "synthetic" or not isinstance(roots, dict):
                continue
            for key, value in roots.items():
                if not Path(str(value)).expanduser().exists():
                    found.append(f"data.{task}.{key}: {value} not found")
        return found

    @classmethod
    def from_yaml(cls, path: str | Path) -> "StudyConfig":
        return _build(cls, read_yaml(path, "study file", StudyConfigError), str(path))

    def to_dict(self) -> dict:
        return asdict(self)
