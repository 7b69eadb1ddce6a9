"""Run a study: each run as soon as the runs it needs are done, through an executor, state recorded per run,
resumable.

State lives in ``<workdir>/state/<run id>.json`` (:mod:`superb_redundancy.study.state`, written atomically):
``running`` when a run starts, ``done`` with its outputs when it returns, ``failed`` with its error when it
raises, each with the run's params_hash. A new call skips ``done`` runs and reruns the others (an interrupted
run is still ``running``: its folder is wiped and it starts afresh), so killing a study at any point loses no
finished run and duplicates none. A failed run does not stop the others; the runs that depend on it are skipped
and say why. The leaderboard is rebuilt from the records at the end of every call (on Slurm as a job of its own),
re-timing only the variants not timed before (profiles cached in ``<workdir>/profiles``).

Guards (issue 11): one runner per workdir (``<workdir>/.lock``; a second one is refused, naming the holder, or
waits); one process per run folder (``<run folder>/.lock``, taken where the run executes: a Slurm job still
running from an earlier call keeps its folder); a done run whose params_hash changed is not reused: the call
is refused, naming what changed, unless ``rerun_changed``, which reruns it and everything downstream of it.
``studies/<name>.json`` records the study next to the runs on disk and the hash each run was made with; studies
may share a workdir (one extending another: the runs they have in common are one run), and each leaderboard shows
its own study's runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from superb_redundancy.core.files import write_json
from superb_redundancy.study import guard
from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.executors import make_executor
from superb_redundancy.study.plan import Run, expand
from superb_redundancy.study.state import RunState, execute_and_record, read_state, record_outside, recorded_hash
from superb_redundancy.core.errors import UserError

__all__ = ["run_study", "study_status", "study_jobs", "cancel_study", "build_leaderboard", "execute_and_record", "changed_runs", "StudyChanged", "RunState",
           "study_record_path"]


class StudyChanged(UserError):
    """Done runs whose parameters changed since they ran; ``lines``: one per run, saying what changed."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__(f"{len(lines)} done run(s) were made with other parameters (listed above)")


def _blocked_by(run: Run, failed: set[str]) -> Optional[str]:
    """A failed run this one needs, if any."""
    hit = sorted(n for n in run.needs if n in failed)
    return hit[0] if hit else None


def _what_changed(old: dict, new: dict) -> str:
    """The differences between two resolved parameter sets, e.g. ``limit 64 -> 32; needs changed similarity/w``."""
    def flat(value, prefix=""):
        if isinstance(value, dict) and prefix.count(".") < 2:
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}

    a, b = flat(old), flat(new)
    parts = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "(absent)") == b.get(key, "(absent)"):
            continue
        section, _, name = key.partition(".")
        if section == "needs":
            parts.append(f"needs changed {name}" if key in a and key in b else f"needs {name}")
        elif section != "kind":
            parts.append(f"{name} {json.dumps(a.get(key, '(absent)'))} -> {json.dumps(b.get(key, '(absent)'))}")
    return "; ".join(parts) or "parameters changed"


def changed_runs(runs: list[Run], states: dict[str, RunState]) -> dict[str, str]:
    """{run id: what changed} for the done runs made with other parameters than the study's now."""
    found = {}
    for run in runs:
        state = states[run.run_id]
        if state["status"] == "done" and recorded_hash(state) != run.params_hash:
            old = (state.get("run") or {}).get("resolved")
            found[run.run_id] = _what_changed(old, run.resolved) if old else \
                "made by a version without parameter hashes"
    return found


def _to_rerun(runs: list[Run], states: dict[str, RunState], changed: set[str]) -> set[str]:
    """The changed runs and every done run downstream of a run that will run (by the hash's dependencies)."""
    rerun = set(changed)
    for run in runs:  # stage order: a run's needs come before it
        if any(n != "data" and (n in rerun or states[n]["status"] != "done") for n in run.needs):
            rerun.add(run.run_id)
    return {r for r in rerun if states[r]["status"] == "done"}


def study_record_path(study: StudyConfig) -> Path:
    """``<workdir>/studies/<name>.json``: one per study, as studies may share a workdir (one extending another)."""
    return Path(study.workdir).resolve() / "studies" / f"{study.name}.json"


def _write_record(study: StudyConfig, workdir: Path, runs: list[Run]) -> None:
    """The study's record (:func:`study_record_path`): the study and, per run, the status and params_hash its state
    on disk has."""
    on_disk = {}
    for run in runs:
        state = read_state(workdir, run)
        on_disk[run.run_id] = {"status": state["status"], "params_hash": recorded_hash(state),
                               "current": recorded_hash(state) == run.params_hash}
    write_json(study_record_path(study), {"study": study.to_dict(), "runs": on_disk})


