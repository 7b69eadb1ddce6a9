"""The model being healed: the pruned upstream in full mode, its hidden states from the teacher cache's encoder
input, the distillation loss, and the kept layers' weights (the only ones healing trains)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from superb_redundancy.core.files import torch_save
from superb_redundancy.distill.loss import masked_mse
from superb_redundancy.models.families import get_family
from superb_redundancy.pruning.heal.model import PrunedModel
from superb_redundancy.pruning.upstream import PrunedUpstream, load_pruned_artifact

__all__ = ["encoder_hidden_states", "distillation_terms", "distillation_loss", "load_student", "trainable",
           "layer_state", "load_layer_state", "input_layer_state", "encoder_layers"]


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


def distillation_terms(upstream: PrunedUpstream, features, padding_mask, wanted, pairs) -> list[torch.Tensor]:
    """One masked MSE per (teacher layer, hidden state) pair: the mimic trainer's loss."""
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
        sums += np.array([float(t) for t in distillation_terms(upstream, features, mask, wanted, pairs)]) * valid
        count += valid
    return [float(x) for x in sums / max(count, 1)]


def load_student(model: PrunedModel, device: torch.device) -> PrunedUpstream:
    """The model to train, loaded exactly as ``pruned_<family>_local`` loads the artifact (so the healed artifact
    reproduces it), in full mode, in eval mode (no dropout: frozen parts as at inference)."""
    with tempfile.TemporaryDirectory(prefix="heal-") as tmp:
        path = model.path or torch_save(model.artifact, Path(tmp) / "pruned.pt")
        upstream = load_pruned_artifact(model.family.name, str(path), compact=False)
    return upstream.to(device).eval()


def encoder_layers(upstream: PrunedUpstream) -> nn.ModuleList:
    return get_family(upstream.family_name).layers(upstream.upstream)


def trainable(upstream: PrunedUpstream, kept: Sequence[int]) -> list[nn.Parameter]:
    """Freeze everything but the kept layers; returns their parameters."""
    for parameter in upstream.parameters():
        parameter.requires_grad_(False)
    layers = encoder_layers(upstream)
    params = [p for i in kept for p in layers[i].parameters()]
    for parameter in params:
        parameter.requires_grad_(True)
    return params


def layer_state(upstream: PrunedUpstream, kept: Sequence[int]) -> dict[str, torch.Tensor]:
    """The kept layers' weights (the only ones healing changes), keyed ``<position>.<name>``, on the CPU."""
    layers = encoder_layers(upstream)
    return {f"{i}.{k}": v.detach().cpu().clone() for i in kept for k, v in layers[i].state_dict().items()}


def load_layer_state(upstream: PrunedUpstream, state: dict[str, torch.Tensor]) -> None:
    layers = encoder_layers(upstream)
    by_layer: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        index, name = key.split(".", 1)
        by_layer.setdefault(int(index), {})[name] = value
    for index, state_of_layer in by_layer.items():
        layers[index].load_state_dict(state_of_layer)


def input_layer_state(model: PrunedModel) -> dict[str, torch.Tensor]:
    """The input artifact's kept-layer weights, keyed as :func:`layer_state` keys them."""
    prefix = model.family.layer_prefix()
    renumber = dict(enumerate(model.kept))  # compact index -> position
    state = {}
    for key, value in model.artifact[model.family.weights_key].items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            state[f"{renumber[int(index)]}.{name}"] = value
    return state
