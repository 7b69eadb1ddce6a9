"""Harvesting s3prl experiment directories: every task's log format, malformed and duplicate ones."""

from __future__ import annotations

import json

import pytest
import yaml

from superb_redundancy.harvest import harvest, harvest_expdir, load_records
from superb_redundancy.results import word_error_rate


def make_expdir(root, name, task="speech_commands", upstream="wav2vec2_local", ckpt=None, log=None, seed=1337,
                fold=None, evaluate=True, arks=None):
    expdir = root / name
    expdir.mkdir(parents=True)
    args = dict(mode="train", downstream=task, upstream=upstream, upstream_ckpt=ckpt, upstream_model_config=None,
                seed=seed, config=f"downstream_configs/{task}/tiny.yaml", init_ckpt=None)
    (expdir / "args_2026-01-01-00-00-00.yaml").write_text(yaml.safe_dump(args))
    config = {"runner": {"total_steps": 30}, "downstream_expert": {"datarc": {"test_fold": fold} if fold else {}}}
    (expdir / "config_2026-01-01-00-00-00.yaml").write_text(yaml.safe_dump(config))
    if evaluate:
        (expdir / "args_2026-01-01-00-10-00.yaml").write_text(yaml.safe_dump({**args, "mode": "evaluate"}))
    if log is not None:
        (expdir / "log.log").write_text(log)
    for split, (hyp, ref) in (arks or {}).items():
        (expdir / f"{split}-noLM-hyp.ark").write_text(hyp)
        (expdir / f"{split}-noLM-ref.ark").write_text(ref)
    return expdir


def test_accuracy_tasks_read_the_last_test_line(tmp_path):
    log = "dev at step 15: 0.5\ntest at step 30: 0.61\nNew best on dev at step 30: 0.6\ntest at step 0: 0.625\n"
    for task in ("speech_commands", "voxceleb1", "emotion"):
        record = harvest_expdir(make_expdir(tmp_path, task, task=task, log=log))
        assert (record.task, record.metric, record.value, record.higher_is_better) == (task, "acc", 0.625, True)


def test_asr_wer_is_recomputed_from_the_ark_files(tmp_path):
    hyp = "u1 A CAT SAT\nu2 ON THE\n"
    ref = "u1 A CAT SAT DOWN\nu2 ON THE MAT\n"
    record = harvest_expdir(make_expdir(tmp_path, "asr", task="asr", arks={"test-clean": (hyp, ref)}))
    assert record.metric == "wer" and not record.higher_is_better
    assert record.value == pytest.approx(100 * 2 / 7)  # two deletions over seven reference words
    assert word_error_rate({"u": ["A", "B"]}, {"u": ["A", "C"]}) == 50.0


def test_record_names_what_ran(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    record = harvest_expdir(make_expdir(tmp_path, "e", ckpt=str(ckpt), log="test at step 0: 0.5\n"))
    assert record.upstream_sha256 and record.variant.startswith("wav2vec2_local k:")
    assert record.seed == 1337 and record.config_sha256 and record.evaluated_at


def test_malformed_partial_and_duplicate_experiments_warn_and_never_crash(tmp_path):
    exp = tmp_path / "exp"
    make_expdir(exp, "good", log="test at step 0: 0.7\n")
    make_expdir(exp, "duplicate_older", log="test at step 0: 0.6\n")  # same variant, task, seed, config
    make_expdir(exp, "not_evaluated", log="dev at step 15: 0.5\n", evaluate=False)
    make_expdir(exp, "no_log")
    broken = exp / "broken_yaml"
    broken.mkdir()
    (broken / "args_2026.yaml").write_text("mode: [train\n")
    (exp / "no_downstream").mkdir()
    (exp / "no_downstream" / "args_1.yaml").write_text("mode: train\n")
    records, problems = harvest([exp], tmp_path / "records")
    assert len(records) == 1
    text = "\n".join(problems)
    for name, why in [("not_evaluated", "no 'test at step N: X' line"), ("no_log", "no log.log"),
                      ("broken_yaml", "not valid YAML"), ("no_downstream", "names no downstream"),
                      ("duplicate", "duplicate run")]:
        assert name in text and why in text, text
    stored = load_records(tmp_path / "records")
    assert len(stored) == 1 and stored[0].value == records[0].value
    assert json.loads(next((tmp_path / "records").glob("*.json")).read_text())["task"] == "speech_commands"


def test_emotion_five_fold_mean_only_when_all_folds_are_there(tmp_path):
    records = [harvest_expdir(make_expdir(tmp_path, f"f{i}", task="emotion", fold=f"fold{i}",
                                          log=f"test at step 0: 0.{i}\n")) for i in range(1, 6)]
    (mean,) = fold_averages(records)
    assert mean.value == pytest.approx(0.3) and mean.fold == "mean of 5 folds"
    assert fold_averages(records[:4]) == []
