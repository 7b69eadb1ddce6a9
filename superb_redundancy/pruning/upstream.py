"""Layer-pruned upstreams built on s3prl's own model code and loaders.

Loading goes: base (hub name or path) -> a local stock checkpoint -> the prune spec is validated against its
config -> s3prl's stock ``<family>_local`` expert is built -> the dropped layers are replaced in place by
:class:`DroppedLayer`, which holds no parameters and returns its input unchanged.

Keeping a placeholder where a layer was (instead of shortening the ModuleList) keeps ``hidden_states`` at its
L+1 entries, in the positions a downstream head trained on the full model expects: the entry after a dropped
layer repeats that layer's input. ``compact=True`` returns only the entries of kept layers instead.

A pruned model can be saved as a self-describing artifact (:func:`save_pruned`): a stock checkpoint of the
compact K-layer model (so s3prl's ``<family>_local`` loads it as it is) plus a ``superb_redundancy`` entry with
the spec, from which ``pruned_<family>_local -k ARTIFACT`` restores the L-position model. A *healed* artifact
(:mod:`superb_redundancy.pruning.heal`) is the same file with the kept layers' weights retrained and a ``healed`` record
in that entry; it loads the same way, and the upstream's ``healed`` attribute holds the record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from superb_redundancy.core.files import model_sha256, sha256_file, torch_save
from superb_redundancy.core.contract import upstream_output
from superb_redundancy.core.variant import (ARTIFACT_KEY, DESCRIPTION_KEY, PRUNED_ARTIFACT_KIND as ARTIFACT_KIND,
                                            VariantDescription, VariantKind)
from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint, resolve_base, stock_expert
from superb_redundancy.models.families import ModelFamily, get_family
from superb_redundancy.pruning.spec import PruneSpec, PruneSpecError, kept_layers

__all__ = [
    "DroppedLayer",
    "PrunedUpstream",
    "PrunedUpstreamError",
    "drop_layers",
    "build_pruned",
    "load_pruned_artifact",
    "pruned_artifact",
    "hub_entry",
    "hub_entry_local",
    "save_pruned",
    "pruned_description",
    "ARTIFACT_KEY",
    "ARTIFACT_KIND",
]

ARTIFACT_VERSION = 1


class PrunedUpstreamError(CheckpointError):
    """Bad input for a pruned upstream; raised before any model is built."""


class DroppedLayer(nn.Module):
    """Stands where transformer layer ``index`` was: identity, with the output structure of the family's layers."""

    def __init__(self, index: int, layer_output: str):
        super().__init__()
        self.index = index
        self.layer_output = layer_output

    def forward(self, x, *args, pos_bias=None, **kwargs):
        if self.layer_output == "wavlm":
            return x, None, pos_bias  # pass the relative-position bias on to the next layer
        return x, (None, x)  # fairseq: (x, (attn, layer_result))

    def extra_repr(self) -> str:
        return f"index={self.index}"


def _rebind_hooks(expert: nn.Module) -> None:
    """s3prl's experts hook layers by path ("self.model.encoder.layers[3]"); re-resolve after replacing modules."""
    for hook in getattr(expert, "hooks", []):
        if hook.handler is not None:
            hook.handler.remove()
            hook.handler = None
        expert._register_hook_handler(hook)


def drop_layers(expert: nn.Module, family: ModelFamily, dropped: Sequence[int]) -> nn.Module:
    """Replace ``dropped`` layers of a stock expert by :class:`DroppedLayer`, in place; returns the expert."""
    layers = family.layers(expert)
    dropped = sorted(set(dropped))
    kept = kept_layers(dropped, len(layers))
    if family.shared_position_bias and 0 in dropped:
        # WavLM: layer 0 computes the relative-position bias every layer uses; the first kept layer takes over.
        source, target = layers[0].self_attn, layers[kept[0]].self_attn
        if getattr(source, "has_relative_attention_bias", False):
            target.relative_attention_bias = source.relative_attention_bias
            target.num_buckets, target.max_distance = source.num_buckets, source.max_distance
            target.has_relative_attention_bias = True
    for index in dropped:
        layers[index] = DroppedLayer(index, family.layer_output)
    _rebind_hooks(expert)
    return expert


