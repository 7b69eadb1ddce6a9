"""Step 1 of mimicking (task-agnostic distillation): MSE training of mimickers on a teacher cache.

The teacher runs ONCE per clip, when the cache is built (:mod:`superb_redundancy.distill.teacher_cache`); every
configuration and every epoch then reads the cache, so training the paper's grid of 12 configurations
(:func:`train_grid`) costs a single teacher pass. :func:`train_mimicker` trains one configuration:
the sum over mimicking layers of the masked MSE to their target layers (:func:`masked_mse`), each divided by its
target's variance over the training frames (``normalize_terms``, the default; see
:class:`~superb_redundancy.mimic.config.MimicConfig`), Adam, a seeded
held-out validation subset (:func:`split_clips`), the best weights kept, resumable after every epoch.

The mimicker's own accuracy during step 1: with ``eval_head`` (an s3prl experiment trained on the teacher; for a
whole-stack mimicker one whose head reads the teacher's last hidden state only) every epoch also evaluates the
mimicker through that experiment's trained Featurizer and head on its dev split
(:class:`~superb_redundancy.mimic.eval_head.HeadEvaluator`, which says what this measures), with the upstream in the
teacher's L+1 positions; ``select_by="acc"`` keeps the weights of the best accuracy instead of the best validation
MSE.

Baselines without step 1 (non-mimicker, classifier only): :mod:`superb_redundancy.mimic.baselines`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from superb_redundancy.core import files as atomic
from superb_redundancy.core.files import load_checkpoint
from superb_redundancy.distill.frontend import teacher_checkpoint
from superb_redundancy.distill.loss import masked_mse
from superb_redundancy.distill.resume import resume_state_path
from superb_redundancy.distill.split import split_clips
from superb_redundancy.distill.teacher_cache import TeacherCache, build_teacher_cache, progress_bar, resolve_device
from superb_redundancy.mimic.artifact import save_artifact
from superb_redundancy.mimic.config import MimicConfig, MimicError, as_config, cache_layers, check_unique_names
from superb_redundancy.mimic.encoder import encoder_state
from superb_redundancy.mimic.eval_head import HeadEvaluator, probe_upstream
from superb_redundancy.mimic.modules import Mimicker
from superb_redundancy.models.families import get_family

__all__ = ["SELECT_BY", "target_variances", "train_mimicker", "train_grid"]

#: how step 1 picks the weights it keeps: the best validation MSE, or the best accuracy through an eval head
SELECT_BY = ("mse", "acc")


# ---------------------------------------------------------------------------------------------- loss and data
def _step1_terms(model: Mimicker, features, padding_mask, targets, teacher_forcing: bool,
                 scales: Sequence[float]) -> list[torch.Tensor]:
    """Each mimicking layer's MSE to its target, divided by its scale (the target's variance, or 1)."""
    teacher_inputs = targets[:-1] if teacher_forcing and len(targets) > 1 else None
    outputs = model(features, padding_mask, teacher_inputs=teacher_inputs)[1:]
    return [masked_mse(o, t, padding_mask) / scale for o, t, scale in zip(outputs, targets, scales)]


def target_variances(cache: TeacherCache, targets: Sequence[int], train_ids: Sequence[int]) -> list[float]:
    """Each term's target variance over the training clips' frames (:meth:`TeacherCache.target_variance`).

    Why the variance: the paper sums the two terms with equal weight, which on its post-LN Base teachers (every
    layer output after a LayerNorm) weighs both alike. On a pre-LN teacher layer i's raw residual output is tens
    of times larger than the final one, and the raw sum is then almost only m_f's term. Dividing each MSE by its
    target's variance (the MSE of the best constant guess) restores the weighting the paper intends while keeping
    its targets, which taking layer i's output after a LayerNorm would change (m_g reads m_f's output)."""
    variances = [cache.target_variance(train_ids, t) for t in targets]
    for target, variance in zip(targets, variances):
        if not variance > 0:
            raise MimicError(f"teacher cache {cache.directory}: layer {target}'s output is constant over the training "
                             "frames (variance 0), so its term cannot be normalised; set normalize_terms: false")
    return variances


@torch.no_grad()
def _evaluate(model, cache, ids, targets, config, device, source: Optional[int] = None,
              scales: Optional[Sequence[float]] = None) -> Optional[list[float]]:
    """Per-term validation loss (MSE over its scale) over all valid frames of ``ids`` (frame-weighted), or None
    without ids."""
    if len(ids) == 0:
        return None
    model.eval()
    sums = np.zeros(len(targets))
    count = 0
    for start in range(0, len(ids), config.batch_size):
        batch = ids[start:start + config.batch_size]
        features, mask, wanted = cache.batch(batch, targets, device, source)
        valid = int((~mask).sum())
        terms = _step1_terms(model, features, mask, wanted, config.teacher_forcing, scales or [1.0] * len(targets))
        sums += np.array([float(t) for t in terms]) * valid
        count += valid
    return [float(x) for x in sums / max(count, 1)]


def _comparable(config: dict) -> dict:
    # through MimicConfig: a state written before a field existed holds its default
    return {k: v for k, v in MimicConfig.from_dict(config).to_dict().items() if k != "epochs"}


def _span_weights(cache: TeacherCache, config: MimicConfig, teacher) -> Optional[dict]:
    """The kept teacher-encoder weights of a partial span (None for the whole stack: nothing is kept)."""
    if config.whole_stack(cache.num_layers):
        return None
    family = get_family(cache.teacher["family"])
    return encoder_state(cache.teacher_checkpoint(teacher), family, config.resolve_span(cache.num_layers))


def _check_trainable(config: MimicConfig) -> None:
    if config.classifier_only:
        raise MimicError("config classifier-only (n_layers=0) has no mimicking layer to train in step 1; "
                         "write it with init_artifact (superb-redundancy mimic init)")


def _check_selection(select_by: str, eval_head) -> None:
    if select_by not in SELECT_BY:
        raise MimicError(f"select_by={select_by!r} is invalid; valid: {' or '.join(SELECT_BY)}")
    if select_by == "acc" and eval_head is None:
        raise MimicError("select_by='acc' needs an eval head (--eval-head EXPDIR: an s3prl experiment trained on "
                         "the teacher) to measure the accuracy by")


def _cache_inputs(cache: TeacherCache, config: MimicConfig) -> tuple[list[int], Optional[int]]:
    """``(targets, source)`` of a configuration on the cache (``source``: the layer whose output is its input,
    None for the projected features), checked against the teacher and the layers the cache stores."""
    L, d = cache.num_layers, cache.hidden_size
    targets = config.resolve_targets(L)
    source = config.input_layer(L)
    config.check_dims(d)
    needed = cache_layers(config, L)
    missing = sorted(set(needed) - set(cache.layers))
    if missing:
        raise MimicError(
            f"teacher cache {cache.directory} stores layers {cache.layers}; config {config.name()} needs {needed} "
            f"(missing {missing}): rebuild it with build_teacher_cache(..., layers={sorted(set(cache.layers) | set(needed))})"
        )
    return targets, source


def _cache_ids(cache: TeacherCache) -> tuple[dict, dict]:
    """The cache as a resumable state records it, and as states written before caches recorded the teacher's
    content hash do (the teacher named by its file's bytes)."""
    cache_id = {"sha256": cache.teacher.get("content_sha256") or cache.teacher["sha256"], "layers": cache.layers,
                "num_clips": len(cache), "num_frames": int(cache.manifest["num_frames"]), "dtype": cache.dtype}
    return cache_id, dict(cache_id, sha256=cache.teacher["sha256"])


# ---------------------------------------------------------------------------------------------- step 1
def train_mimicker(cache: TeacherCache | str | os.PathLike, config: MimicConfig | dict | str | os.PathLike,
                   output: str | os.PathLike, resume: bool = False, device: Optional[str] = None,
                   progress: bool = True, teacher: Optional[str | os.PathLike | dict] = None,
                   eval_head: Optional[str | os.PathLike | HeadEvaluator] = None, select_by: str = "mse",
                   eval_split: str = "dev") -> Path:
    """Train one mimicker on a teacher cache (step 1) and write its artifact; returns the artifact path.

    Loss: the sum over mimicking layers of the masked MSE between its output and its target layer's output, each
    divided by its target's variance over the training frames (:func:`target_variances`; ``normalize_terms:
    false``: the raw sum with equal weights, as the authors' code); Adam at ``config.lr``; a seeded held-out validation subset
    (``val_fraction`` of the clips, at most ``max_val_clips``) evaluated before training (epoch 0) and after each
    epoch; the best weights by validation loss (training loss without a validation subset) go in the artifact.

    A span ``[i, j]`` trains the same way on its own input (the cached output of layer i-1; the projected
    features for i = 0) and targets; its artifact also holds the kept teacher layers, read from ``teacher`` (the
    checkpoint the cache was built from: a path, checked by content, or the loaded dict; default: the path the
    cache records). The whole stack reads nothing else and trains exactly as it always did.

    ``eval_head`` (an s3prl experiment trained on the teacher, or a :class:`HeadEvaluator`; for the whole stack
    its head must read the teacher's last hidden state only, see :mod:`~superb_redundancy.mimic.eval_head`): the
    mimicker's accuracy through that head on ``eval_split`` at epoch 0 and after every epoch (``head_acc`` in the
    history, the curve in ``head_accuracy``); ``select_by="acc"`` keeps the weights of the best accuracy (the earliest
    epoch on ties) instead of the best validation loss (``"mse"``, the default). The record says which epoch and
    by which criterion (``best_epoch``, ``select_by``, ``selected_by``).

    Resumable: ``<output>.state.pt`` (model, optimizer, best weights, history) is written after every epoch;
    ``resume=True`` continues from it, and may raise ``epochs`` to train further. Shuffling and dropout are
    seeded per epoch, so an interrupted-and-resumed run ends with the same weights as an uninterrupted one.
    """
    run = _Step1(cache, config, output, device, progress, teacher, eval_head, select_by, eval_split)
    state_path = resume_state_path(run.output)
    if resume and state_path.is_file():
        run.resume(state_path)
    else:
        run.evaluate_untrained()
    for epoch in range(run.start_epoch, run.config.epochs + 1):
        run.train_epoch(epoch)
        run.save_state(epoch, state_path)
    return run.write_artifact()


class _Step1:
    """One run of :func:`train_mimicker`: its inputs, the model and optimizer, the history and the best weights.

    The steps keep the order of operations (and so the random streams) of the run: the model is initialised
    under ``torch.manual_seed(config.seed)``; each epoch shuffles with ``default_rng([seed, epoch])`` and runs its
    batches under ``torch.manual_seed(seed * 1_000_003 + epoch)``, forked from the global random state.
    """

    def __init__(self, cache, config, output, device, progress, teacher, eval_head, select_by, eval_split):
        self.cache = cache if isinstance(cache, TeacherCache) else TeacherCache(cache)
        self.config = as_config(config)
        self.output = Path(output).expanduser()
        _check_trainable(self.config)
        _check_selection(select_by, eval_head)
        self.select_by, self.progress = select_by, progress
        self.targets, self.source = _cache_inputs(self.cache, self.config)
        self.encoder = _span_weights(self.cache, self.config, teacher)
        self.device = resolve_device(device)
        self.train_ids, self.val_ids = split_clips(len(self.cache), self.config)
        if len(self.train_ids) == 0:
            raise MimicError(f"teacher cache {self.cache.directory} has no clip left to train on")
        self.variances = target_variances(self.cache, self.targets, self.train_ids) \
            if self.config.normalize_terms else None
        self.scales = self.variances or [1.0] * len(self.targets)
        self.cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=self.cuda):
            torch.manual_seed(self.config.seed)
            self.model = Mimicker.from_config(self.config, self.cache.hidden_size).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.evaluator = eval_head if isinstance(eval_head, HeadEvaluator) or eval_head is None else \
            HeadEvaluator(eval_head, self.cache, self.device, eval_split, progress)
        if self.evaluator is not None:
            self.evaluator.check_config(self.config)
        self.probe = None if self.evaluator is None else probe_upstream(
            self.cache, self.config, self.model, self.targets, self.encoder, self.device)
        head = None if self.evaluator is None else str(self.evaluator.experiment.checkpoint)
        self.selection = {"select_by": select_by, "eval_head": head,
                          "split": None if self.evaluator is None else self.evaluator.split}
        self.cache_id, self.legacy_id = _cache_ids(self.cache)
        self.history: list[dict] = []
        self.best = {"epoch": None, "loss": float("inf"), "acc": None, "weights": None}
        self.start_epoch, self.steps, self.seconds = 1, 0, 0.0
        self.resumed_after: list[int] = []  # the epochs after which an interrupted run was resumed

    def resume(self, state_path: Path) -> None:
        """Continue from a state written by :meth:`save_state` (only ``epochs`` may have changed)."""
        state = load_checkpoint(state_path, "training state", MimicError)
        if _comparable(state["config"]) != _comparable(self.config.to_dict()):
            raise MimicError(f"{state_path} was written for config {state['config']}, not {self.config.to_dict()} "
                             "(only epochs may change on resume)")
        if state["cache"] not in (self.cache_id, self.legacy_id):
            raise MimicError(f"{state_path} was trained on another teacher cache ({state['cache']})")
        written = state.get("selection", {"select_by": "mse", "eval_head": None, "split": None})
        if written != self.selection:
            raise MimicError(f"{state_path} was trained with selection {written}, not {self.selection} "
                             "(only epochs may change on resume)")
        if "target_variance" not in state and self.config.normalize_terms:
            raise MimicError(f"{state_path} was trained on the raw sum of the step-1 terms, before they were "
                             "normalised by their targets' variance; start afresh or set normalize_terms: false")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state["history"])
        self.best = {"epoch": state["best_epoch"], "loss": state["best_loss"], "acc": state.get("best_acc"),
                     "weights": state["best_weights"]}
        self.start_epoch = int(state["epoch"]) + 1
        self.steps, self.seconds = int(state["steps"]), float(state["seconds"])
        self.resumed_after = [*state.get("resumed_after", []), int(state["epoch"])]

    def evaluate_untrained(self) -> None:
        """Epoch 0: the validation loss (and head accuracy) of the freshly initialised mimicker."""
        val = self._validate()
        self.history.append({"epoch": 0, "train_loss": None, "val_loss": None if val is None else sum(val),
                             "val_terms": val, "val_mse": self._mse(val)})
        self._head_accuracy(self.history[-1])

    def train_epoch(self, epoch: int) -> None:
        """One epoch: its batches, then the validation loss (and head accuracy), the best weights kept."""
        began = time.time()
        train_loss = self._train_batches(epoch)
        val = self._validate()
        score = float(sum(val)) if val is not None else float(train_loss)
        self.seconds += time.time() - began
        self.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": None if val is None else sum(val),
                             "val_terms": val, "val_mse": self._mse(val), "seconds": round(time.time() - began, 3)})
        acc = self._head_accuracy(self.history[-1])
        self._keep_if_best(epoch, score, acc)
        if self.progress:
            print(f"[mimic] {self.config.name()} epoch {epoch}: train {train_loss:.5g}"
                  + (f", val {sum(val):.5g}" if val is not None else "")
                  + (f", head acc {acc:.4g}" if acc is not None else ""), file=sys.stderr)

    def _train_batches(self, epoch: int) -> float:
        """The epoch's seeded shuffle of the training clips, one Adam step per batch; the frame-weighted loss."""
        config = self.config
        order = np.random.default_rng([config.seed, epoch]).permutation(self.train_ids)
        batches = [order[s:s + config.batch_size] for s in range(0, len(order), config.batch_size)]
        total, frames = 0.0, 0
        with torch.random.fork_rng(devices=self.cuda):
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            bar = progress_bar(self.cache.batches(batches, self.targets, self.device, self.source), self.progress,
                               desc=f"mimic {config.name()} epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                               total=len(batches))
            for features, mask, wanted in bar:
                self.model.train()
                loss = sum(_step1_terms(self.model, features, mask, wanted, config.teacher_forcing, self.scales))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                value, valid = float(loss.detach()), int((~mask).sum())
                total += value * valid
                frames += valid
                self.steps += 1
                bar.set_postfix(loss=f"{value:.4g}")
        return total / max(frames, 1)

    def _validate(self) -> Optional[list[float]]:
        return _evaluate(self.model, self.cache, self.val_ids, self.targets, self.config, self.device, self.source,
                         self.scales)

    def _mse(self, terms: Optional[list[float]]) -> Optional[list[float]]:
        """The raw per-term MSE of (normalised) validation terms."""
        return None if terms is None else [t * s for t, s in zip(terms, self.scales)]

    def _head_accuracy(self, entry: dict) -> Optional[float]:
        if self.probe is None:
            return None
        entry["head_acc"] = self.evaluator.accuracy(self.probe)
        return entry["head_acc"]

    def _keep_if_best(self, epoch: int, score: float, acc: Optional[float]) -> None:
        """Keep this epoch's weights if they are the best so far: by head accuracy (the earliest on ties) or by
        the validation (else training) loss."""
        if self.select_by == "acc":
            better = acc > self.best["acc"] if self.best["acc"] is not None else True
        else:
            better = score < self.best["loss"]
        if better:
            self.best = {"epoch": epoch, "loss": score, "acc": acc,
                         "weights": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}

    def save_state(self, epoch: int, state_path: Path) -> None:
        """The resumable state after ``epoch`` (``<output>.state.pt``), written atomically."""
        atomic.torch_save({
            "config": self.config.to_dict(), "cache": self.cache_id, "epoch": epoch, "steps": self.steps,
            "seconds": self.seconds, "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "history": self.history, "selection": self.selection,
            "best_epoch": self.best["epoch"], "best_loss": self.best["loss"], "best_acc": self.best["acc"],
            "best_weights": self.best["weights"], "resumed_after": self.resumed_after,
            "target_variance": self.variances,
        }, state_path)

    def write_artifact(self) -> Path:
        """The artifact: the best weights (the last ones if no epoch ran), the cache's front end, the record."""
        weights = self.best["weights"] if self.best["weights"] is not None else \
            {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        front = self.cache.frontend()
        return save_artifact(self.output, self.config, front["teacher"], front["frontend"], weights, self.targets,
                             self._record(), self.encoder)

    def _record(self) -> dict:
        """The artifact's ``training`` entry: history, best epoch, how it was selected, what it read."""
        by_loss = "validation loss" if len(self.val_ids) else "training loss"
        training = {
            "training": "mimicking",
            "history": self.history,
            "best_epoch": self.best["epoch"],
            "best_loss": self.best["loss"],
            "selected_by": "head accuracy" if self.select_by == "acc" else by_loss,
            "select_by": self.select_by,
            "span": list(self.config.resolve_span(self.cache.num_layers)),
            "input": "projected features" if self.source is None else f"output of layer {self.source}",
            "train_clips": int(len(self.train_ids)),
            "val_clips": int(len(self.val_ids)),
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "device": str(self.device),
            "loss": ("sum over mimicking layers of the MSE over valid frames, each divided by its target's variance "
                     "over the training frames" if self.variances else
                     "sum over mimicking layers of the MSE over valid frames"),
            "target_variance": self.variances,
            "teacher_forcing": self.config.teacher_forcing,
            "cache": dict(self.cache_id, path=str(self.cache.directory)),
        }
        if self.resumed_after:
            training["resumed_after_epochs"] = self.resumed_after
        if self.evaluator is not None:
            training.update(best_accuracy=self.best["acc"], eval_head=self.evaluator.describe(),
                            head_accuracy=[h.get("head_acc") for h in self.history])
        return training


# ---------------------------------------------------------------------------------------------- a grid
def train_grid(teacher: str | os.PathLike, audio, configs: Sequence[MimicConfig], output_dir: str | os.PathLike,
               cache_dir: Optional[str | os.PathLike] = None, family: Optional[str] = None,
               dtype: str = "float16", device: Optional[str] = None, resume: bool = False,
               progress: bool = True, eval_head: Optional[str | os.PathLike] = None,
               select_by: str = "mse") -> list[Path]:
    """Train every configuration from ONE teacher pass: the cache stores the union of the layers they read
    (:func:`~superb_redundancy.mimic.config.cache_layers`: targets, and a span's input).

    Artifacts are ``<output_dir>/<config.name()>.pt``; the cache defaults to ``<output_dir>/teacher_cache``.
    ``eval_head`` / ``select_by``: see :func:`train_mimicker` (the experiment is loaded once for the grid).
    """
    output_dir = Path(output_dir).expanduser()
    for config in configs:
        _check_trainable(config)
    check_unique_names([config.name() for config in configs])
    _check_selection(select_by, eval_head)
    # the head before any teacher pass: a head that cannot score a configuration is refused first
    evaluator = None if eval_head is None else HeadEvaluator(eval_head, None, resolve_device(device), progress=progress)
    for config in configs if evaluator is not None else ():
        evaluator.check_config(config)
    _, fam, checkpoint = teacher_checkpoint(teacher, family)
    L = fam.num_layers(checkpoint)
    layers = sorted({t for config in configs for t in cache_layers(config, L)})
    spans = any(not config.whole_stack(L) for config in configs)
    if not spans:
        checkpoint = None  # the whole stack needs no teacher weights beyond the cache's front end
    cache = build_teacher_cache(teacher, audio, cache_dir or output_dir / "teacher_cache", layers=layers,
                                family=fam.name, dtype=dtype, device=device, progress=progress)
    if evaluator is not None:
        evaluator.check_teacher(cache)
    return [train_mimicker(cache, config, output_dir / f"{config.name()}.pt", resume=resume, device=device,
                           progress=progress, teacher=checkpoint, eval_head=evaluator,
                           select_by=select_by) for config in configs]
