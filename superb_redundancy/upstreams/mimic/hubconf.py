"""s3prl hub entries for mimicking networks: `-u mimic_local -k ARTIFACT` and `-u mimic -k ARTIFACT` (or `-g CONFIG`).

One family serves every teacher family (wav2vec2, HuBERT, WavLM): the artifact records its teacher, so there are
no per-family aliases. The optional `-g CONFIG.yaml` may name `teacher:` (a checkpoint path or hub name whose
sha256 must match the artifact's teacher), `teacher_sha256:`, `family:`, `compact:` (true/false: the hidden-state
layout, overriding the artifact's) and, for `mimic`, `artifact:`.
"""

from superb_redundancy.hub.upstreams import register_upstream

from .expert import hub_entry, hub_entry_local


@register_upstream("mimic")
def mimic(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a mimicking network (teacher front end + 1-2 mimicking layers): -k ARTIFACT.pt or -g CONFIG.yaml"""
    return hub_entry(ckpt, model_config)


@register_upstream("mimic_local")
def mimic_local(ckpt=None, model_config=None, refresh=False, **kwargs):
    """a saved mimicker artifact: -k ARTIFACT.pt [-g CONFIG.yaml with teacher: PATH to check against]"""
    return hub_entry_local(ckpt, model_config)