def _expand(expert: nn.Module, family: ModelFamily, kept: Sequence[int], num_layers: int) -> nn.Module:
    """Put the K layers of a compact model back at their original positions among L, identity elsewhere."""
    compact_layers = list(family.layers(expert))
    positions = dict(zip(kept, compact_layers))
    expert.model.encoder.layers = nn.ModuleList(
        [positions.get(i, DroppedLayer(i, family.layer_output)) for i in range(num_layers)]
    )
    # The hooks were made for K layers: rebuild them for L, as the stock expert would have.
    expert.remove_all_hooks()
    for i in range(num_layers):
        expert.add_hook(f"self.model.encoder.layers[{i}]", lambda input, output: input[0].transpose(0, 1))
    expert.add_hook("self.model.encoder", lambda input, output: output[0])
    return expert


# ---------------------------------------------------------------------------------------------- the upstream
class PrunedUpstream(nn.Module):
    """An s3prl upstream: the stock expert with some layers dropped.

    ``forward(wavs)`` returns ``{"hidden_states": [...], "last_hidden_state": ...}``: L+1 entries in full mode
    (a dropped layer's entry repeats its input), or K+1 (input of the stack, outputs of the kept layers, the
    last entry the encoder output) in compact mode.
    """

    def __init__(self, expert: nn.Module, family: ModelFamily, dropped: Sequence[int], num_layers: int,
                 compact: bool = False, spec: Optional[PruneSpec] = None, healed: Optional[dict] = None):
        super().__init__()
        self.upstream = expert
        self.family_name = family.name
        self.num_layers = num_layers
        self.dropped_layers = tuple(sorted(dropped))
        self.kept_layers = kept_layers(self.dropped_layers, num_layers)
        self.compact = compact
        self.spec = spec
        self.healed = healed  # the artifact's healing record (superb_redundancy.pruning.heal), None if never healed
        # hidden state l+1 is the output of layer l; the last one is the encoder output (after its final norm)
        self._compact_indices = [0] + [i + 1 for i in self.kept_layers[:-1]] + [num_layers]

    def get_downsample_rates(self, key: str) -> int:
        return self.upstream.get_downsample_rates(key)

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        hidden_states = list(self.upstream(wavs)["hidden_states"])
        if self.compact:
            hidden_states = [hidden_states[i] for i in self._compact_indices]
        return upstream_output(hidden_states)

    def extra_repr(self) -> str:
        return (f"family={self.family_name}, num_layers={self.num_layers}, dropped={list(self.dropped_layers)}, "
                f"compact={self.compact}" + (", healed=True" if self.healed else ""))


def build_pruned(family_name: str, spec: PruneSpec, ckpt: Optional[str] = None, refresh: bool = False) -> PrunedUpstream:
    """The pruned upstream a prune spec describes; ``ckpt`` (s3prl's ``-k``), if given, is the base checkpoint.

    Every check (base, checkpoint, layer indices) runs before a model is built.
    """
    family = get_family(family_name)
    base = ckpt if ckpt else spec.base
    path = resolve_base(base, family, refresh=refresh)
    checkpoint = load_base_checkpoint(path, family)
    if ARTIFACT_KEY in checkpoint:
        raise PrunedUpstreamError(
            f"{path} is already a pruned artifact; load it with pruned_{family.name}_local -k {path}"
        )
    num_layers = family.num_layers(checkpoint)
    try:
        dropped = spec.resolve(num_layers)
    except PruneSpecError as error:
        raise PrunedUpstreamError(str(error)) from None
    del checkpoint
    expert = drop_layers(stock_expert(path, family), family, dropped)
    return PrunedUpstream(expert, family, dropped, num_layers, compact=spec.compact, spec=spec.with_base(str(base)))


def save_pruned(family_name: str, spec: PruneSpec, output: str | os.PathLike, ckpt: Optional[str] = None,
                refresh: bool = False) -> Path:
    """Write the self-describing pruned artifact for ``spec`` (atomically); returns its path."""
    return torch_save(pruned_artifact(family_name, spec, ckpt=ckpt, refresh=refresh), output)


