"""Where a study's runs execute: in this process, in a local process pool, or as Slurm jobs via submitit.

Every executor calls :func:`superb_redundancy.study.state.execute_and_record` for each run (the worker
records the run's state itself, so a job that dies leaves ``running`` behind and is rerun next time). The runner
(:mod:`superb_redundancy.study.runner`) hands a run over as soon as every run it needs is done: ``submit`` gives
a handle, ``wait`` the handles that finished, ``outcome`` a finished handle's state; ``capacity`` is how many
runs at a time (None: no limit), and ``run_alone`` runs one with every core when nothing else could run.
submitit's own ``local`` cluster runs the same path in subprocesses (the tests use it); on a cluster, each run
asks for its own resources (:mod:`superb_redundancy.study.resources`: its cost estimate, ``executor.slurm``,
``executor.resources`` per kind) and is requeued to continue when it reaches its time limit (:class:`RunJob`). Jobs outlive
a killed runner there (they run elsewhere); each holds its run folder's lock, so a later call leaves a folder
alone while its job still runs.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from submitit.helpers import Checkpointable
from submitit.slurm.slurm import SlurmJob

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.devices import check_workers, local_gpus, worker_gpus
from superb_redundancy.study.plan import Run
from superb_redundancy.study.state import execute_and_record
from superb_redundancy.core.errors import UserError

__all__ = ["LocalExecutor", "SubmititExecutor", "RunJob", "Refused", "make_executor"]


def _execute(run: Run, study: StudyConfig):
    return execute_and_record(run, study)


def _worker_init(parent: int, threads: int, gpus=None) -> None:
    """A pool worker: dies with the runner, and shares the cores with the other workers. Without the thread
    cap, N workers each running torch's default of one thread per core oversubscribe the machine, and torch's
    spinning thread pools then run many times slower than one worker alone. ``gpus``: a queue of GPU indices, one
    taken per worker, which then sees (and its s3prl children see) that GPU alone."""
    from superb_redundancy.study.guard import die_with_parent

    die_with_parent(parent)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read by the s3prl child process at its start
        os.environ[name] = str(threads)
    if gpus is not None:  # before anything here touches CUDA (the worker is spawned, not forked)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    import torch  # a forked worker inherits the runner's torch, which read the variables already

    torch.set_num_threads(threads)


class LocalExecutor:
    """Runs in a pool of ``workers`` processes with a share of the cores each (one worker: in this process); on a
    GPU study each worker has a GPU of its own."""

    def __init__(self, workers: int = 1, device: str = "cpu"):
        if workers < 1:
            raise UserError(f"executor.workers must be >= 1, got {workers}")
        check_workers(workers, device)
        self.workers, self.device = workers, device
        self.capacity = workers  # runs at a time
        self._pool: Optional[concurrent.futures.ProcessPoolExecutor] = None

    def run_alone(self, run: Run, study: StudyConfig) -> dict:
        """One run in this process, with torch's threads for all cores (nothing else can run meanwhile)."""
        return _execute(run, study)

    def submit(self, run: Run, study: StudyConfig) -> concurrent.futures.Future:
        if self.workers == 1:
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_result(_execute(run, study))
            return future
        if self._pool is None:
            # the workers die with this process: a killed runner leaves none behind (nor, through them, s3prl's child)
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            gpus, context = None, None
            if local_gpus(self.device) is not None:  # CUDA cannot start again in a forked child: spawn, a GPU each
                context = multiprocessing.get_context("spawn")
                gpus = context.Queue()
                for gpu in worker_gpus(self.workers):
                    gpus.put(gpu)
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context,
                                                                initializer=_worker_init,
                                                                initargs=(os.getpid(), threads, gpus))
        return self._pool.submit(_execute, run, study)

    def wait(self, handles: Sequence[concurrent.futures.Future]) -> list[concurrent.futures.Future]:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    @staticmethod
    def outcome(handle: concurrent.futures.Future) -> dict:
        try:
            return handle.result()
        except Exception as error:  # the worker process itself died
            return {"status": "failed", "error": f"worker died: {type(error).__name__}: {error}"}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class RunJob(Checkpointable):
    """One run as a submitit job. Checkpointable: at Slurm's time-limit signal (USR2, ``slurm_signal_delay_s``
    before the limit) submitit calls :meth:`checkpoint` (the same call again), requeues the job and exits; the
    requeued job finds the run's state ``running`` with the same key and resumes it (execute_and_record; the
    resumable kinds continue from their last checkpoint, steps.RESUMABLE). ``executor.max_requeues`` bounds it."""

    def __call__(self, run: Run, study: StudyConfig) -> dict:
        return execute_and_record(run, study)


class Refused:
    """A submission the cluster refused after every retry: done at once, its outcome the state ``refused``."""

    job_id = None

    def __init__(self, run: Run, error: str):
        self.run, self.error = run, error

    @staticmethod
    def done() -> bool:
        return True


