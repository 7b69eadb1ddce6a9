"""The teacher healing distils towards (the pruned model's base by default), checked against the pruned model, and
the loss terms it gives: which teacher layer each of the pruned model's hidden states is trained towards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from superb_redundancy.core.files import model_sha256
from superb_redundancy.distill.frontend import FRONTEND_MODULES
from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint, resolve_base
from superb_redundancy.models.families import ModelFamily
from superb_redundancy.pruning.heal.config import HealError
from superb_redundancy.pruning.heal.model import PrunedModel
from superb_redundancy.pruning.upstream import ARTIFACT_KEY

__all__ = ["TeacherInfo", "resolve_teacher", "target_pairs"]


@dataclass(frozen=True)
class TeacherInfo:
    path: Path
    num_layers: int
    model_sha256: str  # by content
    is_base: bool  # the model that was pruned


def _normalizes(checkpoint: dict, family: ModelFamily) -> bool:
    config = checkpoint["cfg"] if family.name == "wavlm" else checkpoint["task_cfg"]
    return bool(config.get("normalize", False))


def _frontend(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if k.split(".", 1)[0] in FRONTEND_MODULES}


def _check_teacher(model: PrunedModel, path: Path, checkpoint: dict, targets: str) -> None:
    """The cache's features are the teacher's projected CNN features; the pruned model must compute the same
    ones, so the front ends must be equal. ``mapped`` pairs layers by index, so the stacks must be equally deep."""
    fam = model.family
    if ARTIFACT_KEY in checkpoint:
        raise HealError(f"teacher {path} is a {checkpoint[ARTIFACT_KEY].get('kind')} artifact; the teacher is an "
                        f"unpruned {fam.name} checkpoint (the base, by default)")
    d_teacher, d_model = fam.hidden_size(checkpoint), fam.hidden_size(model.artifact)
    if d_teacher != d_model:
        raise HealError(f"teacher {path} has hidden size {d_teacher}, the pruned model {d_model}; they must match")
    if targets == "mapped" and fam.num_layers(checkpoint) != model.num_layers:
        raise HealError(f"--targets mapped pairs layers by index: teacher {path} has {fam.num_layers(checkpoint)} "
                        f"layers, the pruned model's positions {model.num_layers}; use --targets final")
    ours, theirs = _frontend(model.artifact[fam.weights_key]), _frontend(checkpoint[fam.weights_key])
    same = ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k]) for k in ours)
    if not same or _normalizes(checkpoint, fam) != _normalizes(model.artifact, fam):
        raise HealError(f"teacher {path} has another front end (CNN / feature projection / waveform normalisation) "
                        f"than the pruned model; the teacher's features feed the pruned layers, so use its base")


def resolve_teacher(model: PrunedModel, teacher: Optional[str], targets: str) -> TeacherInfo:
    """The teacher: ``teacher`` (a checkpoint path or a hub name of the family), or the pruned model's base
    (which must still hold the model that was pruned). Checked against the pruned model before any work."""
    fam = model.family
    name = teacher if teacher is not None else model.meta.get("spec", {}).get("base")
    try:
        path = resolve_base(name, fam)
        checkpoint = load_base_checkpoint(path, fam)
    except CheckpointError as error:
        hint = "" if teacher is not None else " (the pruned model's base; --teacher CKPT names the teacher)"
        raise HealError(f"teacher: {error}{hint}") from None
    content = model_sha256(checkpoint)
    if teacher is None and model.meta.get("base_model_sha256") not in (None, content):
        raise HealError(f"the pruned model's base {path} now holds another model than the one pruned; name the "
                        "teacher with --teacher CKPT")
    _check_teacher(model, path, checkpoint, targets)
    return TeacherInfo(path, model.family.num_layers(checkpoint), content,
                       content == model.meta.get("base_model_sha256"))


def target_pairs(targets: str, kept: Sequence[int], num_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(teacher transformer layer t, the pruned model's hidden-state index) per loss term: the teacher's
    ``hidden_states[t + 1]`` (the cache's ``layer_<t>``) against the pruned model's state at that index."""
    if targets == "final":
        return [(teacher_layers - 1, num_layers)]
    return [(t, t + 1) for t in sorted(set(kept) | {num_layers - 1})]
