"""The healed artifact: the input's compact stock checkpoint with the kept layers' weights healed and the healing
record in its ``superb_redundancy`` entry (``pruned_<family>_local -k`` loads it)."""

from __future__ import annotations

import json
from typing import Any

from superb_redundancy.core.variant import DESCRIPTION_KEY, Healing, VariantDescription
from superb_redundancy.pruning.heal.config import HealError
from superb_redundancy.pruning.heal.model import HEALED_KEY, PrunedModel
from superb_redundancy.pruning.heal.student import encoder_layers
from superb_redundancy.pruning.upstream import ARTIFACT_KEY, PrunedUpstream, pruned_description

__all__ = ["healed_artifact", "healed_description", "plain"]


def plain(value: Any) -> Any:
    """JSON-plain (dicts, lists, str, numbers, None): what torch.load(weights_only=True) reads back."""
    return json.loads(json.dumps(value, default=str))


def healed_artifact(model: PrunedModel, upstream: PrunedUpstream, record: dict) -> dict:
    """The input artifact with its kept layers' weights replaced by ``upstream``'s and the healing record; every
    other entry (front end, encoder, config, spec) is the input's, untouched."""
    fam = model.family
    prefix = fam.layer_prefix()
    weights = dict(model.artifact[fam.weights_key])
    layers = encoder_layers(upstream)
    for compact_index, position in enumerate(model.kept):  # the artifact holds kept layer p as compact index c
        for name, value in layers[position].state_dict().items():
            key = f"{prefix}{compact_index}.{name}"
            if key not in weights or tuple(weights[key].shape) != tuple(value.shape):
                raise HealError(f"internal: the healed layer {position}'s {name} has no place in the artifact")
            weights[key] = value.detach().cpu().to(weights[key].dtype).clone()
    out = {k: v for k, v in model.artifact.items() if k not in (fam.weights_key, ARTIFACT_KEY)}
    out[fam.weights_key] = weights
    out[ARTIFACT_KEY] = dict(model.meta, **{HEALED_KEY: plain(record),
                                            DESCRIPTION_KEY: healed_description(model.meta, record).to_dict()})
    return out


def healed_description(meta: dict, record: dict) -> VariantDescription:
    """The input's variant description (an artifact from before descriptions: read off its entry) with this
    healing: towards which targets, how many epochs, the epoch kept, the loss before and after."""
    described = meta.get(DESCRIPTION_KEY)
    before = (VariantDescription.from_dict(described, "pruned artifact") if described is not None
              else pruned_description(meta))
    return before.healed(Healing(targets=record.get("targets"), epochs=record.get("epochs"),
                                 best_epoch=record.get("best_epoch"), loss_before=record.get("loss_before"),
                                 loss_after=record.get("loss_after")))
