"""Model shapes: :class:`ModelConfig` names every field a wav2vec2-family checkpoint's size depends on (conv
stack, conv bias, extractor mode, pretraining heads, HuBERT's label count, WavLM's relative-position table), and
:func:`checkpoint_entries` turns one into the config entries of a family's stock checkpoint.

The defaults are the tiny model of the tests and the embedded default (:mod:`superb_redundancy.models.tiny`);
real-size shapes are in :mod:`superb_redundancy.models.architectures`. The convolutional front end keeps a total
stride of 320 (every wav2vec2-family expert in s3prl hard-codes it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.errors import UserError

__all__ = ["ModelConfig", "checkpoint_entries", "config_dict", "DATA2VEC_POS_CONV_DEPTH"]

#: data2vec: the positional convolution is a stack of this many conv blocks (Base has 5, kernel 95 // 5 = 19);
#: a tiny one has 2 (kernel 16 // 2 = 8)
DATA2VEC_POS_CONV_DEPTH = 2


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a wav2vec2-family model; the defaults are the tiny test model (3 layers, width 64)."""

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


def _wav2vec2(config: ModelConfig) -> dict:
    model_cfg = dict(config.encoder(), final_dim=config.final_dim, latent_vars=config.latent_vars,
                     latent_dim=config.latent_dim, latent_groups=config.latent_groups)
    if config.quantize_targets:
        model_cfg["quantize_targets"] = True
    return {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE), "model_cfg": model_cfg}


def _hubert(config: ModelConfig) -> dict:
    return {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE, label_rate=50),
            "model_cfg": dict(config.encoder(), final_dim=config.final_dim, label_rate=50),
            "dictionaries_symbols": [[str(i) for i in range(config.num_labels)]]}


def _wavlm(config: ModelConfig) -> dict:
    return {"cfg": dict(config.encoder(), normalize=config.normalize, relative_position_embedding=True,
                        num_buckets=config.num_buckets, max_distance=config.max_distance,
                        gru_rel_pos=config.gru_rel_pos)}


def _data2vec(config: ModelConfig) -> dict:
    # data2vec Base's shape: a LayerNorm CNN before a post-LN stack, a multi-layer positional convolution;
    # fairseq's config names (average_top_k_layers, ema_*) mark the family, as in real converted checkpoints
    encoder = config.encoder()
    if config.extractor_mode is None:
        encoder["extractor_mode"] = "layer_norm"
    model_cfg = dict(encoder, _name="data2vec_audio", pos_conv_depth=DATA2VEC_POS_CONV_DEPTH,
                     average_top_k_layers=config.num_layers, ema_transformer_only=True, ema_layers_only=True)
    return {"task_cfg": dict(normalize=config.normalize, sample_rate=SAMPLE_RATE), "model_cfg": model_cfg}


#: family -> its stock checkpoint's config entries for a ModelConfig (torchaudio's dict of factories)
_ENTRIES: dict[str, Callable[[ModelConfig], dict]] = {
    "wav2vec2": _wav2vec2, "hubert": _hubert, "wavlm": _wavlm, "data2vec": _data2vec}


def checkpoint_entries(family: str, config: ModelConfig) -> dict:
    """The config entries of ``family``'s stock checkpoint for a model of ``config``'s shape (no weights)."""
    if family not in _ENTRIES:
        raise UserError(f"unknown family {family!r}; valid: {list(_ENTRIES)}")
    return _ENTRIES[family](config)


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
