"""Hugging Face save_pretrained wav2vec2 / HuBERT / WavLM folders as s3prl upstreams (`-u hf_local -k DIR`)."""
