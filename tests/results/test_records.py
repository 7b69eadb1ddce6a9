"""Harvesting s3prl experiment directories: every task's log format, malformed and duplicate ones."""

from __future__ import annotations

import json

import pytest
import yaml

from superb_redundancy.results.metrics import word_error_rate
from superb_redundancy.results.records import harvest, harvest_expdir, load_records


def write_predictions(expdir, correct, total, prefix="test"):
    """``<prefix>_predict.txt`` / ``_truth.txt`` with ``correct`` of ``total`` items right (labels a/b alternate)."""
    truth = [("a", "b")[i % 2] for i in range(total)]
    predicted = [t if i < correct else ("b" if t == "a" else "a") for i, t in enumerate(truth)]
    (expdir / f"{prefix}_predict.txt").write_text("".join(f"item{i} {p}\n" for i, p in enumerate(predicted)))
    (expdir / f"{prefix}_truth.txt").write_text("".join(f"item{i} {t}\n" for i, t in enumerate(truth)))


def make_expdir(root, name, task="speech_commands", upstream="wav2vec2_local", ckpt=None, log=None, seed=1337,
                fold=None, evaluate=True, arks=None, predictions=None, model_config=None):
    """An s3prl experiment folder; ``predictions``: (correct, total) of its test items (for accuracy tasks)."""
    expdir = root / name
    expdir.mkdir(parents=True)
    args = dict(mode="train", downstream=task, upstream=upstream, upstream_ckpt=ckpt, upstream_model_config=model_config,
                seed=seed, config=f"downstream_configs/{task}/tiny.yaml", init_ckpt=None)
    (expdir / "args_2026-01-01-00-00-00.yaml").write_text(yaml.safe_dump(args))
    config = {"runner": {"total_steps": 30}, "downstream_expert": {"datarc": {"test_fold": fold} if fold else {}}}
    (expdir / "config_2026-01-01-00-00-00.yaml").write_text(yaml.safe_dump(config))
    if evaluate:
        (expdir / "args_2026-01-01-00-10-00.yaml").write_text(yaml.safe_dump({**args, "mode": "evaluate"}))
    if log is not None:
        (expdir / "log.log").write_text(log)
    if predictions is not None:
        write_predictions(expdir, *predictions, prefix=f"test_{fold}" if fold else "test")
    for split, (hyp, ref) in (arks or {}).items():
        (expdir / f"{split}-noLM-hyp.ark").write_text(hyp)
        (expdir / f"{split}-noLM-ref.ark").write_text(ref)
    return expdir


def test_accuracy_tasks_read_the_last_test_line(tmp_path):
    log = "dev at step 15: 0.5\ntest at step 30: 0.61\nNew best on dev at step 30: 0.6\ntest at step 0: 0.625\n"
    for task in ("speech_commands", "voxceleb1", "emotion"):
        record = harvest_expdir(make_expdir(tmp_path, task, task=task, log=log, predictions=(5, 8)))
        assert (record.task, record.metric, record.value, record.higher_is_better) == (task, "acc", 0.625, True)
        assert record.n == 8 and record.items[0]["correct"] == [1] * 5 + [0] * 3


def test_a_log_line_that_disagrees_with_the_predictions_is_refused(tmp_path):
    from superb_redundancy.results.records import HarvestError

    expdir = make_expdir(tmp_path, "e", log="test at step 0: 0.625\n", predictions=(4, 8))
    with pytest.raises(HarvestError, match="disagrees with its predictions"):
        harvest_expdir(expdir)


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
    record = harvest_expdir(make_expdir(tmp_path, "e", ckpt=str(ckpt), log="test at step 0: 0.5\n",
                                        predictions=(1, 2)))
    assert record.upstream_sha256 and record.variant.startswith("wav2vec2_local k:")
    assert record.seed == 1337 and record.config_sha256 and record.evaluated_at


def test_malformed_partial_and_duplicate_experiments_warn_and_never_crash(tmp_path):
    exp = tmp_path / "exp"
    make_expdir(exp, "good", log="test at step 0: 0.7\n", predictions=(7, 10))
    make_expdir(exp, "duplicate_older", log="test at step 0: 0.6\n", predictions=(6, 10))  # same run
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


