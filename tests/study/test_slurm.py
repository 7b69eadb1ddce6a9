"""The study runner on a real Slurm cluster (tests/helpers/slurm.py: munged, MariaDB, slurmdbd, slurmctld and
slurmd, started once per session by the ``slurm_cluster`` fixture). The steps are the quick stand-ins of
fake_steps.py: what is tested is what the cluster does with the runs. Skipped, saying why, where no cluster can
start (no Slurm installed, not root)."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.xdist_group("slurm")  # one worker starts the cluster and runs these


def test_a_job_runs_on_the_cluster_within_a_minute(slurm_cluster, tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=str(tmp_path / "jobs"), cluster="slurm")
    executor.update_parameters(timeout_min=2, mem_gb=1, cpus_per_task=1)
    started = time.time()
    job = executor.submit(sum, [1, 2, 3])
    assert job.result() == 6
    assert time.time() - started < 60
    assert "COMPLETED" in slurm_cluster.command("sacct", "-n", "-X", "-o", "State", "-j", job.job_id)
