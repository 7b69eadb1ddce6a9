"""A run's state on disk, and running one run in the worker while recording it.

``<workdir>/state/<run id>.json`` (written atomically) says ``running`` when a run starts, ``done`` with its
outputs when it returns, ``failed`` with its error when it raises, each with the run (and so its params_hash).
:func:`execute_and_record` runs in the worker an executor (:mod:`superb_redundancy.study.executors`) hands the
run to; the runner (:mod:`superb_redundancy.study.runner`) reads the states to decide what to run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from superb_redundancy.core.files import write_json
from superb_redundancy.study import guard
from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import Run

__all__ = ["RunState", "state_path", "read_state", "recorded_hash", "execute_and_record", "record_outside"]

RunState = dict


def state_path(workdir: Path, run: Run) -> Path:
    return workdir / "state" / f"{run.run_id}.json"


def read_state(workdir: Path, run: Run) -> RunState:
    path = state_path(workdir, run)
    if not path.is_file():
        return {"status": "pending"}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"status": "pending", "note": "unreadable state file"}


def recorded_hash(state: RunState) -> Optional[str]:
    return (state.get("run") or {}).get("params_hash")


def execute_and_record(run: Run, study: StudyConfig) -> RunState:
    """Lock the run's folder, mark running, execute, mark done (with outputs) or failed (with the error). Runs
    in the worker. A folder another live process holds is left alone (state and files): the run fails here."""
    from superb_redundancy.study.steps import execute

    workdir = Path(study.workdir).resolve()
    path = state_path(workdir, run)
    try:
        with guard.hold(run.folder(workdir) / ".lock", f"run {run.run_id}") as lock:
            before = read_state(workdir, run)
            previous = before.get("outputs") or {}
            if previous.get("record"):  # the old result must not outlive its rerun in the leaderboard
                Path(previous["record"]).unlink(missing_ok=True)
            # an attempt with the same key that did not finish (killed, failed, timed out): continue from its
            # checkpoints (a job that died, or a refused resubmission, was recorded by the runner with the run's key);
            # a changed key starts afresh
            resume = before.get("status") in ("running", "failed", "refused") and \
                recorded_hash(before) == run.params_hash
            started = time.time()
            _reset_peak_memory()
            write_json(path, {"status": "running", "run": asdict(run), "started": started, "pid": os.getpid()})
            os.environ[guard.RUN_LOCK_FD] = str(lock.fileno())  # handed on to s3prl's child (experiment.py)
            try:
                outputs = execute(run, study, resume=resume)
            except Exception as error:
                state = {"status": "failed", "run": asdict(run), "started": started, "finished": time.time(),
                         "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=8)}
            else:
                state = {"status": "done", "run": asdict(run), "started": started, "finished": time.time(),
                         "outputs": outputs, "peak_memory_gb": _peak_memory_gb()}
            finally:
                os.environ.pop(guard.RUN_LOCK_FD, None)
            write_json(path, state)
            return state
    except guard.Held as held:
        return {"status": "failed", "run": asdict(run), "error": f"not started: {held}"}


def record_outside(workdir: Path, run: Run, state: RunState) -> RunState:
    """Record what happened to a run outside its worker: a job that died (cancelled, its node lost, out of memory:
    ``failed`` with Slurm's state) or a submission refused (``refused``). Kept with the run (its key), so the next
    call reruns it and a resumable run continues from its last checkpoint, as after a kill."""
    before = read_state(workdir, run)
    state = {**state, "run": asdict(run), "finished": time.time()}
    if "started" in before:
        state["started"] = before["started"]
    write_json(state_path(workdir, run), state)
    return state


# ------------------------------------------------------------------------------------------ peak memory of a run
def _reset_peak_memory() -> None:
    """Start measuring a run's peak memory: this process's peak resident set is reset (Linux: ``clear_refs`` 5), and
    so is the peak of the s3prl children it starts (:data:`superb_redundancy.results.experiment.CHILD_PEAK_KB`)."""
    from superb_redundancy.results import experiment

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the process's lifetime peak is recorded instead
        pass
    experiment.CHILD_PEAK_KB[0] = 0
    import sys

    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.reset_peak_memory_stats()


def _peak_memory_gb() -> dict:
    """``{host, children, device}``: the run's peak resident memory in this process (GB), that of the s3prl children
    it ran (None: none), and the device's peak in this process."""
    import resource

    from superb_redundancy.results import experiment

    host = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                host = int(line.split()[1]) / 1024 ** 2
    except OSError:
        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    children = experiment.CHILD_PEAK_KB[0]
    device = None
    import sys

    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        device = sys.modules["torch"].cuda.max_memory_allocated() / 1024 ** 3
    return {"host": None if host is None else round(host, 3),
            "children": round(children / 1024 ** 2, 3) if children else None,
            "device": None if device is None else round(device, 3)}
