"""Quick stand-ins for the study steps, for tests of the runner itself (locks, reruns): with
``SUPERB_REDUNDANCY_STUDY_STEPS=fake_steps`` (and this folder on PYTHONPATH) every step appends its run id to
``<workdir>/executed.txt``, writes ``out.json`` (its params) into its folder and returns, after sleeping
``FAKE_STEPS_SLEEP`` seconds (default 0). Each also appends ``<run id> resume=<bool> partial=<bool>`` to
``<workdir>/resumes.txt`` (whether it was asked to resume and whether an earlier attempt's ``partial`` file was
still in its folder); the runs named by ``FAKE_STEPS_FAIL`` (comma-separated) write ``partial`` and raises.

``FAKE_STEPS_WORK=N``: each downstream run does N units of work of ``FAKE_STEPS_UNIT_S`` seconds (default 1)
instead, checkpointing after each (``progress.json``, atomically) and continuing from it when resumed; it returns
``{"value": <a number every unit changes>, "units": N}`` and appends ``<run id> attempt from=<unit>`` to
``<workdir>/attempts.txt`` at each start (a long run that outlives its time limit)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def long_work(run, study, folder: Path, resume: bool = False) -> dict:
    from superb_redundancy.core.files import write_json

    units, unit_s = int(os.environ["FAKE_STEPS_WORK"]), float(os.environ.get("FAKE_STEPS_UNIT_S", "1"))
    progress = folder / "progress.json"
    done, value = (json.loads(progress.read_text()).values()) if resume and progress.is_file() else (0, 1)
    with open(Path(study.workdir).resolve() / "attempts.txt", "a") as log:
        log.write(f"{run.run_id} attempt from={done}\n")
    for unit in range(done, units):
        time.sleep(unit_s)
        value = (value * 31 + unit) % 1_000_003
        write_json(progress, {"done": unit + 1, "value": value})
    return {"params_hash": run.params_hash, "value": value, "units": units}


def _step(run, study, folder: Path, resume: bool = False) -> dict:
    if os.environ.get("FAKE_STEPS_WORK") and run.kind == "downstream":
        return long_work(run, study, folder, resume)
    time.sleep(float(os.environ.get("FAKE_STEPS_SLEEP", "0")))
    with open(Path(study.workdir).resolve() / "executed.txt", "a") as log:
        log.write(run.run_id + "\n")
    with open(Path(study.workdir).resolve() / "resumes.txt", "a") as log:
        log.write(f"{run.run_id} resume={resume} partial={(folder / 'partial').exists()}\n")
    if run.run_id in os.environ.get("FAKE_STEPS_FAIL", "").split(","):
        (folder / "partial").write_text("an epoch's checkpoint")
        raise RuntimeError(f"{run.run_id} failed on purpose")
    (folder / "out.json").write_text(json.dumps(run.params))
    return {"params_hash": run.params_hash}


STEPS = {kind: _step for kind in ("data", "finetune", "similarity", "prune", "teacher", "mimic", "heal", "downstream",
                                  "curves")}
