"""s3prl hub entries for layer-pruned data2vec: `-u pruned_data2vec -g SPEC.yaml` and `-u pruned_data2vec_local -k ARTIFACT`."""

from superb_redundancy.hub.upstreams import register_upstream

from .expert import FAMILY, hub_entry, hub_entry_local


@register_upstream("pruned_data2vec")
def pruned_data2vec(ckpt=None, model_config=None, refresh=False, **kwargs):
    """data2vec with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"""
    return hub_entry(FAMILY, ckpt, model_config, refresh)


@register_upstream("pruned_data2vec_local")
def pruned_data2vec_local(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a saved pruned data2vec artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"""
    return hub_entry_local(FAMILY, ckpt, model_config)
