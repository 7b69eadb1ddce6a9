"""The mimicker's own accuracy during step 1 (as the authors' code tracks it), through the teacher's fine-tuned head.

With ``eval_head`` (an s3prl experiment trained on the teacher) every epoch of
:func:`~superb_redundancy.mimic.train.train_mimicker` also evaluates the mimicker through that experiment's trained
Featurizer and head on its dev split (:class:`HeadEvaluator`, reusing
:func:`superb_redundancy.pruning.curves.load_experiment` and
:func:`~superb_redundancy.pruning.curves.evaluate_upstream`), with the upstream in the teacher's L+1 positions
(:func:`probe_upstream`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from superb_redundancy.core.files import checkpoint_sha256, sha256_file
from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.encoder import build_teacher_encoder
from superb_redundancy.mimic.frontend import build_frontend
from superb_redundancy.mimic.modules import Mimicker
from superb_redundancy.mimic.teacher_cache import TeacherCache
from superb_redundancy.mimic.upstream import MimicUpstream
from superb_redundancy.models.checkpoints import CheckpointError, resolve_base
from superb_redundancy.pruning.curves import SUPPORTED_TASKS, CurvesInputError, evaluate_upstream, load_experiment

__all__ = ["HeadEvaluator", "probe_upstream"]


class HeadEvaluator:
    """The accuracy of a mimicker through the teacher's fine-tuned downstream head: the Featurizer and head of an
    s3prl experiment trained on the teacher (``expdir``: its folder, ``dev-best.ckpt`` or a ``states-*.ckpt``),
    rebuilt by :func:`superb_redundancy.pruning.curves.load_experiment`, on one split of that experiment's data
    (``dev``: its validation split), metric as the expert averages ``records["acc"]``.

    The experiment's upstream must be the cache's teacher (same family, depth and weights). The upstream
    evaluated returns the teacher's L+1 positions (see :class:`~superb_redundancy.mimic.MimicUpstream`), so a
    Featurizer's weighted sum over the teacher's hidden states reads the mimicker where it expects each layer.
    """

    def __init__(self, expdir: str | os.PathLike, cache: TeacherCache, device: torch.device,
                 split: str = "dev", progress: bool = False):
        try:
            self.experiment = load_experiment(expdir, device=str(device))
            self.loader = self.experiment.downstream.get_dataloader(split)
        except CurvesInputError as error:
            raise MimicError(f"eval head {expdir}: {error}") from None
        except (KeyError, ValueError, OSError) as error:  # the expert has no such split / cannot read its data
            raise MimicError(f"eval head {expdir}: cannot load its {split!r} split "
                             f"({(str(error).splitlines() or [type(error).__name__])[0]})") from None
        self.expdir, self.split, self.progress = Path(expdir), split, progress
        self.mean = SUPPORTED_TASKS[self.experiment.task]
        self.items = 0
        _check_head_teacher(self.experiment, cache, self.expdir)

    def accuracy(self, upstream: torch.nn.Module) -> float:
        """The head's accuracy on the split with ``upstream`` (evaluated in eval mode, no gradient); the global
        random states the evaluation seeds (as s3prl's runner does) are restored afterwards."""
        was_training = upstream.training
        state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[self.experiment.device] if "cuda" in str(self.experiment.device) else []):
            try:
                upstream.eval()
                records = evaluate_upstream(self.experiment, upstream, self.split, self.loader, self.progress,
                                            leave=False)
            finally:
                upstream.train(was_training)
                random.setstate(state[0])
                np.random.set_state(state[1])
        outcomes = list(records["acc"])
        if not outcomes:
            raise MimicError(f"eval head {self.expdir}: its {self.split} split holds no item")
        self.items = len(outcomes)
        return float(self.mean(outcomes))

    def describe(self) -> dict:
        args = self.experiment.args
        return {"checkpoint": str(self.experiment.checkpoint), "task": self.experiment.task, "split": self.split,
                "upstream": args.upstream, "upstream_ckpt": getattr(args, "upstream_ckpt", None),
                "feature_selection": getattr(args, "upstream_feature_selection", "hidden_states"),
                "items": self.items, "metric": "accuracy"}


def _check_head_teacher(experiment, cache: TeacherCache, expdir: Path) -> None:
    """The experiment's upstream is the cache's teacher: family, depth and weights (by content)."""
    teacher = cache.teacher
    if experiment.family.name != teacher["family"] or experiment.num_layers != cache.num_layers:
        raise MimicError(f"eval head {expdir} was trained on a {experiment.num_layers}-layer {experiment.family.name}, "
                         f"not on the cache's teacher ({cache.num_layers}-layer {teacher['family']})")
    base = experiment.base
    path: Optional[Path] = Path(base).expanduser()
    if not path.is_file():
        try:
            path = resolve_base(base, experiment.family, download=False)
        except CheckpointError:
            path = None
    if path is None:
        raise MimicError(f"eval head {expdir}: cannot find its upstream {base!r} to check it is the cache's teacher")
    recorded = teacher.get("content_sha256")
    found = checkpoint_sha256(path, "teacher checkpoint", MimicError) if recorded else sha256_file(path)
    if found != (recorded or teacher["sha256"]):
        raise MimicError(f"eval head {expdir} was trained on {path} (sha256 {str(found)[:12]}...), not on the "
                         f"cache's teacher {teacher['path']} (sha256 {str(recorded or teacher['sha256'])[:12]}...)")


def probe_upstream(cache: TeacherCache, config: MimicConfig, model: Mimicker, targets: Sequence[int],
                   encoder: Optional[dict], device: torch.device) -> MimicUpstream:
    """The upstream the eval head sees during step 1: the cache's front end, the mimicker being trained (shared,
    not copied) and the kept teacher layers, in the teacher's L+1 positions."""
    front = cache.frontend()
    record = front["teacher"]
    frontend = build_frontend(record["family"], record["checkpoint_config"], front["frontend"])
    teacher_encoder = None if encoder is None else build_teacher_encoder(
        record["family"], record["checkpoint_config"], config.resolve_span(cache.num_layers), cache.num_layers, encoder)
    return MimicUpstream(frontend, model, config, teacher=record, targets=targets, encoder=teacher_encoder,
                         compact=False).to(device)
