"""s3prl hub entry for Hugging Face models: `-u hf_local -k DIR` (a save_pretrained wav2vec2/hubert/wavlm folder).

Unlike s3prl's `hf_wav2vec2_custom` / `hf_hubert_custom` (which also accept Hub ids and download), it takes only
a local folder, never reaches a hub, reads WavLM folders too, and indexes hidden states like s3prl's fairseq
experts (see superb_redundancy.models.hf).
"""

from typing import Optional

from superb_redundancy.hub.upstreams import register_upstream
from superb_redundancy.models.hf import HFModelError

from .expert import UpstreamExpert


@register_upstream("hf_local")
def hf_local(ckpt: Optional[str] = None, model_config: Optional[str] = None, refresh: bool = False, **kwargs):
    """a Hugging Face save_pretrained wav2vec2 / HuBERT / WavLM folder (heads ignored): -k DIR"""
    if model_config:
        raise HFModelError(
            "hf_local takes no -g config; prune the folder first (`superb-redundancy prune --base DIR "
            "--output-dir OUT ...` or superb_redundancy.pruning.hf.prune_hf_model) and load OUT with -k"
        )
    return UpstreamExpert(ckpt)
