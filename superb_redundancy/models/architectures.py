"""Real-size architectures of the studied families, with random weights: compute profiles without a download.

Each named architecture is the shape of a released checkpoint (layer count, widths, conv stack, norms and the
pretraining heads the released file carries), built with s3prl's own model classes and saved in the family's
stock format, so every loader path (``<family>_local -k PATH``, ``pruned_<family> -g SPEC -k PATH``,
:func:`superb_redundancy.pruning.upstream.build_pruned` with ``base=PATH``) works on it exactly as on the
released file. Weights are random: use these for parameter counts, MACs and latency, never for accuracy.

Name, shape of, parameters of s3prl's loaded expert (everything it holds), SUPERB leaderboard count:

- ``wav2vec2_base``: fairseq wav2vec_small (s3prl ``wav2vec2``): 95,044,608; SUPERB 95.04 M
- ``wav2vec2_large``: wav2vec 2.0 Large LV-60 (s3prl ``wav2vec2_large_ll60k``): 317,390,592; SUPERB 317.38 M
- ``hubert_base``: fairseq hubert_base_ls960 (s3prl ``hubert``): 94,697,600; SUPERB 94.68 M
- ``hubert_large``: fairseq hubert_large_ll60k (s3prl ``hubert_large_ll60k``): 316,609,408; SUPERB 316.61 M
- ``wavlm_base``: WavLM Base / Base+ (s3prl ``wavlm_base``, ``wavlm_base_plus``): 94,381,936; SUPERB 94.70 M
- ``wavlm_large``: WavLM Large (s3prl ``wavlm_large``): 315,453,120; SUPERB 316.62 M
- ``distilhubert``: DistilHuBERT (s3prl ``distilhubert``, distilhubert_ls960_4-8-12): 27,034,752; SUPERB 23.49 M

(The counts are those :mod:`superb_redundancy.compute` measures on the loaded expert; tests pin the Base ones.)
For wav2vec2 and HuBERT the SUPERB leaderboard counts the whole released model, pretraining-only heads
included (wav2vec2: quantizer, project_q, final_proj, mask_emb; HuBERT: final_proj, label_embs_concat,
mask_emb), which is also everything s3prl's expert holds. Without them (what inference runs; Hugging Face's
``Wav2Vec2Model`` / ``HubertModel`` hold that plus a 768-entry mask embedding) both Base models have
94,370,944 parameters: see :func:`superb_redundancy.compute.count_parameters`. The released WavLM checkpoints
carry no pretraining heads (s3prl's ``WavLM`` class has none but mask_emb), so the expert holds 94.38 M / 315.45 M
(the paper's tables agree to the parameter); SUPERB's 94.70 M / 316.62 M match the expert plus a HuBERT-style
final_proj and 504-label embedding table, i.e. presumably the pretraining model *(inferred)*.
DistilHuBERT is s3prl's own ``DistillerModel`` (not a fairseq family: no pruned variants), saved in the format
``distiller_local`` loads. SUPERB's 23.49 M is the student *without* its three prediction heads (``output_layer``,
3,543,552 parameters, trained to regress HuBERT layers 4, 8, 12): the expert holds 23,491,200 + 3,543,552, and
23,491,200 is the profile's ``inference`` count, which leaves the heads out like the other pretraining-only heads.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

import torch

from superb_redundancy.core.files import torch_save
from superb_redundancy.models.config import ModelConfig
from superb_redundancy.models.tiny import build_checkpoint
from superb_redundancy.core.errors import UserError

__all__ = ["Architecture", "ARCHITECTURES", "DistillerShape", "get_architecture", "build_architecture_checkpoint",
           "write_architecture_checkpoint"]

_CONV_512 = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
#: the family name of s3prl's distiller upstream (DistilHuBERT), which is not one of the pruning bundles
DISTILLER = "distiller"


@dataclass(frozen=True)
class DistillerShape:
    """DistilHuBERT's student: HuBERT Base's CNN and positional convolution, a few post-LN layers of Base
    width, and one prediction head per teacher layer (s3prl's ``expand-last`` output layer)."""

    num_layers: int = 2
    dim: int = 768
    ffn_dim: int = 3072
    heads: int = 12
    #: the HuBERT Base layers the heads regress (the released distilhubert_ls960_4-8-12)
    pred_layer_id: tuple[int, ...] = (4, 8, 12)

    def to_s3prl(self) -> dict:
        """The ``Config["distiller"]`` entry s3prl's ``DistillerConfig`` reads (s3prl's pretrain config_model.yaml)."""
        return {
            "extractor_mode": "default", "extractor_conv_feature_layers": _CONV_512, "extractor_dropout": 0.0,
            "feature_grad_mult": 0.1, "conv_pos": 128, "conv_pos_groups": 16,
            "encoder_layers": self.num_layers, "encoder_embed_dim": self.dim, "encoder_ffn_embed_dim": self.ffn_dim,
            "encoder_attention_heads": self.heads, "activation_fn": "gelu", "layer_norm_first": False,
            "attention_type": "original", "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1,
            "encoder_layerdrop": 0.0, "final_dim": self.dim, "out_layer_type": "expand-last",
            "n_tasks": len(self.pred_layer_id), "task_emb_type": "expand-last", "loss_type": "l1",
            "feat_pen_loss": 0.0, "cosine_loss": 1.0, "pred_layer_id": list(self.pred_layer_id),
        }


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    config: Union[ModelConfig, DistillerShape]
    #: the released checkpoint this is the shape of
    description: str
    #: the parameter count the SUPERB leaderboard gives for the released model (millions)
    superb_params_m: float

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def hub_name(self) -> str:
        """The s3prl hub name that loads the written checkpoint (``-u NAME -k FILE``)."""
        return f"{self.family}_local"

    @property
    def pruned_hub_name(self) -> str:
        """The s3prl hub name that prunes the written checkpoint by a spec (``-u NAME -k FILE -g SPEC``)."""
        return f"pruned_{self.family}"

    @property
    def prunable(self) -> bool:
        """Whether ``pruned_<family>`` upstreams exist for it (the fairseq-style families)."""
        return self.family != DISTILLER


# Base: post-LN transformer (encoder LayerNorm before the layers), one GroupNorm in the CNN, no conv bias.
_BASE = ModelConfig(
    num_layers=12, dim=768, ffn_dim=3072, heads=12, conv_dim=512, conv_pos=128, conv_pos_groups=16,
    layer_norm_first=False, normalize=False, conv_feature_layers=_CONV_512, extractor_mode="default",
    conv_bias=False,
)
# Large: pre-LN transformer (final LayerNorm after the layers), a LayerNorm per conv layer, normalised input.
_LARGE = replace(
    _BASE, num_layers=24, dim=1024, ffn_dim=4096, heads=16, layer_norm_first=True, normalize=True,
    extractor_mode="layer_norm",
)
# wav2vec2 pretraining heads: Gumbel quantizer (2 groups x 320 entries), project_q, final_proj.
_W2V_HEADS = dict(quantize_targets=True, latent_vars=320, latent_groups=2, latent_dim=0)
# HuBERT: 500 k-means units + fairseq's 4 special symbols in the label dictionary.
_HUBERT_HEADS = dict(num_labels=504)
# WavLM: bucketed relative position bias (layer 0 owns the table) with gated relative position.
_WAVLM = dict(num_buckets=320, max_distance=800, gru_rel_pos=True)

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("wav2vec2_base", "wav2vec2", replace(_BASE, final_dim=256, **_W2V_HEADS),
                     "wav2vec 2.0 Base (fairseq wav2vec_small; s3prl `wav2vec2`)", 95.04),
        Architecture("wav2vec2_large", "wav2vec2", replace(_LARGE, conv_bias=True, final_dim=768, **_W2V_HEADS),
                     "wav2vec 2.0 Large LV-60 (pre-LN, layer-norm CNN with conv bias; s3prl `wav2vec2_large_ll60k`)",
                     317.38),
        Architecture("hubert_base", "hubert", replace(_BASE, final_dim=256, **_HUBERT_HEADS),
                     "HuBERT Base (fairseq hubert_base_ls960; s3prl `hubert`)", 94.68),
        Architecture("hubert_large", "hubert", replace(_LARGE, final_dim=768, **_HUBERT_HEADS),
                     "HuBERT Large (fairseq hubert_large_ll60k; s3prl `hubert_large_ll60k`)", 316.61),
        Architecture("wavlm_base", "wavlm", replace(_BASE, **_WAVLM),
                     "WavLM Base / Base+ (s3prl `wavlm_base`, `wavlm_base_plus`)", 94.70),
        Architecture("wavlm_large", "wavlm", replace(_LARGE, **_WAVLM),
                     "WavLM Large (s3prl `wavlm_large`)", 316.62),
        Architecture("distilhubert", DISTILLER, DistillerShape(),
                     "DistilHuBERT (distilhubert_ls960_4-8-12; s3prl `distilhubert`, loaded by `distiller_local`)",
                     23.49),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}; valid: {', '.join(ARCHITECTURES)}") from None


def _build_distiller_checkpoint(shape: DistillerShape, seed: int) -> dict:
    """What ``distiller_local`` loads: ``Config`` (plain, so it loads as weights only) and the model's weights."""
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    config = {"distiller": shape.to_s3prl()}
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # DistillerModel prints its settings
        model = DistillerModel(DistillerConfig(config["distiller"]))
    return {"Config": config, "Distiller": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def build_architecture_checkpoint(name: str, seed: int = 0) -> dict:
    """The stock-format checkpoint dict of architecture ``name`` with random weights (seeded)."""
    arch = get_architecture(name)
    if isinstance(arch.config, DistillerShape):
        return _build_distiller_checkpoint(arch.config, seed)
    return build_checkpoint(arch.family, arch.config, seed)


def write_architecture_checkpoint(name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write architecture ``name`` (random weights) atomically to ``path``; returns the path.

    Base models take ~380 MB on disk, Large ones ~1.3 GB, distilhubert ~110 MB.
    """
    get_architecture(name)  # fail before creating anything
    return torch_save(build_architecture_checkpoint(name, seed), path)
