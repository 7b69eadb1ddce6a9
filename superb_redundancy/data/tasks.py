"""The SUPERB tasks we run through s3prl: their configs, where their data goes, how to point them at it, and
what they are scored by. :data:`TASKS` is the one table of per-task facts: the metric readers
(:mod:`superb_redundancy.results.metrics`), the run records, the leaderboard's chance levels and the synthetic
corpus (:mod:`superb_redundancy.data.corpus.generate`) all read it.

``-o`` overrides are s3prl's own mechanism (``-o "config.a.b=v,,config.c=w"``); :func:`data_overrides` builds
them from a corpus root laid out like the synthetic one (``superb_redundancy.data.corpus.generate``) or any real
corpus arranged the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from superb_redundancy.core.errors import UserError

__all__ = ["Task", "TASKS", "get_task", "config_path", "load_config", "data_overrides", "format_overrides"]


@dataclass(frozen=True)
class Task:
    name: str  # s3prl's -d name
    title: str
    #: datarc key -> path relative to the corpus root (the synthetic corpus' layout); ``@path``: a file shipped in
    #: downstream_configs/
    data_keys: tuple[tuple[str, str], ...]
    #: the test metric's name in run records and tables: ``acc`` (in [0, 1]) or ``wer`` (in percent)
    metric: str
    higher_is_better: bool
    #: the synthetic corpus task that writes this task's data (superb_redundancy.data.corpus.generate)
    corpus_task: str = ""
    #: classes of a fixed label set (uniform chance 1/K); None where the test set decides (SID: its speakers; ASR)
    num_classes: Optional[int] = None
    #: the longest clip the task's corpus holds (Speech Commands: 1 s); a longer one in a split a study stage reads
    #: is left out and counted (:func:`superb_redundancy.data.splits.task_clips`). None: no such bound
    max_seconds: Optional[float] = None

    def __post_init__(self):
        if not self.corpus_task:
            object.__setattr__(self, "corpus_task", self.name)

    @property
    def corpus_keys(self) -> tuple[tuple[str, str], ...]:
        """The :attr:`data_keys` whose paths lie under the corpus root (not the files shipped with the configs)."""
        return tuple((key, relative) for key, relative in self.data_keys if not relative.startswith("@"))


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("speech_commands", "KS", (("speech_commands_root", "speech_commands_v0.01"),
                                       ("speech_commands_test_root", "speech_commands_test_set_v0.01")),
             "acc", True, num_classes=12, max_seconds=1.0),
        # the paper's task (superb_redundancy.downstreams.speech_commands_35): v0.02, 35 words, no silence
        Task("speech_commands_35", "KS-35", (("speech_commands_root", "speech_commands_v0.02"),), "acc", True,
             corpus_task="speech_commands", num_classes=35, max_seconds=1.0),
        Task("voxceleb1", "SID", (("file_path", "voxceleb1"), ("meta_data", "voxceleb1/iden_split.txt")),
             "acc", True),
        Task("emotion", "ER", (("root", "IEMOCAP"), ("meta_data", "IEMOCAP/meta_data")), "acc", True,
             num_classes=4),
        Task("asr", "ASR", (("libri_root", "LibriSpeech"), ("bucket_file", "len_for_bucket"),
                            ("dict_path", "@asr/char.dict")), "wer", False),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; valid: {sorted(TASKS)}") from None


def configs_dir() -> Path:
    """The shipped downstream_configs/ folder (installed as superb_redundancy.downstream_configs)."""
    return Path(str(resources.files("superb_redundancy.downstream_configs")))


def config_path(task: str, setting: str = "tiny") -> Path:
    """``downstream_configs/<task>/<setting>.yaml``: ``superb`` (the SUPERB settings) or ``tiny`` (CPU smoke runs)."""
    get_task(task)
    path = configs_dir() / task / f"{setting}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (configs_dir() / task).glob("*.yaml"))
        raise UserError(f"no {setting!r} config for {task}; valid settings: {valid}")
    return path


def load_config(task: str, setting: str = "tiny") -> dict:
    """A downstream config (``downstream_configs/<task>/<setting>.yaml``) as parsed YAML."""
    import yaml

    return yaml.safe_load(config_path(task, setting).read_text())


def data_overrides(task: str, corpus_root: str | Path) -> dict[str, str]:
    """``config.downstream_expert.datarc.<key>`` -> absolute path, for a corpus laid out like the synthetic one."""
    root = Path(corpus_root).resolve()
    overrides = {}
    for key, relative in get_task(task).data_keys:
        path = configs_dir() / relative[1:] if relative.startswith("@") else root / relative
        overrides[f"config.downstream_expert.datarc.{key}"] = str(path)
    return overrides


def format_overrides(overrides: dict[str, object]) -> str:
    """s3prl's ``-o`` syntax; values must not contain ``=`` or ``,,``."""
    for key, value in overrides.items():
        if "=" in str(value) or ",," in str(value):
            raise UserError(f"override {key}={value!r}: s3prl's -o cannot carry '=' or ',,' in a value")
    return ",,".join(f"{key}={value}" for key, value in overrides.items())
