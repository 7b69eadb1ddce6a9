"""The model and wav2vec 2.0's objective: s3prl's ``Wav2Vec2Model`` with fairseq's ``compute_preds``, its
starting checkpoint, and the loss of a batch (fairseq's ``wav2vec`` criterion)."""

from __future__ import annotations

import contextlib
import types
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from superb_redundancy.models.config import ModelConfig
from superb_redundancy.models.families import get_family
from superb_redundancy.models.pretraining.settings import PretrainError, PretrainSettings
from superb_redundancy.models.tiny import build_checkpoint

__all__ = ["model_config", "initial_checkpoint", "build_model", "loss_terms", "evaluate", "torch_rng_forked",
           "DIVERSITY_WEIGHT", "FEATURE_PENALTY_WEIGHT"]

#: fairseq's wav2vec criterion: loss_weights for [diversity, feature penalty]
DIVERSITY_WEIGHT = 0.1
FEATURE_PENALTY_WEIGHT = 10.0


def model_config(settings: PretrainSettings):
    """The :class:`~superb_redundancy.models.config.ModelConfig` of the model."""
    return ModelConfig(num_layers=settings.layers, dim=settings.dim, ffn_dim=settings.ffn_dim, heads=settings.heads,
                      conv_dim=settings.conv_dim, conv_pos=settings.conv_pos, conv_pos_groups=settings.conv_pos_groups,
                      final_dim=settings.final_dim, quantize_targets=True, latent_vars=settings.latent_vars,
                      latent_groups=settings.latent_groups, layer_norm_first=settings.layer_norm_first,
                      extractor_mode="default", normalize=False)


def initial_checkpoint(settings: PretrainSettings) -> dict:
    """The stock-format checkpoint the run starts from: tiny_models' seeded initialisation, with the training
    settings of the objective in ``model_cfg`` (masking, negatives, temperature, dropout; no shapes change)."""
    with torch_rng_forked():
        checkpoint = build_checkpoint("wav2vec2", model_config(settings), settings.seed)
    d = settings.dropout
    checkpoint["model_cfg"].update(
        mask_prob=settings.mask_prob, mask_length=settings.mask_length, num_negatives=settings.num_negatives,
        cross_sample_negatives=0, codebook_negatives=0, latent_temp=settings.temperature(),
        dropout=d, attention_dropout=d, activation_dropout=0.0, dropout_input=d, dropout_features=d,
        feature_grad_mult=settings.feature_grad_mult, logit_temp=0.1)
    return checkpoint


@contextlib.contextmanager
def torch_rng_forked() -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        yield


def _compute_preds(self, x, y, negatives):
    """fairseq's ``Wav2Vec2Model.compute_preds``: cosine logits / temperature, a negative equal to the positive
    masked out (s3prl's port computes ``neg_is_pos`` but does not apply it)."""
    neg_is_pos = (y == negatives).all(-1)
    targets = torch.cat([y.unsqueeze(0), negatives], dim=0)
    logits = torch.cosine_similarity(x.float(), targets.float(), dim=-1) / self.logit_temp
    logits = logits.type_as(x)
    if neg_is_pos.any():
        logits = torch.cat([logits[:1], logits[1:].masked_fill(neg_is_pos, -float(2 ** 30))], dim=0)
    return logits


def build_model(checkpoint: dict):
    """s3prl's ``Wav2Vec2Model`` of a stock checkpoint (weights loaded), with fairseq's ``compute_preds``."""
    model, _ = get_family("wav2vec2").build_model({k: checkpoint[k] for k in ("task_cfg", "model_cfg")})
    model.load_state_dict(checkpoint["model_weight"])
    if model.quantizer is None:
        raise PretrainError("the model has no quantizer (model_cfg quantize_targets is false): nothing to pretrain")
    model.compute_preds = types.MethodType(_compute_preds, model)
    return model


def loss_terms(model, source) -> dict:
    """wav2vec 2.0's loss on a batch (model in its current mode; masks and negatives from the global RNGs):
    a dict of tensors ``loss`` (to minimise), ``contrastive``, ``diversity``, ``features_pen`` and numbers
    ``accuracy``, ``code_perplexity``, ``prob_perplexity``, ``temp``, ``masked_frames``."""
    net_output = model(source, padding_mask=None, mask=True, features_only=False)
    logits = model.get_logits(net_output).float()
    target = logits.new_zeros(logits.size(0), dtype=torch.long)
    contrastive = F.cross_entropy(logits, target, reduction="mean")
    extra = model.get_extra_losses(net_output)  # [(num_vars - prob_ppl) / num_vars, features_pen]
    diversity, features_pen = extra[0], extra[1]
    loss = contrastive + DIVERSITY_WEIGHT * diversity + FEATURE_PENALTY_WEIGHT * features_pen
    with torch.no_grad():  # fairseq's accuracy: argmax at the positive, not a degenerate all-equal row
        best, worst = logits.argmax(-1) == 0, logits.argmin(-1) == 0
        correct = int(best.sum()) - int((best & worst).sum())
    return {"loss": loss, "contrastive": contrastive, "diversity": diversity, "features_pen": features_pen,
            "accuracy": correct / max(1, logits.size(0)),
            "code_perplexity": float(net_output["code_perplexity"].detach()),
            "prob_perplexity": float(net_output["prob_perplexity"].detach()), "temp": float(net_output["temp"]),
            "masked_frames": int(logits.size(0))}


def evaluate(model, source, seed: int = 0) -> dict:
    """:func:`loss_terms` in eval mode (no dropout, hard codes) with the masks and negatives of ``seed``: a fixed
    measurement of a batch, for comparing a model before and after training. Global RNG states are restored."""
    was_training = model.training
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            np.random.seed(seed)
            model.eval()
            terms = loss_terms(model, source)
    finally:
        np.random.set_state(state)
        model.train(was_training)
    return {k: float(v) for k, v in terms.items()}
