"""The study runner on a real Slurm cluster (tests/helpers/slurm.py: munged, MariaDB, slurmdbd, slurmctld and
slurmd, started once per session by the ``slurm_cluster`` fixture). The steps are the quick stand-ins of
fake_steps.py: what is tested is what the cluster does with the runs. Skipped, saying why, where no cluster can
start (no Slurm installed, not root)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from helpers.commands import in_process
from helpers.studies import write_study
from superb_redundancy.study import StudyConfig, run_study
from superb_redundancy.study.plan import expand

pytestmark = pytest.mark.xdist_group("slurm")  # one worker starts the cluster and runs these

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake_steps(monkeypatch):
    """The quick stand-in steps (fake_steps.py), here and in the jobs (sbatch hands them this environment)."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SUPERB_REDUNDANCY_STUDY_STEPS", "fake_steps")


def slurm_study(tmp_path: Path, executor: dict, **overrides) -> Path:
    """A study of two runs (data, downstream/w-base/...) as Slurm jobs on the test cluster."""
    return write_study(tmp_path / "s.yaml", name="slurm", seeds=[1],
                       executor={"kind": "slurm", "cluster": "slurm", **executor}, **overrides)


def job_ids(study: StudyConfig) -> dict[str, str]:
    work = Path(study.workdir)
    return {run.run_id: json.loads((work / "jobs" / f"{run.run_id}.json").read_text())["job_id"]
            for run in expand(study) if (work / "jobs" / f"{run.run_id}.json").is_file()}


def sacct(cluster, job: str, fields: str) -> dict[str, str]:
    out = cluster.command("sacct", "-X", "-n", "-P", "-o", fields, "-j", job).strip().splitlines()[-1]
    return dict(zip(fields.split(","), out.split("|")))


def test_a_job_runs_on_the_cluster_within_a_minute(slurm_cluster, tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=str(tmp_path / "jobs"), cluster="slurm")
    executor.update_parameters(timeout_min=2, mem_gb=1, cpus_per_task=1)
    started = time.time()
    job = executor.submit(sum, [1, 2, 3])
    assert job.result() == 6
    assert time.time() - started < 60
    assert "COMPLETED" in slurm_cluster.command("sacct", "-n", "-X", "-o", "State", "-j", job.job_id)


@pytest.mark.slow
def test_each_run_asks_the_cluster_for_its_own_resources(slurm_cluster, tmp_path, fake_steps):
    from superb_redundancy.study.resources import CPU_KINDS, run_requests

    # a GPU study (the test node says it has one GPU; the stand-in steps never touch it)
    path = slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1}, "margin": 3,
                                  "resources": {"data": {"mem_gb": 1, "timeout_min": 3},
                                                "downstream/speech_commands": {"timeout_min": 7}}}, device="cuda")
    study = StudyConfig.from_yaml(path)
    requests = run_requests(study)
    states, _ = run_study(study, progress=False)
    assert {s["status"] for s in states.values()} == {"done"}, states
    jobs = job_ids(study)
    assert set(jobs) == set(requests) and len(set(jobs.values())) == len(jobs)  # one job per run
    for run in expand(study):
        asked = sacct(slurm_cluster, jobs[run.run_id], "JobName,Timelimit,ReqTRES")
        request = requests[run.run_id]
        assert asked["JobName"] == run.run_id
        hours, minutes = divmod(request["timeout_min"], 60)
        assert asked["Timelimit"] == f"{hours:02d}:{minutes:02d}:00", (run.run_id, asked)
        tres = dict(item.split("=") for item in asked["ReqTRES"].split(","))
        assert tres["cpu"] == "1" and tres["mem"] == f"{request['mem_gb']:g}G", (run.run_id, asked)
        assert tres.get("gres/gpu") == (None if run.kind in CPU_KINDS else "1"), (run.run_id, asked)
    assert requests["data"]["timeout_min"] == 3 and requests["data"]["mem_gb"] == 1  # the kind's own entry
    downstream = next(r for r in expand(study) if r.kind == "downstream").run_id
    assert requests[downstream]["timeout_min"] == 7  # per task
    # the rest from the estimate: at least the floor, 3 x its memory
    from superb_redundancy.study.estimate import estimate

    cost = next(c for c in estimate(study) if c.run_id == downstream)
    assert requests[downstream]["mem_gb"] == max(4, -(-cost.host_gb * 3 // 1))

    # `study status` shows what each asks for and its job
    status = in_process("study", "status", str(path), "--executor", "slurm")
    line = next(line for line in status.stdout.splitlines() if line.startswith("| data "))
    assert "no GPU, 1 CPUs, 1 GB, 0:03 h" in line and f"{jobs['data']} (COMPLETED)" in line, line
    line = next(line for line in status.stdout.splitlines() if line.startswith(f"| {downstream} "))
    assert "1 GPU, 1 CPUs" in line and "0:07 h" in line, line
