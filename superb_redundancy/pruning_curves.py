"""Pruning curves without retraining (paper Fig. 2b / 2c): one trained downstream head, every pruned upstream.

Given an s3prl downstream experiment trained on an *unpruned* wav2vec2 / HuBERT / WavLM upstream (its expdir
or one of its ``states-*.ckpt`` / ``dev-best.ckpt``), :func:`pruning_curves` evaluates the **same** checkpoint
(Featurizer weights and downstream head, loaded from the checkpoint exactly as s3prl's runner does) with the
upstream pruned by each objective at every amount ``p = 0 .. L-1``, without any retraining:

- forward / bi / knn-bi / cka-bi / span never prune layer 0 (paper section 2.2); backward drops the last ``p``
  layers, i.e. keeps the first ``L - p`` (at ``p = L-1`` only layer 0 is left); span drops, at each ``p``, the
  ``p`` consecutive layers whose input and output are the most alike (its choices are not nested: no one order);
- score orders come from a :class:`~superb_redundancy.analysis.SimilarityReport` (``--similarity``), or from
  the similarity of the unpruned upstream's hidden states over the experiment's own **test** audio (the audio
  exactly as the expert's test dataloader yields it). The order is static (scores of the unpruned model, the
  paper's choice); ``iterative=True`` recomputes the scores on the pruned model after each removal
  (``L - 2`` extra similarity passes over the test set per score objective);
- the metric is the expert's own: its ``forward("test", ...)`` fills ``records["acc"]`` with one 0/1 entry
  per test sample, averaged the way the expert's ``log_records`` averages it (speech_commands: Python
  ``sum / len``; voxceleb1, emotion: a float32 ``torch`` mean), so amount 0 reproduces the ``test at step 0``
  line s3prl's evaluate mode writes to ``log.log``. ASR (WER) is not implemented.

**Repeats.** Every variant is evaluated once over the whole test set, in the expert's own test batching (what
s3prl's evaluate does), giving one outcome per test sample. Repeat ``r`` is the expert's average over a seeded
random subset (seed ``seed + r``) of ``subset`` x N of those samples. With ``subset = 1.0`` (default) every
repeat holds the whole test set, so the repeats are identical and the bands collapse; with ``subset < 1`` the
repeats vary the data subset and the seed. (Evaluation itself is deterministic: eval mode, no dropout.)

**Shared computation.** For each test batch, :class:`SharedPrunedForward` runs the stock expert ONCE in full
(CNN feature extractor, feature projection, positional convolution, every transformer layer): this is the
unpruned variant, and forward pre-hooks on the layers record each layer's input and call arguments (the padding
mask; WavLM's relative-position bias). Every pruned variant is a keep/drop mask over the L layers; the masks
form a prefix trie, walked depth first: a variant whose first ``j`` decisions equal the unpruned model's reads
its state at depth ``j`` from the full pass, a dropped layer is the identity (the state passes on unchanged,
as :class:`~superb_redundancy.pruned_upstream.DroppedLayer` does), and a kept layer is computed once per
distinct prefix, so variants sharing a prefix share every layer above it. Backward pruning is therefore read
off the one full pass (its variants are prefixes of the unpruned model; no layer is recomputed), and the nested
static orders of BI / kNN-BI share their common prefixes. At a leaf the hidden states are the L+1 entries a
pruned upstream returns (input of each layer; the entry after a dropped layer repeats its input), and the last
one is the encoder output: the state after the last layer, un-padded, plus the encoder's final LayerNorm when
the model is pre-LN (``encoder.layer_norm_first``, e.g. Large) -- for backward pruning by ``p`` that is the
full pass's state after ``L - p`` layers, normed. The trained Featurizer and head then run on each variant's
hidden states. Every module is called on exactly the tensors the end-to-end pruned model
(:func:`~superb_redundancy.pruned_upstream.build_pruned`) would call it on, so the results are identical, not
merely close; each batch re-checks that the reproduced output stage equals the stock encoder's output.

Outputs (:meth:`CurveResult.save`, every file written atomically): ``curves.csv`` / ``curves.json`` (objective,
amount in layers and as a fraction, repeat, seed, metric, dropped layers), ``pruning_curves.png`` (Fig. 2b:
metric vs. prune fraction per objective, 2.5-97.5% quantile bands over repeats, dashed lines at 95% of the
unpruned score and at chance = 1/classes), ``pruned_layers_knn.png`` (Fig. 2c: per objective the layers dropped
at the largest amount whose metric stays >= 50% of unpruned, drawn on the kNN similarity matrix) and
``thresholds.md`` (largest prune fraction keeping >= 95% / >= 50% of the unpruned metric). "Largest" is literal:
the largest amount whose mean metric over repeats is at or above the line, even if a smaller amount dips below.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import json
import math
import os
import random
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .bundles import FAMILIES, ModelFamily
from .pruned_upstream import PrunedUpstream, drop_layers

__all__ = [
    "PAPER_OBJECTIVES",
    "SUPPORTED_TASKS",
    "CurvesInputError",
    "UnsupportedTaskError",
    "CurveSettings",
    "Experiment",
    "CurvePoint",
    "CurveResult",
    "SharedPrunedForward",
    "as_upstream_output",
    "resolve_checkpoint",
    "upstream_family",
    "load_experiment",
    "test_loader",
    "variant_masks",
    "drop_masks",
    "pruning_orders",
    "pruning_drops",
    "evaluate_shared",
    "evaluate_upstream",
    "evaluate_end_to_end",
    "layers_dropped",
    "similarity_on_split",
    "pruning_curves",
    "add_arguments",
    "run",
]

#: the four objectives of the paper's Fig. 2b
PAPER_OBJECTIVES = ("forward", "backward", "bi", "knn-bi")


def _python_mean(values: Sequence[float]) -> float:  # speech_commands' log_records
    return sum(values) / len(values)


def _torch_mean(values: Sequence[float]) -> float:  # voxceleb1's and emotion's log_records
    return torch.FloatTensor(list(values)).mean().item()


#: tasks whose expert reports a per-sample accuracy in records["acc"] -> how its log_records averages it
SUPPORTED_TASKS: dict[str, Callable[[Sequence[float]], float]] = {
    "speech_commands": _python_mean,
    "voxceleb1": _torch_mean,
    "emotion": _torch_mean,
}

_LAYER_CLASS = "TransformerSentenceEncoderLayer"  # the transformer layer of s3prl's wav2vec2, HuBERT and WavLM


class CurvesInputError(ValueError):
    """Bad input for pruning curves, found before any evaluation starts."""


class UnsupportedTaskError(CurvesInputError, NotImplementedError):
    """The experiment's task has no accuracy to draw curves of (ASR: WER curves are not implemented)."""


