"""One downstream experiment: train a head on an upstream variant and evaluate it on test, through s3prl's runner.

Each call of ``run_downstream.py`` runs in a child process (a fresh s3prl, as users run it), with its output in a
log file beside the experiment directory. The study runner builds on this.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.data import tasks as task_defs
from superb_redundancy.results.metrics import MetricNotFound, read_test_metric

__all__ = ["Variant", "run_downstream", "train_and_evaluate"]


@dataclass(frozen=True)
class Variant:
    label: str
    upstream: str
    ckpt: Optional[str] = None
    model_config: Optional[str] = None
    #: more run_downstream.py training arguments, e.g. ("-f",) to train the upstream too (step 2 of mimicking)
    extra_args: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = ["-u", self.upstream]
        if self.ckpt:
            args += ["-k", self.ckpt]
        if self.model_config:
            args += ["-g", self.model_config]
        return args + list(self.extra_args)


def run_downstream(args: Sequence[str], log: Path) -> None:
    """One call of our run_downstream.py in a child process (a fresh s3prl, as users run it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "superb_redundancy.hub.runner", *args]
    gpus = int(os.environ.get("SUPERB_REDUNDANCY_GPUS_PER_RUN", "1"))
    torchrun = gpus > 1 and "train" in args
    if torchrun:  # s3prl's runner under torchrun: one process per GPU (DDP)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                   "-m", "superb_redundancy.hub.runner", *args]
    # The child dies with this process (a killed study must leave nothing writing into the folder its restart
    # wipes): Linux's parent-death signal, SIGTERM for torchrun so that it stops its workers first. A study
    # run's folder lock (superb_redundancy.study.guard) goes to the child too: held while the child lives.
    parent, signum = os.getpid(), signal.SIGTERM if torchrun else signal.SIGKILL
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def die_with_parent() -> None:  # in the child, between fork and exec
        prctl(1, int(signum))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    lock = os.environ.get("SUPERB_REDUNDANCY_RUN_LOCK_FD")
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                preexec_fn=die_with_parent if prctl else None,
                                pass_fds=(int(lock),) if lock else ())
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"run_downstream.py exited with {result.returncode}: {tail[0]} (log: {log})")


def _checkpoint_to_evaluate(expdir: Path) -> Path:
    best = expdir / "dev-best.ckpt"
    if best.is_file():
        return best
    states = sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[1]))
    if not states:
        raise MetricNotFound(f"{expdir}: training left no states-*.ckpt")
    return states[-1]


def train_and_evaluate(variant: Variant, task: str, corpus_root: Path, expdir: Path, setting: str = "tiny",
                       device: str = "cpu", extra_overrides: Optional[dict] = None) -> float:
    """Train the downstream head on ``variant`` and evaluate on test; returns the test metric.

    A run whose metric is already there is not repeated; a run interrupted before its metric is started afresh.
    """
    try:
        return read_test_metric(expdir, task).value
    except MetricNotFound:
        pass
    if expdir.exists():
        shutil.rmtree(expdir)
    config = task_defs.config_path(task, setting)
    overrides = task_defs.format_overrides({**task_defs.data_overrides(task, corpus_root), **(extra_overrides or {})})
    log = expdir.parent / f"{expdir.name}.log"
    log.unlink(missing_ok=True)
    run_downstream(["-m", "train", *variant.args(), "-d", task, "-c", str(config), "-p", str(expdir),
                    "--device", device, "-o", overrides], log)
    split = "test-clean" if task == "asr" else "test"
    run_downstream(["-m", "evaluate", "-e", str(_checkpoint_to_evaluate(expdir)), "-t", split,
                    "--device", device], log)
    return read_test_metric(expdir, task).value
