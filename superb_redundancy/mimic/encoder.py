"""The teacher's own encoder around a replaced span (block replacement, ``span: [i, j]`` in a mimic config).

The mimicker replaces transformer layers i..j only; the teacher's other layers stay, frozen, with its own weights
(:class:`TeacherEncoder`, stored in the artifact: :func:`encoder_state`). A span replaced by the identity gives
the teacher with layers i..j dropped.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from superb_redundancy.mimic.config import MimicError
from superb_redundancy.distill.frontend import stock_model, teacher_config
from superb_redundancy.models.families import ModelFamily, get_family

__all__ = ["TeacherEncoder", "build_teacher_encoder", "encoder_state"]


class TeacherEncoder(nn.Module):
    """The teacher's encoder around a replaced span [i, j]: its own modules, frozen (never trained, always in
    eval mode, no gradient to its weights; gradients still flow through it to a trainable front end).

    Holds what the span leaves: the positional convolution and the encoder LayerNorm where they run (i > 0; the
    final LayerNorm of pre-LN models where j < L-1) and the kept layers 0..i-1 and j+1..L-1 (``layers.<k>``).
    WavLM: when layer 0 (owner of the relative-position table) is in the span, layer j+1 takes the table over,
    as :func:`superb_redundancy.pruning.upstream.drop_layers` does.

    :meth:`prefix` and :meth:`suffix` run the stock encoder's own steps (s3prl's ``TransformerEncoder.
    extract_features`` of wav2vec2 / HuBERT / data2vec and WavLM's): zero the padded frames, add the positional
    convolution, LayerNorm (post-LN), pad the frames to ``required_seq_len_multiple``, the layers in [T, B, d]
    with the padding mask (and WavLM's position bias), un-pad, final LayerNorm (pre-LN). A span replaced by the
    identity therefore gives the teacher with layers i..j dropped (tests/test_mimic_span.py checks it).
    """

    def __init__(self, encoder: nn.Module, family: ModelFamily, span: Sequence[int], num_layers: int):
        super().__init__()
        i, j = (int(t) for t in span)
        self.start, self.stop, self.num_layers = i, j, int(num_layers)
        self.layer_output = family.layer_output
        self.layer_norm_first = bool(getattr(encoder, "layer_norm_first", False))
        self.multiple = int(getattr(encoder, "required_seq_len_multiple", 1) or 1)
        self.pos_conv = encoder.pos_conv if i > 0 else None
        needs_norm = (i > 0 and not self.layer_norm_first) or (j < num_layers - 1 and self.layer_norm_first)
        self.layer_norm = encoder.layer_norm if needs_norm else None
        kept = [k for k in range(num_layers) if not i <= k <= j]
        if family.shared_position_bias and i == 0 and j < num_layers - 1:
            source, target = encoder.layers[0].self_attn, encoder.layers[j + 1].self_attn
            if getattr(source, "has_relative_attention_bias", False):
                target.relative_attention_bias = source.relative_attention_bias
                target.num_buckets, target.max_distance = source.num_buckets, source.max_distance
                target.has_relative_attention_bias = True
        self.layers = nn.ModuleDict({str(k): encoder.layers[k] for k in kept})
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "TeacherEncoder":
        return super().train(False)  # frozen: no dropout or layerdrop in the teacher's layers, even under -f

    @property
    def kept_layers(self) -> list[int]:
        return sorted(int(k) for k in self.layers)

    def _pad(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """Frames padded to the encoder's multiple (zeros, marked as padding), as fairseq's pad_to_multiple."""
        extra = -x.size(1) % self.multiple
        if not extra:
            return x, padding_mask
        if padding_mask is None:
            padding_mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return F.pad(x, (0, 0, 0, extra)), F.pad(padding_mask, (0, extra), value=True)

    def _layer(self, k: int, x: torch.Tensor, mask: Optional[torch.Tensor], pos_bias):
        layer = self.layers[str(k)]
        if self.layer_output == "wavlm":
            x, _, pos_bias = layer(x, self_attn_padding_mask=mask, need_weights=False, self_attn_mask=None,
                                   pos_bias=pos_bias)
            return x, pos_bias
        x, _ = layer(x, self_attn_padding_mask=mask, need_weights=False)
        return x, None

    def prefix(self, features: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """``(states entering layers 0..i, each [B, T, d], position bias)``; for i = 0 ``[features]``: the span
        then starts at the encoder's input."""
        if self.start == 0:
            return [features], None
        frames = features.size(1)
        x = features
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        if self.pos_conv is not None:
            x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x, mask = self._pad(x, padding_mask)
        x = x.transpose(0, 1)
        states, pos_bias = [], None
        for k in range(self.start):
            states.append(x.transpose(0, 1)[:, :frames])
            x, pos_bias = self._layer(k, x, mask, pos_bias)
        states.append(x.transpose(0, 1)[:, :frames])
        return states, pos_bias

    def suffix(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], pos_bias=None) -> list[torch.Tensor]:
        """The states leaving layers j+1..L-1 run on the span's output ``x`` [B, T, d]; the last is the encoder
        output (final LayerNorm of pre-LN models). Empty for j = L-1."""
        if self.stop == self.num_layers - 1:
            return []
        frames = x.size(1)
        x, mask = self._pad(x, padding_mask)
        x = x.transpose(0, 1)
        states = []
        for k in range(self.stop + 1, self.num_layers):
            x, pos_bias = self._layer(k, x, mask, pos_bias)
            states.append(x.transpose(0, 1)[:, :frames])
        if self.layer_norm_first:
            states[-1] = self.layer_norm(states[-1])
        return states

    def extra_repr(self) -> str:
        return f"span=[{self.start}, {self.stop}], kept={self.kept_layers}, layer_norm_first={self.layer_norm_first}"


def build_teacher_encoder(family_name: str, checkpoint_config: dict, span: Sequence[int], num_layers: int,
                          state: Optional[dict[str, torch.Tensor]] = None) -> TeacherEncoder:
    """The teacher's encoder around ``span``, built with s3prl's own model class from the stored config;
    ``state``: its weights (keys as :meth:`TeacherEncoder.state_dict`, from :func:`encoder_state`)."""
    family = get_family(family_name)
    model, _ = stock_model(family, checkpoint_config, num_encoder_layers=int(num_layers))
    encoder = TeacherEncoder(model.encoder, family, span, num_layers)
    del model
    if state is not None:
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise MimicError(f"the stored teacher-encoder weights do not fit the teacher's {family.name} config and "
                             f"span {list(span)} ({str(error).splitlines()[0]})") from None
    return encoder


def encoder_state(checkpoint: dict, family: ModelFamily, span: Sequence[int]) -> dict[str, torch.Tensor]:
    """The teacher weights a span keeps (pos_conv, encoder LayerNorm, kept layers), keyed as
    :meth:`TeacherEncoder.state_dict`: the stock ``encoder.*`` names without ``encoder.``; WavLM's moved
    relative-position table is read from layer 0."""
    num_layers = family.num_layers(checkpoint)
    i, j = span
    structure = build_teacher_encoder(family.name, teacher_config(checkpoint, family), span, num_layers)
    weights = checkpoint[family.weights_key]
    state = {}
    for key in structure.state_dict():
        source = f"encoder.{key}"
        if source not in weights and i == 0 and key.startswith(f"layers.{j + 1}.") and "relative_attention_bias" in key:
            source = f"encoder.layers.0.{key.split('.', 2)[2]}"
        if source not in weights:
            raise MimicError(f"the teacher checkpoint has no {source!r}, which span {list(span)} keeps")
        state[key] = weights[source].detach().clone().cpu()
    return state

