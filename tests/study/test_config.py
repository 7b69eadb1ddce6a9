"""Study files: a misspelt key in any section is one problem line naming it and the valid keys; the run ids and
params hashes of a valid study stay what they were (a changed hash reruns a finished study)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import expand
from superb_redundancy.study.sections import StudyConfigError


def write_study(path: Path, upstream: dict | None = None, **overrides) -> Path:
    study = {"name": "t", "workdir": str(path.parent / "work"), "data": {"synthetic": {"scale": 1.0}},
             "upstreams": [{"name": "w", "base": "tiny", **(upstream or {})}], "tasks": ["speech_commands"]}
    study.update(overrides)
    path.write_text(yaml.safe_dump(study))
    return path


_PRUNE = {"objectives": ["bi"], "amounts": [1]}


@pytest.mark.parametrize("upstream, overrides, problem", [
    ({"prune": {"amountz": [0.5]}}, {},
     "upstreams[w].prune: unknown field(s) ['amountz']; valid: ['amounts', 'iterative', 'objectives']"),
    ({"similarity": {"pooll": "frames"}}, {},
     "upstreams[w].similarity: unknown field(s) ['pooll']; valid: ['averaging', 'batch_size', 'clip_seconds', "
     "'forward_batch_size', 'include_input', 'k', 'limit', 'max_samples', 'max_seconds', 'n_blocks', "
     "'permutations', 'pool']"),
    ({"finetune": {"stepz": 3}}, {},
     "upstreams[w].finetune: unknown field(s) ['stepz']; valid: ['lr', 'setting', 'steps', 'task']"),
    ({"prune": _PRUNE, "heal": {"epochz": 3}}, {},
     "upstreams[w].heal: unknown field(s) ['epochz']; valid: ['batch_size', 'epochs', 'lr', 'max_val_clips', "
     "'seed', 'targets', 'val_fraction']"),
    ({"basee": "tiny"}, {},
     "upstreams[w]: unknown field(s) ['basee']; valid: ['audio_task', 'base', 'baseline', 'family', 'finetune', "
     "'heal', 'mimic', 'mimic_defaults', 'mimic_select_by', 'mimic_step2', 'mimic_tasks', 'name', 'prune',"
     " 'similarity']"),
    ({}, {"curves": {"repeat": 2}},
     "curves: unknown field(s) ['repeat']; valid: ['objectives', 'repeats', 'subset', 'task']"),
    ({}, {"executor": {"worker": 2}},
     "executor: unknown field(s) ['worker']; valid: ['cluster', 'folder', 'gpus_per_run', 'kind', 'margin', "
     "'max_jobs', 'max_requeues', 'resources', 'slurm', 'workers']"),
    ({}, {"data": {"synthetic": {"scal": 2}}},
     "data.synthetic: unknown field(s) ['scal']; valid: ['scale', 'seed', 'workers']"),
    ({}, {"leaderboard": {"round": 2}},
     "leaderboard: unknown field(s) ['round']; valid: ['device', 'max_passes', 'path', 'retime', 'rounds', "
         "'where']"),
])
def test_a_misspelt_key_is_one_line_naming_it_and_the_valid_ones(tmp_path, upstream, overrides, problem):
    path = write_study(tmp_path / "s.yaml", upstream, **overrides)
    assert StudyConfig.load(path)[1] == [problem]
    with pytest.raises(StudyConfigError) as raised:
        StudyConfig.from_yaml(path)
    assert str(raised.value) == problem and raised.value.problems == [problem]


def test_a_misspelt_mimic_key_is_one_line(tmp_path):
    path = write_study(tmp_path / "s.yaml", {"mimic": [{"kind": "linear", "n_layers": 1, "zz": 32}]})
    (problem,) = StudyConfig.load(path)[1]
    assert problem.startswith("upstreams[w].mimic[0]: unknown") and "['zz']; valid: [" in problem
    assert "'z'" in problem and "'n_layers'" in problem


def test_every_typo_of_a_file_is_reported_together(tmp_path):
    path = write_study(tmp_path / "s.yaml", {"prune": {"objectives": ["bi"], "amountz": [0.5]},
                                             "similarity": {"pooll": "frames"}})
    problems = StudyConfig.load(path)[1]
    assert [p.split(":")[0] for p in problems] == ["upstreams[w].similarity", "upstreams[w].prune",
                                                   "upstreams[w].prune"]
    assert "['pooll']" in problems[0] and "['amountz']" in problems[1]
    assert problems[2] == "upstreams[w].prune: objectives without amounts: no prune run would be made"


#: every section of a study, each with non-default values
PINNED_STUDY = {
    "name": "pin", "workdir": "work/pin", "data": {"synthetic": {"scale": 0.5, "seed": 3}},
    "upstreams": [
        {"name": "w", "family": "wav2vec2", "base": "tiny",
         "finetune": {"task": "speech_commands", "steps": 20, "lr": 0.002},
         "similarity": {"pool": "mean", "limit": 64, "batch_size": 16, "k": 5},
         "prune": {"objectives": ["bi", "knn-bi"], "amounts": [1, 0.5, "keep95"], "iterative": True},
         "heal": {"epochs": 2, "lr": 0.0003, "targets": "mapped"},
         "mimic": [{"kind": "linear", "n_layers": 1, "z": 8, "span": [0, 1]},
                   {"kind": "linear", "n_layers": 1, "z": 8, "step1": False},
                   {"kind": "linear", "n_layers": 1, "z": 8, "span": [1, 2]}],
         "mimic_select_by": "acc", "mimic_step2": {"kind": "paper", "patience": 3, "eval_step": 10}},
        {"name": "h", "family": "hubert", "base": "tiny", "baseline": True,
         "prune": {"objectives": ["forward"], "amounts": [2]}},
    ],
    "tasks": ["speech_commands", "emotion"], "seeds": [1337, 7],
    "curves": {"task": "speech_commands", "objectives": ["bi", "knn-bi", "forward"], "repeats": 2, "subset": 0.5},
    "executor": {"kind": "local", "workers": 2},
}


def test_run_ids_and_params_hashes_are_pinned(tmp_path):
    """The hashes of a study using every section: a change here reruns every finished study (change it only on
    purpose; last changed when every stage came to read its audio from a task's official split, recorded in
    the runs' inputs; then when step 1's terms were normalised (a MimicConfig field) and the paper's step 2 came,
    with the runs of the head on the teacher's last layer)."""
    path = tmp_path / "pin.yaml"
    path.write_text(yaml.safe_dump(PINNED_STUDY))
    runs = expand(StudyConfig.from_yaml(path))
    listing = "\n".join(f"{run.run_id} {run.params_hash}" for run in runs)
    assert len(runs) == 99
    assert hashlib.sha256(listing.encode()).hexdigest() == \
        "d5e50e7170989e8eb4659fd93d693b8d32deb38327404bc72ed4cbdf5cc0acd6", listing


def test_the_leaderboard_is_a_path_or_its_settings(tmp_path):
    """``leaderboard: PATH`` as before; a mapping adds how the variants are timed, each value checked."""
    from superb_redundancy.study.config import LeaderboardPlan

    plain = StudyConfig.from_yaml(write_study(tmp_path / "a.yaml", leaderboard="board"))
    assert plain.leaderboard == LeaderboardPlan(path="board")
    quick = StudyConfig.from_yaml(write_study(tmp_path / "b.yaml", leaderboard={"path": "b", "rounds": 3}))
    assert (quick.leaderboard.path, quick.leaderboard.rounds, quick.leaderboard.max_passes) == ("b", 3, 32)
    problems = StudyConfig.load(write_study(tmp_path / "c.yaml", leaderboard={"rounds": 0, "device": "tpu"}))[1]
    assert problems == ["leaderboard.rounds: 0; must be >= 1", "leaderboard.device: 'tpu'; valid: cpu, cuda, cuda:N, mps"]


def test_curves_on_a_task_without_an_accuracy_are_refused_up_front(tmp_path):
    """Curves need an accuracy: ASR is refused in one line before any run, KS-35 (the paper's task) is accepted
    (on the main before issue 25 the KS-35 curves run failed after the fine-tune with UnsupportedTaskError, and the
    up-front check let the file through)."""
    curves = {"task": "asr", "objectives": ["bi"]}
    upstream = {"baseline": True}
    problems = StudyConfig.load(write_study(tmp_path / "a.yaml", upstream, tasks=["asr"], curves=curves))[1]
    assert problems == ["curves.task: 'asr' has no accuracy to draw curves of; valid: speech_commands, "
                        "speech_commands_35, voxceleb1, emotion"]
    ks35 = write_study(tmp_path / "b.yaml", upstream, tasks=["speech_commands_35"],
                       curves={**curves, "task": "speech_commands_35"})
    assert StudyConfig.load(ks35)[1] == []


@pytest.mark.parametrize("executor, problem", [
    ({"resources": {"pruning": {"mem_gb": 2}}},
     "executor.resources.pruning: unknown run kind 'pruning'; valid: ['data', 'finetune', 'similarity', 'prune', "
     "'teacher', 'mimic', 'heal', 'downstream', 'curves'], downstream/<task> or leaderboard"),
    ({"resources": {"downstream/asr": {"mem": 2}}},
     "executor.resources.downstream/asr: unknown submitit parameter(s) ['mem']; valid: ['cpus_per_task', "
     "'gpus_per_node', 'mem_gb', 'name', 'nodes', 'stderr_to_stdout', 'tasks_per_node', 'timeout_min'] or "
     "slurm_<name> for submitit's Slurm parameters (e.g. slurm_partition)"),
    ({"slurm": {"slurm_partitio": "gpu"}},
     "executor.slurm: unknown submitit parameter(s) ['slurm_partitio']; valid: ['cpus_per_task', 'gpus_per_node', "
     "'mem_gb', 'name', 'nodes', 'stderr_to_stdout', 'tasks_per_node', 'timeout_min'] or slurm_<name> for "
     "submitit's Slurm parameters (e.g. slurm_partition)"),
    ({"margin": 0.5}, "executor.margin: 0.5; must be >= 1 (the estimate times the margin)"),
    ({"max_jobs": 0}, "executor.max_jobs: 0; must be >= 1 (or null: no cap)"),
])
def test_a_bad_slurm_setting_is_one_line(tmp_path, executor, problem):
    path = write_study(tmp_path / "s.yaml", executor={"kind": "slurm", **executor})
    assert StudyConfig.load(path)[1] == [problem]


def test_each_run_asks_for_what_its_kind_needs(tmp_path):
    """The three layers of study/resources.py, without a cluster: estimate x margin, executor.slurm, per kind."""
    from superb_redundancy.study.estimate import estimate
    from superb_redundancy.study.resources import CPU_KINDS, run_requests

    path = write_study(tmp_path / "s.yaml", {"prune": {"objectives": ["knn-bi"], "amounts": [1]}}, device="cuda",
                       executor={"kind": "slurm", "margin": 2, "gpus_per_run": 2,
                                 "slurm": {"slurm_partition": "gpu", "gpus_per_node": 4, "timeout_min": 60},
                                 "resources": {"prune": {"slurm_partition": "cpu"}, "similarity": {"timeout_min": 5},
                                               "downstream/speech_commands": {"mem_gb": 3}}})
    study = StudyConfig.from_yaml(path)
    requests = run_requests(study)
    costs = {c.run_id: c for c in estimate(study)}
    assert {c.kind for c in costs.values() if c.device_hours == 0} == set(CPU_KINDS)  # the estimate agrees
    for run_id, request in requests.items():
        kind = run_id.split("/")[0]
        assert request["slurm_partition"] == ("cpu" if kind == "prune" else "gpu")
        assert ("gpus_per_node" in request) == (kind not in CPU_KINDS)  # CPU-only kinds ask for no GPU
        assert request.get("gpus_per_node", 4) == 4  # executor.slurm over the estimate's gpus_per_run
        assert request["timeout_min"] == (5 if kind == "similarity" else 60)
        want = 3 if kind == "downstream" else max(4, -(-costs[run_id].host_gb * 2 // 1))
        assert request["mem_gb"] == want, run_id


def test_a_leaderboard_device_missing_here_is_one_line_before_any_work(tmp_path):
    """Built here (``where: here``, or a local study) on a GPU this machine lacks: one line; built as a job on
    Slurm (the default there): no problem here."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    here = StudyConfig.from_yaml(write_study(tmp_path / "a.yaml", leaderboard={"device": "cuda", "where": "here"},
                                             executor={"kind": "slurm"}))
    assert [p for p in here.problems() if p.startswith("leaderboard")] == [
        "leaderboard.device: cuda, but this machine has 0 GPU(s) to time the variants on; set leaderboard.device: "
        "cpu, or leaderboard.where: job (built on the cluster)"]
    job = StudyConfig.from_yaml(write_study(tmp_path / "b.yaml", device="cuda", executor={"kind": "slurm"}))
    assert job.problems() == []
