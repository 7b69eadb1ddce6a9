"""The pretraining run: seeded and deterministic, the optimiser and schedule, the update loop, the files."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from superb_redundancy.core.files import check_output_dir, torch_save, write_text
from superb_redundancy.models.pretraining.audio import TrainingAudio, iter_batches, training_audio
from superb_redundancy.models.pretraining.objective import build_model, initial_checkpoint, loss_terms
from superb_redundancy.models.pretraining.record import (LOG_COLUMNS, RECORD_KEY, PretrainResult, format_record,
                                                         full_record, record_path, training_record)
from superb_redundancy.models.pretraining.settings import PretrainError, PretrainSettings

__all__ = ["pretrain"]


def _lr(settings: PretrainSettings, update: int) -> float:
    """Linear warm-up to ``lr`` over the warm-up, then linear decay towards 0 at ``steps`` (update is 0-based)."""
    warmup = settings.warmup_steps()
    if update < warmup:
        return settings.lr * (update + 1) / warmup
    return settings.lr * (settings.steps - update) / max(1, settings.steps - warmup)


def _check_output(output: str | os.PathLike) -> Path:
    path = Path(output).expanduser()
    if path.is_dir():
        raise PretrainError(f"--output {output} is a folder; give the checkpoint's file path (e.g. {path}/w2v2.pt)")
    check_output_dir(path.parent, "--output")
    return path


@contextlib.contextmanager
def _deterministic(threads: int, seed: int) -> Iterator[None]:
    """Seeded python/numpy/torch, deterministic torch algorithms, ``threads`` threads; all restored after."""
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic, warn_only=old_warn)
        random.setstate(py_state)
        np.random.set_state(np_state)


def pretrain(settings: PretrainSettings, output: str | os.PathLike, stop_after: Optional[int] = None,
             progress: bool = True, argv: Optional[Sequence[str]] = None) -> PretrainResult:
    """Pretrain, write the checkpoint to ``output`` and the record beside it; returns both paths and the record.

    ``stop_after``: run only the first N updates of the ``settings.steps`` schedule (learning rate and temperature
    as in the full run), e.g. to check that a run reproduces a shipped record's first losses.
    """
    settings = settings.check()
    if stop_after is not None and not (isinstance(stop_after, int) and 1 <= stop_after <= settings.steps):
        raise PretrainError(f"--stop-after must be between 1 and --steps ({settings.steps}), got {stop_after!r}")
    output = _check_output(output)
    audio = training_audio(settings)  # every clip read and checked before the model is built
    steps = stop_after or settings.steps

    started, clock = time.time(), time.perf_counter()
    with _deterministic(settings.threads, settings.seed):
        # the order of the random draws (initialisation, model, then each update's) is what reruns reproduce
        checkpoint = initial_checkpoint(settings)
        model = build_model(checkpoint)
        model.train()
        optimizer = _optimizer(model, settings)
        log, loop = _run_updates(model, optimizer, audio, settings, steps, progress)
        model.eval()
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    wall = time.perf_counter() - clock

    parameters = int(sum(v.numel() for k, v in weights.items()))
    record = training_record(settings, output.name, stop_after, steps, audio.source, parameters, log)
    stock = {k: checkpoint[k] for k in ("task_cfg", "model_cfg")}
    torch_save({**stock, "model_weight": weights, RECORD_KEY: record}, output)
    full = full_record(record, argv, output, wall, loop / steps, started)
    path = record_path(output)
    write_text(path, format_record(full))
    return PretrainResult(output, path, full)


def _optimizer(model, settings: PretrainSettings) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.98, eps 1e-6); weight decay on matrices only (not on biases, norms, 1-D parameters)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim < 2 or name.endswith(".bias") else decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=settings.lr, betas=(0.9, 0.98), eps=1e-6, foreach=False)


def _run_updates(model, optimizer, audio: TrainingAudio, settings: PretrainSettings, steps: int,
                 progress: bool) -> tuple[dict[str, list], float]:
    """``steps`` updates of the schedule; returns the per-step log (:data:`LOG_COLUMNS`) and the loop's seconds."""
    log: dict[str, list] = {name: [] for name in LOG_COLUMNS}
    bar = tqdm(total=steps, desc="pretrain", unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    loop = time.perf_counter()
    for update, source in enumerate(iter_batches(audio, settings, steps)):
        lr = _lr(settings, update)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.quantizer.set_num_updates(update)
        terms = loss_terms(model, source)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            bar.close()
            raise PretrainError(f"the loss became {float(loss)} at step {update + 1}; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                              settings.clip_norm if settings.clip_norm > 0 else float("inf"))
        optimizer.step()
        values = {**{k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()},
                  "lr": lr, "grad_norm": float(norm),
                  "crop_samples": int(source.size(1))}
        for name in LOG_COLUMNS:
            log[name].append(int(values[name]) if name in ("masked_frames", "crop_samples") else values[name])
        bar.set_postfix(loss=f"{values['loss']:.4f}", acc=f"{values['accuracy']:.3f}",
                        div=f"{values['diversity']:.3f}")
        bar.update(1)
    bar.close()
    return log, time.perf_counter() - loop
