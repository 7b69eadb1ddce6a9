"""Step 2 of mimicking (the adaptation phase): what s3prl's runner trains on a mimicker, and from where.

Two settings, named by a study's upstream plan (``mimic_step2``, a
:class:`~superb_redundancy.study.upstream_plan.Step2Plan`):

* ``weighted_sum`` (s3prl's default; this project's step 2 before the paper's): a fresh s3prl Featurizer and head
  read a learnt weighted sum of ``[projected features, m_1, ..., m_N]`` for the setting's fixed number of steps;
  the baselines train with ``-f``, which trains their mimicking layers and also the front end's feature projection
  and its LayerNorm.
* ``paper`` (section 2.3 of the paper, as the authors' code runs it): the head reads the last mimicking output m_N
  alone (``-s last_hidden_state``) and starts from a head on the teacher, projector and classifier, as the
  authors' code starts from the fine-tuned teacher's (:func:`head_init`: here the head of an s3prl experiment on
  the teacher's last hidden state, the teacher frozen); it trains until its dev metric
  has not improved for ``patience`` evaluations (early stopping, :mod:`superb_redundancy.hub.early_stopping`; at
  most ``max_steps``: :meth:`~superb_redundancy.study.upstream_plan.Step2Plan.runner_overrides`), and the dev-best
  checkpoint is the one evaluated. A mimicker's layers stay frozen (the authors' default); a non-mimicker trains
  its layers with the head (``-f`` with the front end frozen: ``frozen_frontend`` in the upstream's ``-g``);
  classifier only trains the head alone.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

import torch

from superb_redundancy.core import files as atomic
from superb_redundancy.mimic.config import MimicError

__all__ = ["STEP2", "head_init", "step2_arguments"]

#: the step-2 settings a study can name
STEP2 = ("weighted_sum", "paper")


def _read(path: Path) -> dict:
    return atomic.load_checkpoint(path, "s3prl checkpoint", MimicError, safe_globals=[argparse.Namespace])


def head_init(teacher_experiment: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write the ``-i`` checkpoint a paper step 2 starts from: the trained head (``Downstream``: projector and
    classifier) of an s3prl experiment on the teacher's last hidden state (its ``dev-best.ckpt``, else its last
    states), with its record of the best dev score reset, so that the new head's own dev-best is kept. Nothing else
    (no step, optimizer or Featurizer) goes in, so s3prl starts a fresh run from these weights."""
    from superb_redundancy.results.experiment import trained_checkpoint

    expdir = Path(teacher_experiment).expanduser()
    try:
        checkpoint_path = trained_checkpoint(expdir)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise MimicError(f"teacher head {expdir}: {(str(error).splitlines() or ['no checkpoint'])[0]}") from None
    checkpoint = _read(Path(checkpoint_path))
    args = checkpoint.get("Args")
    selection = getattr(args, "upstream_feature_selection", None) or "hidden_states"
    if selection != "last_hidden_state":
        raise MimicError(f"teacher head {checkpoint_path} reads {selection!r} (-s), not the teacher's last hidden "
                         "state; train it with -s last_hidden_state")
    state = {k: v.clone() for k, v in checkpoint["Downstream"].items()}
    if "best_score" in state:  # s3prl's experts keep their best dev score as a buffer: start the new run from none
        state["best_score"] = torch.zeros_like(state["best_score"])
    atomic.torch_save({"Downstream": state, "head_from": str(checkpoint_path)}, Path(output).expanduser())
    return Path(output).expanduser()


def step2_arguments(kind: str, step1: bool, n_layers: int, init: Optional[Path] = None,
                    frontend: bool = False) -> tuple[tuple[str, ...], bool]:
    """``(run_downstream.py training arguments besides -u -k -g, whether the front end must be frozen by -g)`` of
    a mimic variant's step 2.

    ``weighted_sum``: nothing for a mimicker, ``-f`` for a baseline (its layers, the feature projection and its
    LayerNorm train). ``paper``: ``-s last_hidden_state -i INIT``; a non-mimicker adds ``-f`` with its front end
    frozen (``frozen_frontend: true`` in ``-g``), so that only its layers train with the head; ``frontend`` (a
    ceiling, a reference row) trains the front end's projection and LayerNorm with them."""
    if kind not in STEP2:
        raise MimicError(f"step 2 {kind!r} is invalid; valid: {', '.join(STEP2)}")
    if kind == "weighted_sum":
        return (() if step1 else ("-f",)), False
    args: tuple[str, ...] = ("-s", "last_hidden_state") + (("-i", str(init)) if init is not None else ())
    trains_layers = not step1 and n_layers > 0
    return (args + ("-f",) if trains_layers else args), trains_layers and not frontend
