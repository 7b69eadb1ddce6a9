"""What each run of a study asks a cluster for: its submitit parameters (time, memory, GPUs, CPUs, partition ...).

Three layers, each over the one before:

1. **the run's cost estimate** (:mod:`superb_redundancy.study.estimate`) times ``executor.margin`` (default 2):
   ``timeout_min`` from its device hours (at least :data:`FLOOR` ``timeout_min``, rounded up to 10 minutes),
   ``mem_gb`` from its peak host memory (at least :data:`FLOOR` ``mem_gb``), and one GPU (``gpus_per_run`` when
   more) for a run that uses the study's device when that device is a GPU. The CPU-only kinds
   (:data:`CPU_KINDS`) ask for none.
2. ``executor.slurm``: what every run asks for (partition, account, CPUs ...).
3. ``executor.resources``: per run kind, then per ``downstream/<task>``.

The leaderboard's job (:func:`leaderboard_request`) asks for :data:`LEADERBOARD`, a GPU where it times on one,
``executor.slurm`` and ``executor.resources.leaderboard``.

A CPU-only run drops the GPU parameters the layers above gave it unless its own kind's entry asks for one. Where
the estimate cannot be made (a base whose shape cannot be told offline) the first layer is :data:`FALLBACK`.
"""

from __future__ import annotations

import math
from typing import Optional

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import Run, expand

__all__ = ["CPU_KINDS", "FLOOR", "FALLBACK", "GPU_PARAMETERS", "run_requests", "describe", "leaderboard_request",
           "LEADERBOARD"]

#: kinds whose work is seconds of CPU (estimate.py prices them at 0 device hours)
CPU_KINDS = ("data", "prune")
#: the least a run asks for, whatever its estimate (a scheduler's start-up and Python's imports take minutes)
FLOOR = {"timeout_min": 10, "mem_gb": 4}
#: the first layer when the study cannot be estimated
FALLBACK = {"timeout_min": 600, "mem_gb": 16}
#: submitit parameters that ask for GPUs
GPU_PARAMETERS = ("gpus_per_node", "slurm_gpus_per_task", "slurm_num_gpus", "slurm_gres", "slurm_cpus_per_gpu",
                  "slurm_mem_per_gpu")
def _uses_gpu(study: StudyConfig, kind: str) -> bool:
    return kind not in CPU_KINDS and str(study.device).startswith("cuda")


def _from_estimate(study: StudyConfig, run: Run, cost) -> dict:
    margin = study.executor.margin
    if cost is None:
        request = dict(FALLBACK)
    else:
        minutes = max(FLOOR["timeout_min"], cost.device_hours * 60 * margin)
        request = {"timeout_min": int(math.ceil(minutes / 10) * 10),
                   "mem_gb": max(FLOOR["mem_gb"], int(math.ceil(cost.host_gb * margin)))}
    if _uses_gpu(study, run.kind):
        request["gpus_per_node"] = max(1, study.executor.gpus_per_run)
    return request


def _costs(study: StudyConfig) -> dict:
    """{run id: RunCost}; empty when the study cannot be estimated offline."""
    from superb_redundancy.study.estimate import estimate

    try:
        return {cost.run_id: cost for cost in estimate(study)}
    except Exception:  # noqa: BLE001 - an estimate that cannot be made must not stop the runs: FALLBACK instead
        return {}


def run_requests(study: StudyConfig, runs: Optional[list[Run]] = None) -> dict[str, dict]:
    """{run id: the submitit parameters its job asks for} (the three layers of the module's docstring)."""
    runs = expand(study) if runs is None else runs
    costs = _costs(study)
    config = study.executor
    requests = {}
    for run in runs:
        own = dict(config.resources.get(run.kind) or {})
        if run.kind == "downstream":
            own.update(config.resources.get(f"downstream/{run.params.get('task')}") or {})
        request = {**_from_estimate(study, run, costs.get(run.run_id)), **config.slurm}
        if run.kind in CPU_KINDS:
            request = {k: v for k, v in request.items() if k not in GPU_PARAMETERS}
        requests[run.run_id] = {**request, **own}
    return requests


#: the leaderboard's job before ``executor.slurm`` and ``executor.resources.leaderboard``: timing every variant
#: of a study (30 rounds, up to 32 passes each) takes minutes, not hours
LEADERBOARD = {"timeout_min": 120, "mem_gb": 16}


def leaderboard_request(study: StudyConfig) -> dict:
    """What the leaderboard's job asks for: :data:`LEADERBOARD`, a GPU when it times on one, ``executor.slurm``,
    then ``executor.resources.leaderboard``."""
    request = dict(LEADERBOARD)
    if str(study.leaderboard.device or study.device).startswith("cuda"):
        request["gpus_per_node"] = 1
    return {**request, **study.executor.slurm, **(study.executor.resources.get("leaderboard") or {}),
            "name": f"{study.name}/leaderboard"}


def describe(request: dict) -> str:
    """One line, e.g. ``1 GPU, 8 CPUs, 12 GB, 3:20 h, partition gpu``."""
    parts = []
    gpus = request.get("gpus_per_node") or request.get("slurm_gpus_per_task") or request.get("slurm_gres")
    parts.append(f"{gpus} GPU" if gpus else "no GPU")
    if request.get("cpus_per_task"):
        parts.append(f"{request['cpus_per_task']} CPUs")
    if request.get("mem_gb"):
        parts.append(f"{request['mem_gb']:g} GB")
    if request.get("timeout_min"):
        minutes = int(request["timeout_min"])
        parts.append(f"{minutes // 60}:{minutes % 60:02d} h")
    if request.get("slurm_partition"):
        parts.append(f"partition {request['slurm_partition']}")
    return ", ".join(parts)