class SubmititExecutor:
    """Runs as submitit jobs (Slurm, or submitit's local cluster), each asking for its own resources
    (:mod:`superb_redundancy.study.resources`), at most ``max_jobs`` in flight (None: the cluster's queue decides).
    A refused submission is retried after each of :attr:`BACKOFF` seconds, then given the state ``refused``; each
    job's id is recorded (:mod:`superb_redundancy.study.jobs`), and a run whose job from an earlier call is still
    queued or running is waited for, not submitted again."""

    #: seconds between looks at the jobs' result files
    POLL = 2.0
    #: seconds between asking Slurm (sacct) for the jobs' states: a job that died leaves no result file
    STATE_POLL = 15.0
    #: seconds to wait before each retry of a refused submission
    BACKOFF = (5.0, 20.0, 60.0)

    def __init__(self, folder: Path, workdir: Path, cluster: Optional[str] = None,
                 requests: Optional[dict] = None, max_jobs: Optional[int] = None, max_requeues: int = 10):
        self.folder, self.workdir, self.cluster = folder, workdir, cluster
        self.requests = requests or {}
        self.max_requeues = max_requeues
        self.capacity = max_jobs
        self._executors: dict = {}
        self._last_look = 0.0
        self._live: Optional[dict] = None  # {run id: job record} of earlier calls' jobs still queued or running

    def _executor(self, request: dict):
        import submitit

        key = json.dumps(request, sort_keys=True, default=str)
        if key not in self._executors:  # a fresh one per request: parameters set for one run never leak to another
            executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster,
                                             slurm_max_num_timeout=self.max_requeues)
            executor.update_parameters(**request)
            self._executors[key] = executor
        return self._executors[key]

    def request(self, run: Run) -> dict:
        request = {"name": run.run_id, **self.requests.get(run.run_id, {})}
        # --requeue: clusters with JobRequeue=0 refuse the requeue at a time limit (and after a node failure) else
        request["slurm_additional_parameters"] = {"requeue": True,
                                                  **(request.get("slurm_additional_parameters") or {})}
        return request

    def run_alone(self, run: Run, study: StudyConfig) -> dict:
        job = self.submit(run, study)
        return self.outcome(job)

    def submit(self, run: Run, study: StudyConfig):
        from superb_redundancy.study.jobs import live_jobs, record_job

        if self._live is None:
            self._live = live_jobs(self.workdir) if self.cluster != "local" else {}
        live = self._live.pop(run.run_id, None)
        if live is not None and live.get("params_hash") == run.params_hash:
            # an earlier call's job for this run is still queued or running (that runner was stopped): wait for it
            return SlurmJob(folder=self.folder, job_id=live["job_id"])
        request = self.request(run)
        executor = self._executor(request)
        errors = []
        for delay in (*self.BACKOFF, None):
            try:
                job = executor.submit(RunJob(), run, study)
            except Exception as error:  # sbatch refused it (a job limit, a bad partition, the controller down)
                errors.append(" ".join(str(error).split())[-300:])
                if delay is None:
                    return Refused(run, f"submission refused {len(errors)} times; last: {errors[-1]}")
                time.sleep(delay)
            else:
                record_job(self.workdir, run, job.job_id, request)
                return job

    def call(self, function, *args, request: dict):
        """``function(*args)`` as one job asking for ``request``; its result, or the one-line error it failed with
        (a ``str``)."""
        try:
            job = self._executor(request).submit(function, *args)
        except Exception as error:
            return f"submission refused: {' '.join(str(error).split())[-300:]}"
        self.wait([job])
        try:
            return job.result()
        except Exception as error:
            return f"job {job.job_id} failed: {str(error).splitlines()[0]}"

    def wait(self, handles: Sequence) -> list:
        while True:
            slurm = [job for job in handles if isinstance(job, SlurmJob)]
            if slurm and time.time() - self._last_look > self.STATE_POLL:
                SlurmJob.watcher.update()  # one sacct call for every job
                self._last_look = time.time()
            done = [job for job in handles if job.done()]
            if done:
                return done
            time.sleep(self.POLL)

    @staticmethod
    def outcome(job) -> dict:
        if isinstance(job, Refused):
            return {"status": "refused", "error": job.error}
        try:
            return job.result()
        except Exception as error:  # the job ended outside execute_and_record (cancelled, node failure, memory)
            if not isinstance(job, SlurmJob):
                return {"status": "failed", "error": f"job {job.job_id} failed: {str(error).splitlines()[0]}"}
            state = job.watcher.get_state(job.job_id, mode="force")  # Slurm's reason: CANCELLED by 0, NODE_FAIL ...
            return {"status": "failed", "slurm_state": state, "job_id": job.job_id,
                    "error": f"Slurm job {job.job_id} ended {state}: {str(error).splitlines()[0]}"}

    def close(self) -> None:
        pass


def make_executor(study: StudyConfig, workdir: Path, override: Optional[str] = None):
    """The executor a study asks for (``override``: "local" or "slurm" from the command line)."""
    config = study.executor
    kind = override or config.kind
    if kind == "local":
        return LocalExecutor(config.workers, study.device)
    if kind == "slurm":
        from superb_redundancy.study.resources import run_requests

        folder = Path(config.folder) if config.folder else workdir / "submitit"
        return SubmititExecutor(folder, workdir, cluster=config.cluster, requests=run_requests(study),
                                max_jobs=config.max_jobs, max_requeues=config.max_requeues)
    raise UserError(f"unknown executor {kind!r}; valid: ['local', 'slurm']")
