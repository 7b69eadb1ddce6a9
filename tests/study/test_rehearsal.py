"""The shipped study ``paper`` itself, cut down by the shipped rehearsal override (rehearsals/paper_cpu)
and a layer that points it at this session's corpus, run end to end on Speech Commands v0.02's layout (minute-long
background recordings, a quarter of the clips under 1 s, the list files) as a user runs it, killed once mid-way.

On the main before issue 25 this study failed: the curves on KS-35 (UnsupportedTaskError), the mimic run on a
``_background_noise_`` recording; flatten refused the short clips; the killed fine-tune started from zero."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.commands import CLI
from helpers.studies import corpus_data
from superb_redundancy.data.splits import task_clips
from superb_redundancy.study.shipped import study_path

#: one xdist worker builds the module fixture (a study) once for all its tests
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rehearsal")]

PAPER, REHEARSAL = study_path("paper"), study_path("rehearsals/paper_cpu")


def _state(work: Path, run_id: str) -> dict:
    return json.loads((work / "state" / f"{run_id}.json").read_text())


def _kill_once_checkpointed(args: list[str], expdir: Path, timeout: float = 300) -> None:
    """Start the study; SIGKILL its whole process group as soon as the fine-tune has written a checkpoint."""
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + timeout
    try:
        while not list(expdir.glob("states-*.ckpt")):
            assert process.poll() is None, "the study ended before the fine-tune wrote a checkpoint"
            assert time.time() < deadline, "no fine-tune checkpoint in time"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory, corpus_root):
    root = tmp_path_factory.mktemp("rehearsal")
    work = root / "work"
    data = corpus_data(corpus_root, ["speech_commands_35"])
    here = root / "here.yaml"  # where this machine keeps things: the session's corpus, the test's folders
    here.write_text(yaml.safe_dump({"workdir": str(work), "data": {"synthetic": None, **data},
                                    "leaderboard": {"path": str(root / "board")},
                                    # a fine-tune long enough to be killed between two checkpoints
                                    "upstreams": [{"name": "*", "finetune": {"steps": 60}}]}))
    args = ["study", "run", str(PAPER), "--override", str(REHEARSAL), "--override", str(here)]
    _kill_once_checkpointed(args, work / "runs" / "finetune" / "wav2vec2-base" / "exp")
    killed = _state(work, "finetune/wav2vec2-base")
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=1500)
    return {"work": work, "board": root / "board", "data": data["speech_commands_35"], "killed": killed,
            "result": result, "args": args}


def test_every_run_of_the_paper_study_ends_done(rehearsed):
    result, work = rehearsed["result"], rehearsed["work"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    states = [json.loads(p.read_text()) for p in (work / "state").rglob("*.json")]
    kinds = {s["run"]["kind"] for s in states}
    assert kinds == {"data", "finetune", "similarity", "curves", "prune", "teacher", "mimic", "downstream"}
    assert [s["run"]["run_id"] for s in states if s["status"] != "done"] == []


def test_no_stage_read_a_file_outside_its_split(rehearsed):
    """Similarity and the pruning orders read dev, the teacher (step 1) train: the digests of exactly those lists."""
    work, datarc = rehearsed["work"], rehearsed["data"]
    similarity = _state(work, "similarity/wav2vec2-base")["outputs"]["audio"]
    dev = task_clips("speech_commands_35", "dev", datarc=datarc, limit=32).record()
    assert similarity == dev and similarity["split"] == "dev"
    teacher = _state(work, "teacher/wav2vec2-base")["outputs"]["audio"]
    train = task_clips("speech_commands_35", "train", datarc=datarc).record()
    assert teacher == train and teacher["clips"] == teacher["of"] and teacher["too_long"] == 0
    cache = json.loads((work / "runs" / "teacher" / "wav2vec2-base" / "cache" / "manifest.json").read_text())
    cached = {Path(source["path"]).resolve() for source in cache["sources"]}
    assert cached == set(task_clips("speech_commands_35", "train", datarc=datarc).files)


def test_flatten_ran_on_clips_fitted_to_one_second(rehearsed):
    report = json.loads(Path(_state(rehearsed["work"], "similarity/wav2vec2-base")["outputs"]["report"]).read_text())
    assert report["settings"]["pool"] == "flatten" and report["settings"]["clip_seconds"] == 1.0
    fit = report["source"]["fit"]
    assert fit["seconds"] == 1.0 and fit["clips"] == 32 and fit["padded"] > 0  # the short clips, padded


def test_the_killed_fine_tune_resumed_from_its_checkpoint(rehearsed):
    assert rehearsed["killed"]["status"] == "running"  # SIGKILL: nothing recorded it as ended
    outputs = _state(rehearsed["work"], "finetune/wav2vec2-base")["outputs"]
    assert outputs["resumed_from"].startswith("states-")
    log = (rehearsed["work"] / "runs" / "finetune" / "wav2vec2-base" / "finetune.log").read_text()
    assert " -a " in log  # s3prl's own resume


def test_the_tables_have_a_row_per_configuration(rehearsed):
    """The analog of Tables 1-4: one leaderboard row per mimicker and baseline, the pruned variants, the base."""
    board = pd.read_csv(rehearsed["board"] / "speech_commands_35.csv")
    labels = set(board.label)
    paper = ", step 2: paper (m_N, teacher's head, early stopping)"  # the paper's step 2, named on every mimic row
    assert {f"mimic linear N=1 z=32{paper}", f"mimic transformer N=2 z=32{paper}",
            f"non-mimicker linear N=1 z=32{paper}", f"classifier only (no layers){paper}",
            "reference: head on wav2vec2's last hidden state"} <= labels, labels
    assert board.is_base.sum() == 1 and len(board) >= 6
    assert (board.n == board.n.iloc[0]).all() and board.chance.iloc[0] == pytest.approx(1 / 35)
