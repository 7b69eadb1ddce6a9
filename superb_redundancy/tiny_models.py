"""Tiny randomly initialised checkpoints in s3prl's stock formats, for tests and the embedded default.

The models are built with s3prl's own model classes and saved exactly as the stock loaders expect
(``wav2vec2_local``, ``hubert_local``, ``wavlm_local``), so every loading path users take with real
checkpoints is exercised offline. The convolutional front end keeps a total stride of 320 (every
wav2vec2-family expert in s3prl hard-codes it); 3 layers of width 64 give ~140k parameters.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["TinyConfig", "build_tiny_checkpoint", "write_tiny_checkpoint", "write_all", "FAMILIES"]

FAMILIES = ("wav2vec2", "hubert", "wavlm")


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

    def conv_layers(self) -> str:
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
            extractor_mode="layer_norm" if self.layer_norm_first else "default",
            encoder_layerdrop=0.0,
        )


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def build_tiny_checkpoint(family: str, config: TinyConfig = TinyConfig(), seed: int = 0) -> dict:
    """The checkpoint dict of a freshly initialised tiny model of ``family``."""
    from . import compat

    compat.apply()
    torch.manual_seed(seed)
    if family == "wav2vec2":
        from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig, Wav2Vec2Config, Wav2Vec2Model
        from s3prl.upstream.utils import merge_with_parent

        model_cfg = dict(config.encoder(), final_dim=32, latent_vars=16, latent_dim=0, latent_groups=2)
        task_cfg = dict(normalize=config.normalize, sample_rate=16000)
        model = Wav2Vec2Model(merge_with_parent(Wav2Vec2Config, model_cfg))
        merge_with_parent(AudioPretrainingConfig, task_cfg)  # fail here, not at load time, on a bad key
        return {"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": _state(model)}
    if family == "hubert":
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
        from s3prl.upstream.utils import merge_with_parent

        model_cfg = dict(config.encoder(), final_dim=32, label_rate=50)
        task_cfg = dict(normalize=config.normalize, sample_rate=16000, label_rate=50)
        symbols = [[str(i) for i in range(8)]]
        model = HubertModel(
            merge_with_parent(HubertConfig, model_cfg), merge_with_parent(HubertPretrainingConfig, task_cfg), symbols
        )
        return {"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": _state(model),
                "dictionaries_symbols": symbols}
    if family == "wavlm":
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

        cfg = dict(config.encoder(), normalize=config.normalize, relative_position_embedding=True,
                   num_buckets=32, max_distance=80, gru_rel_pos=True)
        model = WavLM(WavLMConfig(cfg))
        return {"cfg": cfg, "model": _state(model)}
    raise ValueError(f"unknown family {family!r}; valid: {list(FAMILIES)}")


def write_tiny_checkpoint(family: str, path: str | os.PathLike, config: TinyConfig = TinyConfig(),
                          seed: int = 0) -> Path:
    """Write a tiny stock-format checkpoint atomically; returns its path."""
    path = Path(path)
    checkpoint = build_tiny_checkpoint(family, config, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(checkpoint, tmp)
    os.replace(tmp.name, path)
    return path


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
