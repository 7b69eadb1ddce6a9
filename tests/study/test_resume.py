"""A run that did not finish (killed, failed, timed out) continues from what it checkpointed when the study is run
again with the same key: the resumable kinds (study/steps.py RESUMABLE) keep their folder and are asked to resume,
the others and any run whose key changed start afresh. (The steps' own resume is tested where they live: s3prl's in
tests/hub/test_runner.py, step 1 in tests/mimic/test_mimic_train.py, healing in tests/pruning/test_heal.py, the
fine-tune killed with SIGKILL in tests/study/test_rehearsal.py.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers import studies
from superb_redundancy.study.steps import RESUMABLE

HERE = Path(__file__).resolve().parent
DOWNSTREAM, SIMILARITY = "downstream/w-base/speech_commands/seed1", "similarity/w"


def _attempts(work: Path) -> list[str]:
    return (work / "resumes.txt").read_text().splitlines()


def test_an_unfinished_run_resumes_with_the_same_key_and_starts_afresh_with_another(tmp_path, monkeypatch):
    """Fails on the main before issue 25: execute wiped every unfinished run's folder and resumed nothing."""
    from helpers.commands import in_process

    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("SUPERB_REDUNDANCY_STUDY_STEPS", "fake_steps")
    assert "downstream" in RESUMABLE and "similarity" not in RESUMABLE
    upstream = {"similarity": {"limit": 8}, "prune": {"objectives": ["bi"], "amounts": [1]}}
    path = studies.write_study(tmp_path / "s.yaml", upstream, name="r", seeds=[1])
    work = tmp_path / "work"
    monkeypatch.setenv("FAKE_STEPS_FAIL", f"{DOWNSTREAM},{SIMILARITY}")
    result = in_process("study", "run", str(path))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    monkeypatch.delenv("FAKE_STEPS_FAIL")
    assert in_process("study", "run", str(path)).returncode == 0
    last = {line.split()[0]: line for line in _attempts(work)}  # the latest attempt of each run
    assert last[DOWNSTREAM] == f"{DOWNSTREAM} resume=True partial=True"  # continued from its checkpoint
    assert last[SIMILARITY] == f"{SIMILARITY} resume=False partial=False"  # minutes of work: afresh

    # a failed attempt under another key (here: another downstream setting) is not continued
    monkeypatch.setenv("FAKE_STEPS_FAIL", DOWNSTREAM)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "setting": "demo"}))
    assert in_process("study", "run", str(path), "--rerun-changed").returncode == 1
    monkeypatch.delenv("FAKE_STEPS_FAIL")
    path.write_text(yaml.safe_dump({**data, "setting": "superb"}))
    assert in_process("study", "run", str(path), "--rerun-changed").returncode == 0
    assert [a for a in _attempts(work) if a.startswith(DOWNSTREAM)][-1] == f"{DOWNSTREAM} resume=False partial=False"
