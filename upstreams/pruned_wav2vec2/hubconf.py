"""s3prl hub entries for layer-pruned wav2vec2: `-u pruned_wav2vec2 -g SPEC.yaml` and `-u pruned_wav2vec2_local -k ARTIFACT`."""

from superb_redundancy.hub.upstreams import register_upstream

from .expert import FAMILY, hub_entry, hub_entry_local


@register_upstream("pruned_wav2vec2")
def pruned_wav2vec2(ckpt=None, model_config=None, refresh=False, **kwargs):
    """wav2vec2 with transformer layers dropped: -g PRUNE_SPEC.yaml [-k BASE_CHECKPOINT]"""
    return hub_entry(FAMILY, ckpt, model_config, refresh)


@register_upstream("pruned_wav2vec2_local")
def pruned_wav2vec2_local(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a saved pruned wav2vec2 artifact: -k ARTIFACT.pt [-g SPEC.yaml for compact: true]"""
    return hub_entry_local(FAMILY, ckpt, model_config)
