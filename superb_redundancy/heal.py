"""Healing a pruned model: task-agnostic distillation of its kept layers towards the unpruned teacher.

The paper drops layers without retraining; retraining afterwards ("healing", Gromov et al. 2024; DPHuBERT's
distillation after structured pruning) recovers much of what pruning loses. Here the pruned model's kept
transformer layers are trained and everything else is frozen (CNN front end, feature projection, positional
convolution, the encoder's LayerNorm; dropped layers stay parameter-free identities), so that its hidden states
reproduce the teacher's on unlabelled audio:

* ``targets="final"``: the teacher's final hidden state (the output of its last layer, s3prl's
  ``hidden_states[L]``) against the pruned model's;
* ``targets="mapped"``: that, and for every kept layer ``l`` the teacher's output of layer ``l`` against the
  pruned model's ``hidden_states[l + 1]`` (a pruned model keeps the L+1 positions, so a kept layer stands where
  the teacher's layer of the same index does).

The loss is the mimic trainer's (:mod:`superb_redundancy.mimic_train`): the sum over targets of the MSE over
valid frames (``masked_mse``), equal weights; Adam. The teacher runs once, into the mimic trainer's cache
(``build_teacher_cache``): its projected CNN features are the pruned model's encoder input too (the front end is
the same; checked), so training reads only the cache. The validation split (``split_clips``: seeded,
``val_fraction`` of the clips, at most ``max_val_clips``), best-weights selection by validation loss and resumption
(``<output>.state.pt``, written after every epoch; only ``epochs`` may change) are the mimic trainer's. Unlike a
mimicker, a pruned model starts from trained layers, so the untrained weights (epoch 0) are a candidate too:
healing never returns a model that is worse on the validation clips than the unhealed one.

The model runs in eval mode throughout (no dropout, no layer drop), as it is used: the frozen parts compute
exactly what they compute at inference, and a resumed run ends with the same weights as an uninterrupted one.

The result is a pruned artifact (:mod:`superb_redundancy.pruned_upstream`): the same compact stock checkpoint
with the kept layers' weights healed and a ``healed`` record in its ``superb_redundancy`` entry (input, base,
spec, teacher, targets, loss before and after, epochs, the training history). ``pruned_<family>_local -k`` loads
it; with 0 epochs it is the unhealed model, bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import atomic
from .bundles import ModelFamily, check_checkpoint, get_family
from .files import load_checkpoint, model_sha256, sha256_file
from .prune_spec import PruneSpec
from .pruned_upstream import (
    ARTIFACT_KEY,
    PrunedUpstream,
    PrunedUpstreamError,
    load_base_checkpoint,
    load_pruned_artifact,
    pruned_artifact,
    resolve_base,
)

__all__ = ["HealConfig", "HealError", "HealResult", "PrunedModel", "TeacherInfo", "TARGETS", "heal",
           "load_pruned_model", "resolve_teacher", "target_pairs", "distillation_loss", "encoder_hidden_states",
           "healed_artifact", "describe"]

TARGETS = ("final", "mapped")
HEALED_KEY = "healed"  # the record's key in an artifact's superb_redundancy entry
RECORD_VERSION = 1
DTYPES = ("float16", "float32")


class HealError(ValueError):
    """Bad input for healing; raised (one line naming the value and what is valid) before any work."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class HealConfig:
    """What healing trains on and how. ``lr`` is small because the layers start trained (fine-tuning, not the
    mimic trainer's from-scratch 1e-3); ``batch_size`` counts clips, run through the whole stack with gradients."""

    targets: str = "final"
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 16
    seed: int = 0
    val_fraction: float = 0.1
    max_val_clips: int = 1024

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def bad(name: str, value: Any, valid: str):
            raise HealError(f"heal config: {name}={value!r} is invalid; valid: {valid}")

        if self.targets not in TARGETS:
            bad("targets", self.targets, " or ".join(TARGETS))
        if not _is_int(self.epochs) or self.epochs < 0:
            bad("epochs", self.epochs, "an integer >= 0 (0: the unhealed model, with its losses recorded)")
        if not _is_number(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", self.lr, "a finite number > 0")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "an integer >= 1 (clips per step)")
        if not _is_int(self.seed):
            bad("seed", self.seed, "an integer")
        if not _is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            bad("val_fraction", self.val_fraction, "a number in [0, 1)")
        if not _is_int(self.max_val_clips) or self.max_val_clips < 0:
            bad("max_val_clips", self.max_val_clips, "an integer >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- the input
@dataclass
class PrunedModel:
    """The pruned model to heal: its artifact (the compact stock checkpoint with the ``superb_redundancy`` entry)
    and where it came from (an artifact file, or a prune spec applied to a base)."""

    family: ModelFamily
    artifact: dict
    path: Optional[Path] = None  # the artifact file, if given as one

    @property
    def meta(self) -> dict:
        return self.artifact[ARTIFACT_KEY]

    @property
    def num_layers(self) -> int:
        return int(self.meta["num_layers"])

    @property
    def kept(self) -> list[int]:
        return [int(i) for i in self.meta["kept_layers"]]

    def source(self) -> dict:
        """What the record says about the input (content hash: the model, whatever file it came in)."""
        return {"artifact": str(self.path) if self.path else None,
                "sha256": sha256_file(self.path) if self.path else None,
                "model_sha256": model_sha256(self.artifact),
                "healed": self.meta.get(HEALED_KEY)}  # healing a healed model keeps the earlier record


def _load_artifact_file(path: Path, family: Optional[str]) -> PrunedModel:
    path = path.expanduser()
    try:
        if family is not None:
            fam = get_family(family)
            checkpoint = load_base_checkpoint(path, fam)
        else:
            checkpoint = load_checkpoint(path, "pruned artifact", HealError)
            fam = check_checkpoint(checkpoint, path, error=HealError)
    except PrunedUpstreamError as error:
        raise HealError(str(error).replace("checkpoint not found", "pruned artifact not found")) from None
    meta = checkpoint.get(ARTIFACT_KEY)
    if not isinstance(meta, dict) or meta.get("kind") != "pruned_upstream":
        raise HealError(f"{path} is not a pruned artifact (a plain {fam.name} checkpoint?); give one written by "
                        f"`superb-redundancy prune --artifact`, or a prune spec with -g SPEC --family {fam.name}")
    if meta.get("family") != fam.name:
        raise HealError(f"{path} is a pruned {meta.get('family')} artifact, not {fam.name} "
                        f"(--family {meta.get('family')})")
    return PrunedModel(fam, checkpoint, path)


def load_pruned_model(artifact: Optional[str | os.PathLike] = None, family: Optional[str] = None,
                      spec: Optional[PruneSpec | str | os.PathLike] = None,
                      base: Optional[str] = None) -> PrunedModel:
    """The model to heal: a pruned ``artifact`` file (its family read from it, or checked against ``family``), or
    a prune ``spec`` (object or YAML path) of ``family`` applied to ``base`` (default: the spec's ``base:``)."""
    if (artifact is None) == (spec is None):
        raise HealError("give the pruned model either as a pruned artifact (-k ARTIFACT) or as a prune spec "
                        "(-g SPEC with --family and the spec's base: or --base), not both")
    if family is not None and family not in ("wav2vec2", "hubert", "wavlm"):
        raise HealError(f"family {family!r} is invalid; valid: wav2vec2, hubert, wavlm")
    if artifact is not None:
        if base is not None:
            raise HealError("--base is for a prune spec (-g); a pruned artifact records its base (the default "
                            "teacher; --teacher names another)")
        return _load_artifact_file(Path(artifact), family)
    if family is None:
        raise HealError("a prune spec (-g) needs --family (wav2vec2, hubert or wavlm)")
    try:
        if not isinstance(spec, PruneSpec):
            spec = PruneSpec.from_yaml(spec)
        if not (base or spec.base):
            raise HealError("the prune spec names no base model: set base: in it, or pass --base CKPT")
        fam = get_family(family)
        path = resolve_base(base or spec.base, fam)
        if ARTIFACT_KEY in load_base_checkpoint(path, fam, mmap=True):
            raise HealError(f"base {path} is already a pruned artifact; heal it with -k {path}")
        return PrunedModel(fam, pruned_artifact(family, spec, ckpt=base))
    except (PrunedUpstreamError, ValueError) as error:
        if isinstance(error, HealError):
            raise
        raise HealError(str(error)) from None


# ---------------------------------------------------------------------------------------------- the teacher
def _normalizes(checkpoint: dict, family: ModelFamily) -> bool:
    config = checkpoint["cfg"] if family.name == "wavlm" else checkpoint["task_cfg"]
    return bool(config.get("normalize", False))


def _frontend(weights: dict) -> dict:
    from .mimic import FRONTEND_MODULES

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


@dataclass(frozen=True)
class TeacherInfo:
    path: Path
    num_layers: int
    model_sha256: str  # by content
    is_base: bool  # the model that was pruned


def resolve_teacher(model: PrunedModel, teacher: Optional[str], targets: str) -> TeacherInfo:
    """The teacher: ``teacher`` (a checkpoint path or a hub name of the family), or the pruned model's base
    (which must still hold the model that was pruned). Checked against the pruned model before any work."""
    fam = model.family
    name = teacher if teacher is not None else model.meta.get("spec", {}).get("base")
    try:
        path = resolve_base(name, fam)
        checkpoint = load_base_checkpoint(path, fam)
    except PrunedUpstreamError as error:
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


# ---------------------------------------------------------------------------------------------- the student
def encoder_hidden_states(upstream: PrunedUpstream, features: torch.Tensor,
                          padding_mask: Optional[torch.Tensor]) -> list[torch.Tensor]:
    """The L+1 hidden states of a (full-mode) pruned upstream from its encoder input ``features`` [B,T,d], read
    by s3prl's own hooks (the ones that make ``hidden_states`` for users), so they are the same states."""
    expert = upstream.upstream
    expert._hook_hiddens.clear()
    try:
        expert.model.encoder(features, padding_mask=padding_mask)
        hiddens = expert._hook_hiddens.copy()
    finally:
        expert._hook_hiddens.clear()  # they hold the autograd graph
    if callable(expert.hook_postprocess):
        hiddens = expert.hook_postprocess(hiddens)
    return [h for _, h in hiddens]


def _terms(upstream: PrunedUpstream, features, padding_mask, wanted, pairs) -> list[torch.Tensor]:
    from .mimic_train import masked_mse

    hidden = encoder_hidden_states(upstream, features, padding_mask)
    return [masked_mse(hidden[s], target, padding_mask) for (_, s), target in zip(pairs, wanted)]


@torch.no_grad()
def distillation_loss(upstream: PrunedUpstream, cache, ids: Sequence[int], pairs: Sequence[tuple[int, int]],
                      batch_size: int, device: torch.device | str = "cpu") -> Optional[list[float]]:
    """Per-term MSE over all valid frames of the cache's clips ``ids`` (frame-weighted over batches of
    ``batch_size``), or None without ids: the measure of "before" and "after"."""
    if len(ids) == 0:
        return None
    upstream.eval()
    sums, count = np.zeros(len(pairs)), 0
    for start in range(0, len(ids), batch_size):
        features, mask, wanted = cache.batch(ids[start:start + batch_size], [t for t, _ in pairs], torch.device(device))
        valid = int((~mask).sum())
        sums += np.array([float(t) for t in _terms(upstream, features, mask, wanted, pairs)]) * valid
        count += valid
    return [float(x) for x in sums / max(count, 1)]


def _layers(upstream: PrunedUpstream) -> nn.ModuleList:
    return get_family(upstream.family_name).layers(upstream.upstream)


def _layer_state(upstream: PrunedUpstream, kept: Sequence[int]) -> dict[str, torch.Tensor]:
    """The kept layers' weights (the only ones healing changes), keyed ``<position>.<name>``, on the CPU."""
    layers = _layers(upstream)
    return {f"{i}.{k}": v.detach().cpu().clone() for i in kept for k, v in layers[i].state_dict().items()}


def _load_layer_state(upstream: PrunedUpstream, state: dict[str, torch.Tensor]) -> None:
    layers = _layers(upstream)
    by_layer: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        index, name = key.split(".", 1)
        by_layer.setdefault(int(index), {})[name] = value
    for index, layer_state in by_layer.items():
        layers[index].load_state_dict(layer_state)


def _trainable(upstream: PrunedUpstream, kept: Sequence[int]) -> list[nn.Parameter]:
    """Freeze everything but the kept layers; returns their parameters."""
    for parameter in upstream.parameters():
        parameter.requires_grad_(False)
    layers = _layers(upstream)
    params = [p for i in kept for p in layers[i].parameters()]
    for parameter in params:
        parameter.requires_grad_(True)
    return params


def healed_artifact(model: PrunedModel, upstream: PrunedUpstream, record: dict) -> dict:
    """The input artifact with its kept layers' weights replaced by ``upstream``'s and the healing record; every
    other entry (front end, encoder, config, spec) is the input's, untouched."""
    fam = model.family
    prefix = fam.layer_prefix()
    weights = dict(model.artifact[fam.weights_key])
    layers = _layers(upstream)
    for compact_index, position in enumerate(model.kept):  # the artifact holds kept layer p as compact index c
        for name, value in layers[position].state_dict().items():
            key = f"{prefix}{compact_index}.{name}"
            if key not in weights or tuple(weights[key].shape) != tuple(value.shape):
                raise HealError(f"internal: the healed layer {position}'s {name} has no place in the artifact")
            weights[key] = value.detach().cpu().to(weights[key].dtype).clone()
    out = {k: v for k, v in model.artifact.items() if k not in (fam.weights_key, ARTIFACT_KEY)}
    out[fam.weights_key] = weights
    out[ARTIFACT_KEY] = dict(model.meta, **{HEALED_KEY: _plain(record)})
    return out


def _plain(value: Any) -> Any:
    """JSON-plain (dicts, lists, str, numbers, None): what torch.load(weights_only=True) reads back."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------- healing
@dataclass
class HealResult:
    path: Path
    upstream: PrunedUpstream  # the healed model (best weights), on the CPU, in eval mode
    record: dict


def _device(device: Optional[str]) -> torch.device:
    return torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))


def _check_output(output: Path, model: PrunedModel, teacher: Path) -> None:
    if output.is_dir():
        raise HealError(f"--output {output} is a folder; give the healed artifact's file path")
    atomic.check_writable(output.parent, "--output")
    for what, other in (("the pruned artifact it heals", model.path), ("the teacher", teacher)):
        if other is not None and output.resolve() == Path(other).resolve():
            raise HealError(f"--output {output} is {what}; write the healed artifact to another file")


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


@dataclass
class _Progress:
    """Where a healing run stands: what the state file holds besides weights and optimizer."""

    history: list[dict]
    best_epoch: int
    best_loss: float
    best_weights: Optional[dict]  # None: the input's (epoch 0, the unhealed model, is a candidate)
    steps: int = 0
    seconds: float = 0.0

    @property
    def epoch(self) -> int:
        return int(self.history[-1]["epoch"])

    def add(self, epoch: int, train_loss: float, terms: list[float], seconds: float, weights) -> None:
        self.history.append({"epoch": epoch, "train_loss": train_loss, "loss": sum(terms), "terms": terms,
                             "seconds": round(seconds, 3)})
        self.seconds += seconds
        if sum(terms) < self.best_loss:
            self.best_epoch, self.best_loss, self.best_weights = epoch, float(sum(terms)), weights()

    def terms_of(self, epoch: int) -> list[float]:
        return next(h["terms"] for h in self.history if h["epoch"] == epoch)


def _train_epoch(upstream: PrunedUpstream, optimizer: torch.optim.Optimizer, cache, train_ids: np.ndarray,
                 pairs: Sequence[tuple[int, int]], config: HealConfig, epoch: int, device: torch.device,
                 progress: bool) -> tuple[float, int]:
    """One pass over the training clips, shuffled by (seed, epoch); returns (frame-weighted loss, steps)."""
    from tqdm import tqdm

    order = np.random.default_rng([config.seed, epoch]).permutation(train_ids)
    batches = [order[s:s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    total, frames = 0.0, 0
    for batch in tqdm(batches, disable=not progress, file=sys.stderr, leave=False, unit="batch",
                      desc=f"heal epoch {epoch}/{config.epochs}"):
        features, mask, wanted = cache.batch(batch, [t for t, _ in pairs], device)
        loss = sum(_terms(upstream, features, mask, wanted, pairs))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        valid = int((~mask).sum())
        total, frames = total + float(loss.detach()) * valid, frames + valid
    return total / max(frames, 1), len(batches)


def _student(model: PrunedModel, device: torch.device) -> PrunedUpstream:
    """The model to train, loaded exactly as ``pruned_<family>_local`` loads the artifact (so the healed artifact
    reproduces it), in full mode, in eval mode (no dropout: frozen parts as at inference)."""
    with tempfile.TemporaryDirectory(prefix="heal-") as tmp:
        path = model.path or atomic.torch_save(model.artifact, Path(tmp) / "pruned.pt")
        upstream = load_pruned_artifact(model.family.name, str(path), compact=False)
    return upstream.to(device).eval()


def heal(output: str | os.PathLike, *, artifact: Optional[str | os.PathLike] = None, family: Optional[str] = None,
         spec: Optional[PruneSpec | str | os.PathLike] = None, base: Optional[str] = None,
         teacher: Optional[str] = None, audio=None, config: HealConfig = HealConfig(),
         cache_dir: Optional[str | os.PathLike] = None, dtype: str = "float16", device: Optional[str] = None,
         resume: bool = False, progress: bool = True) -> HealResult:
    """Heal a pruned model (a pruned ``artifact``, or a prune ``spec`` of ``family`` on ``base``) on ``audio``
    (folders / files, 16 kHz) towards ``teacher`` (default: its base); write the healed artifact to ``output``.

    Every input is checked before the teacher runs. The teacher cache defaults to ``<output stem>.teacher_cache``
    beside the output (pass the mimic trainer's to share one teacher pass). See the module docstring.
    """
    from .mimic_train import build_teacher_cache, resume_state_path, split_clips

    if not isinstance(config, HealConfig):
        raise HealError(f"config must be a HealConfig, got {type(config).__name__}")
    if dtype not in DTYPES:
        raise HealError(f"cache dtype {dtype!r} is invalid; valid: {' or '.join(DTYPES)}")
    if audio is None:
        raise HealError("no audio given: heal needs clips to distil on (--data AUDIO or --corpus with --task)")
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

    # the one teacher pass (reused when the cache already holds this teacher, audio and layers)
    cache = build_teacher_cache(teacher_info.path, audio, cache_dir or output.with_name(f"{output.stem}.teacher_cache"),
                                layers=[t for t, _ in pairs], family=model.family.name, dtype=dtype, device=device,
                                progress=progress)
    cache_id = {"num_clips": len(cache), "num_frames": int(cache.manifest["num_frames"]), "dtype": cache.dtype,
                "sources_sha256": model_sha256(cache.manifest["sources"])}
    if state is not None and state.get("cache") != cache_id:
        raise HealError(f"{state_path} was trained on other clips ({state.get('cache')}); drop --resume to start over")
    train_ids, val_ids = split_clips(len(cache), config)
    if len(train_ids) == 0:
        raise HealError(f"teacher cache {cache.directory} has no clip left to train on")
    select_ids = val_ids if len(val_ids) else train_ids  # what "before", "after" and the best epoch are measured on

    upstream = _student(model, dev)
    flags = [p.requires_grad for p in upstream.parameters()]
    optimizer = torch.optim.Adam(_trainable(upstream, model.kept), lr=config.lr)
    if state is not None:
        _load_layer_state(upstream, state["layers"])
        optimizer.load_state_dict(state["optimizer"])
        run = _Progress(list(state["history"]), state["best_epoch"], state["best_loss"], state["best_weights"],
                        int(state["steps"]), float(state["seconds"]))
    else:
        terms = distillation_loss(upstream, cache, select_ids, pairs, config.batch_size, dev)
        run = _Progress([{"epoch": 0, "train_loss": None, "loss": sum(terms), "terms": terms}], 0, float(sum(terms)),
                        None)

    for epoch in range(run.epoch + 1, config.epochs + 1):
        began = time.time()
        train_loss, steps = _train_epoch(upstream, optimizer, cache, train_ids, pairs, config, epoch, dev, progress)
        terms = distillation_loss(upstream, cache, select_ids, pairs, config.batch_size, dev)
        run.steps += steps
        run.add(epoch, train_loss, terms, time.time() - began, lambda: _layer_state(upstream, model.kept))
        if progress:
            print(f"[heal] epoch {epoch}: train {train_loss:.5g}, {'val' if len(val_ids) else 'train-set'} "
                  f"{sum(terms):.5g}", file=sys.stderr)
        atomic.torch_save({
            "identity": identity, "cache": cache_id, "epoch": epoch, "steps": run.steps, "seconds": run.seconds,
            "layers": _layer_state(upstream, model.kept), "optimizer": optimizer.state_dict(),
            "history": run.history, "best_epoch": run.best_epoch, "best_loss": run.best_loss,
            "best_weights": run.best_weights,
        }, state_path)

    # the selected weights; epoch 0's are the input's, reloaded from it so not even rounding can differ
    _load_layer_state(upstream, run.best_weights if run.best_weights is not None else _input_layer_state(model))
    upstream = upstream.cpu().eval()
    for parameter, flag in zip(upstream.parameters(), flags):
        parameter.requires_grad_(flag)
    record = _record(model, source, teacher_info, cache, cache_id, config, pairs, run, len(train_ids),
                     len(val_ids), dev)
    path = atomic.torch_save(healed_artifact(model, upstream, record), output)
    upstream.healed = _plain(record)  # as pruned_<family>_local gives it for the written artifact
    return HealResult(path, upstream, upstream.healed)


def _record(model: PrunedModel, source: dict, teacher: TeacherInfo, cache, cache_id: dict, config: HealConfig,
            pairs: Sequence[tuple[int, int]], run: _Progress, train_clips: int, val_clips: int,
            device: torch.device) -> dict:
    """What the healed artifact says about its healing: from what, towards what, how, and how it went."""
    measured_on = f"{val_clips} validation clips" if val_clips else f"{train_clips} training clips"
    return {
        "version": RECORD_VERSION,
        "method": "task-agnostic distillation: kept transformer layers trained, everything else frozen",
        "input": source,
        "base": model.meta.get("spec", {}).get("base"),
        "base_model_sha256": model.meta.get("base_model_sha256"),
        "spec": model.meta.get("spec"),
        "kept_layers": model.kept,
        "teacher": dict(cache.teacher, is_base=teacher.is_base),
        "targets": config.targets,
        "target_pairs": [{"teacher_layer": t, "hidden_state": s} for t, s in pairs],
        "loss": "sum over targets of the MSE over valid frames (mimic_train.masked_mse), equal weights",
        "measured_on": measured_on,
        "loss_before": run.history[0]["loss"],
        "loss_after": run.best_loss,
        "terms_before": run.history[0]["terms"],
        "terms_after": run.terms_of(run.best_epoch),
        "epochs": run.epoch,
        "best_epoch": run.best_epoch,
        "selected_by": "validation loss" if val_clips else "training-set loss",
        "config": config.to_dict(),
        "optimizer": "Adam",
        "mode": "eval (no dropout, no layer drop)",
        "frozen": "CNN front end, feature projection, positional convolution, encoder LayerNorm; dropped layers",
        "train_clips": train_clips,
        "val_clips": val_clips,
        "steps": run.steps,
        "seconds": round(run.seconds, 3),
        "device": str(device),
        "cache": dict(cache_id, path=str(cache.directory), layers=cache.layers),
        "history": run.history,
    }


def _input_layer_state(model: PrunedModel) -> dict[str, torch.Tensor]:
    """The input artifact's kept-layer weights, keyed as :func:`_layer_state` keys them."""
    prefix = model.family.layer_prefix()
    renumber = dict(enumerate(model.kept))  # compact index -> position
    state = {}
    for key, value in model.artifact[model.family.weights_key].items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            state[f"{renumber[int(index)]}.{name}"] = value
    return state


def describe(record: dict) -> str:
    """One line for the command's output: the losses before and after, and the selected epoch."""
    return (f"distillation loss ({record['targets']}) on {record['measured_on']}: {record['loss_before']:.5g} -> "
            f"{record['loss_after']:.5g} (epoch {record['best_epoch']} of {record['epochs']}; teacher "
            f"{Path(record['teacher']['path']).name})")
