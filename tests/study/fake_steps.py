"""Quick stand-ins for the study steps, for tests of the runner itself (locks, reruns): with
``SUPERB_REDUNDANCY_STUDY_STEPS=fake_steps`` (and this folder on PYTHONPATH) every step appends its run id to
``<workdir>/executed.txt``, writes ``out.json`` (its params) into its folder and returns, after sleeping
``FAKE_STEPS_SLEEP`` seconds (default 0). Each also appends ``<run id> resume=<bool> partial=<bool>`` to
``<workdir>/resumes.txt`` (whether it was asked to resume and whether an earlier attempt's ``partial`` file was
still in its folder); the runs named by ``FAKE_STEPS_FAIL`` (comma-separated) write ``partial`` and raises."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def _step(run, study, folder: Path, resume: bool = False) -> dict:
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
