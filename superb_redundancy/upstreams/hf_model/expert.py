"""The hf_local upstream module: a transformers wav2vec2 / HuBERT / WavLM model behind s3prl's contract."""

from superb_redundancy.models.hf import HFUpstream as UpstreamExpert  # noqa: F401
