"""Mimicking networks as s3prl upstreams: one family, `mimic`, for wav2vec2, HuBERT and WavLM teachers."""
