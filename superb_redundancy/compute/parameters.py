"""Parameter counts of an upstream (or of the model a stock checkpoint describes), split by component.

``total`` is every parameter tensor the upstream holds, each shared tensor once; ``inference`` leaves out the
modules a forward pass never touches (:data:`PRETRAINING_ONLY`); ``stack`` is the transformer layers; ``rest``
everything else. See :mod:`superb_redundancy.compute` for how these relate to the SUPERB leaderboard's counts.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from torch import nn

from superb_redundancy.compute.inputs import ProfileError
from superb_redundancy.core.files import load_checkpoint
from superb_redundancy.models.families import family_of_checkpoint, get_family

__all__ = ["PRETRAINING_ONLY", "count_parameters", "count_checkpoint_parameters"]

#: modules that s3prl's experts hold (because the released checkpoints do) but that their forward never uses;
#: plus DistilHuBERT's distillation heads (output_layer: s3prl's distiller runs them, SUPERB does not count them)
PRETRAINING_ONLY = ("quantizer", "project_q", "final_proj", "label_embs_concat", "mask_emb", "target_glu",
                    "output_layer")

_STACK = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
_ANY_LAYERS = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_COMPONENTS = (  # (component, pattern); first match wins, after pretraining-only and the stack
    ("cnn", re.compile(r"(?:^|\.)feature_extractor\.")),
    ("positional_conv", re.compile(r"(?:^|\.)encoder\.pos_conv\.")),
    ("encoder_norm", re.compile(r"(?:^|\.)encoder\.layer_norm\.")),
    ("feature_projection", re.compile(r"(?:^|\.)(?:post_extract_proj|layer_norm)\.(?:weight|bias)$")),
)


def _is_pretraining_only(name: str) -> bool:
    return any(part in PRETRAINING_ONLY for part in name.split("."))


def _component_of(name: str, stack_re: re.Pattern) -> tuple[str, Optional[int]]:
    """The component a parameter belongs to, and its transformer layer index (None outside the stack)."""
    if _is_pretraining_only(name):
        return "pretraining_only", None
    match = stack_re.search(name)
    if match:
        return "stack", int(match.group(1))
    return next((component for component, pattern in _COMPONENTS if pattern.search(name)), "other"), None


def _count_named(named: Iterable[tuple[str, int]]) -> dict:
    named = list(named)
    stack_re = _STACK if any(_STACK.search(n) for n, _ in named) else _ANY_LAYERS
    components = {"stack": 0, "pretraining_only": 0, **{c: 0 for c, _ in _COMPONENTS}, "other": 0}
    layers: set[int] = set()
    for name, numel in named:
        component, layer = _component_of(name, stack_re)
        components[component] += numel
        if layer is not None:
            layers.add(layer)
    total = sum(components.values())
    inference = total - components["pretraining_only"]
    stack = components["stack"]
    return {
        "total": total,
        "inference": inference,
        "pretraining_only": components["pretraining_only"],
        "stack": stack,
        "rest": total - stack,
        "inference_rest": inference - stack,
        "stack_share_of_total": stack / total if total else 0.0,
        "stack_share_of_inference": stack / inference if inference else 0.0,
        "layers_with_parameters": len(layers),
        "components": components,
    }


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _add_removed(counts: dict, base: Optional[dict]) -> dict:
    if base is None:
        return counts
    for key in ("total", "inference", "stack"):
        counts[f"base_{key}"] = base[key]
    removed = base["total"] - counts["total"]
    counts["removed"] = removed
    counts["removed_share_of_base_total"] = _share(removed, base["total"])
    counts["removed_share_of_base_inference"] = _share(base["inference"] - counts["inference"], base["inference"])
    counts["removed_share_of_base_stack"] = _share(base["stack"] - counts["stack"], base["stack"])
    return counts


def count_parameters(upstream: nn.Module, base: Optional[dict] = None) -> dict:
    """Parameter counts of ``upstream`` (each tensor once), split as described in the module docstring.

    Keys: ``total`` (everything held; SUPERB's count for wav2vec2/HuBERT), ``inference`` (``total`` less
    :data:`PRETRAINING_ONLY` modules), ``pretraining_only``, ``stack`` (transformer layers), ``rest`` and
    ``inference_rest`` (the same less the stack), ``stack_share_of_total``, ``stack_share_of_inference``,
    ``layers_with_parameters`` and ``components`` (cnn, feature_projection, positional_conv, stack,
    encoder_norm, pretraining_only, other). With ``base`` (the base model's counts, from this function or
    :func:`count_checkpoint_parameters`): ``base_total``, ``base_inference``, ``base_stack``, ``removed``
    and ``removed_share_of_base_total`` / ``_inference`` / ``_stack``.

    The stack is found by name (``encoder.layers.N.``, else any ``layers.N.``): a pruned upstream's dropped
    layers hold no parameters and are absent from it.
    """
    counts = _count_named((name, p.numel()) for name, p in upstream.named_parameters())
    return _add_removed(counts, base)


def count_checkpoint_parameters(checkpoint, family: Optional[str] = None, base: Optional[dict] = None) -> dict:
    """:func:`count_parameters` of the model a stock checkpoint (dict or path) describes, without building it.

    Counts the weights in the checkpoint; for the stock experts these are exactly their parameters (no buffers).
    """
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint, error=ProfileError, mmap=True)
    fam = get_family(family) if family else family_of_checkpoint(checkpoint)
    if fam is None:
        raise ProfileError(f"not a stock checkpoint of a known family (keys: {sorted(checkpoint)})")
    weights = checkpoint[fam.weights_key]
    return _add_removed(_count_named((name, t.numel()) for name, t in weights.items()
                                     if name != fam.ema_key), base)  # data2vec's EMA teacher: no model weight