def run_study(study: StudyConfig, executor_override: Optional[str] = None, progress: bool = True,
              rerun_changed: bool = False, wait: bool = False):
    """Run what is not done yet; writes the leaderboard. Returns ({run id: state}, leaderboard frame or None).

    :class:`guard.Held` when another runner holds the workdir (``wait``: wait for it); :class:`StudyChanged`
    when done runs were made with other parameters (``rerun_changed``: rerun them and what depends on them)."""
    from tqdm import tqdm

    workdir = Path(study.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    with guard.hold(workdir / ".lock", f"study run {study.name}", wait=wait):
        runs = expand(study)
        states = {run.run_id: read_state(workdir, run) for run in runs}
        changed = changed_runs(runs, states)
        if changed and not rerun_changed:
            raise StudyChanged([f"{run_id}: {what}" for run_id, what in changed.items()])
        rerun = _to_rerun(runs, states, set(changed))
        _write_record(study, workdir, runs)
        failed = {rid for rid, s in states.items() if s["status"] in ("failed", "refused")}
        executor = make_executor(study, workdir, executor_override)
        bar = tqdm(total=len(runs), desc=f"study {study.name}", unit="run", disable=not progress,
                   initial=sum(s["status"] == "done" and rid not in rerun for rid, s in states.items()))
        todo = [r for r in runs if states[r.run_id]["status"] != "done" or r.run_id in rerun]  # in stage order
        try:
            _schedule(todo, states, failed, study, executor, bar, workdir, runs)
        finally:
            executor.close()
            bar.close()
        return states, _write_leaderboard(study, workdir, states, executor, executor_override)


def _schedule(todo: list[Run], states: dict[str, RunState], failed: set[str], study: StudyConfig, executor, bar,
              workdir: Path, runs: list[Run]) -> None:
    """Start each run as soon as every run it needs is done, as many at a time as the executor takes, in stage
    order among those ready; a run whose need failed is skipped (and what needs it in turn). One run ready with
    nothing running gets every core (``run_alone``): nothing else can start before it ends."""
    from tqdm import tqdm

    waiting = list(todo)
    pending = {run.run_id for run in todo}
    running: dict = {}  # handle -> run

    def finish(run: Run, state: RunState) -> None:
        if state["status"] == "refused" or "slurm_state" in state:  # the worker could not record it
            state = record_outside(workdir, run, state)
        states[run.run_id] = state
        pending.discard(run.run_id)
        if state["status"] in ("failed", "skipped", "refused"):
            failed.add(run.run_id)
            if state["status"] != "skipped":
                tqdm.write(f"  {state['status']} {run.run_id}: {state['error']}")
        else:
            failed.discard(run.run_id)
        _write_record(study, workdir, runs)
        bar.update(1)

    while waiting or running:
        ready = []
        for run in list(waiting):
            blocker = _blocked_by(run, failed - pending)  # a run failed in an earlier call may be retried now
            if blocker:  # and what needs this one is skipped in turn
                outcome = {"failed": "failed", "refused": "was refused"}.get(states[blocker]["status"], "was skipped")
                waiting.remove(run)
                finish(run, {"status": "skipped", "reason": f"needs {blocker}, which {outcome}"})
            elif not any(n in pending for n in _waits_for(run, study, waiting, running)):
                ready.append(run)
        if not ready and not running:
            if not waiting:  # the last ones were skipped
                break
            raise RuntimeError(f"no run can start: {[r.run_id for r in waiting]} wait for runs not in the study")
        if len(ready) == 1 and not running:
            run = ready[0]
            waiting.remove(run)
            bar.set_postfix_str(run.kind)
            finish(run, executor.run_alone(run, study))
            continue
        for run in ready:
            if executor.capacity is not None and len(running) >= executor.capacity:
                break
            waiting.remove(run)
            running[executor.submit(run, study)] = run
        bar.set_postfix_str(", ".join(sorted({r.kind for r in running.values()})))
        for handle in executor.wait(list(running)):
            finish(running.pop(handle), executor.outcome(handle))


def _waits_for(run: Run, study: StudyConfig, waiting: list[Run], running: dict) -> list[str]:
    """The runs ``run`` must wait for: those it needs and, for a pruned variant's downstream run, every prune run
    of its upstream and then the run it would repeat (steps.twin_run compares the prune runs' specs on disk), so
    that a twin finds that result done instead of computing it a second time in parallel."""
    from superb_redundancy.study.steps import twin_run

    wait = list(run.needs)
    variant = run.params.get("variant") or {}
    if run.kind == "downstream" and variant.get("kind") == "pruned":
        upstream = run.params["upstream"]
        unsettled = [r.run_id for r in (*waiting, *running.values())
                     if r.kind == "prune" and r.params.get("upstream", upstream) == upstream]
        if unsettled:
            return wait + unsettled
        twin = twin_run(run, study)
        if twin is not None:
            wait.append(twin)
    return wait


def _write_leaderboard(study: StudyConfig, workdir: Path, states: dict[str, RunState], executor=None,
                       executor_override: Optional[str] = None):
    """The leaderboard of this study's runs (a workdir may hold another study's records too): built in a job of
    its own on Slurm (``leaderboard.where: job``, the default there), else here."""
    from superb_redundancy.study.config import leaderboard_where
    from superb_redundancy.study.executors import SubmititExecutor
    from superb_redundancy.study.resources import leaderboard_request

    ours = sorted({Path(state["outputs"]["record"]).name for state in states.values()
                   if state.get("status") == "done" and (state.get("outputs") or {}).get("record")})
    if not ours:
        return None
    if leaderboard_where(study, executor_override) == "job" and isinstance(executor, SubmititExecutor):
        frame = executor.call(build_leaderboard, study, workdir, ours, request=leaderboard_request(study))
        if isinstance(frame, str):  # the job failed: the runs stay done, the next call builds it again
            print(f"leaderboard not built: {frame}")
            return None
        return frame
    return build_leaderboard(study, workdir, ours)


def build_leaderboard(study: StudyConfig, workdir: Path, record_files: list[str]):
    """Build and write the leaderboard of these records (``<record id>.json`` in ``<workdir>/records``): each
    variant's profile from ``<workdir>/profiles`` where timed there before on this machine (unless
    ``leaderboard.retime``). Returns the frame (None: no record left)."""
    from superb_redundancy.results.leaderboard.frame import build
    from superb_redundancy.results.leaderboard.page import write_leaderboard
    from superb_redundancy.results.leaderboard.profiles import profile_variants
    from superb_redundancy.results.records import load_records

    records = [r for r in load_records(workdir / "records") if f"{r.record_id}.json" in set(record_files)]
    if not records:
        return None
    plan = study.leaderboard
    frame, timing = build(records, profile=profile_variants, device=plan.device or study.device,
                          repeats=plan.rounds, max_passes=plan.max_passes, cache=workdir / "profiles",
                          retime=plan.retime)
    write_leaderboard(frame, Path(plan.path), timing=timing)
    return frame


def study_status(study: StudyConfig) -> list[tuple[str, str, str]]:
    """(run id, status, detail) for every run of the study; a done run made with other parameters: changed."""
    workdir = Path(study.workdir).resolve()
    runs = expand(study)
    states = {run.run_id: read_state(workdir, run) for run in runs}
    changed = changed_runs(runs, states)
    rows = []
    for run in runs:
        state = states[run.run_id]
        detail = state.get("error", "")
        if run.run_id in changed:
            rows.append((run.run_id, "changed", changed[run.run_id]))
            continue
        if state["status"] == "done":
            outputs = state.get("outputs", {})
            detail = f"{outputs.get('metric', '')} {outputs.get('value', '')}".strip() if "value" in outputs else ""
            detail += f" ({state['finished'] - state['started']:.0f} s)"
            if outputs.get("same_as"):
                detail += f", the same model as {outputs['same_as']}"
        rows.append((run.run_id, state["status"], detail))
    return rows


def study_jobs(study: StudyConfig) -> dict[str, tuple[str, str]]:
    """{run id: (what its job asks for, its last job's id and Slurm state)} (:mod:`superb_redundancy.study.jobs`)."""
    from superb_redundancy.study.jobs import read_job, slurm_states
    from superb_redundancy.study.resources import describe, run_requests

    workdir = Path(study.workdir).resolve()
    runs = expand(study)
    requests = run_requests(study, runs)
    jobs = {run.run_id: record["job_id"] for run in runs if (record := read_job(workdir, run))}
    states = slurm_states(sorted(set(jobs.values())))
    return {run.run_id: (describe(requests[run.run_id]),
                         f"{jobs[run.run_id]} ({states.get(jobs[run.run_id], 'not known to Slurm')})"
                         if run.run_id in jobs else "") for run in runs}


def cancel_study(study: StudyConfig) -> list[tuple[str, str]]:
    """Cancel the study's jobs that are queued or running; [(run id, job id)]. Their runs are rerun next call."""
    from superb_redundancy.study.jobs import cancel_jobs

    return cancel_jobs(Path(study.workdir).resolve(), expand(study))