# ------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class CurveSettings:
    objectives: tuple[str, ...] = PAPER_OBJECTIVES
    repeats: int = 5
    subset: float = 1.0  # fraction of the test set per repeat; 1.0: every repeat is the whole set
    seed: int = 0  # repeat r draws its subset with seed + r
    iterative: bool = False  # recompute score-objective orders on the pruned model after each removal
    device: str = "cpu"
    progress: bool = True
    #: the split whose audio the similarity (and so the score orders) comes from when no report is given
    similarity_split: str = "dev"

    def validate(self) -> "CurveSettings":
        from .pruning_order import OBJECTIVES

        objectives = tuple(self.objectives)
        if not objectives:
            raise CurvesInputError("no objectives given; valid: " + ", ".join(sorted(OBJECTIVES)))
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown:
            raise CurvesInputError(f"unknown objective(s) {unknown}; valid: {', '.join(sorted(OBJECTIVES))}")
        if len(set(objectives)) != len(objectives):
            raise CurvesInputError(f"objectives listed twice: {list(objectives)}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise CurvesInputError(f"repeats must be an int >= 1, got {self.repeats!r}")
        if not (isinstance(self.subset, (int, float)) and 0.0 < float(self.subset) <= 1.0):
            raise CurvesInputError(f"subset must be a fraction of the test set in (0, 1], got {self.subset!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise CurvesInputError(f"bad device {self.device!r}: {error}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CurvesInputError(f"device {self.device!r} asked for, but CUDA is not available here; use --device cpu")
        if self.similarity_split not in ("train", "dev", "test"):
            raise CurvesInputError(f"similarity_split must be train, dev or test, got {self.similarity_split!r}")
        return CurveSettings(objectives, self.repeats, float(self.subset), int(self.seed), bool(self.iterative),
                             self.device, self.progress, self.similarity_split)


# ------------------------------------------------------------------------------------------------- loading
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint to evaluate: ``path`` itself, or in an expdir ``dev-best.ckpt`` (what this project's
    :func:`~superb_redundancy.experiment.train_and_evaluate` evaluates), else the latest ``states-*.ckpt``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CurvesInputError(f"experiment not found: {path} (give an s3prl expdir or one of its *.ckpt files)")
    if path.is_file():
        return path
    best = path / "dev-best.ckpt"
    if best.is_file():
        return best

    def step(p: Path) -> int:
        try:
            return int(p.stem.split("-", 1)[1])
        except (IndexError, ValueError):
            return -1

    states = sorted(path.glob("states-*.ckpt"), key=step)
    if not states:
        raise CurvesInputError(f"{path} holds no dev-best.ckpt or states-*.ckpt: not a trained s3prl expdir")
    return states[-1]


def _hubconf_names(family: ModelFamily) -> set[str]:
    module = importlib.import_module(family.hubconf)
    return {name for name, fn in vars(module).items()
            if callable(fn) and getattr(fn, "__module__", None) == family.hubconf and not name.startswith("_")
            and not isinstance(fn, type)}


def upstream_family(name: str) -> Optional[ModelFamily]:
    """The family of an experiment's ``-u`` name: a stock hub name of wav2vec2 / HuBERT / WavLM (``*_local``,
    ``*_url``, ``*_custom`` and the download names) or our ``pruned_<family>[_local]``; None otherwise."""
    for family in FAMILIES.values():
        if name in (f"pruned_{family.name}", f"pruned_{family.name}_local", family.local_hub_name):
            return family
    for family in FAMILIES.values():
        if name in _hubconf_names(family):
            return family
    return None


def _supported_upstreams_hint() -> str:
    stock = ", ".join(f.local_hub_name for f in FAMILIES.values())
    pruned = ", ".join(f"pruned_{f.name}" for f in FAMILIES.values())
    return (f"supported: the stock {stock} (or a hub name of those families, e.g. wav2vec2, hubert, wavlm_base_plus) "
            f"and {pruned} with nothing dropped")


@dataclass
class Experiment:
    """A trained downstream experiment rebuilt from its checkpoint with s3prl's own classes, in eval mode."""

    checkpoint: Path
    task: str
    args: argparse.Namespace
    config: dict
    family: ModelFamily
    upstream: nn.Module  # as the runner built it (stock expert, or PrunedUpstream with nothing dropped)
    expert: nn.Module  # the stock s3prl expert inside (owns model.encoder.layers)
    featurizer: nn.Module
    downstream: nn.Module
    num_layers: int
    device: str
    #: the base for build_pruned (a checkpoint path or a hub name), for end-to-end reference runs
    base: str

    @property
    def num_classes(self) -> Optional[int]:
        for dataset_name in ("test_dataset", "train_dataset"):
            dataset = getattr(self.downstream, dataset_name, None)
            dataset = getattr(dataset, "dataset", dataset)  # random_split Subset
            for attribute in ("class_num", "speaker_num"):
                value = getattr(dataset, attribute, None)
                if isinstance(value, int) and value > 0:
                    return value
        linears = [m for m in self.downstream.modules() if isinstance(m, nn.Linear)]
        return linears[-1].out_features if linears else None

    @property
    def chance(self) -> Optional[float]:
        classes = self.num_classes
        return None if not classes else 1.0 / classes

    def describe(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "task": self.task, "upstream": self.args.upstream,
                "upstream_ckpt": getattr(self.args, "upstream_ckpt", None),
                "upstream_model_config": getattr(self.args, "upstream_model_config", None),
                "family": self.family.name, "num_layers": self.num_layers,
                "layer_norm_first": bool(getattr(self.expert.model.encoder, "layer_norm_first", False)),
                "feature_selection": getattr(self.args, "upstream_feature_selection", "hidden_states"),
                "num_classes": self.num_classes}


def _read_checkpoint(path: Path) -> dict:
    from .files import load_checkpoint

    checkpoint = load_checkpoint(path, "s3prl downstream checkpoint", CurvesInputError,
                                 safe_globals=[argparse.Namespace])
    missing = [k for k in ("Args", "Config", "Featurizer", "Downstream") if not isinstance(checkpoint, dict)
               or k not in checkpoint]
    if missing:
        raise CurvesInputError(f"{path} is not an s3prl downstream checkpoint (no {', '.join(missing)})")
    if not isinstance(checkpoint["Args"], argparse.Namespace) or not isinstance(checkpoint["Config"], dict):
        raise CurvesInputError(f"{path}: Args / Config are not an argparse.Namespace / dict")
    return checkpoint


def _check_task(task: str) -> None:
    if task == "asr":
        raise UnsupportedTaskError(
            "asr: pruning curves need an accuracy from the expert's records['acc']; WER curves for asr are not "
            f"implemented (supported tasks: {', '.join(SUPPORTED_TASKS)})")
    if task not in SUPPORTED_TASKS:
        raise UnsupportedTaskError(f"task {task!r} is not supported; supported tasks: {', '.join(SUPPORTED_TASKS)}")


def _check_feature_selection(selection: str) -> None:
    if selection in ("hidden_states", "last_hidden_state") or re.fullmatch(r"hidden_state_\d+", str(selection)):
        return
    raise CurvesInputError(f"feature selection -s {selection!r} is not supported; pruning curves need the "
                           "hidden states (-s hidden_states, last_hidden_state or hidden_state_N)")


def _check_experiment_args(args: argparse.Namespace) -> ModelFamily:
    """Everything the saved Args say that rules the experiment out; cheap, before any model is built."""
    _check_task(getattr(args, "downstream", None))
    if getattr(args, "hub", "torch") == "huggingface":
        raise CurvesInputError(f"upstream {args.upstream!r} came from the Hugging Face hub (--hub huggingface); "
                               + _supported_upstreams_hint())
    family = upstream_family(args.upstream)
    if family is None:
        raise CurvesInputError(f"upstream {args.upstream!r} cannot be pruned here; " + _supported_upstreams_hint())
    _check_feature_selection(getattr(args, "upstream_feature_selection", "hidden_states") or "hidden_states")
    return family


def _inner_expert(upstream: nn.Module, name: str, family: ModelFamily) -> nn.Module:
    if isinstance(upstream, PrunedUpstream):
        if upstream.dropped_layers:
            raise CurvesInputError(
                f"the experiment's upstream {name} already has layers {list(upstream.dropped_layers)} dropped; "
                "pruning curves start from a head trained on the unpruned model")
        expert = upstream.upstream
    else:
        expert = upstream
    encoder = getattr(getattr(expert, "model", None), "encoder", None)
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise CurvesInputError(f"upstream {name!r} has no model.encoder.layers; " + _supported_upstreams_hint())
    kinds = sorted({type(layer).__name__ for layer in layers} - {_LAYER_CLASS})
    if kinds:
        raise CurvesInputError(f"upstream {name!r} has {kinds} layers (only s3prl's {_LAYER_CLASS} is supported); "
                               + _supported_upstreams_hint())
    if getattr(expert, "feature_selection", None) is not None:
        raise CurvesInputError(f"upstream {name!r} uses expert feature_selection={expert.feature_selection!r}; "
                               "only the default hook-based hidden states are supported")
    if len(getattr(expert, "hooks", [])) != len(layers) + 1:
        raise CurvesInputError(f"upstream {name!r} does not expose its L+1 hidden states through s3prl's hooks")
    return expert


def load_experiment(path: str | os.PathLike, device: str = "cpu", workdir: Optional[str | os.PathLike] = None
                    ) -> Experiment:
    """Rebuild a trained experiment as s3prl's runner does: upstream from ``Args`` (``-u``, ``-k``, ``-g``)
    through :func:`superb_redundancy.registry.build_upstream`, the Featurizer, ``s3prl.downstream.<task>.expert
    .DownstreamExpert(upstream_dim, upstream_rate, **Config, **Args)``, then the saved state dicts.

    ``workdir`` is passed to the expert as ``expdir`` (default: the experiment's own expdir; the curves never
    call ``log_records``, so nothing is written there).
    """
    from . import registry

    checkpoint_path = resolve_checkpoint(path)
    registry.install()
    checkpoint = _read_checkpoint(checkpoint_path)
    args, config = checkpoint["Args"], checkpoint["Config"]
    family = _check_experiment_args(args)

    name = args.upstream
    ckpt = getattr(args, "upstream_ckpt", None)
    model_config = getattr(args, "upstream_model_config", None)
    try:
        upstream = registry.build_upstream(name, ckpt=ckpt, model_config=model_config, refresh=False)
    except (ValueError, FileNotFoundError, OSError) as error:
        raise CurvesInputError(f"cannot rebuild the experiment's upstream {name!r} (-k {ckpt}): "
                               f"{(str(error).splitlines() or [type(error).__name__])[0]}") from None
    expert = _inner_expert(upstream, name, family)
    if isinstance(upstream, PrunedUpstream) and upstream.spec is not None and upstream.spec.base:
        base = upstream.spec.base
    else:
        base = ckpt or name
    upstream = upstream.to(device)
    if checkpoint.get("Upstream"):  # -f: the runner saves (and reloads) the fine-tuned upstream
        upstream.load_state_dict(checkpoint["Upstream"])

    from s3prl.upstream.interfaces import Featurizer

    featurizer = Featurizer(
        upstream=upstream,
        feature_selection=getattr(args, "upstream_feature_selection", "hidden_states") or "hidden_states",
        layer_selection=getattr(args, "upstream_layer_selection", None),
        upstream_device=device,
        normalize=getattr(args, "upstream_feature_normalize", False),
    ).to(device)
    if checkpoint["Featurizer"]:
        featurizer.load_state_dict(checkpoint["Featurizer"])

    module = importlib.import_module(f"s3prl.downstream.{args.downstream}.expert")
    arguments = dict(vars(args))
    arguments["expdir"] = str(workdir) if workdir is not None else arguments.get("expdir")
    arguments["device"] = device
    downstream = module.DownstreamExpert(
        upstream_dim=featurizer.output_dim,
        upstream_rate=featurizer.downsample_rate,
        **config,
        **arguments,
    ).to(device)
    downstream.load_state_dict(checkpoint["Downstream"])
    for entry in (upstream, featurizer, downstream):
        entry.eval()
    return Experiment(checkpoint_path, args.downstream, args, config, family, upstream, expert, featurizer,
                      downstream, len(family.layers(expert)), device, str(base))


def test_loader(experiment: Experiment):
    """The expert's own test dataloader (``get_dataloader("test")``), as s3prl's evaluate uses it."""
    return experiment.downstream.get_dataloader("test")


test_loader.__test__ = False  # not a pytest test


# ------------------------------------------------------------------------------------------------- sharing
Mask = tuple[bool, ...]


def _mask(dropped: Sequence[int], num_layers: int) -> Mask:
    dropped = set(dropped)
    return tuple(i not in dropped for i in range(num_layers))


def _dropped(mask: Mask) -> tuple[int, ...]:
    return tuple(i for i, keep in enumerate(mask) if not keep)


class SharedPrunedForward:
    """Hidden states of many layer-dropped variants of one stock s3prl expert, computed with shared work.

    ``run(wavs, masks)`` yields ``(mask, hidden_states)`` for each distinct keep-mask (True = layer kept):
    the L+1 hidden states the pruned upstream (:class:`~superb_redundancy.pruned_upstream.PrunedUpstream`,
    non-compact) returns for that batch. See the module docstring for how the work is shared.
    ``layer_calls`` counts the transformer layers computed beyond the full passes.
    """

    def __init__(self, expert: nn.Module, family: ModelFamily):
        self.expert = expert
        self.family = family
        self.layers = family.layers(expert)
        self.encoder = expert.model.encoder
        self.num_layers = len(self.layers)
        self.layer_norm_first = bool(getattr(self.encoder, "layer_norm_first", False))
        self.layer_calls = 0
        self.full_passes = 0

    # -- pieces of the stock encoder ------------------------------------------------------------------------
    def _call_layer(self, index: int, x: Tensor, pos_bias, args: tuple, kwargs: dict):
        call_kwargs = dict(kwargs)
        if "pos_bias" in call_kwargs:
            call_kwargs["pos_bias"] = pos_bias
        out = self.layers[index](x, *args, **call_kwargs)
        self.layer_calls += 1
        hiddens = getattr(self.expert, "_hook_hiddens", None)
        if hiddens is not None:  # s3prl's layer hooks fired on our direct call: drop what they recorded
            hiddens.clear()
        if self.family.layer_output == "wavlm":
            return out[0], out[2]
        return out[0], None

    def _output_stage(self, x: Tensor, frames: int) -> Tensor:
        """What the encoder does after its layer loop: T x B x C -> B x T x C, un-pad, final norm if pre-LN."""
        x = x.transpose(0, 1)[:, :frames]
        if self.layer_norm_first:
            x = self.encoder.layer_norm(x)
        return x

    # -- one batch ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, wavs: Sequence[Tensor], masks: Sequence[Mask]) -> Iterator[tuple[Mask, list[Tensor]]]:
        masks = list(dict.fromkeys(tuple(bool(k) for k in m) for m in masks))
        bad = [m for m in masks if len(m) != self.num_layers]
        if bad:
            raise ValueError(f"masks must have {self.num_layers} entries, got {bad[0]}")
        if any(not m[0] for m in masks) and self.family.shared_position_bias:
            raise ValueError("WavLM: dropping layer 0 (owner of the relative-position table) is not supported here")

        inputs: list = [None] * self.num_layers
        last: list[Tensor] = []

        def capture(index):
            def hook(module, args, kwargs):
                inputs[index] = (args[0], tuple(args[1:]), dict(kwargs))
            return hook

        handles = [layer.register_forward_pre_hook(capture(i), with_kwargs=True) for i, layer in enumerate(self.layers)]
        handles.append(self.layers[-1].register_forward_hook(lambda module, args, out: last.append(out[0])))
        try:
            stock = self.expert(list(wavs))
        finally:
            for handle in handles:
                handle.remove()
        self.full_passes += 1
        stock_hidden = list(stock["hidden_states"])
        frames = stock_hidden[-1].size(1)
        if len(stock_hidden) != self.num_layers + 1 or any(i is None for i in inputs) or len(last) != 1:
            raise RuntimeError("the stock expert did not run every transformer layer once (layerdrop on?)")
        if not torch.equal(self._output_stage(last[0], frames), stock_hidden[-1]):
            raise RuntimeError("the encoder's output stage differs from what pruning_curves reproduces "
                               "(transpose, un-pad, final LayerNorm if pre-LN): s3prl's encoder changed?")
        call_args, call_kwargs = inputs[0][1], inputs[0][2]

        trie: dict = {}
        for mask in masks:
            node = trie
            for keep in mask:
                node = node.setdefault(keep, {})
            node["mask"] = mask

        def state(depth: int):  # the unpruned model's state entering layer `depth` (depth L: after the stack)
            if depth == self.num_layers:
                return last[0], None
            x, _, kwargs = inputs[depth]
            return x, kwargs.get("pos_bias")

        def walk(node: dict, depth: int, x: Tensor, pos_bias, full: bool, path: list[Tensor]):
            if depth == self.num_layers:
                yield node["mask"], stock_hidden if full else path + [self._output_stage(x, frames)]
                return
            here = path + [stock_hidden[depth] if full else x.transpose(0, 1)[:, :frames]]
            if True in node:
                if full:
                    nx, npb = state(depth + 1)
                else:
                    nx, npb = self._call_layer(depth, x, pos_bias, call_args, call_kwargs)
                yield from walk(node[True], depth + 1, nx, npb, full, here)
            if False in node:  # dropped: identity, the state passes on
                yield from walk(node[False], depth + 1, x, pos_bias, False, here)

        x0, pb0 = state(0)
        yield from walk(trie, 0, x0, pb0, True, [])


def as_upstream_output(hidden: Sequence[Tensor]) -> dict:
    """The dict an upstream returns, for the Featurizer's feature selection."""
    from .registry import upstream_output

    return upstream_output(list(hidden))


@contextlib.contextmanager
def layers_dropped(expert: nn.Module, family: ModelFamily, dropped: Sequence[int]) -> Iterator[PrunedUpstream]:
    """The expert with ``dropped`` layers replaced in place by DroppedLayer (exactly what
    :func:`~superb_redundancy.pruned_upstream.build_pruned` builds), as a PrunedUpstream; restored on exit.
    The end-to-end reference: no reload of the checkpoint per variant."""
    layers = family.layers(expert)
    original = list(layers)
    dropped = sorted(set(dropped))
    if family.shared_position_bias and 0 in dropped:
        raise ValueError("layers_dropped: WavLM's layer 0 owns the position table; use build_pruned to drop it")

    def rebind():
        for hook in getattr(expert, "hooks", []):
            if hook.handler is not None:
                hook.handler.remove()
                hook.handler = None
            expert._register_hook_handler(hook)

    try:
        drop_layers(expert, family, dropped)
        yield PrunedUpstream(expert, family, dropped, len(original))
    finally:
        for i, layer in enumerate(original):
            layers[i] = layer
        rebind()


# ------------------------------------------------------------------------------------------------- evaluation
def _evaluate_steps(experiment: Experiment, loader) -> int:
    ratio = float(experiment.config.get("runner", {}).get("evaluate_ratio", 1))
    return round(len(loader) * ratio)


def _seed_like_runner(experiment: Experiment) -> None:
    seed = getattr(experiment.args, "seed", 1337)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(experiment: Experiment, loader, desc: str, progress: bool, leave: bool = True,
             all_batches: bool = False):
    """(batch_id, wavs on device, other fields) as s3prl's Runner.evaluate iterates the test loader."""
    from tqdm import tqdm

    steps = _evaluate_steps(experiment, loader)
    for batch_id, (wavs, *others) in enumerate(tqdm(loader, desc=desc, total=len(loader), disable=not progress,
                                                    leave=leave, unit="batch")):
        if batch_id > steps and not all_batches:  # s3prl's condition (evaluate_steps + 1 batches when ratio < 1)
            break
        yield batch_id, [torch.FloatTensor(wav).to(experiment.device) for wav in wavs], others


def _outcomes(records: Mapping[Mask, dict]) -> dict[Mask, list[float]]:
    outcomes = {mask: list(r["acc"]) for mask, r in records.items()}
    sizes = {len(v) for v in outcomes.values()}
    if len(sizes) != 1:
        raise RuntimeError(f"variants saw different numbers of test samples: {sorted(sizes)}")
    return outcomes


def evaluate_shared(experiment: Experiment, masks: Sequence[Mask], loader=None, progress: bool = True,
                    engine: Optional[SharedPrunedForward] = None,
                    truth: Optional[list] = None) -> dict[Mask, list[float]]:
    """Per-sample test outcomes (the expert's ``records["acc"]``) of every variant, with shared computation.

    ``truth``, if given, is filled with the test items' reference labels (for the majority-class chance level).
    """
    masks = list(dict.fromkeys(masks))
    loader = test_loader(experiment) if loader is None else loader
    engine = engine or SharedPrunedForward(experiment.expert, experiment.family)
    records = {mask: defaultdict(list) for mask in masks}
    _seed_like_runner(experiment)
    with torch.no_grad():
        for batch_id, wavs, others in _batches(experiment, loader, f"test, {len(masks)} variants (shared)", progress):
            for mask, hidden in engine.run(wavs, masks):
                features = experiment.featurizer(wavs, as_upstream_output(hidden))
                experiment.downstream("test", features, *others, records=records[mask], batch_id=batch_id)
    if truth is not None:
        first = records[masks[0]]
        truth.extend(first.get("truth") or first.get("truth_speaker") or [])
    return _outcomes(records)


def evaluate_upstream(experiment: Experiment, upstream: nn.Module, split: str = "test", loader=None,
                      progress: bool = True, leave: bool = True) -> dict:
    """The expert's records (``records["acc"]``: one outcome per item) of any ``upstream`` returning the hidden
    states the experiment's Featurizer reads, through its trained Featurizer and head, on one split, batched as
    s3prl's evaluate does (the mimicker's accuracy in step 1 uses it, :mod:`superb_redundancy.mimic_train`)."""
    loader = experiment.downstream.get_dataloader(split) if loader is None else loader
    records = defaultdict(list)
    _seed_like_runner(experiment)
    with torch.no_grad():
        for batch_id, wavs, others in _batches(experiment, loader, split, progress, leave=leave):
            features = experiment.featurizer(wavs, upstream(wavs))
            experiment.downstream(split, features, *others, records=records, batch_id=batch_id)
    return records


def evaluate_end_to_end(experiment: Experiment, masks: Sequence[Mask], loader=None, progress: bool = True
                        ) -> dict[Mask, list[float]]:
    """The naive reference: each variant separately, its pruned upstream run end to end on every batch."""
    from tqdm import tqdm

    masks = list(dict.fromkeys(masks))
    loader = test_loader(experiment) if loader is None else loader
    records = {}
    for mask in tqdm(masks, desc="variants (end to end)", disable=not progress, unit="variant"):
        with layers_dropped(experiment.expert, experiment.family, _dropped(mask)) as upstream:
            records[mask] = evaluate_upstream(experiment, upstream, "test", loader, progress, leave=False)
    return _outcomes(records)


def similarity_on_split(experiment: Experiment, settings=None, dropped: Sequence[int] = (), loader=None,
                        progress: bool = True, engine: Optional[SharedPrunedForward] = None, split: str = "dev"):
    """A :class:`~superb_redundancy.analysis.SimilarityReport` of the upstream (with ``dropped`` layers dropped;
    none: the unpruned model) over one split's audio exactly as the expert's dataloader yields it.

    The default is the **dev** split (the paper's code takes its similarities from validation batches): the
    pruning order must not come from the test items it is then scored on. The split is recorded in the source.
    """
    from .analysis import SimilaritySettings, accumulate, report_from_matrices
    from .features import frame_lengths

    settings = settings or SimilaritySettings()
    loader = experiment.downstream.get_dataloader(split) if loader is None else loader
    engine = engine or SharedPrunedForward(experiment.expert, experiment.family)
    mask = _mask(dropped, experiment.num_layers)
    rate = experiment.expert.get_downsample_rates("hidden_states")
    desc = f"similarity ({split}{', dropped ' + str(sorted(dropped)) if dropped else ''})"

    def batches():
        with torch.no_grad():
            for _, wavs, _ in _batches(experiment, loader, desc, progress, all_batches=True):
                if settings.max_seconds is not None:
                    wavs = [w[: int(settings.max_seconds * 16000)] for w in wavs]
                for _, hidden in engine.run(wavs, [mask]):
                    lengths = frame_lengths([len(w) for w in wavs], hidden[0].size(1), rate)
                    yield [h.float().cpu() for h in hidden], lengths

    matrices, num_samples = accumulate(batches(), settings)
    source = {"upstream": experiment.args.upstream, "ckpt": getattr(experiment.args, "upstream_ckpt", None),
              "data": f"{split} split of {experiment.checkpoint}", "split": split, "dropped_layers": sorted(dropped)}
    return report_from_matrices(matrices, settings, num_samples, source)


# ------------------------------------------------------------------------------------------------- orders
def pruning_orders(objectives: Sequence[str], num_layers: int, report=None,
                   reanalyse: Optional[Callable[[list[int]], object]] = None) -> dict[str, list[int]]:
    """Per objective the order layers are dropped in (layer 0 never): static, or iterative with ``reanalyse``.
    Order objectives only (a span objective has no order: :func:`pruning_drops` takes every objective)."""
    from .analysis import SCORE_METRIC, plan_pruning
    from .pruning_order import OBJECTIVE_METRIC, prune_order

    orders = {}
    for objective in objectives:
        if objective in OBJECTIVE_METRIC and report is None:
            raise CurvesInputError(f"objective {objective} needs a similarity report")
        matrices = report.matrices if report is not None else None
        if objective in SCORE_METRIC and reanalyse is not None:
            plan = plan_pruning(report, objective, num_layers - 1, keep_first=True, reanalyse=reanalyse)
            orders[objective] = list(plan.drop_layers)
        else:
            orders[objective] = prune_order(objective, num_layers, matrices, keep_first=True)
    return orders


def pruning_drops(objectives: Sequence[str], num_layers: int, report=None,
                  reanalyse: Optional[Callable[[list[int]], object]] = None) -> dict[str, list[list[int]]]:
    """Per objective the layers dropped at each amount ``p = 0 .. L-1`` (layer 0 never): an order objective's
    first ``p`` (as :func:`pruning_orders`), a span objective's best span of ``p`` (always static)."""
    from .pruning_order import OBJECTIVE_METRIC, SPAN_OBJECTIVES, drops_per_amount

    spans = [o for o in objectives if o in SPAN_OBJECTIVES]
    if spans and report is None:
        raise CurvesInputError(f"objective {spans[0]} needs a similarity report "
                               f"(its {OBJECTIVE_METRIC.get(spans[0], 'similarity')} matrix)")
    orders = pruning_orders([o for o in objectives if o not in SPAN_OBJECTIVES], num_layers, report, reanalyse)
    return {o: (drops_per_amount(o, num_layers, report.matrices, keep_first=True) if o in SPAN_OBJECTIVES
                else [list(orders[o][:p]) for p in range(num_layers)]) for o in objectives}


def drop_masks(drops: Mapping[str, Sequence[Sequence[int]]], num_layers: int) -> dict[tuple[str, int], Mask]:
    """``(objective, p) -> keep-mask``: the layers ``drops[objective][p]`` dropped."""
    return {(objective, p): _mask(dropped, num_layers)
            for objective, per_amount in drops.items() for p, dropped in enumerate(per_amount)}


def variant_masks(orders: Mapping[str, Sequence[int]], num_layers: int) -> dict[tuple[str, int], Mask]:
    """``(objective, p) -> keep-mask`` for ``p = 0 .. L-1``: the first ``p`` layers of the objective's order dropped."""
    return drop_masks({o: [order[:p] for p in range(num_layers)] for o, order in orders.items()}, num_layers)


# ------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CurvePoint:
    objective: str
    amount: int  # layers dropped
    fraction: float  # amount / L
    repeat: int
    seed: int
    samples: int
    metric: float
    dropped_layers: tuple[int, ...]


def _mean(values: Sequence[float]) -> float:
    values = list(values)
    return values[0] if all(v == values[0] for v in values) else math.fsum(values) / len(values)


def _write_atomic(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix[1:].lower() or "png", dpi=150)
    return _write_atomic(path, buffer.getvalue())


@dataclass
class CurveResult:
    experiment: dict
    task: str
    metric_name: str
    num_layers: int
    chance: Optional[float]
    #: objective -> the layers dropped at each amount p = 0 .. L-1 (for an order objective, its order's first p)
    drops: dict[str, list[list[int]]]
    points: list[CurvePoint]
    settings: CurveSettings
    similarity: object = None  # the SimilarityReport used (Fig. 2c, score orders)
    similarity_source: str = ""
    #: per distinct variant (keep-mask) the per-sample outcomes of the whole test set
    outcomes: dict = field(default_factory=dict, repr=False)
    #: the share of the most frequent test label (None where the expert does not record labels)
    majority: Optional[float] = None

    # -- queries -------------------------------------------------------------------------------------------
    @property
    def orders(self) -> dict[str, list[int]]:
        """The order of each order objective (its drops at ``p = L-1``); span objectives have none."""
        from .pruning_order import SPAN_OBJECTIVES

        return {o: list(d[-1]) for o, d in self.drops.items() if o not in SPAN_OBJECTIVES}

    def metrics(self, objective: str, amount: int) -> list[float]:
        return [p.metric for p in self.points if p.objective == objective and p.amount == amount]

    def mean(self, objective: str, amount: int) -> float:
        return _mean(self.metrics(objective, amount))

    @property
    def unpruned(self) -> float:
        """The mean over repeats of the unpruned model's metric (amount 0, the same for every objective)."""
        return self.mean(next(iter(self.drops)), 0)

    def largest_amount(self, objective: str, ratio: float) -> int:
        """The largest amount whose mean metric is >= ``ratio`` x unpruned (0 if none above it)."""
        line = ratio * self.unpruned
        passing = [p for p in range(self.num_layers) if self.mean(objective, p) >= line]
        return max(passing, default=0)

    def dropped(self, objective: str, amount: int) -> list[int]:
        return sorted(self.drops[objective][amount])

    def outcomes_at(self, objective: str, amount: int) -> list[float]:
        """The per-item outcomes of the whole test set for the variant at (objective, amount)."""
        return self.outcomes[_mask(self.drops[objective][amount], self.num_layers)]

    def interval(self, objective: str, amount: int) -> tuple[float, float]:
        """Wilson's 95% interval of the variant's accuracy on the whole test set."""
        from .evidence import wilson

        values = self.outcomes_at(objective, amount)
        return wilson(int(round(sum(values))), len(values))

    def retention(self, objective: str, amount: int):
        """The variant against the unpruned model on the same items: a paired-bootstrap
        :class:`~superb_redundancy.evidence.Retention` (cached)."""
        from .evidence import TestItems, retention

        cache = self.__dict__.setdefault("_retention", {})
        key = (objective, amount)
        if key not in cache:
            def items(values):
                ids = tuple(str(i) for i in range(len(values)))
                return [[TestItems("accuracy", ids, correct=tuple(int(round(v)) for v in values),
                                   truth=("?",) * len(values))]]

            cache[key] = retention(items(self.outcomes_at(objective, 0)), items(self.outcomes_at(objective, amount)))
        return cache[key]

    def thresholds(self) -> dict[str, dict]:
        """Per objective and ratio (95%, 50%): the largest amount whose mean stays at or above ratio x unpruned,
        and the largest amount where the paired 95% interval of the retention lies above it (the claim "keeps
        95%" is made only there); each with its retention and interval."""
        out = {}
        for objective in self.drops:
            out[objective] = {}
            for ratio in (0.95, 0.5):
                p = self.largest_amount(objective, ratio)
                kept = self.retention(objective, p)
                supported = [a for a in range(self.num_layers)
                             if self.retention(objective, a) is not None and self.retention(objective, a).low >= 100 * ratio]
                q = max(supported, default=0)
                out[objective][f"{round(ratio * 100)}%"] = {
                    "amount": p, "fraction": p / self.num_layers, "metric": self.mean(objective, p),
                    "interval": list(self.interval(objective, p)), "dropped_layers": self.dropped(objective, p),
                    "retention": None if kept is None else kept.to_dict(),
                    "supported_amount": q, "supported_fraction": q / self.num_layers,
                    "supported_dropped_layers": self.dropped(objective, q)}
        return out

    def table(self) -> str:
        from tabulate import tabulate

        rows = []
        for objective, info in self.thresholds().items():
            a, b = info["95%"], info["50%"]
            r = a["retention"]
            kept = "" if r is None else f"{r['retention']:.1f}% [{r['low']:.1f}, {r['high']:.1f}]"
            rows.append([objective, f"{a['amount']}/{self.num_layers} ({a['fraction']:.0%})", f"{a['metric']:.4f}",
                         kept, " ".join(map(str, a["dropped_layers"])) or "-",
                         f"{a['supported_amount']}/{self.num_layers} ({a['supported_fraction']:.0%})",
                         f"{b['amount']}/{self.num_layers} ({b['fraction']:.0%})", f"{b['metric']:.4f}"])
        return tabulate(rows, tablefmt="github", headers=[
            "objective", "largest prune, mean >= 95%", f"{self.metric_name} there", "% of unpruned [95% CI]",
            "dropped layers", "largest prune, CI above 95%", "largest prune, mean >= 50%", f"{self.metric_name} there"])

    def summary(self) -> str:
        chance = "n/a" if self.chance is None else f"{self.chance:.4f}"
        majority = "" if self.majority is None else f" (majority class {self.majority:.4f})"
        n = len(next(iter(self.outcomes.values()))) if self.outcomes else 0
        low, high = self.interval(next(iter(self.drops)), 0)
        return (f"{self.experiment['upstream']} on {self.task}: unpruned {self.metric_name} {self.unpruned:.4f} "
                f"[{low:.4f}, {high:.4f}] over n = {n} test items, chance 1/K {chance}{majority}, "
                f"{self.num_layers} layers, {self.settings.repeats} repeat(s) of {self.settings.subset:.0%} of the "
                f"test set; orders {'iterative' if self.settings.iterative else 'static'} from "
                f"{self.similarity_source}. 'CI above 95%': the paired 95% interval of the retention lies above 95%.")

    # -- files ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        settings = asdict(self.settings)
        settings.pop("progress", None)
        return {"experiment": self.experiment, "task": self.task, "metric": self.metric_name,
                "higher_is_better": True, "num_layers": self.num_layers, "chance": self.chance,
                "majority": self.majority, "test_items": len(next(iter(self.outcomes.values()), [])),
                "unpruned": self.unpruned, "settings": settings, "orders": self.orders,
                "drops": self.drops,
                "similarity": self.similarity_source, "thresholds": self.thresholds(),
                "points": [dict(asdict(p), dropped_layers=list(p.dropped_layers)) for p in self.points]}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["objective", "amount_layers", "amount_fraction", "repeat", "seed", "samples",
                         self.metric_name, "dropped_layers"])
        for p in self.points:
            writer.writerow([p.objective, p.amount, f"{p.fraction:.6f}", p.repeat, p.seed, p.samples,
                             repr(p.metric), " ".join(map(str, p.dropped_layers))])
        return buffer.getvalue()

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        directory = Path(directory)
        paths = {
            "csv": _write_atomic(directory / "curves.csv", self.to_csv().encode()),
            "json": _write_atomic(directory / "curves.json", json.dumps(self.to_dict(), indent=1).encode()),
            "table": _write_atomic(directory / "thresholds.md",
                                   f"{self.summary()}\n\n{self.table()}\n".encode()),
            "curves_figure": self.plot_curves(directory / "pruning_curves.png"),
        }
        figure = self.plot_pruned_layers(directory / "pruned_layers_knn.png")
        if figure is not None:
            paths["layers_figure"] = figure
        return paths

    def coinciding(self) -> dict[str, str]:
        """objective -> an earlier objective whose curve it repeats at every amount (same dropped layers)."""
        same = {}
        objectives = list(self.drops)
        for k, objective in enumerate(objectives):
            for earlier in objectives[:k]:
                if earlier not in same and all(self.dropped(objective, p) == self.dropped(earlier, p)
                                               for p in range(self.num_layers)):
                    same[objective] = earlier
                    break
        return same

    def plot_curves(self, path: str | os.PathLike) -> Path:
        """Fig. 2b: metric vs. prune amount per objective with its 95% band, 95% of unpruned and chance lines.

        The band is Wilson's 95% interval of each point on the whole test set (and, with repeats on subsets,
        widened to the 2.5-97.5% quantiles over repeats). Objectives get their own marker and line style, and a
        curve that repeats another's (same layers dropped at every amount) says so in the legend.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        x = np.arange(self.num_layers) / self.num_layers * 100
        same = self.coinciding()
        styles = ["-", "--", "-.", ":"]
        markers = ["o", "s", "^", "D", "v", "P"]
        for k, objective in enumerate(self.drops):
            values = np.array([self.metrics(objective, p) for p in range(self.num_layers)])  # [amount, repeat]
            mean = np.array([self.mean(objective, p) for p in range(self.num_layers)])
            wilson_band = np.array([self.interval(objective, p) for p in range(self.num_layers)])
            low = np.minimum(wilson_band[:, 0], np.quantile(values, 0.025, axis=1))
            high = np.maximum(wilson_band[:, 1], np.quantile(values, 0.975, axis=1))
            label = objective + (f" (same as {same[objective]})" if objective in same else "")
            (line,) = ax.plot(x, mean, marker=markers[k % len(markers)], markersize=4 + (2 if objective in same else 0),
                              linestyle=styles[k % len(styles)], label=label,
                              markerfacecolor="none" if objective in same else None)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.axhline(0.95 * self.unpruned, color="red", linestyle="--", linewidth=1, label="95% of unpruned")
        if self.chance is not None:
            ax.axhline(self.chance, color="grey", linestyle="--", linewidth=1,
                       label=f"chance (1/{round(1 / self.chance)})")
        if self.majority is not None and (self.chance is None or abs(self.majority - self.chance) > 1e-9):
            ax.axhline(self.majority, color="grey", linestyle=":", linewidth=1, label="chance (majority class)")
        n = len(next(iter(self.outcomes.values()), []))
        ax.set_xlabel("Prune amount (%)")
        ax.set_ylabel(f"{self.metric_name} (bands: 95% interval, n = {n})")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{self.experiment['upstream']} / {self.task} ({self.num_layers} layers)", fontsize=10)
        ax.legend(fontsize=8)
        return _save_figure(fig, Path(path))

    def plot_pruned_layers(self, path: str | os.PathLike, ratio: float = 0.5) -> Optional[Path]:
        """Fig. 2c: per objective, the layers dropped at the largest amount keeping >= ``ratio`` x unpruned,
        drawn on the kNN similarity matrix (hidden states 0..L: l+1 is the output of layer l, so a dropped
        layer l crosses out row and column l+1). None without a kNN matrix."""
        if self.similarity is None or "knn" not in getattr(self.similarity, "matrices", {}):
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        matrix = np.asarray(self.similarity.matrices["knn"], dtype=float)
        objectives = list(self.drops)
        fig = Figure(figsize=(3.4 * len(objectives) + 0.8, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(objectives), squeeze=False)[0]
        for ax, objective in zip(axes, objectives):
            p = self.largest_amount(objective, ratio)
            # the colour scale of superb_redundancy.blocks.plot_similarity (the paper's 0.5..1, extended if needed)
            image = ax.imshow(matrix, origin="lower", cmap="viridis", vmin=min(0.5, float(matrix.min())), vmax=1.0,
                              interpolation="nearest")
            for layer in self.dropped(objective, p):
                h = layer + 1
                ax.axhspan(h - 0.5, h + 0.5, color="white", alpha=0.45, linewidth=0)
                ax.axvspan(h - 0.5, h + 0.5, color="white", alpha=0.45, linewidth=0)
                ax.plot([h], [h], marker="x", color="red", markersize=7, markeredgewidth=2)
            ax.set_title(f"{objective}: $N_p$ = {p} ({p / self.num_layers:.0%})", fontsize=9)
            ax.set_xlabel("hidden state")
            ax.set_ylabel("hidden state")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=list(axes), shrink=0.85)
        fig.suptitle(f"layers pruned at the {ratio:.0%} threshold, on the mutual-kNN similarity", fontsize=10)
        return _save_figure(fig, Path(path))


# ------------------------------------------------------------------------------------------------- pipeline
def _subset(n: int, fraction: float, seed: int) -> list[int]:
    if fraction >= 1.0:
        return list(range(n))
    count = max(1, round(fraction * n))
    return sorted(random.Random(seed).sample(range(n), count))


def pruning_curves(expdir: str | os.PathLike, similarity: Optional[str | os.PathLike] = None,
                   settings: CurveSettings = CurveSettings(), output: Optional[str | os.PathLike] = None
                   ) -> CurveResult:
    """Evaluate the experiment's checkpoint with the upstream pruned by each objective at every amount.

    ``similarity``: a SimilarityReport (``similarity.json`` or its folder) of the same upstream; None: computed
    on the test audio (and saved to ``output`` as ``similarity.json`` / ``.png``). ``output``: where
    :meth:`CurveResult.save` writes (nothing written if None). Bad input raises :class:`CurvesInputError`
    before any evaluation.
    """
    from .analysis import SimilarityReport

    settings = settings.validate()
    report = None
    if similarity is not None:
        try:
            report = SimilarityReport.load(similarity)
        except FileNotFoundError as error:
            raise CurvesInputError(str(error)) from None
        except (ValueError, KeyError, TypeError) as error:
            raise CurvesInputError(f"{similarity} is not a similarity report: {error}") from None
    experiment = load_experiment(expdir, device=settings.device, workdir=output)
    L = experiment.num_layers
    if L < 2:
        raise CurvesInputError(f"the upstream has {L} transformer layer(s); nothing to prune with layer 0 kept")
    if report is not None and report.num_layers != L:
        raise CurvesInputError(f"the similarity report is of a {report.num_layers}-layer model; the experiment's "
                               f"upstream has {L} layers")
    if report is not None:
        from .pruning_order import OBJECTIVE_METRIC

        missing = sorted({OBJECTIVE_METRIC[o] for o in settings.objectives if o in OBJECTIVE_METRIC}
                         - set(report.matrices))
        if missing:
            raise CurvesInputError(f"the similarity report has no {missing} matrix for the objectives asked for")

    loader = test_loader(experiment)
    engine = SharedPrunedForward(experiment.expert, experiment.family)
    source = str(similarity) if report is not None else f"the {settings.similarity_split} split (unpruned upstream)"
    computed = report is None
    if report is None:
        split_loader = experiment.downstream.get_dataloader(settings.similarity_split)
        report = similarity_on_split(experiment, loader=split_loader, progress=settings.progress, engine=engine,
                                     split=settings.similarity_split)
    reanalyse = None
    if settings.iterative:
        split_loader = experiment.downstream.get_dataloader(report.source.get("split") or settings.similarity_split)

        def reanalyse(dropped: list[int]):
            return similarity_on_split(experiment, report.settings, dropped, loader=split_loader,
                                       progress=settings.progress, engine=engine,
                                       split=report.source.get("split") or settings.similarity_split)
    drops = pruning_drops(settings.objectives, L, report, reanalyse)
    variants = drop_masks(drops, L)
    truth: list = []
    outcomes = evaluate_shared(experiment, list(variants.values()), loader=loader, progress=settings.progress,
                               engine=engine, truth=truth)
    majority = None
    if truth:
        from collections import Counter

        majority = max(Counter(truth).values()) / len(truth)

    average = SUPPORTED_TASKS[experiment.task]
    n = len(next(iter(outcomes.values())))
    subsets = [_subset(n, settings.subset, settings.seed + r) for r in range(settings.repeats)]
    points = []
    for (objective, p), mask in variants.items():
        values = outcomes[mask]
        for r, indices in enumerate(subsets):
            points.append(CurvePoint(objective, p, p / L, r, settings.seed + r, len(indices),
                                     average([values[i] for i in indices]), _dropped(mask)))
    result = CurveResult(experiment.describe(), experiment.task, "acc", L, experiment.chance, drops, points,
                         settings, report, source, outcomes, majority)
    if output is not None:
        _save_unit(result, output, report if computed else None, experiment.args.upstream)
    return result


#: what one curves run writes; they are swapped in together (atomic.atomic_dir), so no old file stays beside new
CURVE_FILES = ("curves.csv", "curves.json", "thresholds.md", "pruning_curves.png", "pruned_layers_knn.png")


def _save_unit(result: "CurveResult", output: str | os.PathLike, computed_report, upstream: str) -> None:
    """The curves (and the similarity report they computed) written into ``output`` as one unit."""
    from .analysis import SimilarityReport
    from .atomic import atomic_dir

    with atomic_dir(output, unit=SimilarityReport.FILES + CURVE_FILES) as tmp:
        if computed_report is not None:
            computed_report.write_files(tmp, title=f"{upstream}: {computed_report.source.get('split')} audio "
                                                   f"({computed_report.num_samples} clips)")
        result.save(tmp)


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .pruning_order import OBJECTIVES

    parser.add_argument("--expdir", required=True, metavar="EXPDIR_OR_CKPT",
                        help="an s3prl downstream expdir trained on the UNPRUNED upstream (its dev-best.ckpt, else "
                             "the latest states-*.ckpt is evaluated) or one checkpoint file")
    parser.add_argument("--similarity", metavar="REPORT",
                        help="similarity.json (or its folder) of the same upstream for the score objectives and "
                             "Fig. 2c; default: computed on the experiment's --similarity-split audio")
    parser.add_argument("--similarity-split", default="dev", choices=("train", "dev", "test"),
                        help="the split whose audio the similarity (and so the score orders) comes from when no "
                             "--similarity is given (default dev, as the paper's code: never the scored test items)")
    parser.add_argument("--objectives", nargs="+", default=list(PAPER_OBJECTIVES), choices=sorted(OBJECTIVES),
                        help=f"pruning objectives (default: the paper's {' '.join(PAPER_OBJECTIVES)})")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per variant (default 5, the paper's N)")
    parser.add_argument("--subset", type=float, default=1.0,
                        help="fraction of the test set each repeat averages over, drawn with seed + repeat "
                             "(default 1.0: every repeat is the whole test set, so the repeats are identical)")
    parser.add_argument("--seed", type=int, default=0, help="seed of repeat 0 (repeat r uses seed + r)")
    parser.add_argument("--iterative", action="store_true",
                        help="recompute score-objective orders on the pruned model after each removal "
                             "(L-2 extra similarity passes over the similarity split per score objective)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for curves, figures and the table")
    parser.add_argument("--device", default="cpu")
    return parser


def run(args: argparse.Namespace) -> int:
    from .atomic import check_output_dir

    settings = CurveSettings(objectives=tuple(args.objectives), repeats=args.repeats, subset=args.subset,
                             seed=args.seed, iterative=args.iterative, device=args.device,
                             similarity_split=args.similarity_split)
    try:
        check_output_dir(args.output)
        result = pruning_curves(args.expdir, similarity=args.similarity, settings=settings, output=args.output)
    except (CurvesInputError, ValueError) as error:
        print(f"superb-redundancy curves: error: {error}", file=sys.stderr)
        return 2
    print(result.summary())
    print(result.table())
    print(f"curves, figures and table: {Path(args.output)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="superb-redundancy curves", description=__doc__.split("\n\n")[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
