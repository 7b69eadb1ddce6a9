"""The mimicking layers (paper section 2.3) as torch modules, and the paper's formula for their parameter count.

* ``"linear"``: Linear(d->z), LayerNorm(z), ReLU, Linear(z->d), applied per frame. A multi-layer linear mimicker
  shares ONE LayerNorm(z) between its layers (the authors' code; the paper's parameter counts confirm it).
* ``"transformer"``: ``nn.TransformerEncoderLayer(d_model=d, nhead=8, dim_feedforward=z, batch_first=True)``
  with PyTorch's other defaults (dropout 0.1, ReLU, post-LN), attending over frames with a key padding mask.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from superb_redundancy.mimic.config import KINDS, MimicConfig, MimicError

__all__ = ["mimicker_parameter_count", "MimickingLayer", "Mimicker"]


def mimicker_parameter_count(kind: str, n_layers: int, d: int, z: int, nhead: int = 8) -> int:
    """The paper's formulas (appendix, section 6.4 of the digest); ``nhead`` does not change the count.

    linear: N * [(dz + z) + (zd + d)] + 2z (one LayerNorm(z) shared by all layers);
    transformer: N * [3d^2 + 3d + d^2 + d + dz + z + zd + d + 4d]; N = 0 (classifier only): 0.
    """
    if kind in KINDS and n_layers == 0:
        return 0
    if kind == "linear":
        return n_layers * ((d * z + z) + (z * d + d)) + 2 * z
    if kind == "transformer":
        return n_layers * (3 * d * d + 3 * d + d * d + d + d * z + z + z * d + d + 4 * d)
    raise MimicError(f"unknown mimicker kind {kind!r}; valid: {' or '.join(repr(k) for k in KINDS)}")


class MimickingLayer(nn.Module):
    """One mimicking layer: ``forward(x [B,T,d], padding_mask [B,T] True=pad or None) -> [B,T,d]``.

    A linear layer given ``norm`` uses that (shared) LayerNorm without registering it: the owner
    (:class:`Mimicker`) holds it once, so it appears once in ``parameters()`` and ``state_dict()``.
    """

    def __init__(self, kind: str, d: int, z: int, nhead: int = 8, dropout: float = 0.1,
                 norm: Optional[nn.LayerNorm] = None):
        super().__init__()
        if kind not in KINDS:
            raise MimicError(f"unknown mimicker kind {kind!r}; valid: {' or '.join(repr(k) for k in KINDS)}")
        self.kind = kind
        if kind == "linear":
            self.fc1 = nn.Linear(d, z)
            self.fc2 = nn.Linear(z, d)
            if norm is None:
                self.norm = nn.LayerNorm(z)
                self._shared = None
            else:
                self._shared = (norm,)  # a tuple: not registered as a submodule
        else:
            if d % nhead:
                raise MimicError(f"nhead={nhead} does not divide the hidden size d={d}; valid: a divisor of {d}")
            self.layer = nn.TransformerEncoderLayer(d_model=d, nhead=nhead, dim_feedforward=z, dropout=dropout,
                                                    batch_first=True)

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.kind == "linear":
            norm = self._shared[0] if self._shared is not None else self.norm
            return self.fc2(F.relu(norm(self.fc1(x))))
        return self.layer(x, src_key_padding_mask=padding_mask)


class Mimicker(nn.Module):
    """N mimicking layers in sequence; ``forward`` returns ``[features, output of layer 1, ..., layer N]``.

    ``teacher_inputs`` (training with teacher forcing only): layer k >= 1 takes ``teacher_inputs[k - 1]`` (the
    teacher's output at layer k-1's target) instead of layer k-1's own output.
    """

    def __init__(self, kind: str, n_layers: int, d: int, z: int, nhead: int = 8, dropout: float = 0.1):
        super().__init__()
        if n_layers < 0:
            raise MimicError(f"n_layers={n_layers} is invalid; valid: an integer >= 0 (0 = classifier only)")
        if z < 1:
            raise MimicError(f"z={z} is invalid; valid: an integer >= 1")
        self.kind, self.n_layers, self.d, self.z, self.nhead = kind, n_layers, d, z, nhead
        if kind == "linear" and n_layers > 0:
            self.norm = nn.LayerNorm(z)  # shared by every linear layer
        self.layers = nn.ModuleList(
            [MimickingLayer(kind, d, z, nhead, dropout, norm=self.norm if kind == "linear" else None)
             for _ in range(n_layers)]
        )

    @classmethod
    def from_config(cls, config: MimicConfig, d: int) -> "Mimicker":
        config.check_dims(d)
        return cls(config.kind, config.n_layers, d, config.z, config.nhead, config.dropout)

    def forward(self, features: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                teacher_inputs: Optional[Sequence[torch.Tensor]] = None) -> list[torch.Tensor]:
        hidden = [features]
        x = features
        for k, layer in enumerate(self.layers):
            source = teacher_inputs[k - 1] if teacher_inputs is not None and k > 0 else x
            x = layer(source, padding_mask)
            hidden.append(x)
        return hidden

    def extra_repr(self) -> str:
        return f"kind={self.kind}, n_layers={self.n_layers}, d={self.d}, z={self.z}"