def pruned_artifact(family_name: str, spec: PruneSpec, ckpt: Optional[str] = None, refresh: bool = False) -> dict:
    """The self-describing pruned artifact for ``spec``, in memory (what :func:`save_pruned` writes)."""
    family = get_family(family_name)
    base = ckpt if ckpt else spec.base
    path = resolve_base(base, family, refresh=refresh)
    checkpoint = load_base_checkpoint(path, family)
    num_layers = family.num_layers(checkpoint)
    try:
        dropped = spec.resolve(num_layers)
    except PruneSpecError as error:
        raise PrunedUpstreamError(str(error)) from None
    kept = kept_layers(dropped, num_layers)
    artifact = family.compact_checkpoint(checkpoint, kept)
    meta = {
        "kind": ARTIFACT_KIND,
        "version": ARTIFACT_VERSION,
        "family": family.name,
        "num_layers": num_layers,
        "dropped_layers": list(dropped),
        "kept_layers": list(kept),
        "spec": spec.with_base(str(base)).to_dict(),
        "base_sha256": sha256_file(path),
        "base_model_sha256": model_sha256(checkpoint),  # the base by content (files.checkpoint_sha256 of it)
    }
    artifact[ARTIFACT_KEY] = {**meta, DESCRIPTION_KEY: pruned_description(meta).to_dict()}
    return artifact


def pruned_description(meta: dict) -> VariantDescription:
    """The variant a pruned artifact's entry describes: its family, base (by content), dropped layers and the
    objective that chose them (the spec's notes). Healing adds its record (:mod:`superb_redundancy.pruning.heal`)."""
    spec = meta.get("spec") or {}
    return VariantDescription(kind=VariantKind.PRUNED, family=meta.get("family"), base=spec.get("base"),
                              base_sha256=meta.get("base_model_sha256"),
                              drop_layers=tuple(int(i) for i in meta.get("dropped_layers") or ()),
                              objective=(spec.get("notes") or {}).get("objective"))


def load_pruned_artifact(family_name: str, ckpt: Optional[str], compact: Optional[bool] = None) -> PrunedUpstream:
    """``pruned_<family>_local -k ARTIFACT``: rebuild the pruned upstream from a saved artifact."""
    family = get_family(family_name)
    if not ckpt:
        raise PrunedUpstreamError(
            f"{family.pruned_local_hub_name} needs a pruned artifact: pass -k PATH "
            f"(written by `superb-redundancy prune --output PATH`)"
        )
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise PrunedUpstreamError(f"pruned artifact not found: {path}")
    artifact = load_base_checkpoint(path, family)
    meta = artifact.get(ARTIFACT_KEY)
    if not isinstance(meta, dict) or meta.get("kind") != ARTIFACT_KIND:
        raise PrunedUpstreamError(
            f"{path} is a plain {family.name} checkpoint, not a pruned artifact; use pruned_{family.name} "
            f"-g SPEC -k {path} to prune it, or {family.local_hub_name} -k {path} to load it unpruned"
        )
    if meta.get("family") != family.name:
        raise PrunedUpstreamError(
            f"{path} is a pruned {meta.get('family')} artifact; load it with pruned_{meta.get('family')}_local"
        )
    num_layers, kept = int(meta["num_layers"]), list(meta["kept_layers"])
    spec = PruneSpec.from_dict(meta["spec"], source=str(path))
    del artifact
    expert = _expand(stock_expert(path, family), family, kept, num_layers)
    dropped = [i for i in range(num_layers) if i not in kept]
    return PrunedUpstream(expert, family, dropped, num_layers,
                          compact=spec.compact if compact is None else compact, spec=spec, healed=meta.get("healed"))


# ---------------------------------------------------------------------------------------------- s3prl entry
# The hub entries themselves are named functions in upstreams/pruned_<family>/hubconf.py (s3prl's shape); these
# are their bodies, one per entry kind, shared by the four families.
def hub_entry(family_name: str, ckpt: Optional[str] = None, model_config: Optional[str] = None,
              refresh: bool = False) -> PrunedUpstream:
    """``pruned_<family> -g SPEC.yaml [-k BASE]``: the spec's base (or -k) with the spec's layers dropped."""
    if not model_config:
        raise PrunedUpstreamError(
            f"pruned_{family_name} needs a prune spec: pass -g SPEC.yaml with `base:` (an s3prl hub name or a "
            f"checkpoint path) and `drop_layers: [...]`, or load a saved artifact with pruned_{family_name}_local -k PATH"
        )
    return build_pruned(family_name, PruneSpec.from_yaml(model_config), ckpt=ckpt, refresh=refresh)


def hub_entry_local(family_name: str, ckpt: Optional[str] = None, model_config: Optional[str] = None
                    ) -> PrunedUpstream:
    """``pruned_<family>_local -k ARTIFACT [-g SPEC.yaml]``: a saved artifact (the spec only for ``compact:``)."""
    compact = PruneSpec.from_yaml(model_config).compact if model_config else None
    return load_pruned_artifact(family_name, ckpt, compact=compact)
