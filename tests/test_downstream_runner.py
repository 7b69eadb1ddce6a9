"""s3prl's own runner trains, evaluates and resumes our upstreams (registration on every call)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from superb_redundancy import tasks
from superb_redundancy.prune_spec import PruneSpec
from superb_redundancy.results import read_test_metric

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_downstream(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / "run_downstream.py"), *args], cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_help_lists_our_variants(tmp_path):
    out = run_downstream("-h", cwd=tmp_path).stdout
    for name in ("pruned_wav2vec2", "pruned_hubert_local", "pruned_wavlm"):
        assert f"  {name} " in out


def test_pruned_wavlm_train_evaluate_resume(tmp_path, tiny_ckpts, corpus_root):
    spec = PruneSpec(base=str(tiny_ckpts["wavlm"]), drop_layers=[0]).to_yaml(tmp_path / "spec.yaml")
    expdir = tmp_path / "exp"
    data = tasks.format_overrides(tasks.data_overrides("speech_commands", corpus_root))
    common = ["-d", "speech_commands", "-c", str(tasks.config_path("speech_commands", "tiny")), "--device", "cpu"]
    run_downstream("-m", "train", "-u", "pruned_wavlm", "-g", str(spec), *common, "-p", str(expdir),
                   "-o", data + ",,config.runner.total_steps=15", cwd=tmp_path)
    assert (expdir / "states-15.ckpt").is_file()

    # resume (-a): a new process, so the upstream is found only because registration runs on every call
    resumed = run_downstream("-m", "train", "-a", "-p", str(expdir), "--device", "cpu",
                             "-o", "config.runner.total_steps=30", cwd=tmp_path)
    assert "Resume from" in resumed.stdout + resumed.stderr
    assert (expdir / "states-30.ckpt").is_file()

    run_downstream("-m", "evaluate", "-e", str(expdir / "states-30.ckpt"), "--device", "cpu", cwd=tmp_path)
    metric = read_test_metric(expdir, "speech_commands")
    assert metric.step == 0 and 0.0 <= metric.value <= 1.0  # evaluate mode logs step 0


def test_study_leaderboard_has_every_task_for_pruned_and_unpruned(tmp_path, corpus_root):
    """The main command's shape, smaller: base and a pruned variant on all four SUPERB tasks, one leaderboard."""
    import yaml

    from superb_redundancy.study import StudyConfig, run_study

    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "four-tasks", "workdir": str(tmp_path / "work"), "leaderboard": str(tmp_path / "board"),
        "upstreams": [{"name": "w", "family": "wav2vec2", "base": "tiny",
                       "similarity": {"batch_size": 32, "limit": 64},
                       "prune": {"objectives": ["knn-bi"], "amounts": [1]}}],
        "tasks": ["speech_commands", "voxceleb1", "emotion", "asr"]}))
    states, frame = run_study(StudyConfig.from_yaml(study_file), progress=False)
    assert all(s["status"] == "done" for s in states.values()), {k: s for k, s in states.items() if s["status"] != "done"}
    for task in tasks.TASKS:
        if task == "speech_commands_35":
            continue
        rows = frame[frame.task == task]
        assert len(rows) == 2 and rows.is_base.sum() == 1, task  # the unpruned base and the pruned variant
        assert rows.params.notna().all() and rows.macs.notna().all()
    assert (tmp_path / "board" / "index.html").is_file()
