"""s3prl's experiment checkpoints written atomically, so that a run killed at any moment can be resumed.

s3prl 0.4.18's runner removes the oldest ``states-*.ckpt`` beyond ``max_keep`` and only then writes the new one
with a plain ``torch.save`` (``s3prl/downstream/runner.py``, ``check_ckpt_num``). With ``max_keep: 1`` (every
SUPERB config) a kill between the two leaves no checkpoint, and a kill during the write leaves a truncated one that
``-a`` then picks. In the runner's process (:mod:`superb_redundancy.hub.runner`) this module makes each ``.ckpt``
save go to a temporary file renamed into place, and holds the removal of older ``states-*.ckpt`` back until the
next checkpoint is in place: at every moment the experiment folder holds a whole checkpoint to resume from.
"""

from __future__ import annotations

import os
import re
import types
from pathlib import Path

__all__ = ["enable"]

_STATES = re.compile(r"states-\d+\.ckpt$")


class _Proxy(types.ModuleType):
    """A module as s3prl's runner module sees it: ``overrides`` first, everything else the module's own."""

    def __init__(self, module: types.ModuleType, **overrides):
        super().__init__(module.__name__)
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name: str):
        return getattr(self._module, name)


class _DeferredRemovals(types.ModuleType):
    """The ``os`` module as s3prl's runner module sees it: removing a ``states-*.ckpt`` waits for the next save."""

    def __init__(self):
        super().__init__("os")
        self.pending: list[str] = []

    def __getattr__(self, name: str):
        return getattr(os, name)

    def remove(self, path, *args, **kwargs):
        if _STATES.search(str(path)):
            self.pending.append(str(path))
            return
        os.remove(path, *args, **kwargs)

    def flush(self, kept: str) -> None:
        for path in self.pending:
            if Path(path).resolve() != Path(kept).resolve():
                Path(path).unlink(missing_ok=True)
        self.pending.clear()


def enable() -> None:
    """Make s3prl's runner module save its checkpoints atomically (idempotent); call it before s3prl runs."""
    import torch
    from s3prl.downstream import runner as s3prl_runner

    if isinstance(s3prl_runner.os, _DeferredRemovals):
        return
    deferred = _DeferredRemovals()

    def atomic_save(obj, f, *args, **kwargs):  # torch.save looked up per call: the real torch module's own
        if not (isinstance(f, (str, os.PathLike)) and str(f).endswith(".ckpt")):
            return torch.save(obj, f, *args, **kwargs)
        tmp = f"{f}.tmp-{os.getpid()}"
        try:
            torch.save(obj, tmp, *args, **kwargs)
            os.replace(tmp, f)
        finally:
            Path(tmp).unlink(missing_ok=True)
        deferred.flush(str(f))

    s3prl_runner.os = deferred
    s3prl_runner.torch = _Proxy(torch, save=atomic_save)
