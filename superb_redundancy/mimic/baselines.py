"""The paper's baselines (Tables 1-4), written without step 1.

A *non-mimicker* is an artifact whose mimicking layers are freshly (seeded) initialised and never trained in step 1
(its training record says ``training: none``); *classifier only* is ``n_layers: 0``: no mimicking layer at all, the
upstream returns ``[projected features]`` and only the downstream head is trained. Both are trained only in step 2
(s3prl's runner; ``-f`` trains the mimicking layers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from superb_redundancy.core.files import sha256_file
from superb_redundancy.mimic.artifact import save_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError, as_config, check_unique_names
from superb_redundancy.mimic.encoder import encoder_state
from superb_redundancy.distill.frontend import frontend_state, teacher_checkpoint, teacher_record
from superb_redundancy.mimic.modules import Mimicker

__all__ = ["baseline_name", "init_artifact", "init_grid"]


def baseline_name(config: MimicConfig) -> str:
    """The file stem of a baseline artifact: ``classifier-only`` or ``nonmimic-<config name>``."""
    return config.name() if config.classifier_only else f"nonmimic-{config.name()}"


#: what a baseline artifact's training record calls it
BASELINES = {"non-mimicker": "non-mimicker", "ceiling": "ceiling (trained with labels only, on the front end)"}


def init_artifact(teacher: str | os.PathLike, config: MimicConfig | dict | str | os.PathLike,
                  output: str | os.PathLike, family: Optional[str] = None, refresh: bool = False,
                  baseline: str = "non-mimicker") -> Path:
    """Write a baseline artifact without step 1: the paper's "non-mimicker" (mimicking layers freshly initialised
    with ``torch.manual_seed(config.seed)``, exactly the weights :func:`~superb_redundancy.mimic.train.train_mimicker`
    starts from) or, with ``n_layers: 0``, "classifier only" (no mimicking layer). Its training record says
    ``training: none``; the layers are trained only in step 2 (s3prl's runner with ``-f``).

    ``teacher``: a stock checkpoint path (family inferred), or with ``family`` an s3prl hub name. ``baseline``:
    ``ceiling`` records the same untrained layers as a ceiling, a reference row whose step 2 also trains the front
    end's projection (:mod:`superb_redundancy.study.mimic_step2`).
    """
    if baseline not in BASELINES:
        raise MimicError(f"baseline={baseline!r} is invalid; valid: {', '.join(BASELINES)}")
    config = as_config(config)
    path, fam, checkpoint = teacher_checkpoint(teacher, family, refresh=refresh)
    record = teacher_record(checkpoint, fam, path, sha256_file(path))
    targets = config.resolve_targets(record["num_layers"])
    config.check_dims(int(record["hidden_size"]))
    encoder = None if config.whole_stack(record["num_layers"]) else \
        encoder_state(checkpoint, fam, config.resolve_span(record["num_layers"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Mimicker.from_config(config, int(record["hidden_size"]))
    training = {
        "training": "none",
        "baseline": "classifier only" if config.classifier_only else BASELINES[baseline],
        "init_seed": config.seed,
        "history": [],
        "best_epoch": None,
        "best_loss": None,
        "note": "no step 1: trained only in step 2 (s3prl's runner; -f trains the mimicking layers)",
    }
    return save_artifact(Path(output).expanduser(), config, record, frontend_state(checkpoint, fam),
                         model.state_dict(), targets, training, encoder)


def init_grid(teacher: str | os.PathLike, configs: Sequence[MimicConfig], output_dir: str | os.PathLike,
              family: Optional[str] = None) -> list[Path]:
    """:func:`init_artifact` for each configuration: ``<output_dir>/<baseline_name(config)>.pt``."""
    output_dir = Path(output_dir).expanduser()
    check_unique_names([baseline_name(c) for c in configs])
    return [init_artifact(teacher, config, output_dir / f"{baseline_name(config)}.pt", family=family)
            for config in configs]
