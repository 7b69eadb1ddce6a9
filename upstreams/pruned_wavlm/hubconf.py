"""s3prl hub entries for layer-pruned wavlm: `-u pruned_wavlm -g SPEC.yaml` and `-u pruned_wavlm_local -k ARTIFACT`."""

from superb_redundancy.hub.upstreams import register_upstream

from .expert import FAMILY, hub_entry, hub_entry_local


@register_upstream("pruned_wavlm")
def pruned_wavlm(ckpt=None, model_config=None, refresh=False, **kwargs):
    """wavlm with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"""
    return hub_entry(FAMILY, ckpt, model_config, refresh)


@register_upstream("pruned_wavlm_local")
def pruned_wavlm_local(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a saved pruned wavlm artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"""
    return hub_entry_local(FAMILY, ckpt, model_config)
