"""Early stopping for s3prl's runner: a training run whose config sets ``runner.early_stopping_patience: P`` stops
once P evaluations of its dev split in a row brought no new best (s3prl's experts say so by asking for a
``dev-best.ckpt``); s3prl itself always runs ``total_steps``, which then is only the cap.

The step that stops also saves its ``states-<step>.ckpt`` (the run's last states, for ``-a`` and the record); the
``dev-best.ckpt`` s3prl kept at the best evaluation is the one a study evaluates. A resumed run (``-a``) counts its
patience afresh from the resumed step. Enabled in the runner's process by :mod:`superb_redundancy.hub.runner`.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["EarlyStopping", "enable", "PATIENCE_KEY"]

#: the runner config key that turns it on
PATIENCE_KEY = "early_stopping_patience"


class EarlyStopping:
    """Counts evaluations without improvement; :meth:`update` says when ``patience`` of them came in a row."""

    def __init__(self, patience: int):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"runner.{PATIENCE_KEY}: {patience!r}; valid: an integer >= 1")
        self.patience = patience
        self.stale = 0  # evaluations since the last improvement
        self.evaluations = 0

    def update(self, improved: bool) -> bool:
        """Record one evaluation; True when training should stop now."""
        self.evaluations += 1
        self.stale = 0 if improved else self.stale + 1
        return self.stale >= self.patience


def _overall_bar(bars) -> Optional[object]:
    """The runner's step counter: its tqdm bar named ``overall``."""
    found = [bar for bar in list(bars) if getattr(bar, "desc", "").startswith("overall")]
    return found[-1] if found else None


def enable(note: Callable[[str], None]) -> None:
    """Wrap s3prl's ``Runner.evaluate`` (idempotent); call it before s3prl runs."""
    from s3prl.downstream.runner import Runner
    from tqdm import tqdm

    if getattr(Runner.evaluate, "_early_stopping", False):
        return
    original = Runner.evaluate

    def evaluate(self, split=None, logger=None, global_step=0):
        names = original(self, split, logger, global_step)
        patience = (self.config.get("runner") or {}).get(PATIENCE_KEY)
        if patience is None or split != "dev" or logger is None:  # not configured, or not during training
            return names
        stopper = self.__dict__.setdefault("_early_stopping", EarlyStopping(patience))
        if stopper.update(any(str(name).endswith("-best.ckpt") for name in names)):
            bar = _overall_bar(getattr(tqdm, "_instances", ()))
            if bar is None:
                raise RuntimeError("early stopping: cannot find s3prl's step counter (the 'overall' bar)")
            bar.total = bar.n + 1  # the runner's loops end after this step
            names = [*names, f"states-{global_step}.ckpt"]
            note(f"early stopping at step {global_step}: no new best on dev in {stopper.patience} evaluations")
        return names

    evaluate._early_stopping = True
    Runner.evaluate = evaluate
