"""Early stopping in s3prl's runner (superb_redundancy.hub.early_stopping): the counter, and the wrapped
Runner.evaluate ending the run's step counter after `patience` dev evaluations without a new best (the run through
the real runner: tests/study/test_mimic_step2.py)."""

from __future__ import annotations

import pytest
from tqdm import tqdm

from superb_redundancy.hub import early_stopping
from superb_redundancy.hub.early_stopping import EarlyStopping


def test_it_stops_after_patience_evaluations_without_improvement():
    stopper = EarlyStopping(3)
    assert [stopper.update(improved) for improved in (True, False, False, True, False, False)] == [False] * 6
    assert stopper.update(False) is True and stopper.stale == 3 and stopper.evaluations == 7
    assert EarlyStopping(1).update(False) is True
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=rf"runner.early_stopping_patience: {bad!r}; valid: an integer >= 1"):
            EarlyStopping(bad)


def test_the_wrapped_evaluate_ends_the_runners_step_counter(monkeypatch):
    """A stand-in runner whose dev scores improve twice, then never: with patience 2 the second dev evaluation
    without a new best ends the 'overall' bar after its step and asks for that step's states; a test split does
    not count; a config without the key is left alone."""
    from s3prl.downstream.runner import Runner

    scores = iter([True, True, False, False])
    monkeypatch.setattr(Runner, "evaluate", lambda self, split=None, logger=None, global_step=0:
                        ["dev-best.ckpt"] if split == "dev" and next(scores) else [])
    notes = []
    early_stopping.enable(notes.append)
    runner = Runner.__new__(Runner)
    runner.config = {"runner": {"early_stopping_patience": 2}}
    bar = tqdm(total=1000, desc="overall", disable=False)
    try:
        found = [runner.evaluate(split, "logger", step) for split, step in
                 (("dev", 10), ("test", 10), ("dev", 20), ("dev", 30))]
        assert found == [["dev-best.ckpt"], [], ["dev-best.ckpt"], []] and bar.total == 1000
        bar.n = 39
        assert runner.evaluate("dev", "logger", 40) == ["states-40.ckpt"]
        assert bar.total == 40 and notes == ["early stopping at step 40: no new best on dev in 2 evaluations"]
        other = Runner.__new__(Runner)
        other.config = {"runner": {}}
        assert other.evaluate(None, None, 0) == [] and bar.total == 40  # outside training, no key: left alone
    finally:
        bar.close()
