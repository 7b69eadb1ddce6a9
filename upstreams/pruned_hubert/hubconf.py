"""s3prl hub entries for layer-pruned hubert: `-u pruned_hubert -g SPEC.yaml` and `-u pruned_hubert_local -k ARTIFACT`."""

from superb_redundancy.hub.upstreams import register_upstream

from .expert import FAMILY, hub_entry, hub_entry_local


@register_upstream("pruned_hubert")
def pruned_hubert(ckpt=None, model_config=None, refresh=False, **kwargs):
    """hubert with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"""
    return hub_entry(FAMILY, ckpt, model_config, refresh)


@register_upstream("pruned_hubert_local")
def pruned_hubert_local(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a saved pruned hubert artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"""
    return hub_entry_local(FAMILY, ckpt, model_config)
