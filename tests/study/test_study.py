"""Studies: expansion, resume after a kill, the submitit path, failures recorded without stopping the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from superb_redundancy.study import StudyConfig, StudyConfigError, expand, run_study, study_status

ROOT = Path(__file__).resolve().parents[2]


def write_study(path: Path, **overrides) -> Path:
    study = {
        "name": "t", "workdir": str(path.parent / "work"), "leaderboard": str(path.parent / "board"),
        "data": {"synthetic": {"scale": 1.0}},
        "upstreams": [{"name": "w", "family": "wav2vec2", "base": "tiny",
                       "similarity": {"batch_size": 32, "limit": 64}}],
        "tasks": ["speech_commands"], "seeds": [1337],
    }
    study.update(overrides)
    path.write_text(yaml.safe_dump(study))
    return path


def test_expansion_of_the_shipped_studies():
    default = StudyConfig.from_yaml(ROOT / "studies" / "embedded_default.yaml")
    runs = expand(default)
    ids = [r.run_id for r in runs]
    assert ids[0] == "data" and len(ids) == len(set(ids))
    assert [r.stage for r in runs] == sorted(r.stage for r in runs)  # stage order
    downstream = [r for r in runs if r.kind == "downstream"]
    upstream = default.upstreams[0]
    variants = 1 + len(upstream.prune.objectives) * len(upstream.prune.amounts) + len(upstream.mimic)
    assert len(downstream) == variants * len(default.tasks) * len(default.seeds)
    assert {r.kind for r in runs} == {"data", "finetune", "similarity", "prune", "mimic", "downstream", "curves"}
    paper = StudyConfig.from_yaml(ROOT / "studies" / "paper.yaml")
    assert len(paper.upstreams) == 4 and paper.executor.kind == "slurm"
    assert {r.kind for r in expand(paper)} >= {"similarity", "prune", "mimic", "downstream", "curves"}


@pytest.mark.parametrize("change, message", [
    ({"tasks": ["kws"]}, r"tasks: 'kws'; valid: "),
    ({"upstreams": []}, r"names no upstream"),
    ({"upstreams": [{"name": "a", "family": "bert"}]}, r"family: 'bert'; valid: "),
    ({"upstreams": [{"name": "a", "prune": {"objectives": ["middle"]}}]}, r"objectives: 'middle'"),
    ({"executor": {"kind": "k8s"}}, r"executor.kind: 'k8s'"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"data": {}}, r"no corpus root for \['speech_commands'\]"),
])
def test_bad_study_files(tmp_path, change, message):
    with pytest.raises(StudyConfigError, match=message):
        StudyConfig.from_yaml(write_study(tmp_path / "s.yaml", **change))


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_rest_go_on(tmp_path):
    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", tasks=["speech_commands"],
        upstreams=[{"name": "good", "family": "wav2vec2", "base": "tiny", "baseline": False,
                    "similarity": {"batch_size": 32, "limit": 48}, "prune": {"objectives": ["bi"], "amounts": [1]}},
                   {"name": "bad", "family": "wav2vec2", "base": str(tmp_path / "missing.pt"), "baseline": False,
                    "similarity": {"batch_size": 32, "limit": 48}, "prune": {"objectives": ["bi"], "amounts": [1]}}]))
    states, _ = run_study(study, progress=False)
    assert states["similarity/bad"]["status"] == "failed" and "missing.pt" in states["similarity/bad"]["error"]
    assert states["prune/bad/bi-1"]["status"] == "skipped"
    assert states["similarity/good"]["status"] == "done" and states["prune/good/bi-1"]["status"] == "done"
    assert yaml.safe_load(Path(states["prune/good/bi-1"]["outputs"]["spec"]).read_text())["drop_layers"]
    rows = {run_id: status for run_id, status, _ in study_status(study)}
    assert rows["similarity/bad"] == "failed" and rows["prune/good/bi-1"] == "done"


@pytest.mark.slow
def test_submitit_local_executor(tmp_path):
    study = StudyConfig.from_yaml(write_study(
        tmp_path / "s.yaml", upstreams=[{"name": "w", "family": "wavlm", "base": "tiny", "baseline": False,
                                         "similarity": {"batch_size": 32, "limit": 48},
                                         "prune": {"objectives": ["knn-bi"], "amounts": [1]}}],
        executor={"kind": "slurm", "cluster": "local", "slurm": {"timeout_min": 10}}))
    states, _ = run_study(study, progress=False)
    assert all(s["status"] == "done" for s in states.values()), states
    assert list((tmp_path / "work" / "submitit").iterdir())  # the jobs' submitit folders


@pytest.mark.slow
def test_resume_after_a_kill_loses_and_duplicates_nothing(tmp_path):
    path = write_study(tmp_path / "s.yaml", seeds=[1, 2])  # base x speech_commands x 2 seeds
    work = tmp_path / "work"
    command = [sys.executable, "-m", "superb_redundancy.cli", "study", "run", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first, second = (work / "state" / "downstream" / "w-base" / "speech_commands" / f"seed{s}.json" for s in (1, 2))
    deadline = time.time() + 600
    while time.time() < deadline and not (second.is_file() and json.loads(second.read_text())["status"] == "running"):
        time.sleep(0.5)
    assert json.loads(first.read_text())["status"] == "done"
    time.sleep(3)  # well inside the second run
    os.killpg(process.pid, signal.SIGKILL)  # the worker and its run_downstream.py child
    process.wait()
    finished = json.loads(first.read_text())
    assert json.loads(second.read_text())["status"] == "running"  # interrupted

    study = StudyConfig.from_yaml(path)
    states, frame = run_study(study, progress=False)
    assert json.loads(first.read_text()) == finished  # the finished run was not redone
    assert states[f"downstream/w-base/speech_commands/seed2"]["status"] == "done"
    records = list((work / "records").glob("*.json"))
    assert len(records) == 2  # one per run: nothing lost, nothing duplicated
    assert {json.loads(r.read_text())["seed"] for r in records} == {1, 2}
    assert frame is not None and (tmp_path / "board" / "index.html").is_file()
