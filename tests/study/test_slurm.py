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
from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.runner import run_study
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
    return write_study(tmp_path / "s.yaml", **{"name": "slurm", "seeds": [1], **overrides,
                                               "executor": {"kind": "slurm", "cluster": "slurm", **executor}})


def job_ids(study: StudyConfig) -> dict[str, str]:
    work = Path(study.workdir)
    return {run.run_id: json.loads((work / "jobs" / f"{run.run_id}.json").read_text())["job_id"]
            for run in expand(study) if (work / "jobs" / f"{run.run_id}.json").is_file()}


def wait_for_state(cluster, job: str, state: str, timeout: float = 30) -> bool:
    """Whether sacct says ``state`` of the job within ``timeout`` (accounting lags a little behind the job)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sacct(cluster, job, "State")["State"].startswith(state):
            return True
        time.sleep(1)
    return False


def sacct(cluster, job: str, fields: str, timeout: float = 30) -> dict[str, str]:
    """The job's accounting fields, once slurmdbd has its submission: until then sacct may show a record that
    lacks it, named "allocation" (Slurm's name for a job without one), for a job that ended a moment ago."""
    deadline = time.time() + timeout
    while True:
        out = cluster.command("sacct", "-X", "-n", "-P", "-o", f"JobName,{fields}", "-j", job).strip().splitlines()
        name, _, values = (out[-1] if out else "allocation|").partition("|")
        if name != "allocation" or time.time() > deadline:
            return dict(zip(fields.split(","), values.split("|")))
        time.sleep(1)


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


@pytest.mark.slow
def test_a_run_longer_than_its_time_limit_is_requeued_until_done(slurm_cluster, tmp_path, fake_steps, monkeypatch):
    """100 s of work (100 units of a sleeping second: light on CPU) in jobs of 1 minute: at Slurm's signal (USR2,
    asked for 5 s before the limit; Slurm sends it up to its 30 s check period earlier) submitit requeues the job
    and the run continues from its last checkpoint: at least 2 attempts, each going further."""
    import fake_steps as steps

    monkeypatch.setenv("FAKE_STEPS_WORK", "100")
    path = slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1, "mem_gb": 1},
                                  "resources": {"downstream": {"timeout_min": 1, "slurm_signal_delay_s": 5}}})
    study = StudyConfig.from_yaml(path)
    started = time.time()
    states, _ = run_study(study, progress=False)
    run = next(r for r in expand(study) if r.kind == "downstream")
    assert states[run.run_id]["status"] == "done", states[run.run_id]
    attempts = (Path(study.workdir) / "attempts.txt").read_text().split("\n")[:-1]
    starts = [int(line.split("from=")[1]) for line in attempts]
    assert len(starts) >= 2 and starts[0] == 0 and starts == sorted(set(starts)), attempts  # each went further
    job = job_ids(study)[run.run_id]
    assert wait_for_state(slurm_cluster, job, "COMPLETED")
    attempts_seen = slurm_cluster.command("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job).split()
    assert attempts_seen.count("REQUEUED") >= len(starts) - 1 >= 1, attempts_seen
    # the result of the same work done at once, uninterrupted
    monkeypatch.setenv("FAKE_STEPS_UNIT_S", "0")
    (tmp_path / "once").mkdir()
    once = steps.long_work(run, study, tmp_path / "once", resume=False)
    assert states[run.run_id]["outputs"]["value"] == once["value"]
    print(f"{len(starts)} attempts, {time.time() - started:.0f} s")


@pytest.fixture
def quick_polls(monkeypatch):
    """The runner looks at its jobs every second and retries a refused submission at once (a study's defaults:
    2 s, sacct every 15 s, retries after 5, 20 and 60 s), and gives a dead job's result file 2 s to appear."""
    from submitit.slurm.slurm import SlurmJob

    from superb_redundancy.study.executors import SubmititExecutor

    monkeypatch.setattr(SubmititExecutor, "POLL", 0.5)
    monkeypatch.setattr(SubmititExecutor, "STATE_POLL", 1.0)
    monkeypatch.setattr(SubmititExecutor, "BACKOFF", (0.2, 0.2))
    monkeypatch.setattr(SlurmJob, "_results_timeout_s", 2)


def downstream_id(study: StudyConfig) -> str:
    return next(r.run_id for r in expand(study) if r.kind == "downstream")


@pytest.mark.slow
def test_a_refused_submission_is_recorded_and_submitted_again_next_call(slurm_cluster, tmp_path, fake_steps,
                                                                       quick_polls):
    from superb_redundancy.study.state import read_state

    common = {"slurm": {"cpus_per_task": 1, "mem_gb": 1}}
    study = StudyConfig.from_yaml(slurm_study(tmp_path, {**common, "resources": {
        "downstream": {"slurm_partition": "nowhere"}}}))
    run = downstream_id(study)
    states, _ = run_study(study, progress=False)  # no crash
    assert states["data"]["status"] == "done"
    refused = read_state(Path(study.workdir), next(r for r in expand(study) if r.run_id == run))
    assert refused["status"] == states[run]["status"] == "refused" and refused["error"] == states[run]["error"]
    assert refused["run"]["params_hash"] == states[run]["run"]["params_hash"]  # kept with the run's key
    assert "submission refused 3 times" in refused["error"] and "invalid partition" in refused["error"].lower()
    status = in_process("study", "status", str(tmp_path / "s.yaml"))
    assert any(line.startswith(f"| {run} ") and "| refused " in line for line in status.stdout.splitlines())

    study = StudyConfig.from_yaml(slurm_study(tmp_path, common))  # the partition fixed
    states, _ = run_study(study, progress=False)
    assert states[run]["status"] == "done"


@pytest.mark.slow
def test_no_more_jobs_in_flight_than_max_jobs(slurm_cluster, tmp_path, fake_steps, quick_polls, monkeypatch):
    monkeypatch.setenv("FAKE_STEPS_SLEEP", "3")
    study = StudyConfig.from_yaml(slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1, "mem_gb": 1},
                                                         "max_jobs": 1}, seeds=[1, 2, 3]))
    states, _ = run_study(study, progress=False)
    assert {s["status"] for s in states.values()} == {"done"}
    jobs = [job for run_id, job in job_ids(study).items() if run_id.startswith("downstream/")]
    assert len(jobs) == 3  # the node runs two 1-CPU jobs at once: only the cap keeps them one at a time
    spans = sorted((s["started"], s["finished"]) for run_id, s in states.items() if run_id.startswith("downstream/"))
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans


