"""Tiny randomly initialised checkpoints in s3prl's stock formats, for tests and the embedded default.

The models are built with s3prl's own model classes and saved exactly as the stock loaders expect
(``wav2vec2_local``, ``hubert_local``, ``wavlm_local``, ``data2vec_local``), so every loading path users take with real
checkpoints is exercised offline. The convolutional front end keeps a total stride of 320 (every
wav2vec2-family expert in s3prl hard-codes it); 3 layers of width 64 give ~140k parameters.

:class:`TinyConfig` is a general model config whose *defaults* are the tiny model: every field a real
checkpoint's size depends on (conv stack, conv bias, extractor mode, pretraining heads, HuBERT's label count,
WavLM's relative-position table) can be given, so :func:`build_checkpoint` also builds real-size models
(see :mod:`superb_redundancy.models.architectures`). ``ModelConfig`` is the same class under a size-neutral name.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.files import torch_save
from superb_redundancy.models.families import get_family

__all__ = ["TinyConfig", "ModelConfig", "build_checkpoint", "build_tiny_checkpoint", "write_tiny_checkpoint",
           "write_all", "FAMILIES"]

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec")
#: data2vec: the positional convolution is a stack of this many conv blocks (Base has 5, kernel 95 // 5 = 19);
#: a tiny one has 2 (kernel 16 // 2 = 8)
DATA2VEC_POS_CONV_DEPTH = 2


@dataclass(frozen=True)
class TinyConfig:
    num_layers: int = 3
    dim: int = 64
    ffn_dim: int = 128
    heads: int = 4
    conv_dim: int = 32
    conv_pos: int = 16
    conv_pos_groups: int = 4
    layer_norm_first: bool = False  # False: post-LN like Base; True: pre-LN like Large
    normalize: bool = False
    # ---- general-config fields; the defaults keep the tiny models exactly as they were
    #: conv stack as s3prl's config string; None: the 7-layer stack of width conv_dim (total stride 320)
    conv_feature_layers: Optional[str] = None
    #: "default" (one GroupNorm) or "layer_norm" (a LayerNorm per conv); None: layer_norm iff layer_norm_first
    extractor_mode: Optional[str] = None
    conv_bias: bool = False
    #: wav2vec2 / HuBERT pretraining heads (final_proj, project_q, quantizer); they hold parameters, not compute
    final_dim: int = 32
    quantize_targets: bool = False  # wav2vec2: the Gumbel quantizer real checkpoints carry
    latent_vars: int = 16
    latent_groups: int = 2
    latent_dim: int = 0
    #: HuBERT: size of the label dictionary (label_embs_concat rows); real ones: k-means clusters + 4 specials
    num_labels: int = 8
    #: WavLM: relative-position buckets and gated relative position bias
    num_buckets: int = 32
    max_distance: int = 80
    gru_rel_pos: bool = True

    def conv_layers(self) -> str:
        if self.conv_feature_layers is not None:
            return self.conv_feature_layers
        c = self.conv_dim
        return f"[({c},10,5)] + [({c},3,2)] * 4 + [({c},2,2)] * 2"  # strides 5*2^6 = 320

    def encoder(self) -> dict:
        return dict(
            encoder_layers=self.num_layers,
            encoder_embed_dim=self.dim,
            encoder_ffn_embed_dim=self.ffn_dim,
            encoder_attention_heads=self.heads,
            conv_feature_layers=self.conv_layers(),
            conv_pos=self.conv_pos,
            conv_pos_groups=self.conv_pos_groups,
            layer_norm_first=self.layer_norm_first,
            extractor_mode=self.extractor_mode or ("layer_norm" if self.layer_norm_first else "default"),
            encoder_layerdrop=0.0,
            **({"conv_bias": True} if self.conv_bias else {}),
        )


#: the same class under a size-neutral name, for real-size configs (its defaults are still the tiny model)
ModelConfig = TinyConfig


def build_tiny_checkpoint(family: str, config: TinyConfig = TinyConfig(), seed: int = 0) -> dict:
    """The checkpoint dict of a freshly initialised tiny model of ``family``."""
    return build_checkpoint(family, config, seed)


def build_checkpoint(family: str, config: TinyConfig, seed: int = 0) -> dict:
    """The stock-format checkpoint dict of a freshly initialised ``family`` model of any size ``config`` gives."""
    if family == "wav2vec2":
        model_cfg = dict(config.encoder(), final_dim=config.final_dim, latent_vars=config.latent_vars,
                         latent_dim=config.latent_dim, latent_groups=config.latent_groups)
        if config.quantize_targets:
            model_cfg["quantize_targets"] = True
        entries = {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE), "model_cfg": model_cfg}
    elif family == "hubert":
        entries = {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE, label_rate=50),
                   "model_cfg": dict(config.encoder(), final_dim=config.final_dim, label_rate=50),
                   "dictionaries_symbols": [[str(i) for i in range(config.num_labels)]]}
    elif family == "wavlm":
        entries = {"cfg": dict(config.encoder(), normalize=config.normalize, relative_position_embedding=True,
                               num_buckets=config.num_buckets, max_distance=config.max_distance,
                               gru_rel_pos=config.gru_rel_pos)}
    elif family == "data2vec":
        # data2vec Base's shape: a LayerNorm CNN before a post-LN stack, a multi-layer positional convolution;
        # fairseq's config names (average_top_k_layers, ema_*) mark the family, as in real converted checkpoints
        encoder = config.encoder()
        if config.extractor_mode is None:
            encoder["extractor_mode"] = "layer_norm"
        model_cfg = dict(encoder, _name="data2vec_audio", pos_conv_depth=DATA2VEC_POS_CONV_DEPTH,
                         average_top_k_layers=config.num_layers, ema_transformer_only=True, ema_layers_only=True)
        entries = {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE), "model_cfg": model_cfg}
    else:
        raise ValueError(f"unknown family {family!r}; valid: {list(FAMILIES)}")
    bundle = get_family(family)
    torch.manual_seed(seed)
    model, _ = bundle.build_model(entries)
    return {**entries, bundle.weights_key: bundle.stock_weights(model)}


def write_tiny_checkpoint(family: str, path: str | os.PathLike, config: TinyConfig = TinyConfig(),
                          seed: int = 0) -> Path:
    """Write a tiny stock-format checkpoint atomically; returns its path."""
    return torch_save(build_tiny_checkpoint(family, config, seed), path)


def write_all(directory: str | os.PathLike, config: TinyConfig = TinyConfig(), seed: int = 0) -> dict[str, Path]:
    """``<directory>/tiny_<family>.pt`` for every family, written only if missing."""
    directory = Path(directory)
    paths = {}
    for family in FAMILIES:
        path = directory / f"tiny_{family}.pt"
        if not path.is_file():
            write_tiny_checkpoint(family, path, config, seed)
        paths[family] = path
    return paths


def config_dict(config: TinyConfig) -> dict:
    return asdict(config)
