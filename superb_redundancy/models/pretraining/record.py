"""The training record of a pretraining run: what it stores (format ``superb_redundancy.pretrain/1``, in the
checkpoint and, whole, in ``<checkpoint>.train.json``), the command that reruns it, and reading it back."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from superb_redundancy.core.files import load_checkpoint, sha256_file
from superb_redundancy.models.pretraining.objective import DIVERSITY_WEIGHT, FEATURE_PENALTY_WEIGHT, model_config
from superb_redundancy.models.pretraining.settings import PretrainError, PretrainSettings

__all__ = ["RECORD_KEY", "RECORD_FORMAT", "LOG_COLUMNS", "PretrainResult", "training_record", "full_record",
           "command_line", "format_record", "settings_from_record", "load_record", "record_path"]

# not "superb_redundancy": that key marks pruned and mimic artifacts, and a pretrained model is a stock checkpoint
RECORD_KEY = "pretraining"
RECORD_FORMAT = "superb_redundancy.pretrain/1"
#: the columns of the per-step log
LOG_COLUMNS = ("loss", "contrastive", "diversity", "features_pen", "accuracy", "code_perplexity",
               "prob_perplexity", "temp", "lr", "grad_norm", "masked_frames", "crop_samples")


@dataclass
class PretrainResult:
    checkpoint: Path
    record_path: Path
    record: dict

    @property
    def losses(self) -> list[float]:
        return self.record["log"]["loss"]


def training_record(settings: PretrainSettings, output_name: str, stop_after: Optional[int], steps: int,
                    data: dict, parameters: int, log: dict) -> dict:
    """The record stored in the checkpoint: settings, command, seeds, data, model, versions, the per-step
    ``log`` and its summary; nothing of the wall clock (so the checkpoint's bytes depend on the settings and data)."""
    window = min(50, steps)
    return {
        "format": RECORD_FORMAT,
        "objective": "wav2vec 2.0 (fairseq's wav2vec criterion on s3prl's Wav2Vec2Model): InfoNCE over masked "
                     f"frames + {DIVERSITY_WEIGHT:g} * codebook diversity + {FEATURE_PENALTY_WEIGHT:g} * feature "
                     "penalty; losses in nats per masked frame",
        "settings": {**asdict(settings), "data": list(settings.data)},
        "command": command_line(settings, output_name, stop_after),
        "seeds": {"python": settings.seed, "numpy": settings.seed, "torch": settings.seed,
                  "init": settings.seed, "data": [settings.seed, 1]},
        "threads": settings.threads,
        "deterministic_algorithms": True,
        "steps_run": steps,
        "data": data,
        "model": {"family": "wav2vec2", "hub_name": "wav2vec2_local", "config": asdict(model_config(settings)),
                  "parameters": parameters,
                  "latent_temp": settings.temperature(), "warmup": settings.warmup_steps()},
        "versions": _versions(),
        "log": log,
        "final": {"step": steps, "loss": log["loss"][-1], "accuracy": log["accuracy"][-1],
                  f"loss_mean_last_{window}": float(np.mean(log["loss"][-window:])),
                  f"accuracy_mean_last_{window}": float(np.mean(log["accuracy"][-window:])),
                  f"loss_mean_first_{window}": float(np.mean(log["loss"][:window])),
                  f"accuracy_mean_first_{window}": float(np.mean(log["accuracy"][:window]))},
    }


def full_record(record: dict, argv: Optional[Sequence[str]], checkpoint: Path, wall: float,
                seconds_per_step: float, started: float) -> dict:
    """The whole record, for ``<checkpoint>.train.json``: ``record`` plus the command line, the checkpoint's
    path and sha256, times and the machine."""
    return dict(record, argv=list(sys.argv if argv is None else argv), checkpoint=str(checkpoint),
                checkpoint_sha256=sha256_file(checkpoint), wall_seconds=round(wall, 3),
                seconds_per_step=round(seconds_per_step, 4),
                started=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                machine={"platform": platform.platform(), "processor": platform.machine(),
                         "cpu_count": os.cpu_count()})


def _versions() -> dict:
    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {"torch": str(torch.__version__), "numpy": str(np.__version__), "s3prl": v("s3prl"),
            "superb_redundancy": v("superb-redundancy"), "python": platform.python_version()}


def command_line(settings: PretrainSettings, output: str | os.PathLike, stop_after: Optional[int] = None) -> str:
    """The ``superb-redundancy pretrain`` command that reruns ``settings`` into ``output``."""
    defaults = PretrainSettings()
    args = ["superb-redundancy", "pretrain"]
    args += ["--corpus", str(settings.corpus)] if settings.corpus else ["--data", *map(str, settings.data)]
    for f in dataclasses.fields(PretrainSettings):
        if f.name in ("corpus", "data", "crop_min", "crop_max", "layer_norm_first"):
            continue
        value = getattr(settings, f.name)
        if f.name in ("steps", "seed", "threads") or value != getattr(defaults, f.name):
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    args += [] if settings.layer_norm_first else ["--post-ln"]
    args += ["--crop-seconds", repr(settings.crop_min), repr(settings.crop_max), "--output", str(output)]
    if stop_after is not None:
        args += ["--stop-after", str(stop_after)]
    return shlex.join(args)


def format_record(record: dict) -> str:
    """The record as indented JSON, each column of the per-step log on one line (a few hundred kB, not MB)."""
    head = json.dumps({k: v for k, v in record.items() if k != "log"}, indent=1)
    columns = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record["log"].items())
    return f'{head[:-2]},\n "log": {{\n{columns}\n }}\n}}\n'


def settings_from_record(record: dict, **changes) -> PretrainSettings:
    """The settings a record was trained with (``changes`` replace fields, e.g. ``corpus=`` another copy)."""
    values = dict(record["settings"])
    values["data"] = tuple(values.get("data") or ())
    values.update(changes)
    return PretrainSettings(**values)


def load_record(path: str | os.PathLike) -> dict:
    """A training record: ``<ckpt>.train.json``, or the ``superb_redundancy`` entry of a checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainError(f"training record not found: {path}")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    checkpoint = load_checkpoint(path, "checkpoint", PretrainError, mmap=True)
    if not isinstance(checkpoint, dict) or RECORD_KEY not in checkpoint:
        raise PretrainError(f"{path} holds no training record (no {RECORD_KEY!r} entry)")
    return checkpoint[RECORD_KEY]


def record_path(checkpoint: str | os.PathLike) -> Path:
    """``<checkpoint>.train.json`` beside the checkpoint (``x.pt`` -> ``x.train.json``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".train.json") if checkpoint.suffix != ".pt" else \
        checkpoint.with_suffix(".train.json")
