"""s3prl's own runner trains, evaluates and resumes our upstreams (registration on every call)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.studies import corpus_data, write_study
from superb_redundancy.data import tasks
from superb_redundancy.hub import runner
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.results.metrics import read_test_metric

ROOT = Path(__file__).resolve().parents[2]
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

    run_downstream("-m", "evaluate", "-e", str(expdir / "states-30.ckpt"), cwd=tmp_path)  # --device: cpu by default
    metric = read_test_metric(expdir, "speech_commands")
    assert metric.step == 0 and 0.0 <= metric.value <= 1.0  # evaluate mode logs step 0


@pytest.fixture(scope="module")
def ks_head(ks_experiment):
    """The session's KS experiment on the unpruned tiny wav2vec2: (expdir, the checkpoint its test score is of)."""
    from superb_redundancy.pruning.curves.experiment import resolve_checkpoint

    return ks_experiment, resolve_checkpoint(ks_experiment)


def test_a_head_evaluated_with_a_pruned_upstream_scores_that_variant_in_its_own_folder(ks_head, tiny_ckpts, tmp_path):
    """The score is the pruned variant's (equal to its pruning-curve point), filed under the pruned upstream."""
    ks_head, head = ks_head
    from superb_redundancy.pruning.curves.run import pruning_curves
    from superb_redundancy.pruning.curves.settings import CurveSettings
    from superb_redundancy.results.leaderboard.frame import build
    from superb_redundancy.results.leaderboard.profiles import Profile
    from superb_redundancy.results.records import harvest

    base_log = (ks_head / "log.log").read_text()
    spec = PruneSpec(base=str(tiny_ckpts["wav2vec2"]), drop_layers=[2]).to_yaml(tmp_path / "drop2.yaml")
    out = run_downstream("-m", "evaluate", "-e", str(head), "-u", "pruned_wav2vec2",
                         "-g", str(spec), "-p", str(tmp_path / "pruned_eval"), cwd=tmp_path)
    assert "no CUDA device here: running on --device cpu" in out.stderr  # s3prl's cuda default would have died
    assert (ks_head / "log.log").read_text() == base_log  # nothing appended to the head's own experiment
    pruned = read_test_metric(tmp_path / "pruned_eval", "speech_commands").value
    unpruned = read_test_metric(ks_head, "speech_commands").value

    # the curves evaluate the same checkpoint with the same variant (backward pruning by 1 drops layer 2)
    curves = pruning_curves(head,
                            settings=CurveSettings(objectives=("backward",), repeats=1, progress=False))
    assert curves.mean("backward", 1) == pruned  # exactly: the same per-sample outcomes, averaged alike
    assert curves.mean("backward", 0) == unpruned

    records, problems = harvest([ks_head, tmp_path / "pruned_eval"], tmp_path / "records")
    assert not problems, problems
    by_upstream = {r.upstream: r for r in records}
    assert by_upstream["pruned_wav2vec2"].value == pruned and by_upstream["wav2vec2_local"].value == unpruned
    assert by_upstream["pruned_wav2vec2"].head["expdir"] == str(ks_head)
    frame, _ = build(records, profile=lambda rs: ({r.variant: Profile(1, 1.0) for r in rs}, {}))
    rows = frame.set_index("label")
    assert rows.loc["pruned_wav2vec2 drop [2]", "value"] == pruned and rows.loc["wav2vec2_local", "value"] == unpruned


@pytest.mark.parametrize("extra, message", [
    (["-d", "emotion"], "restores -d from the checkpoint, so s3prl would ignore it"),
    (["-u", "pruned_wav2vec2", "-p", "{head}"], "is the head's own experiment folder"),
])
def test_flags_s3prl_would_ignore_are_refused(extra, message, ks_head, tmp_path, capsys, monkeypatch):
    expdir, head = ks_head
    args = [a.format(head=expdir) for a in extra]
    monkeypatch.chdir(tmp_path)
    assert runner.main(["-m", "evaluate", "-e", str(head), *args]) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1], err[-2000:]


def test_resuming_with_another_upstream_is_refused(ks_head, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.main(["-m", "train", "-e", str(ks_head[1]), "-u", "hubert_local"]) == 2
    assert "s3prl restores -u 'wav2vec2_local' from the checkpoint and would ignore -u 'hubert_local'" in \
        capsys.readouterr().err


def _bad_stock_checkpoint(tmp_path: Path, content) -> Path:
    ckpt = tmp_path / "model.pt"
    if content is not None:
        ckpt.write_bytes(content)
    return ckpt


def _train_args(ckpt: Path, tmp_path: Path) -> list[str]:
    return ["-m", "train", "-u", "wav2vec2_local", "-k", str(ckpt), "-d", "speech_commands", "-p", str(tmp_path / "exp")]


def test_a_bad_stock_checkpoint_is_one_line_before_s3prl_starts(tmp_path):
    """As a user runs it (a fresh process): one line naming the file, nothing written."""
    ckpt = _bad_stock_checkpoint(tmp_path, None)
    result = subprocess.run([sys.executable, str(ROOT / "run_downstream.py"), *_train_args(ckpt, tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert str(ckpt) in lines[0] and "not found" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("content, why", [(None, "not found"), (b"", "empty or truncated"),
                                          (b"not a checkpoint at all", "not a torch checkpoint")])
def test_each_bad_stock_checkpoint_is_one_line_naming_why(content, why, tmp_path, capsys, monkeypatch):
    ckpt = _bad_stock_checkpoint(tmp_path, content)
    monkeypatch.chdir(tmp_path)
    assert runner.main(_train_args(ckpt, tmp_path)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(ckpt) in lines[0] and why in lines[0], lines
    assert not (tmp_path / "exp").exists()
