"""One downstream experiment: train a head on an upstream variant and evaluate it on test, through s3prl's runner.

The calls of ``run_downstream.py`` run in a child process (a fresh s3prl, as users run it), with their output in a
log file beside the experiment directory. An experiment's two calls, training and then the test evaluation of the
checkpoint it chose, share one child (``python -m superb_redundancy.results.experiment``): importing s3prl and
loading the upstream took 4-5 s a call, a fifth of a demo head's run. Under torchrun each call has its own. The
study runner builds on this.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from superb_redundancy.data import tasks as task_defs
from superb_redundancy.results.metrics import MetricNotFound, read_test_metric

__all__ = ["Variant", "run_downstream", "train_and_evaluate", "resumable_states", "trained_checkpoint"]


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


#: how a child calls our run_downstream.py
_RUNNER = ("-m", "superb_redundancy.hub.runner")


def _gpus() -> int:
    return int(os.environ.get("SUPERB_REDUNDANCY_GPUS_PER_RUN", "1"))


def run_downstream(args: Sequence[str], log: Path) -> None:
    """One call of our run_downstream.py in a child process (a fresh s3prl, as users run it)."""
    torchrun = _gpus() > 1 and "train" in args
    if torchrun:  # s3prl's runner under torchrun: one process per GPU (DDP)
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={_gpus()}", *_RUNNER, *args]
        _child(command, log, signal.SIGTERM)
    else:
        _child([*_RUNNER, *args], log)


def _shown(args: Sequence[str]) -> str:
    """The log line of ``python ARGS``."""
    return "$ " + " ".join([sys.executable, *args]) + "\n"


#: the largest peak resident memory (KB) of the s3prl children since a caller reset it to 0 (a study's run state)
CHILD_PEAK_KB = [0]


def _child(args: Sequence[str], log: Path, signum: int = signal.SIGKILL, shown: bool = True) -> None:
    """``python ARGS`` in a child process writing into ``log`` (after its ``$`` line, unless the child writes
    its own: ``shown=False``); a failure raises with the log's last line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *args]
    # The child dies with this process (a killed study must leave nothing writing into the folder its restart
    # wipes): Linux's parent-death signal, SIGTERM for torchrun so that it stops its workers first. A study
    # run's folder lock (superb_redundancy.study.guard) goes to the child too: held while the child lives.
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def die_with_parent() -> None:  # in the child, between fork and exec
        prctl(1, int(signum))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    lock = os.environ.get("SUPERB_REDUNDANCY_RUN_LOCK_FD")
    with open(log, "a") as out:
        if shown:
            out.write(_shown(args))
            out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                   preexec_fn=die_with_parent if prctl else None,
                                   pass_fds=(int(lock),) if lock else ())
        try:  # wait4: the child's own peak memory (what a study records of the run)
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        CHILD_PEAK_KB[0] = max(CHILD_PEAK_KB[0], usage.ru_maxrss)
    if process.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"run_downstream.py exited with {process.returncode}: {tail[0]} (log: {log})")


def _evaluation(expdir: Path, task: str, device: str) -> list[str]:
    """The test evaluation of what training in ``expdir`` chose (dev-best, else the last states)."""
    split = "test-clean" if task == "asr" else "test"
    return ["-m", "evaluate", "-e", str(trained_checkpoint(expdir)), "-t", split, "--device", device]


def _states(expdir: Path) -> list[Path]:
    """An experiment's ``states-*.ckpt`` by step, the last last."""
    return sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[1]))


def trained_checkpoint(expdir: Path) -> Path:
    """What an experiment's training chose: ``dev-best.ckpt``, else its last states (MetricNotFound: neither)."""
    best = expdir / "dev-best.ckpt"
    if best.is_file():
        return best
    states = _states(expdir)
    if not states:
        raise MetricNotFound(f"{expdir}: training left no states-*.ckpt")
    return states[-1]


def resumable_states(expdir: Path) -> Optional[Path]:
    """The last ``states-*.ckpt`` of an interrupted experiment that loads whole (s3prl's ``-a`` resumes from the
    last one it finds, so a broken one, from a version that wrote checkpoints in place, is removed); None: none."""
    from superb_redundancy.core.files import load_checkpoint

    states = _states(expdir)
    while states:
        try:
            load_checkpoint(states[-1], "s3prl checkpoint", RuntimeError, safe_globals=[argparse.Namespace])
            return states[-1]
        except (RuntimeError, OSError, ValueError):
            states.pop().unlink()
    return None


def train_and_evaluate(variant: Variant, task: str, corpus_root: Path, expdir: Path, setting: str = "tiny",
                       device: str = "cpu", extra_overrides: Optional[dict] = None, resume: bool = False) -> float:
    """Train the downstream head on ``variant`` and evaluate on test; returns the test metric.

    A run whose metric is already there is not repeated. An interrupted run starts afresh, or with ``resume``
    continues through s3prl's own resume (``-a``) from its last checkpoint (s3prl restores the weights, optimizer,
    scheduler and step exactly, but restarts the epoch it was in and reseeds: the rest of the run is not bit for
    bit the uninterrupted one).
    """
    try:
        return read_test_metric(expdir, task).value
    except MetricNotFound:
        pass
    config = task_defs.config_path(task, setting)
    overrides = task_defs.format_overrides({**task_defs.data_overrides(task, corpus_root), **(extra_overrides or {})})
    log = expdir.parent / f"{expdir.name}.log"
    if resume and expdir.is_dir() and resumable_states(expdir) is not None:
        train = ["-m", "train", "-a", "-p", str(expdir), "--device", device, "-o", overrides]
    else:
        if expdir.exists():
            shutil.rmtree(expdir)
        log.unlink(missing_ok=True)
        train = ["-m", "train", *variant.args(), "-d", task, "-c", str(config), "-p", str(expdir), "--device",
                 device, "-o", overrides]
    if _gpus() > 1:
        run_downstream(train, log)
        run_downstream(_evaluation(expdir, task, device), log)
    else:
        _child(["-m", "superb_redundancy.results.experiment", task, *train], log, shown=False)
    return read_test_metric(expdir, task).value


def _wait_for_a_new_second(expdir: Path) -> None:
    """s3prl names a call's ``args_*.yaml`` and ``config_*.yaml`` by the second it starts: an evaluation starting
    in the second its training started would overwrite the training's (a short run takes less than a second)."""
    while (expdir / f"args_{datetime.now().strftime('%Y-%m-%d-%H-%M-%S')}.yaml").exists():
        time.sleep(0.05)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m superb_redundancy.results.experiment TASK TRAIN_ARGS...``: our run_downstream.py's training call,
    then, in the same process, its test evaluation of the checkpoint training chose. Each call is printed as a
    ``$ ...`` line before it, as the log of two separate calls would show it."""
    from superb_redundancy.hub import runner

    task, *train = list(sys.argv[1:] if argv is None else argv)
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-p", "--expdir", required=True)
    flags.add_argument("--device")
    known, _ = flags.parse_known_args(train)

    def call(args: list[str]) -> int:
        print(_shown([*_RUNNER, *args]), end="", flush=True)
        code = runner.main(args)
        sys.stdout.flush()
        return code

    code = call(train)
    if code:
        return code
    _wait_for_a_new_second(Path(known.expdir))
    return call(_evaluation(Path(known.expdir), task, known.device or "cpu"))


if __name__ == "__main__":
    sys.exit(main())
