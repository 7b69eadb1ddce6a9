"""A trained s3prl downstream experiment rebuilt from its checkpoint, as s3prl's runner builds it.

:func:`load_experiment` reads the checkpoint's ``Args`` / ``Config``, refuses what pruning curves cannot use
(ASR, a Hugging Face or non-transformer upstream, an upstream already pruned, a feature selection other than the
hidden states) before any model is built, then rebuilds the upstream, the Featurizer and the downstream expert
with s3prl's own classes and loads the saved state dicts.
"""

from __future__ import annotations

import importlib
import os
import re
# s3prl pickles its parsed command line (an argparse.Namespace) into every experiment checkpoint as "Args":
# the class is needed to unpickle and check that data; nothing here parses a command line.
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from superb_redundancy.core.files import load_checkpoint
from superb_redundancy.hub import install as registry
from superb_redundancy.models.families import FAMILIES, ModelFamily
from superb_redundancy.pruning.curves.settings import SUPPORTED_TASKS, CurvesInputError, UnsupportedTaskError
from superb_redundancy.pruning.upstream import PrunedUpstream

__all__ = ["Experiment", "resolve_checkpoint", "upstream_family", "load_experiment", "test_loader"]

_LAYER_CLASS = "TransformerSentenceEncoderLayer"  # the transformer layer of s3prl's wav2vec2, HuBERT and WavLM


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint to evaluate: ``path`` itself, or in an expdir ``dev-best.ckpt`` (what this project's
    :func:`~superb_redundancy.results.experiment.train_and_evaluate` evaluates), else the latest ``states-*.ckpt``."""
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
        if name in (family.pruned_hub_name, family.pruned_local_hub_name, family.local_hub_name):
            return family
    for family in FAMILIES.values():
        if name in _hubconf_names(family):
            return family
    return None


def _supported_upstreams_hint() -> str:
    stock = ", ".join(f.local_hub_name for f in FAMILIES.values())
    pruned = ", ".join(f.pruned_hub_name for f in FAMILIES.values())
    return (f"supported: the stock {stock} (or a hub name of those families, e.g. wav2vec2, hubert, wavlm_base_plus) "
            f"and {pruned} with nothing dropped")


@dataclass
class Experiment:
    """A trained downstream experiment rebuilt from its checkpoint with s3prl's own classes, in eval mode."""

    checkpoint: Path
    task: str
    args: Namespace
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


# ------------------------------------------------------------------------------------------------- checks
def _read_checkpoint(path: Path) -> dict:
    checkpoint = load_checkpoint(path, "s3prl downstream checkpoint", CurvesInputError, safe_globals=[Namespace])
    missing = [k for k in ("Args", "Config", "Featurizer", "Downstream") if not isinstance(checkpoint, dict)
               or k not in checkpoint]
    if missing:
        raise CurvesInputError(f"{path} is not an s3prl downstream checkpoint (no {', '.join(missing)})")
    if not isinstance(checkpoint["Args"], Namespace) or not isinstance(checkpoint["Config"], dict):
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


def _check_experiment_args(args: Namespace) -> ModelFamily:
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


# ------------------------------------------------------------------------------------------------- rebuilding
def _rebuild_upstream(args: Namespace, family: ModelFamily, device: str, state: Optional[dict]
                      ) -> tuple[nn.Module, nn.Module, str]:
    """(upstream, the stock expert inside it, the base for build_pruned), as the runner built the upstream."""
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
    if state:  # -f: the runner saves (and reloads) the fine-tuned upstream
        upstream.load_state_dict(state)
    return upstream, expert, str(base)


def _rebuild_featurizer(args: Namespace, upstream: nn.Module, device: str, state: dict) -> nn.Module:
    from s3prl.upstream.interfaces import Featurizer

    featurizer = Featurizer(
        upstream=upstream,
        feature_selection=getattr(args, "upstream_feature_selection", "hidden_states") or "hidden_states",
        layer_selection=getattr(args, "upstream_layer_selection", None),
        upstream_device=device,
        normalize=getattr(args, "upstream_feature_normalize", False),
    ).to(device)
    if state:
        featurizer.load_state_dict(state)
    return featurizer


def _rebuild_downstream(args: Namespace, config: dict, featurizer: nn.Module, device: str,
                        workdir: Optional[str | os.PathLike], state: dict) -> nn.Module:
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
    downstream.load_state_dict(state)
    return downstream


def load_experiment(path: str | os.PathLike, device: str = "cpu", workdir: Optional[str | os.PathLike] = None
                    ) -> Experiment:
    """Rebuild a trained experiment as s3prl's runner does: upstream from ``Args`` (``-u``, ``-k``, ``-g``)
    through :func:`superb_redundancy.hub.install.build_upstream`, the Featurizer, ``s3prl.downstream.<task>.expert
    .DownstreamExpert(upstream_dim, upstream_rate, **Config, **Args)``, then the saved state dicts.

    ``workdir`` is passed to the expert as ``expdir`` (default: the experiment's own expdir; the curves never
    call ``log_records``, so nothing is written there).
    """
    checkpoint_path = resolve_checkpoint(path)
    registry.install()
    checkpoint = _read_checkpoint(checkpoint_path)
    args, config = checkpoint["Args"], checkpoint["Config"]
    family = _check_experiment_args(args)
    upstream, expert, base = _rebuild_upstream(args, family, device, checkpoint.get("Upstream"))
    featurizer = _rebuild_featurizer(args, upstream, device, checkpoint["Featurizer"])
    downstream = _rebuild_downstream(args, config, featurizer, device, workdir, checkpoint["Downstream"])
    for entry in (upstream, featurizer, downstream):
        entry.eval()
    return Experiment(checkpoint_path, args.downstream, args, config, family, upstream, expert, featurizer,
                      downstream, len(family.layers(expert)), device, base)


def test_loader(experiment: Experiment):
    """The expert's own test dataloader (``get_dataloader("test")``), as s3prl's evaluate uses it."""
    return experiment.downstream.get_dataloader("test")


test_loader.__test__ = False  # not a pytest test