def _study_checkpointing_in_a_thread(tmp_path: Path, monkeypatch, units: int):
    """A one-run study of ``units`` checkpointed half-second units, its runner started in a thread: returned
    (study file, study, the downstream run, the thread, the dict its states land in) once the run has written its
    first checkpoint (or after 2 minutes)."""
    import threading

    monkeypatch.setenv("FAKE_STEPS_WORK", str(units))
    monkeypatch.setenv("FAKE_STEPS_UNIT_S", "0.5")
    path = slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1, "mem_gb": 1}})
    study = StudyConfig.from_yaml(path)
    run = next(r for r in expand(study) if r.kind == "downstream")
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(states=run_study(study, progress=False)[0]))
    runner.start()
    progress = run.folder(Path(study.workdir).resolve()) / "progress.json"
    deadline = time.time() + 120
    while not progress.is_file() and time.time() < deadline:
        time.sleep(0.5)
    return path, study, run, runner, outcome


@pytest.mark.slow
def test_a_cancelled_job_is_recorded_failed_with_slurms_reason_and_rerun(slurm_cluster, tmp_path, fake_steps,
                                                                         quick_polls, monkeypatch):
    """``study cancel`` mid-run: the run is recorded failed (CANCELLED), the next call resumes it from what the
    cancelled attempt checkpointed (written atomically; nothing half-written), and its result is an
    uninterrupted run's."""
    import fake_steps as steps

    from superb_redundancy.study.state import read_state

    path, study, run, runner, outcome = _study_checkpointing_in_a_thread(tmp_path, monkeypatch, units=60)
    cancelled = in_process("study", "cancel", str(path))
    runner.join(timeout=120)
    job = job_ids(study)[run.run_id]
    assert f"cancelled job {job} ({run.run_id})" in cancelled.stdout, cancelled
    state = read_state(Path(study.workdir), run)
    assert state["status"] == "failed" and state["slurm_state"].startswith("CANCELLED"), state
    assert outcome["states"][run.run_id]["status"] == "failed"
    status = in_process("study", "status", str(path)).stdout
    assert any(line.startswith(f"| {run.run_id} ") and f"{job} (CANCELLED" in line for line in status.splitlines()), status

    monkeypatch.setenv("FAKE_STEPS_UNIT_S", "0")
    states, _ = run_study(study, progress=False)
    assert states[run.run_id]["status"] == "done"
    attempts = (Path(study.workdir) / "attempts.txt").read_text().split()
    assert len(attempts) == 6 and attempts[-1] != "from=0", attempts  # resumed, not restarted
    (tmp_path / "once").mkdir()
    assert states[run.run_id]["outputs"]["value"] == steps.long_work(run, study, tmp_path / "once")["value"]


