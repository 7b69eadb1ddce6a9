"""Run a study: stage by stage, each stage's runs through an executor, state recorded per run, resumable.

State lives in ``<workdir>/state/<run id>.json`` (written atomically): ``running`` when a run starts, ``done``
with its outputs when it returns, ``failed`` with its error when it raises. A new call skips ``done`` runs and
reruns the others (an interrupted run is still ``running``: its folder is wiped and it starts afresh), so
killing a study at any point loses no finished run and duplicates none. A failed run does not stop the
others; the runs that depend on it are skipped and say why. The leaderboard is rebuilt from the records at
the end of every call.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from ..atomic import write_json
from .config import StudyConfig
from .executors import make_executor
from .plan import STAGES, Run, expand

__all__ = ["run_study", "study_status", "execute_and_record", "RunState"]

RunState = dict


def _state_path(workdir: Path, run: Run) -> Path:
    return workdir / "state" / f"{run.run_id}.json"


def read_state(workdir: Path, run: Run) -> RunState:
    path = _state_path(workdir, run)
    if not path.is_file():
        return {"status": "pending"}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"status": "pending", "note": "unreadable state file"}


def execute_and_record(run: Run, study: StudyConfig) -> RunState:
    """Mark running, execute, mark done (with outputs) or failed (with the error). Runs in the worker."""
    from .steps import execute

    workdir = Path(study.workdir).resolve()
    path = _state_path(workdir, run)
    started = time.time()
    write_json(path, {"status": "running", "run": asdict(run), "started": started})
    try:
        outputs = execute(run, study)
    except Exception as error:
        state = {"status": "failed", "run": asdict(run), "started": started, "finished": time.time(),
                 "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=8)}
    else:
        state = {"status": "done", "run": asdict(run), "started": started, "finished": time.time(),
                 "outputs": outputs}
    write_json(path, state)
    return state


def _blocked_by(run: Run, failed: set[str]) -> Optional[str]:
    """A failed run this one needs (by the ids its params name), if any."""
    params = run.params
    needs = {f"similarity/{params.get('upstream')}", f"finetune/{params.get('upstream')}"}
    variant = params.get("variant") or {}
    needs |= {variant.get("prune_run"), variant.get("mimic_run")}
    if run.kind == "curves":
        needs.add(f"downstream/{params['upstream']}-base/{params['task']}/seed{params['seed']}")
    if run.kind != "data":
        needs.add("data")
    hit = sorted(n for n in needs if n and n in failed)
    return hit[0] if hit else None


def run_study(study: StudyConfig, executor_override: Optional[str] = None, progress: bool = True):
    """Run what is not done yet; writes the leaderboard. Returns ({run id: state}, leaderboard frame or None)."""
    from tqdm import tqdm

    workdir = Path(study.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "study.json", study.to_dict())  # the resolved study next to its outputs
    runs = expand(study)
    states = {run.run_id: read_state(workdir, run) for run in runs}
    failed = {rid for rid, s in states.items() if s["status"] == "failed"}
    executor = make_executor(study, workdir, executor_override)
    bar = tqdm(total=len(runs), desc=f"study {study.name}", unit="run", disable=not progress,
               initial=sum(s["status"] == "done" for s in states.values()))
    for stage, stage_name in enumerate(STAGES):
        todo = [r for r in runs if r.stage == stage and states[r.run_id]["status"] != "done"]
        ready = []
        for run in todo:
            blocker = _blocked_by(run, {rid for rid in failed})
            if blocker:
                states[run.run_id] = {"status": "skipped", "reason": f"needs {blocker}, which failed"}
                bar.update(1)
            else:
                ready.append(run)
        if not ready:
            continue
        bar.set_postfix_str(stage_name)
        for run, state in executor.map(ready, study):
            states[run.run_id] = state
            if state["status"] == "failed":
                failed.add(run.run_id)
                tqdm.write(f"  failed {run.run_id}: {state['error']}")
            else:
                failed.discard(run.run_id)
            bar.update(1)
    bar.close()
    return states, _write_leaderboard(study, workdir)


def _write_leaderboard(study: StudyConfig, workdir: Path):
    from ..harvest import load_records
    from ..leaderboard import build, write_leaderboard

    records = load_records(workdir / "records")
    if not records:
        return None
    frame, timing = build(records, device=study.device)
    write_leaderboard(frame, Path(study.leaderboard), timing=timing)
    return frame


def study_status(study: StudyConfig) -> list[tuple[str, str, str]]:
    """(run id, status, detail) for every run of the study."""
    workdir = Path(study.workdir).resolve()
    rows = []
    for run in expand(study):
        state = read_state(workdir, run)
        detail = state.get("error", "")
        if state["status"] == "done":
            outputs = state.get("outputs", {})
            detail = f"{outputs.get('metric', '')} {outputs.get('value', '')}".strip() if "value" in outputs else ""
            detail += f" ({state['finished'] - state['started']:.0f} s)"
        rows.append((run.run_id, state["status"], detail))
    return rows
