"""The healing run (:func:`heal`): every input checked, one teacher pass into the mimic trainer's cache, Adam on the
kept layers epoch by epoch (resumable after each), the best weights selected by validation loss, the healed
artifact written."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from superb_redundancy.core.files import check_writable, load_checkpoint, model_sha256, torch_save
from superb_redundancy.distill.resume import resume_state_path
from superb_redundancy.distill.split import split_clips
from superb_redundancy.distill.teacher_cache import build_teacher_cache
from superb_redundancy.pruning.heal.artifact import healed_artifact, plain
from superb_redundancy.pruning.heal.config import DTYPES, HealConfig, HealError
from superb_redundancy.pruning.heal.model import PrunedModel, load_pruned_model
from superb_redundancy.pruning.heal.record import Progress, healing_record
from superb_redundancy.pruning.heal.student import (distillation_loss, distillation_terms, input_layer_state,
                                                    layer_state, load_layer_state, load_student, trainable)
from superb_redundancy.pruning.heal.teacher import resolve_teacher, target_pairs
from superb_redundancy.pruning.spec import PruneSpec
from superb_redundancy.pruning.upstream import PrunedUpstream

__all__ = ["HealResult", "heal"]


@dataclass
class HealResult:
    path: Path
    upstream: PrunedUpstream  # the healed model (best weights), on the CPU, in eval mode
    record: dict


def _device(device: Optional[str]) -> torch.device:
    return torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))


def _check_arguments(config: HealConfig, dtype: str, audio) -> None:
    if not isinstance(config, HealConfig):
        raise HealError(f"config must be a HealConfig, got {type(config).__name__}")
    if dtype not in DTYPES:
        raise HealError(f"cache dtype {dtype!r} is invalid; valid: {' or '.join(DTYPES)}")
    if audio is None:
        raise HealError("no audio given: heal needs clips to distil on (--data AUDIO or --corpus with --task)")


def _check_output(output: Path, model: PrunedModel, teacher: Path) -> None:
    if output.is_dir():
        raise HealError(f"--output {output} is a folder; give the healed artifact's file path")
    check_writable(output.parent, "--output")
    for what, other in (("the pruned artifact it heals", model.path), ("the teacher", teacher)):
        if other is not None and output.resolve() == Path(other).resolve():
            raise HealError(f"--output {output} is {what}; write the healed artifact to another file")


# ---------------------------------------------------------------------------------------------- resumable state
def _state_id(config: HealConfig, model_id: str, teacher: str, targets: list) -> dict:
    """What a saved state must match to be resumed (only epochs may change)."""
    return {"config": {k: v for k, v in config.to_dict().items() if k != "epochs"}, "input": model_id,
            "teacher": teacher, "pairs": [list(p) for p in targets]}


def _load_state(state_path: Path, identity: dict) -> dict:
    state = load_checkpoint(state_path, "healing state", HealError)
    if state.get("identity") != identity:
        raise HealError(f"{state_path} was written for another healing run ({state.get('identity')}); only "
                        "--epochs may change on resume (or drop --resume to start over)")
    return state


def _resumed(upstream: PrunedUpstream, optimizer: torch.optim.Optimizer, state: dict) -> Progress:
    load_layer_state(upstream, state["layers"])
    optimizer.load_state_dict(state["optimizer"])
    return Progress(list(state["history"]), state["best_epoch"], state["best_loss"], state["best_weights"],
                    int(state["steps"]), float(state["seconds"]))


def _unhealed(upstream: PrunedUpstream, cache, ids, pairs: Sequence[tuple[int, int]], config: HealConfig,
              device: torch.device) -> Progress:
    """A fresh run: epoch 0, the unhealed model, measured; it is the first candidate for the best weights."""
    terms = distillation_loss(upstream, cache, ids, pairs, config.batch_size, device)
    return Progress([{"epoch": 0, "train_loss": None, "loss": sum(terms), "terms": terms}], 0, float(sum(terms)),
                    None)


def _save_state(path: Path, ids: dict, epoch: int, run: Progress, upstream: PrunedUpstream, kept: Sequence[int],
                optimizer: torch.optim.Optimizer) -> None:
    """After every epoch: what a resumed run needs to end with the same weights as an uninterrupted one."""
    torch_save({
        "identity": ids["identity"], "cache": ids["cache"], "epoch": epoch, "steps": run.steps,
        "seconds": run.seconds, "layers": layer_state(upstream, kept), "optimizer": optimizer.state_dict(),
        "history": run.history, "best_epoch": run.best_epoch, "best_loss": run.best_loss,
        "best_weights": run.best_weights,
    }, path)


# ---------------------------------------------------------------------------------------------- training
def _teacher_cache(model: PrunedModel, teacher: Path, audio, folder: Path, pairs: Sequence[tuple[int, int]],
                   dtype: str, device: Optional[str], progress: bool) -> tuple[object, dict]:
    """The one teacher pass (reused when the cache already holds this teacher, audio and layers), and what
    identifies its clips."""
    cache = build_teacher_cache(teacher, audio, folder, layers=[t for t, _ in pairs], family=model.family.name,
                                dtype=dtype, device=device, progress=progress)
    cache_id = {"num_clips": len(cache), "num_frames": int(cache.manifest["num_frames"]), "dtype": cache.dtype,
                "sources_sha256": model_sha256(cache.manifest["sources"])}
    return cache, cache_id


def _train_epoch(upstream: PrunedUpstream, optimizer: torch.optim.Optimizer, cache, train_ids: np.ndarray,
                 pairs: Sequence[tuple[int, int]], config: HealConfig, epoch: int, device: torch.device,
                 progress: bool) -> tuple[float, int]:
    """One pass over the training clips, shuffled by (seed, epoch); returns (frame-weighted loss, steps)."""
    from tqdm import tqdm

    order = np.random.default_rng([config.seed, epoch]).permutation(train_ids)
    batches = [order[s:s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    total, frames = 0.0, 0
    for features, mask, wanted in tqdm(cache.batches(batches, [t for t, _ in pairs], device), total=len(batches),
                                       disable=not progress, file=sys.stderr, leave=False, unit="batch",
                                       desc=f"heal epoch {epoch}/{config.epochs}"):
        loss = sum(distillation_terms(upstream, features, mask, wanted, pairs))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        valid = int((~mask).sum())
        total, frames = total + float(loss.detach()) * valid, frames + valid
    return total / max(frames, 1), len(batches)


def _select(upstream: PrunedUpstream, model: PrunedModel, run: Progress, flags: list[bool]) -> PrunedUpstream:
    """The selected weights, on the CPU, with the parameters' requires_grad as loaded; epoch 0's are the input's,
    reloaded from it so not even rounding can differ."""
    load_layer_state(upstream, run.best_weights if run.best_weights is not None else input_layer_state(model))
    upstream = upstream.cpu().eval()
    for parameter, flag in zip(upstream.parameters(), flags):
        parameter.requires_grad_(flag)
    return upstream


def heal(output: str | os.PathLike, *, artifact: Optional[str | os.PathLike] = None, family: Optional[str] = None,
         spec: Optional[PruneSpec | str | os.PathLike] = None, base: Optional[str] = None,
         teacher: Optional[str] = None, audio=None, config: HealConfig = HealConfig(),
         cache_dir: Optional[str | os.PathLike] = None, dtype: str = "float16", device: Optional[str] = None,
         resume: bool = False, progress: bool = True) -> HealResult:
    """Heal a pruned model (a pruned ``artifact``, or a prune ``spec`` of ``family`` on ``base``) on ``audio``
    (folders / files, 16 kHz) towards ``teacher`` (default: its base); write the healed artifact to ``output``.

    Every input is checked before the teacher runs. The teacher cache defaults to ``<output stem>.teacher_cache``
    beside the output (pass the mimic trainer's to share one teacher pass). See :mod:`superb_redundancy.pruning.heal`.
    """
    _check_arguments(config, dtype, audio)
    output = Path(output).expanduser()
    model = load_pruned_model(artifact, family, spec, base)
    teacher_info = resolve_teacher(model, teacher, config.targets)
    _check_output(output, model, teacher_info.path)
    dev = _device(device)
    pairs = target_pairs(config.targets, model.kept, model.num_layers, teacher_info.num_layers)
    source = model.source()
    identity = _state_id(config, source["model_sha256"], teacher_info.model_sha256, pairs)
    state_path = resume_state_path(output)
    state = _load_state(state_path, identity) if resume and state_path.is_file() else None
    cache, cache_id = _teacher_cache(model, teacher_info.path, audio,
                                     cache_dir or output.with_name(f"{output.stem}.teacher_cache"), pairs, dtype,
                                     device, progress)
    if state is not None and state.get("cache") != cache_id:
        raise HealError(f"{state_path} was trained on other clips ({state.get('cache')}); drop --resume to start over")
    train_ids, val_ids = split_clips(len(cache), config)
    if len(train_ids) == 0:
        raise HealError(f"teacher cache {cache.directory} has no clip left to train on")
    select_ids = val_ids if len(val_ids) else train_ids  # what "before", "after" and the best epoch are measured on

    upstream = load_student(model, dev)
    flags = [p.requires_grad for p in upstream.parameters()]
    optimizer = torch.optim.Adam(trainable(upstream, model.kept), lr=config.lr)
    run = _resumed(upstream, optimizer, state) if state is not None else \
        _unhealed(upstream, cache, select_ids, pairs, config, dev)
    for epoch in range(run.epoch + 1, config.epochs + 1):
        began = time.time()
        train_loss, steps = _train_epoch(upstream, optimizer, cache, train_ids, pairs, config, epoch, dev, progress)
        terms = distillation_loss(upstream, cache, select_ids, pairs, config.batch_size, dev)
        run.steps += steps
        run.add(epoch, train_loss, terms, time.time() - began, lambda: layer_state(upstream, model.kept))
        if progress:
            print(f"[heal] epoch {epoch}: train {train_loss:.5g}, {'val' if len(val_ids) else 'train-set'} "
                  f"{sum(terms):.5g}", file=sys.stderr)
        _save_state(state_path, {"identity": identity, "cache": cache_id}, epoch, run, upstream, model.kept, optimizer)

    upstream = _select(upstream, model, run, flags)
    record = healing_record(model, source, teacher_info, cache, cache_id, config, pairs, run, len(train_ids),
                            len(val_ids), dev)
    path = torch_save(healed_artifact(model, upstream, record), output)
    upstream.healed = plain(record)  # as pruned_<family>_local gives it for the written artifact
    return HealResult(path, upstream, upstream.healed)