@pytest.mark.slow
def test_a_job_whose_node_dies_is_requeued_and_resumed(slurm_cluster, tmp_path, fake_steps, quick_polls,
                                                        monkeypatch):
    """slurmd stopped and the job's processes killed mid-run: Slurm marks the node down and the job NODE_FAIL, and
    requeues it (the study's jobs ask for --requeue); once the node is back the run continues from its last
    checkpoint and ends with an uninterrupted run's result, in the same call."""
    import fake_steps as steps

    path, study, run, runner, outcome = _study_checkpointing_in_a_thread(tmp_path, monkeypatch, units=40)
    job = job_ids(study)[run.run_id]
    try:
        slurm_cluster.lose_node(job)
        deadline = time.time() + 120
        while "down" not in slurm_cluster.command("sinfo", "-h", "-N", "-o", "%T") and time.time() < deadline:
            time.sleep(1)
    finally:
        slurm_cluster.start_slurmd()  # the other tests need the node
    runner.join(timeout=180)
    assert outcome["states"][run.run_id]["status"] == "done", outcome
    assert "NODE_FAIL" in slurm_cluster.command("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job).split()
    attempts = (Path(study.workdir) / "attempts.txt").read_text().split()
    assert len(attempts) == 6 and attempts[-1] != "from=0", attempts  # resumed, not restarted
    monkeypatch.setenv("FAKE_STEPS_UNIT_S", "0")
    (tmp_path / "once").mkdir()
    assert outcome["states"][run.run_id]["outputs"]["value"] == steps.long_work(run, study, tmp_path / "once")["value"]


@pytest.mark.slow
def test_the_leaderboard_is_built_as_a_job_and_times_only_new_variants(slurm_cluster, tmp_path, tiny_ckpts,
                                                                       quick_polls):
    """On Slurm the leaderboard is built by a job of its own (the runner's machine may lack the study's device);
    its variants' profiles are cached, so the next build times nothing again."""
    from superb_redundancy.core.files import write_json
    from superb_redundancy.core.variant import VariantDescription, VariantKind
    from superb_redundancy.statistics.evidence import TestItems
    from superb_redundancy.results.records import RunRecord
    from superb_redundancy.study.executors import make_executor
    from superb_redundancy.study.runner import _write_leaderboard

    path = slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1, "mem_gb": 2},
                                  "resources": {"leaderboard": {"timeout_min": 5}}})
    study = StudyConfig.from_yaml(path)
    work = Path(study.workdir).resolve()
    states = {}
    for variant, correct in (("w-base", 9), ("w-copy", 8)):
        items = [TestItems("accuracy", tuple(f"u{i}" for i in range(10)), correct=(1,) * correct + (0,) * (10 - correct),
                           truth=tuple(str(i % 2) for i in range(10))).to_dict()]
        record = RunRecord(record_id=variant, expdir=f"/exp/{variant}", task="speech_commands",
                           upstream="wav2vec2_local", upstream_ckpt=str(tiny_ckpts["wav2vec2"]),
                           upstream_model_config=None, upstream_sha256=None, model_config_sha256=None,
                           variant=variant, metric="acc", value=correct / 10, higher_is_better=True, seed=1,
                           config=None, config_sha256=None, step=30, evaluated_at="2026-01-01T00:00:00", items=items,
                           n=10, description=VariantDescription(VariantKind.STOCK, family="wav2vec2",
                                                                base=str(tiny_ckpts["wav2vec2"])))
        write_json(work / "records" / f"{variant}.json", record.to_dict())
        states[variant] = {"status": "done", "outputs": {"record": str(work / "records" / f"{variant}.json")}}

    frame = _write_leaderboard(study, work, states, make_executor(study, work))
    assert frame is not None and len(frame) == 2 and frame.latency_ms.notna().all()
    assert (Path(study.leaderboard.path) / "index.html").is_file()
    jobs = slurm_cluster.command("sacct", "-X", "-n", "-P", "-o", "JobID,State", "--name", "slurm/leaderboard")
    (job,) = [line.split("|")[0] for line in jobs.split()]  # one job
    assert wait_for_state(slurm_cluster, job, "COMPLETED")
    cached = {p: p.stat().st_mtime_ns for p in (work / "profiles").glob("*.json")}
    assert len(cached) == 1  # the two variants are the one model
    _write_leaderboard(study, work, states, make_executor(study, work))
    assert {p: p.stat().st_mtime_ns for p in (work / "profiles").glob("*.json")} == cached  # nothing re-timed


@pytest.mark.slow
def test_a_new_runner_waits_for_the_jobs_of_a_stopped_one(slurm_cluster, tmp_path, fake_steps, quick_polls,
                                                          monkeypatch):
    """The runner is killed while its job runs on (jobs outlive their runner): the next ``study run`` waits for that
    job instead of submitting the run again."""
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("FAKE_STEPS_WORK", "30")
    monkeypatch.setenv("FAKE_STEPS_UNIT_S", "0.5")
    path = slurm_study(tmp_path, {"slurm": {"cpus_per_task": 1, "mem_gb": 1}})
    study = StudyConfig.from_yaml(path)
    run = next(r for r in expand(study) if r.kind == "downstream")
    runner = subprocess.Popen([sys.executable, "-m", "superb_redundancy.cli", "study", "run", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = run.folder(Path(study.workdir).resolve()) / "progress.json"
    deadline = time.time() + 120
    while not progress.is_file() and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    job = job_ids(study)[run.run_id]
    states, _ = run_study(study, progress=False)
    assert states[run.run_id]["status"] == "done"
    assert job_ids(study)[run.run_id] == job  # no second job
    assert (Path(study.workdir) / "attempts.txt").read_text().split() == [run.run_id, "attempt", "from=0"]
    submitted = sorted(p.name.split("_")[0] for p in (Path(study.workdir) / "submitit").glob("*_submission.sh"))
    assert len(submitted) == 2 and job in submitted  # the data run's job and this one