def test_emotion_folds_are_averaged_as_superb_does(tmp_path):
    from superb_redundancy.statistics.evidence import TestItems, score

    records = [harvest_expdir(make_expdir(tmp_path, f"f{i}", task="emotion", fold=f"fold{i}",
                                          log=f"test at step 0: 0.{i}\n", predictions=(i, 10))) for i in range(1, 6)]
    assert [r.fold for r in records] == [f"fold{i}" for i in range(1, 6)]
    folds = [TestItems.from_dict(r.items[0]) for r in records]
    result = score([folds])
    assert result.value == pytest.approx(0.3) and result.folds == 5 and result.n == 50
    assert result.low < 0.3 < result.high


def _valid_record(tmp_path):
    exp = make_expdir(tmp_path / "exp", "good", log="test at step 0: 0.7\n", predictions=(7, 10))
    records, _ = harvest([exp.parent], tmp_path / "records")
    (path,) = (tmp_path / "records").glob("*.json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("field, value, why", [
    ("value", 7.5, "outside [0, 1]"), ("value", -0.5, "outside [0, 1]"), ("value", float("inf"), "not a finite"),
    ("value", None, "not a finite"), ("task", "juggling", "unknown task"),
    ("description", {"kind": "distilled"}, "variant kind 'distilled' is invalid; valid: stock, pruned, mimic"),
    ("reading", {"reads": 3}, "reading reads 3 is not a string"),
    ("reading", {"layer": 3}, "reading {'layer': 3} is invalid"),
])
def test_each_bad_record_is_skipped_with_a_named_warning(tmp_path, field, value, why):
    path, data = _valid_record(tmp_path)
    bad = path.with_name("bad.json")
    bad.write_text(json.dumps({**data, "record_id": "bad", field: value}))
    with pytest.warns(UserWarning) as caught:
        stored = load_records(tmp_path / "records")
    assert [r.record_id for r in stored] == [data["record_id"]]  # the good one still counts
    (warning,) = [w for w in caught if "bad.json" in str(w.message)]
    assert why in str(warning.message) and (isinstance(value, dict) or repr(value) in str(warning.message))


def test_a_binary_record_file_is_skipped_with_a_named_warning(tmp_path):
    path, data = _valid_record(tmp_path)
    path.with_name("binary.json").write_bytes(bytes(range(256)))
    with pytest.warns(UserWarning, match="binary.json: not a text file|binary.json.*not valid JSON"):
        assert len(load_records(tmp_path / "records")) == 1


def test_reharvest_replaces_duplicates_count_once_and_gone_experiments_drop(tmp_path):
    exp = tmp_path / "exp"
    first = make_expdir(exp, "run", log="test at step 0: 0.5\n", predictions=(5, 10))
    harvest([exp], tmp_path / "records")
    write_predictions(first, 8, 10)  # evaluated again: a better head
    (first / "log.log").write_text("test at step 0: 0.8\n")
    harvest([exp], tmp_path / "records")
    (stored,) = load_records(tmp_path / "records")
    assert stored.value == pytest.approx(0.8)  # replaced, not added

    make_expdir(exp, "copy", log="test at step 0: 0.8\n", predictions=(8, 10))  # the same run in another folder
    with pytest.warns(UserWarning, match="duplicate"):
        harvest([exp], tmp_path / "records")
    assert len(load_records(tmp_path / "records")) == 1

    import shutil

    for name in ("run", "copy"):
        shutil.rmtree(exp / name)
    make_expdir(exp, "other", upstream="hubert_local", log="test at step 0: 0.6\n", predictions=(6, 10))
    with pytest.warns(UserWarning, match="is gone"):
        harvest([exp], tmp_path / "records")
    assert [r.upstream for r in load_records(tmp_path / "records")] == ["hubert_local"]


