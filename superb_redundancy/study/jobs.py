"""A study's Slurm jobs: which job each run was last submitted as, what Slurm says of it, and cancelling them.

``<workdir>/jobs/<run id>.json`` (written atomically when the job is submitted) holds the job id, what the job asked
for, when, and the run's params_hash: a later call whose runner finds that job still queued or running waits for it
instead of submitting the run again. Slurm's states come from ``sacct`` (accounting; what submitit reads too), else ``squeue`` for the
jobs still queued or running.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Optional

from superb_redundancy.core.files import write_json
from superb_redundancy.study.plan import Run

__all__ = ["job_path", "record_job", "read_job", "live_jobs", "slurm_states", "cancel_jobs", "ACTIVE"]

#: the Slurm states of a job that may still run (cancelling it means something)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED")


def job_path(workdir: Path, run: Run) -> Path:
    return workdir / "jobs" / f"{run.run_id}.json"


def record_job(workdir: Path, run: Run, job_id: str, request: dict) -> None:
    write_json(job_path(workdir, run), {"job_id": str(job_id), "request": request, "submitted": time.time(),
                                        "params_hash": run.params_hash})


def live_jobs(workdir: Path) -> dict[str, dict]:
    """{run id: its job record} for the recorded jobs Slurm says may still run (one sacct call for all)."""
    records = {}
    for path in (workdir / "jobs").rglob("*.json"):
        try:
            records[path.relative_to(workdir / "jobs").with_suffix("").as_posix()] = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            continue
    states = slurm_states(sorted({r["job_id"] for r in records.values()}))
    return {run_id: r for run_id, r in records.items() if states.get(r["job_id"], "").split(" ")[0] in ACTIVE}


def read_job(workdir: Path, run: Run) -> Optional[dict]:
    path = job_path(workdir, run)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _run(command: list[str]) -> Optional[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: Slurm's state, with its reason where it gives one, e.g. ``CANCELLED by 0``, ``PENDING (Priority)``}
    for the jobs Slurm still knows; one ``sacct`` call (and one ``squeue`` for the reasons of queued jobs)."""
    if not job_ids:
        return {}
    states: dict[str, str] = {}
    out = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)])
    for line in (out or "").splitlines():
        job, _, state = line.partition("|")
        if job in job_ids and state:
            states[job] = state.strip()
    out = _run(["squeue", "-h", "-o", "%i|%T|%r", "-j", ",".join(job_ids)])
    for line in (out or "").splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        # squeue: why a queued job waits; a job that ended stays as sacct says (squeue may still show COMPLETING)
        if job in job_ids and states.get(job, "PENDING").split(" ")[0] in ACTIVE:
            states[job] = f"{state} ({reason})" if reason and reason != "None" else state
    return states


def cancel_jobs(workdir: Path, runs: list[Run]) -> list[tuple[str, str]]:
    """``scancel`` every job of ``runs`` that Slurm says may still run; [(run id, job id)] cancelled."""
    jobs = {run.run_id: record["job_id"] for run in runs if (record := read_job(workdir, run))}
    states = slurm_states(sorted(set(jobs.values())))
    live = [(run_id, job) for run_id, job in jobs.items() if states.get(job, "").split(" ")[0] in ACTIVE]
    if live:
        done = subprocess.run(["scancel", *sorted({job for _, job in live})], capture_output=True, text=True,
                              timeout=60)
        if done.returncode:
            raise RuntimeError(f"scancel failed: {done.stderr.strip()}")
    return live
