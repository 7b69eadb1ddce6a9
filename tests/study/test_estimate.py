"""The cost before the work (study/estimate.py, ``study status FILE --estimate``): offline, before any run, per
run kind and in total, from the shapes, steps, batch sizes and the corpus's clips (or the released sizes)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers.commands import in_process
from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import expand
from superb_redundancy.study.estimate import ASSUMED, RELEASED, estimate, split_sizes, summarize
from superb_redundancy.study.shipped import study_path

PAPER, SUPERB = study_path("paper"), study_path("paper_superb")


def _total(rows: list[dict]) -> dict:
    return next(row for row in rows if row["kind"] == "total")


def test_the_paper_studys_cost_is_printed_offline_before_any_run(tmp_path):
    """Fails on the main before issue 25 (no --estimate): 237 runs, their GPU hours, memory and disk."""
    result = in_process("study", "status", PAPER, "--estimate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # 237 runs then; 241 with the heads on the teachers' last layers that the paper's step 2 starts from
    assert lines[0].startswith("study paper: 241 runs on cuda; one A100-class GPU") and "assumed" in lines[0]
    total = next(line for line in lines if line.startswith("| total"))
    hours = float(total.split("|")[3].replace(",", ""))
    costs = estimate(StudyConfig.from_yaml(PAPER))
    assert hours == pytest.approx(sum(c.device_hours for c in costs), abs=0.05) and hours > 100
    assert not (tmp_path / "work").exists()  # nothing ran, nothing was written


def test_every_run_is_priced_once_and_the_totals_add_up():
    for path in (PAPER, SUPERB):
        study = StudyConfig.from_yaml(path)
        costs = estimate(study)
        assert [c.run_id for c in costs] == [r.run_id for r in expand(study)]
        assert all(c.device_hours >= 0 and c.disk_gb >= 0 for c in costs)
        rows = summarize(costs)
        assert _total(rows)["runs"] == len(costs) == sum(r["runs"] for r in rows if r["kind"] != "total")
    paper, superb = (_total(summarize(estimate(StudyConfig.from_yaml(p))))["device_hours"] for p in (PAPER, SUPERB))
    assert superb > paper  # the SUPERB study adds heads, its runs in common cost nothing twice


def test_the_absent_corpus_is_priced_at_the_released_sizes_and_a_present_one_counted(tmp_path, corpus_root):
    from helpers.studies import corpus_data
    from superb_redundancy.data.splits import task_clips

    paper = StudyConfig.from_yaml(PAPER)
    assert split_sizes(paper, "speech_commands_35")["train"] == RELEASED["speech_commands_35"]["train"]
    here = replace(paper, data=corpus_data(corpus_root, ["speech_commands_35"]))
    counted = split_sizes(here, "speech_commands_35")
    datarc = here.data["speech_commands_35"]
    assert counted["train"].clips == task_clips("speech_commands_35", "train", datarc=datarc).listed
    assert 0.5 < counted["train"].seconds <= 1.0  # a quarter of the clips are shorter than 1 s


def test_more_epochs_or_a_faster_device_scale_the_hours():
    paper = StudyConfig.from_yaml(PAPER)
    base = {c.run_id: c for c in estimate(paper)}
    def at(speed: float) -> dict:
        return {c.run_id: c for c in estimate(paper, replace(ASSUMED, forward_macs_per_second=speed))}

    faster, instant = at(2 * ASSUMED.forward_macs_per_second), at(1e30)  # instant: the start-up and checkpoints
    run = "finetune/wav2vec2-base"
    startup = instant[run].device_hours
    assert 0 < startup < 0.1 * base[run].device_hours
    assert faster[run].device_hours - startup == pytest.approx((base[run].device_hours - startup) / 2, rel=1e-6)
    up = paper.upstreams[0]
    mimic = tuple({**entry, "epochs": 100} for entry in up.mimic)  # the defaults were filled in at load
    longer = replace(paper, upstreams=(replace(up, mimic=mimic), *paper.upstreams[1:]))
    doubled = {c.run_id: c for c in estimate(longer)}
    mimic = "mimic/wav2vec2-base/linear-N1-z32"
    assert doubled[mimic].device_hours == pytest.approx(2 * base[mimic].device_hours, rel=0.02)


@pytest.mark.slow
def test_calibrate_measures_this_machine(tmp_path, monkeypatch):
    import functools

    from superb_redundancy.study import estimate as module

    # one clip, one step of each: the flag's path, not a good measurement (the default is 8 clips, 3 steps)
    monkeypatch.setattr(module, "calibrate", functools.partial(module.calibrate, batch=1, steps=1))
    result = in_process("study", "status", PAPER, "--estimate", "--calibrate", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "this machine's CPU" in first and "measured" in first and "assumed" not in first
