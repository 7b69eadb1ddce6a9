"""An upstream's multiply-accumulates (MACs) from its shape alone, without building it: what a study's cost
estimate (:mod:`superb_redundancy.study.estimate`) prices a forward pass at, for any clip length, offline.

The count is the one :func:`superb_redundancy.compute.count_macs` measures on the built model (convolutions,
matrix products and attention; not the element-wise ops, normalisations and softmax, under 1%): the CNN front end,
its projection to the model width, the positional convolution, and per transformer layer the four attention
projections, the two feed-forward matrices and the two attention products (scores and weighted values). The tests
hold the two to each other on tiny and real-size models.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.errors import UserError

__all__ = ["Shape", "parse_conv_layers"]


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """A fairseq conv stack string (``"[(512,10,5)] + [(512,3,2)] * 4"``) as (channels, kernel, stride) layers,
    read without evaluating code (list and tuple literals, ``+`` and ``*`` only)."""
    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [value(e) for e in node.elts]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise UserError(f"conv_feature_layers {text!r}: only list/tuple literals, + and * are read")

    layers = value(ast.parse(text, mode="eval"))
    return [(int(c), int(k), int(s)) for c, k, s in layers]


@dataclass(frozen=True)
class Shape:
    """What a wav2vec2-family upstream's compute depends on (its encoder config's entries)."""

    layers: int
    dim: int
    ffn_dim: int
    heads: int
    conv: tuple[tuple[int, int, int], ...]
    conv_pos: int
    conv_pos_groups: int
    #: the encoder pads its frames to a multiple of this (s3prl's wav2vec2 and HuBERT encoders: 2; WavLM's: 1)
    pad_to: int = 2

    @classmethod
    def from_config(cls, config: dict, family: str = "wav2vec2") -> "Shape":
        """From a stock checkpoint's encoder config (``encoder_layers``, ``encoder_embed_dim``, ...) of ``family``."""
        return cls(int(config["encoder_layers"]), int(config["encoder_embed_dim"]),
                   int(config["encoder_ffn_embed_dim"]), int(config["encoder_attention_heads"]),
                   tuple(parse_conv_layers(config["conv_feature_layers"])), int(config["conv_pos"]),
                   int(config["conv_pos_groups"]), 1 if family == "wavlm" else 2)

    def frames(self, samples: int) -> int:
        """Frames the CNN makes of ``samples`` (each conv: (n - kernel) // stride + 1)."""
        for _, kernel, stride in self.conv:
            samples = (samples - kernel) // stride + 1
        return max(samples, 0)

    def cnn_macs(self, samples: int) -> int:
        macs, channels, n = 0, 1, samples
        for out, kernel, stride in self.conv:
            n = (n - kernel) // stride + 1
            macs += n * out * channels * kernel
            channels = out
        return macs

    def layer_macs(self, frames: int) -> int:
        """One transformer layer on ``frames`` frames: q, k, v and out projections, the feed-forward pair, and the
        attention scores and weighted sum."""
        d = self.dim
        return frames * (4 * d * d + 2 * d * self.ffn_dim) + 2 * frames * frames * d

    def macs(self, samples: int) -> dict:
        """The MACs of one clip of ``samples`` at batch size 1, by part (``total`` the whole forward). The encoder
        pads the frames to a multiple of :attr:`pad_to` (fairseq's ``required_seq_len_multiple``), as the models do."""
        frames = self.frames(samples)
        encoded = frames + (-frames) % self.pad_to
        conv_dim = self.conv[-1][0]
        parts = {
            "cnn": self.cnn_macs(samples),
            "projection": frames * conv_dim * self.dim if conv_dim != self.dim else 0,
            # the positional convolution runs before the padding, with conv_pos // 2 zeros on each side (its
            # output one frame longer for an even kernel; the extra frame is dropped after it is computed)
            "positional": (frames + 2 * (self.conv_pos // 2) - self.conv_pos + 1) * self.dim
            * (self.dim // self.conv_pos_groups) * self.conv_pos,
            "stack": self.layers * self.layer_macs(encoded),
        }
        return {**parts, "frames": frames, "total": sum(parts.values())}

    def macs_per_second(self, seconds: float = 1.0) -> float:
        """MACs per second of audio for clips of ``seconds`` (attention makes longer clips dearer per second)."""
        return self.macs(int(round(seconds * SAMPLE_RATE)))["total"] / seconds
