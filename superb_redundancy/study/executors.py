"""Where a stage's runs execute: in this process, in a local process pool, or as Slurm jobs via submitit.

Every executor calls :func:`superb_redundancy.study.state.execute_and_record` for each run (the worker
records the run's state itself, so a job that dies leaves ``running`` behind and is rerun next time) and
yields ``(run, state)`` as runs finish. submitit's own ``local`` cluster runs the same path in subprocesses
(the tests use it); on a cluster, ``executor.slurm`` holds submitit's ``slurm_*`` / ``gpus_per_node`` /
``timeout_min`` parameters. Jobs outlive a killed runner there (they run elsewhere); each holds its run
folder's lock, so a later call leaves a folder alone while its job still runs.
"""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import Run
from superb_redundancy.study.state import execute_and_record

__all__ = ["LocalExecutor", "SubmititExecutor", "make_executor"]


def _execute(run: Run, study: StudyConfig):
    return execute_and_record(run, study)


def _worker_init(parent: int, threads: int) -> None:
    """A pool worker: dies with the runner, and shares the cores with the other workers. Without the thread
    cap, N workers each running torch's default of one thread per core oversubscribe the machine, and torch's
    spinning thread pools then run many times slower than one worker alone."""
    from superb_redundancy.study.guard import die_with_parent

    die_with_parent(parent)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read by the s3prl child process at its start
        os.environ[name] = str(threads)
    import torch  # a forked worker inherits the runner's torch, which read the variables already

    torch.set_num_threads(threads)


class LocalExecutor:
    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ValueError(f"executor.workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, runs: Sequence[Run], study: StudyConfig) -> Iterator[tuple[Run, dict]]:
        # no more workers than runs: a run alone in its stage (step 1 of the mimickers) gets every core
        workers = min(self.workers, len(runs))
        if workers <= 1:
            for run in runs:
                yield run, _execute(run, study)
            return
        # the workers die with this process: a killed runner leaves none behind (nor, through them, s3prl's child)
        threads = max(1, (os.cpu_count() or 1) // workers)
        with concurrent.futures.ProcessPoolExecutor(workers, initializer=_worker_init,
                                                    initargs=(os.getpid(), threads)) as pool:
            futures = {pool.submit(_execute, run, study): run for run in runs}
            for future in concurrent.futures.as_completed(futures):
                run = futures[future]
                try:
                    yield run, future.result()
                except Exception as error:  # the worker process itself died
                    yield run, {"status": "failed", "error": f"worker died: {type(error).__name__}: {error}"}


class SubmititExecutor:
    def __init__(self, folder: Path, cluster: Optional[str] = None, parameters: Optional[dict] = None):
        import submitit

        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        self.executor.update_parameters(**(parameters or {}))

    def map(self, runs: Sequence[Run], study: StudyConfig) -> Iterator[tuple[Run, dict]]:
        jobs = [(run, self.executor.submit(_execute, run, study)) for run in runs]
        for run, job in jobs:
            try:
                yield run, job.result()
            except Exception as error:  # the job failed outside execute_and_record (killed, out of memory)
                yield run, {"status": "failed", "error": f"job {job.job_id} failed: {str(error).splitlines()[0]}"}


def make_executor(study: StudyConfig, workdir: Path, override: Optional[str] = None):
    """The executor a study asks for (``override``: "local" or "slurm" from the command line)."""
    config = study.executor
    kind = override or config.kind
    if kind == "local":
        return LocalExecutor(config.workers)
    if kind == "slurm":
        folder = Path(config.folder) if config.folder else workdir / "submitit"
        parameters = dict(config.slurm)
        parameters.setdefault("timeout_min", 600)
        if config.gpus_per_run:
            parameters.setdefault("gpus_per_node", config.gpus_per_run)
        return SubmititExecutor(folder, cluster=config.cluster, parameters=parameters)
    raise ValueError(f"unknown executor {kind!r}; valid: ['local', 'slurm']")
