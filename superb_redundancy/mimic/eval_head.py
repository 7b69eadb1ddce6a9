"""The mimicker's own accuracy during step 1, through a head fine-tuned on the teacher.

With ``eval_head`` (an s3prl experiment trained on the teacher) every epoch of
:func:`~superb_redundancy.mimic.train.train_mimicker` also evaluates the mimicker through that experiment's trained
Featurizer and head on its dev split (:class:`HeadEvaluator`, reusing
:func:`superb_redundancy.pruning.curves.load_experiment` and
:func:`~superb_redundancy.pruning.curves.evaluate_upstream`), with the upstream in the teacher's L+1 positions
(:func:`probe_upstream`).

What it measures depends on what the mimicker replaces:

* the whole stack: the accuracy of a head that reads the teacher's LAST hidden state alone (an experiment trained
  with ``-s last_hidden_state``, or ``-s hidden_states -l L``) when it reads the mimicker's last output m_N
  instead. A perfect final-layer mimicker scores exactly what the teacher scores. A head whose Featurizer
  weights several positions is refused (:meth:`HeadEvaluator.check_config`): it would read the projected
  features and copies of m_N where it learnt to read the teacher's layers 0..L-1, and score a perfect mimicker
  far below the teacher.
* a span ``[i, j]`` of the teacher's layers (the others kept): the accuracy of the teacher with that block
  replaced, through any head trained on the teacher (its weighted sum reads the teacher's own states outside the
  span), as the pruning curves score a pruned teacher.
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
from superb_redundancy.distill.frontend import build_frontend
from superb_redundancy.mimic.modules import Mimicker
from superb_redundancy.distill.teacher_cache import TeacherCache
from superb_redundancy.mimic.upstream import MimicUpstream
from superb_redundancy.models.checkpoints import CheckpointError, resolve_base
from superb_redundancy.pruning.curves.evaluate import evaluate_upstream
from superb_redundancy.pruning.curves.experiment import load_experiment
from superb_redundancy.pruning.curves.settings import CurvesInputError, SUPPORTED_TASKS

__all__ = ["HeadEvaluator", "probe_upstream", "reads_last_layer"]


class HeadEvaluator:
    """The accuracy of a mimicker through the teacher's fine-tuned downstream head: the Featurizer and head of an
    s3prl experiment trained on the teacher (``expdir``: its folder, ``dev-best.ckpt`` or a ``states-*.ckpt``),
    rebuilt by :func:`superb_redundancy.pruning.curves.load_experiment`, on one split of that experiment's data
    (``dev``: its validation split), metric as the expert averages ``records["acc"]``.

    The experiment's upstream must be the cache's teacher (same family, depth and weights). The upstream
    evaluated returns the teacher's L+1 positions (see :class:`~superb_redundancy.mimic.MimicUpstream`). A
    whole-stack mimicker needs a head that reads the last position only (:meth:`check_config`; see the module
    docstring for what is measured).
    """

    def __init__(self, expdir: str | os.PathLike, cache: Optional[TeacherCache], device: torch.device,
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
        self.last_layer = reads_last_layer(self.experiment)
        if cache is not None:
            self.check_teacher(cache)

    def check_teacher(self, cache: TeacherCache) -> None:
        """The experiment's upstream is the cache's teacher (a head built without a cache checks it here)."""
        _check_head_teacher(self.experiment, cache, self.expdir)

    def check_config(self, config: MimicConfig) -> None:
        """Refuse a whole-stack mimicker when the head's Featurizer reads more than the teacher's last layer."""
        if self.last_layer or not config.whole_stack(self.experiment.num_layers):
            return
        raise MimicError(
            f"eval head {self.expdir}: its Featurizer weights the teacher's {self.experiment.num_layers + 1} hidden "
            f"states, so it cannot score the whole-stack mimicker {config.name()} (which replaces all of them); train "
            f"a head on the teacher's last layer (run_downstream.py ... -s last_hidden_state) and pass that")

    def accuracy(self, upstream: torch.nn.Module) -> float:
        """The head's accuracy on the split with ``upstream``: the mean of :meth:`outcomes`."""
        return float(self.mean(self.outcomes(upstream)))

    def outcomes(self, upstream: torch.nn.Module) -> list:
        """The head's outcome per item of the split with ``upstream`` (evaluated in eval mode, no gradient); the
        global random states the evaluation seeds (as s3prl's runner does) are restored afterwards."""
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
        return outcomes

    def describe(self) -> dict:
        args = self.experiment.args
        return {"checkpoint": str(self.experiment.checkpoint), "task": self.experiment.task, "split": self.split,
                "upstream": args.upstream, "upstream_ckpt": getattr(args, "upstream_ckpt", None),
                "feature_selection": getattr(args, "upstream_feature_selection", "hidden_states"),
                "layer_selection": getattr(args, "upstream_layer_selection", None),
                "reads": "the last hidden state" if self.last_layer else "a weighted sum of the hidden states",
                "items": self.items, "metric": "accuracy"}


def reads_last_layer(experiment) -> bool:
    """Whether the experiment's Featurizer reads the upstream's last hidden state alone (``-s last_hidden_state``,
    ``-s hidden_state_L``, or ``-s hidden_states`` with ``-l L`` / ``-l -1``), not a weighted sum."""
    args, last = experiment.args, experiment.num_layers
    selection = getattr(args, "upstream_feature_selection", None) or "hidden_states"
    layer = getattr(args, "upstream_layer_selection", None)
    if selection == "hidden_states":
        return layer is not None and int(layer) in (last, -1)
    return selection in ("last_hidden_state", f"hidden_state_{last}")


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