def test_a_record_without_a_variant_description_is_harvested_again(tmp_path):
    """A record of an older version (its variant as a "spec" dict) is harvested again from its experiment folder
    while that is there; without it, it is skipped, saying what to do."""
    path, data = _valid_record(tmp_path)
    old = {k: v for k, v in data.items() if k not in ("description", "reading")}
    path.write_text(json.dumps({**old, "spec": {}}))
    with pytest.warns(UserWarning, match=f"record {path.name}: written before variant descriptions; harvested again"):
        assert [r.to_dict() for r in load_records(tmp_path / "records")] == [data]
    assert json.loads(path.read_text()) == data  # rewritten in place: the next load reads it as it is
    gone = {**old, "record_id": "gone", "expdir": str(tmp_path / "gone")}
    path.with_name("gone.json").write_text(json.dumps({**gone, "spec": {"drop_layers": [1]}}))
    with pytest.warns(UserWarning, match=r"gone.json: no variant description \(harvested by an older version\? "
                                         r"harvest it again\)"):
        assert [r.record_id for r in load_records(tmp_path / "records")] == [data["record_id"]]


def test_a_pruned_variant_keeps_its_description_from_prune_to_the_leaderboard(tmp_path, tiny_ckpts):
    """prune (the library's one way, by an objective) -> its spec and its artifact -> harvested records, written
    and read back -> leaderboard rows: the kind, the base by content and the dropped layers survive each hop, and
    the rows meet their base."""
    from types import SimpleNamespace

    from superb_redundancy.core.files import checkpoint_sha256
    from superb_redundancy.core.variant import VariantKind
    from superb_redundancy.models.checkpoints import load_base_checkpoint
    from superb_redundancy.models.families import get_family
    from superb_redundancy.pruning.plan import prune_by_objective
    from superb_redundancy.pruning.upstream import save_pruned
    from superb_redundancy.results.leaderboard.frame import records_frame

    base = str(tiny_ckpts["wav2vec2"])
    family = get_family("wav2vec2")
    num_layers = family.num_layers(load_base_checkpoint(base, family))
    base_sha = checkpoint_sha256(base)
    # "forward" orders layers by position alone: a report's scores play no part
    report = SimpleNamespace(num_layers=num_layers, matrices={}, settings=None)
    plan, spec = prune_by_objective("wav2vec2", base, "forward", 1, report=report)
    dropped = tuple(plan.drop_layers)
    assert dropped and spec.variant.kind is VariantKind.PRUNED
    assert (spec.variant.base, spec.variant.base_sha256, spec.variant.drop_layers) == (base, base_sha, dropped)
    spec_path = spec.to_yaml(tmp_path / "spec.yaml")
    artifact = save_pruned("wav2vec2", spec, tmp_path / "pruned.pt")

    exp = tmp_path / "exp"
    log = "test at step 0: 0.5\n"
    make_expdir(exp, "base", ckpt=base, log="test at step 0: 1.0\n", predictions=(10, 10))
    make_expdir(exp, "spec", upstream="pruned_wav2vec2", model_config=str(spec_path), log=log, predictions=(5, 10))
    make_expdir(exp, "artifact", upstream="pruned_wav2vec2_local", ckpt=str(artifact), log=log, predictions=(5, 10))
    harvest([exp], tmp_path / "records")
    records = {r.upstream: r for r in load_records(tmp_path / "records")}  # through the JSON files
    for upstream in ("pruned_wav2vec2", "pruned_wav2vec2_local"):
        description = records[upstream].description
        assert (description.kind, description.family, description.base_sha256, description.drop_layers,
                description.objective) == (VariantKind.PRUNED, "wav2vec2", base_sha, dropped, "forward")
    assert records["wav2vec2_local"].description.kind is VariantKind.STOCK
    assert records["wav2vec2_local"].description.base_sha256 == base_sha

    frame = records_frame(list(records.values()), {}).set_index("expdir")
    rows = {upstream: frame.loc[records[upstream].expdir] for upstream in records}
    assert bool(rows["wav2vec2_local"].is_base) and rows["wav2vec2_local"].base == base_sha
    for upstream in ("pruned_wav2vec2", "pruned_wav2vec2_local"):
        row = rows[upstream]
        assert row.label == f"pruned_wav2vec2 drop {list(dropped)} (forward)"
        assert not row.is_base and row.base == base_sha and row.retention == pytest.approx(50.0)
