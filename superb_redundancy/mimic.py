"""Mimicking networks (paper section 2.3): the transformer stack replaced by 1-2 small layers that mimic it.

The deployed model keeps the teacher's front end, i.e. the CNN feature extractor followed by ``layer_norm`` and
``post_extract_proj`` (the "feature projection"), and replaces everything after it (positional convolution,
encoder LayerNorm, all transformer layers) by a :class:`Mimicker` of N mimicking layers:

* ``"linear"``: Linear(d->z), LayerNorm(z), ReLU, Linear(z->d), applied per frame. A multi-layer linear mimicker
  shares ONE LayerNorm(z) between its layers (the authors' code; the paper's parameter counts confirm it).
* ``"transformer"``: ``nn.TransformerEncoderLayer(d_model=d, nhead=8, dim_feedforward=z, batch_first=True)``
  with PyTorch's other defaults (dropout 0.1, ReLU, post-LN), attending over frames with a key padding mask.

What each layer mimics (step 1, task-agnostic distillation, trained by :mod:`superb_redundancy.mimic_train`):
a 1-layer mimicker mimics the output of the final transformer layer; a 2-layer one has m_f mimic the output of
layer i ("the last layer of the first block" of the similarity analysis) and m_g the final output. Layers are
numbered 0..L-1 and "the output of layer t" is s3prl's ``hidden_states[t + 1]`` (for the final layer, the encoder
output, after the final LayerNorm of pre-LN models).

The upstream (:class:`MimicUpstream`, s3prl names ``mimic`` and ``mimic_local``) returns
``hidden_states = [projected features, output of mimicking layer 1, ..., output of layer N]``.

Block replacement (``span: [i, j]`` in :class:`MimicConfig`): the mimicker replaces transformer layers i..j only,
mapping the teacher's input of layer i (its ``hidden_states[i]``; for i = 0 the projected features, the
encoder's input, so the positional convolution and encoder LayerNorm belong to the span) to its output of layer
j (``hidden_states[j + 1]``); the teacher's other layers stay, frozen, with its own weights
(:class:`TeacherEncoder`, stored in the artifact). The whole stack is the case i = 0, j = L-1 and runs through the
same code with no teacher layer kept. The upstream returns by default the L+1 hidden states in the positions a
head trained on the teacher expects, a replaced span's inner positions repeating the mimicker's output (details
and the ``compact`` option: :class:`MimicUpstream`). A span replaced by the identity gives the teacher with layers
i..j dropped (for i >= 1; up to the final LayerNorm of pre-LN teachers when j = L-1, which the span replaces).

Baselines of the paper (Tables 1-4): a *non-mimicker* is an artifact whose mimicking layers are freshly (seeded)
initialised and never trained in step 1 (:func:`superb_redundancy.mimic_train.init_artifact`; its training
record says ``training: none``); *classifier only* is ``n_layers: 0``: no mimicking layer at all, the upstream
returns ``[projected features]`` and only the downstream head is trained.

Step 2 (adaptation) is s3prl's own runner, nothing else:

* ``run_downstream.py -u mimic_local -k ARTIFACT`` (no ``-f``): the upstream is frozen (``eval()``, run under
  ``no_grad``); only the Featurizer and the downstream head train, and ``states-*.ckpt`` holds no ``Upstream``.
  That is the authors' code default (mimicker frozen) and, with ``n_layers: 0``, the paper's classifier-only
  baseline.
* ``-f`` (``--upstream_trainable``): the paper's step 2 ("the classifier and mimicking layers are then
  finetuned"). The runner puts the upstream in ``train()`` mode and hands all its parameters to the optimizer;
  the mimicking layers, ``layer_norm`` and ``post_extract_proj`` get gradients and change, while the CNN runs
  under ``no_grad`` (``feature_grad_mult = 0``, as in s3prl's stock wav2vec2/HuBERT/WavLM experts), gets no
  gradient and stays frozen. ``states-*.ckpt`` then holds the adapted ``Upstream`` state (keys
  ``frontend.*`` and ``mimicker.*``) and ``-m evaluate -e states-*.ckpt`` loads it back into the upstream
  rebuilt from the (unchanged) artifact. Both behaviours are checked end to end by
  ``tests/test_mimic_downstream.py``.
* The paper's head reads the last mimicking layer only: pass ``-s last_hidden_state``; s3prl's default
  ``-s hidden_states`` learns a softmax-weighted sum over ``[projected features, m_1, ..., m_N]``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from . import atomic
from .bundles import ModelFamily, family_of_checkpoint, get_family
from .files import checkpoint_sha256, load_checkpoint, model_sha256, sha256_file
from .registry import upstream_output

__all__ = [
    "MimicError",
    "MimicConfig",
    "MimickingLayer",
    "Mimicker",
    "mimicker_parameter_count",
    "TeacherFrontend",
    "build_frontend",
    "TeacherEncoder",
    "build_teacher_encoder",
    "encoder_state",
    "teacher_record",
    "frontend_state",
    "MimicUpstream",
    "save_artifact",
    "read_artifact",
    "load_mimic_artifact",
    "register_mimic_upstreams",
    "paper_grid",
    "tiny_grid",
    "paper_baselines",
    "tiny_baselines",
    "select_configs",
    "describe_artifact",
    "sha256_file",
    "ARTIFACT_KEY",
    "ARTIFACT_KIND",
    "KINDS",
]

ARTIFACT_KEY = "superb_redundancy"
ARTIFACT_KIND = "mimicker"
ARTIFACT_VERSION = 1
KINDS = ("linear", "transformer")
DOWNSAMPLE_RATE = 320
FRONTEND_MODULES = ("feature_extractor", "layer_norm", "post_extract_proj")
#: families whose stock model masks frames by the conv output lengths (the others: a frame whose samples all pad)
CONV_LENGTH_MASK = ("wav2vec2", "data2vec")


class MimicError(ValueError):
    """Bad input for a mimicker (config, artifact, teacher); one line, naming the value and what is valid."""


# ---------------------------------------------------------------------------------------------- config
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class MimicConfig:
    """One mimicker and how step 1 trains it.

    Defaults are the paper's (lr 1e-3, batch 128, 50 epochs, Adam as in the authors' code, validation on at most
    1,024 held-out clips); :meth:`tiny` gives small CPU-friendly values for tests and smoke runs
    (z 32, batch 4, 10 epochs, lr 3e-3).

    ``layer_i``: for a 2-layer mimicker, the transformer layer (0-based) whose output m_f mimics; the paper
    takes the last layer of the first similarity block and does not print it. Left unset it defaults to
    ``round(2L/3) - 1`` (7 for 12 layers, 15 for 24: the reading of the paper's Fig. 2a for both base models and
    wav2vec2-large). ``target_layers`` (optional, one per mimicking layer, non-decreasing, 0..L-1) overrides
    both; N >= 3 without it spreads the targets evenly over the stack.

    ``n_layers: 0`` is the paper's classifier-only baseline: no mimicking layer, the upstream returns only the
    projected features (``kind``, ``z``, ``layer_i`` and ``teacher_forcing`` then play no part).

    ``teacher_forcing``: the paper's printed step-1 loss feeds m_g the TEACHER's layer-i output
    (``True``); the authors' code feeds m_g the mimicker's own m_f output (``False``, the default: it is what
    produced the paper's numbers and it trains the composition the deployed model runs).

    ``span: [i, j]`` (block replacement, 0-based, inclusive): the mimicker replaces transformer layers i..j only,
    mapping the teacher's input of layer i to its output of layer j; every other layer stays the teacher's own,
    frozen. Unset = the whole stack (i = 0, j = L-1, the paper's mimicker; exactly the same training and
    upstream). The targets then lie in the span: ``layer_i`` (m_f's target, 2 layers; not to be confused with
    the span's i) in i..j, default ``i + default_layer_i(j - i + 1)``; ``target_layers`` in i..j, ending at j.

    ``compact``: which hidden states the upstream returns. Unset: compact for the whole stack (today's
    ``[projected features, m_1, ..., m_N]``), full for a partial span (the L+1 positions a head trained on the
    teacher expects). See :class:`MimicUpstream`.
    """

    kind: str = "linear"
    n_layers: int = 1
    z: int = 768
    nhead: int = 8
    layer_i: Optional[int] = None
    target_layers: Optional[list] = None
    teacher_forcing: bool = False
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 50
    seed: int = 0
    val_fraction: float = 0.1
    max_val_clips: int = 1024
    span: Optional[list] = None
    compact: Optional[bool] = None

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, **overrides) -> "MimicConfig":
        """The paper's schedule: lr 1e-3, batch 128, 50 epochs (z in {32, 768, 4096}, N in {1, 2})."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "MimicConfig":
        """Small values for CPU tests on tiny teachers: z 32, batch 4, 10 epochs, lr 3e-3."""
        values = dict(z=32, batch_size=4, epochs=10, lr=3e-3)
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        def bad(name, value, valid):
            raise MimicError(f"mimic config: {name}={value!r} is invalid; valid: {valid}")

        if self.kind not in KINDS:
            bad("kind", self.kind, " or ".join(repr(k) for k in KINDS))
        if not _is_int(self.n_layers) or self.n_layers < 0:
            bad("n_layers", self.n_layers, "an integer >= 0 (the number of mimicking layers; the paper uses 1 or 2; "
                                           "0 = classifier only: the upstream returns the projected features)")
        if not _is_int(self.z) or self.z < 1:
            bad("z", self.z, "an integer >= 1 (the mimicking layers' hidden size; the paper uses 32, 768, 4096)")
        if not _is_int(self.nhead) or self.nhead < 1:
            bad("nhead", self.nhead, "an integer >= 1 that divides the teacher's hidden size (paper: 8)")
        if self.layer_i is not None and (not _is_int(self.layer_i) or self.layer_i < 0):
            bad("layer_i", self.layer_i, "a transformer layer index 0..L-1 of the teacher, or unset")
        if self.target_layers is not None:
            if not isinstance(self.target_layers, (list, tuple)) or not all(_is_int(t) for t in self.target_layers):
                bad("target_layers", self.target_layers, "a list of transformer layer indices 0..L-1, or unset")
            self.target_layers = list(self.target_layers)
            if len(self.target_layers) != self.n_layers:
                bad("target_layers", self.target_layers, f"one layer per mimicking layer ({self.n_layers})")
            if any(b < a for a, b in zip(self.target_layers, self.target_layers[1:])) or \
                    any(t < 0 for t in self.target_layers):
                bad("target_layers", self.target_layers, "non-decreasing transformer layer indices 0..L-1")
        if not isinstance(self.teacher_forcing, bool):
            bad("teacher_forcing", self.teacher_forcing, "true (paper formula) or false (authors' code)")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            bad("dropout", self.dropout, "a number in [0, 1)")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not self.lr > 0:
            bad("lr", self.lr, "a number > 0 (paper: 1e-3)")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "an integer >= 1 (paper: 128)")
        if not _is_int(self.epochs) or self.epochs < 1:
            bad("epochs", self.epochs, "an integer >= 1 (paper: 50)")
        if not _is_int(self.seed):
            bad("seed", self.seed, "an integer")
        if not isinstance(self.val_fraction, (int, float)) or isinstance(self.val_fraction, bool) or \
                not 0 <= self.val_fraction < 1:
            bad("val_fraction", self.val_fraction, "a number in [0, 1)")
        if not _is_int(self.max_val_clips) or self.max_val_clips < 0:
            bad("max_val_clips", self.max_val_clips, "an integer >= 0 (paper: 1024)")
        self._validate_span(bad)

    def _validate_span(self, bad) -> None:
        """What can be checked of ``span`` / ``compact`` without the teacher (its depth: :meth:`resolve_span`)."""
        if self.compact is not None and not isinstance(self.compact, bool):
            bad("compact", self.compact, "true (mimicking layers' outputs only), false (the teacher's L+1 positions) "
                                         "or unset")
        if self.compact is False and self.n_layers == 0:
            bad("compact", self.compact, "unset or true for n_layers: 0 (no mimicking layer to fill positions)")
        if self.span is None:
            return
        span_ok = isinstance(self.span, (list, tuple)) and len(self.span) == 2 and all(_is_int(t) for t in self.span)
        if not span_ok or not 0 <= self.span[0] <= self.span[1]:
            bad("span", self.span, "[i, j]: transformer layers 0 <= i <= j <= L-1 of the teacher (0-based, "
                                   "inclusive), or unset for the whole stack")
        self.span = [int(t) for t in self.span]
        i, j = self.span
        if self.n_layers == 0:
            bad("span", self.span, "unset for n_layers: 0 (classifier only replaces the whole stack)")
        if self.layer_i is not None and not i <= self.layer_i <= j:
            bad("layer_i", self.layer_i, f"a layer of the span, {i}..{j}, or unset")
        if self.target_layers is not None and (self.target_layers[0] < i or self.target_layers[-1] != j):
            bad("target_layers", self.target_layers, f"non-decreasing layers of the span {i}..{j}, the last {j} "
                                                     "(the mimicker's output replaces layer j's)")

    def resolve_span(self, num_layers: int) -> tuple[int, int]:
        """``(i, j)``: the transformer layers (0-based, inclusive) the mimicker replaces; the whole stack unset."""
        L = int(num_layers)
        if self.span is None:
            return 0, L - 1
        i, j = self.span
        if j > L - 1:
            raise MimicError(f"mimic config: span={self.span} is outside the teacher's transformer stack; valid: "
                             f"[i, j] with 0 <= i <= j <= {L - 1} (the teacher has {L} transformer layers)")
        return i, j

    def whole_stack(self, num_layers: int) -> bool:
        """Whether the mimicker replaces every transformer layer (the paper's mimicker; no teacher layer kept)."""
        return self.resolve_span(num_layers) == (0, int(num_layers) - 1)

    def compact_for(self, num_layers: int) -> bool:
        """The upstream's hidden-state layout: ``compact`` if set, else compact for the whole stack only."""
        return self.compact if self.compact is not None else self.whole_stack(num_layers)

    def input_layer(self, num_layers: int) -> Optional[int]:
        """Where the mimicker's input comes from in the teacher: None = the projected features (the encoder's
        input, span i = 0: the positional convolution and encoder LayerNorm are replaced too), else ``i - 1``:
        the output of layer i-1 is the input of layer i (s3prl's ``hidden_states[i]``)."""
        i, _ = self.resolve_span(num_layers)
        return None if i == 0 else i - 1

    def resolve_targets(self, num_layers: int) -> list[int]:
        """The transformer layer (0..L-1) whose output each mimicking layer mimics; checks them against L.

        Over the span i..j (the whole stack: 0..L-1): 1 layer -> [j]; 2 -> [layer_i, j]; N >= 3 spread evenly."""
        L = int(num_layers)
        i, j = self.resolve_span(L)
        stack = f"valid 0..{L - 1} (the teacher has {L} transformer layers)"
        if self.layer_i is not None and not 0 <= self.layer_i < L:
            raise MimicError(f"mimic config: layer_i={self.layer_i} is outside the teacher's transformer stack; {stack}")
        if self.target_layers is not None:
            for t in self.target_layers:
                if not 0 <= t < L:
                    raise MimicError(f"mimic config: target layer {t} is outside the teacher's transformer stack; {stack}")
            return list(self.target_layers)
        n = j - i + 1
        if self.n_layers == 0:
            return []
        if self.n_layers == 1:
            return [j]
        if self.n_layers == 2:
            first = self.layer_i if self.layer_i is not None else i + default_layer_i(n)
            return [first, j]
        return [i + max(0, round(n * (k + 1) / self.n_layers) - 1) for k in range(self.n_layers)]

    def check_dims(self, hidden_size: int) -> None:
        if self.kind == "transformer" and self.n_layers > 0 and hidden_size % self.nhead:
            raise MimicError(
                f"mimic config: nhead={self.nhead} does not divide the teacher's hidden size {hidden_size}; "
                f"valid: a divisor of {hidden_size}"
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "mimic config") -> "MimicConfig":
        if not isinstance(values, dict):
            raise MimicError(f"{source}: expected a mapping of mimic config fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MimicError(f"{source}: unknown mimic config field(s) {unknown}; valid: {sorted(known)}")
        try:
            return cls(**values)
        except MimicError as error:
            if source == "mimic config":
                raise
            raise MimicError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "MimicConfig":
        import yaml

        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise MimicError(f"cannot read mimic config {path}: {str(error).splitlines()[0]}") from None
        return cls.from_dict(values or {}, source=str(path))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic.write_text(path, text)
        return text

    @property
    def classifier_only(self) -> bool:
        return self.n_layers == 0

    def name(self) -> str:
        """A short file-name stem, e.g. ``linear-N2-z32-i7``, ``linear-N1-z32-span4-7`` (a span);
        ``classifier-only`` for ``n_layers: 0``."""
        if self.classifier_only:
            return "classifier-only"
        stem = f"{self.kind}-N{self.n_layers}-z{self.z}"
        if self.span is not None:
            stem += f"-span{self.span[0]}-{self.span[1]}"
        if self.target_layers is not None:
            stem += "-t" + "_".join(str(t) for t in self.target_layers)
        elif self.n_layers == 2 and self.layer_i is not None:
            stem += f"-i{self.layer_i}"
        if self.teacher_forcing and self.n_layers > 1:
            stem += "-tf"
        if self.compact is not None and self.compact != (self.span is None):  # only a non-default layout
            stem += "-compact" if self.compact else "-full"
        return stem


def default_layer_i(num_layers: int) -> int:
    """m_f's target when a 2-layer config names none: round(2L/3) - 1 (7 of 12, 15 of 24)."""
    return max(0, min(num_layers - 1, round(2 * num_layers / 3) - 1))


def paper_grid(**overrides) -> list[MimicConfig]:
    """The paper's 12 mimicker configurations: kind in {L, T} x N in {1, 2} x z in {32, 768, 4096}."""
    return [MimicConfig(kind=kind, n_layers=n, z=z, **overrides)
            for kind in KINDS for n in (1, 2) for z in (32, 768, 4096)]


def tiny_grid(**overrides) -> list[MimicConfig]:
    """4 CPU-sized configurations (:meth:`MimicConfig.tiny`): kind in {L, T} x N in {1, 2}, z 32."""
    return [MimicConfig.tiny(kind=kind, n_layers=n, **overrides) for kind in KINDS for n in (1, 2)]


def paper_baselines(**overrides) -> list[MimicConfig]:
    """The paper's baselines: 6 non-mimickers (1 layer, kind in {L, T} x z in {32, 768, 4096}) + classifier only."""
    return [MimicConfig(kind=kind, n_layers=1, z=z, **overrides) for kind in KINDS for z in (32, 768, 4096)] + \
        [MimicConfig(n_layers=0, **overrides)]


def tiny_baselines(**overrides) -> list[MimicConfig]:
    """CPU-sized baselines: non-mimickers (1 layer, L and T, z 32) + classifier only."""
    return [MimicConfig.tiny(kind=kind, n_layers=1, **overrides) for kind in KINDS] + \
        [MimicConfig.tiny(n_layers=0, **overrides)]


def select_configs(files: Sequence[str | os.PathLike] = (), grid: Optional[str] = None, baselines: bool = False,
                   layer_i: Optional[int] = None, span: Optional[Sequence[int]] = None) -> list[MimicConfig]:
    """Configurations from YAML ``files`` plus a named ``grid`` ("paper" or "tiny"; the baselines' grid with
    ``baselines=True``); ``layer_i`` sets m_f's target of the grid's 2-layer configurations; ``span`` (``[i, j]``)
    makes every configuration replace layers i..j only (block replacement)."""
    configs = [MimicConfig.from_yaml(path) for path in files]
    if grid is not None:
        grids = {"paper": (paper_grid, paper_baselines), "tiny": (tiny_grid, tiny_baselines)}
        if grid not in grids:
            raise MimicError(f"unknown mimic grid {grid!r}; valid: {' or '.join(repr(g) for g in grids)}")
        make = grids[grid][1 if baselines else 0]
        configs += make() if baselines else make(**({} if layer_i is None else {"layer_i": layer_i}))
    if not configs:
        raise MimicError("no mimic configuration given: pass config YAML file(s) or a grid (paper or tiny)")
    if span is not None:
        configs = [dataclasses.replace(config, span=list(span)) for config in configs]  # validates each again
    return configs


# ---------------------------------------------------------------------------------------------- modules
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


# ---------------------------------------------------------------------------------------------- teacher front end
def _plain(value: Any) -> Any:
    """A JSON-plain copy (dict/list/str/number/bool/None) that ``torch.load(weights_only=True)`` accepts."""
    return json.loads(json.dumps(value, default=str))


def _stock_model(family: ModelFamily, checkpoint_config: dict, num_encoder_layers: int = 0):
    """s3prl's own model class for ``family``, built from the stored config (with ``num_encoder_layers``)."""
    if family.name == "wav2vec2" and checkpoint_config["model_cfg"].get("quantize_input"):
        raise MimicError("wav2vec2 teachers with quantize_input=True have no post_extract_proj; not supported")
    return family.build_model(checkpoint_config, num_encoder_layers)


class TeacherFrontend(nn.Module):
    """The teacher's CNN + ``layer_norm`` + ``post_extract_proj``, as s3prl's stock model runs them.

    ``forward(wav [B,S], wav_padding_mask [B,S] True=pad or None) -> (features [B,T,d], padding_mask [B,T] or
    None)``. The frame padding mask follows the family's own rule: wav2vec2 and data2vec from the conv output lengths,
    HuBERT/WavLM with ``forward_padding_mask`` (a frame is padding when all its samples are). Like the stock
    experts (``feature_grad_mult = 0``) the CNN runs without gradients; set ``feature_grad_mult = 1.0`` to train it.
    """

    def __init__(self, family: str, feature_extractor: nn.Module, layer_norm: nn.Module,
                 post_extract_proj: Optional[nn.Module], normalize: bool, crop_seq_to_multiple: int = 1):
        super().__init__()
        self.family = family
        self.feature_extractor = feature_extractor
        self.layer_norm = layer_norm
        self.post_extract_proj = post_extract_proj
        self.normalize = normalize
        self.crop_seq_to_multiple = int(crop_seq_to_multiple or 1)
        self.feature_grad_mult = 0.0

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames the CNN makes of ``lengths`` samples (the conv formula, as wav2vec2's stock model uses)."""
        for block in self.feature_extractor.conv_layers:
            conv = block[0]
            lengths = torch.div(lengths - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1
        return lengths

    def num_frames(self, num_samples: int) -> int:
        frames = int(self.output_lengths(torch.tensor([int(num_samples)]))[0])
        return frames - frames % self.crop_seq_to_multiple

    def forward(self, wav: torch.Tensor, wav_padding_mask: Optional[torch.Tensor] = None):
        if self.feature_grad_mult > 0:
            features = self.feature_extractor(wav)
        else:
            with torch.no_grad():
                features = self.feature_extractor(wav)
        features = self.layer_norm(features.transpose(1, 2))
        B, T = features.shape[:2]
        padding_mask = None
        if wav_padding_mask is not None and wav_padding_mask.any():
            if self.family in CONV_LENGTH_MASK:
                lengths = self.output_lengths((~wav_padding_mask).long().sum(-1))
                padding_mask = torch.arange(T, device=features.device)[None, :] >= lengths[:, None]
            else:
                extra = wav_padding_mask.size(1) % T
                mask = wav_padding_mask[:, :-extra] if extra > 0 else wav_padding_mask
                padding_mask = mask.reshape(B, T, -1).all(-1)
            # never leave a clip without a frame (a clip shorter than the receptive field)
            padding_mask[:, 0] = False
        drop = T % self.crop_seq_to_multiple
        if drop:
            features = features[:, :-drop]
            padding_mask = padding_mask[:, :-drop] if padding_mask is not None else None
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        return features, padding_mask

    def extra_repr(self) -> str:
        return f"family={self.family}, normalize={self.normalize}"


def teacher_config(checkpoint: dict, family: ModelFamily) -> dict:
    """Everything in a stock checkpoint but its weights, JSON-plain."""
    return _plain({k: checkpoint[k] for k in family.checkpoint_keys if k != family.weights_key})


def frontend_state(checkpoint: dict, family: ModelFamily) -> dict[str, torch.Tensor]:
    """The front-end weights of a stock checkpoint (keys as in the stock model: ``feature_extractor.*`` ...)."""
    return {k: v.detach().clone().cpu() for k, v in checkpoint[family.weights_key].items()
            if k.split(".", 1)[0] in FRONTEND_MODULES}


def build_frontend(family_name: str, checkpoint_config: dict,
                   state: Optional[dict[str, torch.Tensor]] = None) -> TeacherFrontend:
    """The teacher's front end, built with s3prl's own model class (0 encoder layers) from the stored config."""
    family = get_family(family_name)
    model, normalize = _stock_model(family, checkpoint_config, num_encoder_layers=0)
    frontend = TeacherFrontend(family.name, model.feature_extractor, model.layer_norm, model.post_extract_proj,
                               normalize, getattr(model, "crop_seq_to_multiple", 1))
    del model
    if state is not None:
        missing, unexpected = frontend.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise MimicError(
                f"the stored front-end weights do not fit the teacher's {family.name} config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    return frontend


class TeacherEncoder(nn.Module):
    """The teacher's encoder around a replaced span [i, j]: its own modules, frozen (never trained, always in
    eval mode, no gradient to its weights; gradients still flow through it to a trainable front end).

    Holds what the span leaves: the positional convolution and the encoder LayerNorm where they run (i > 0; the
    final LayerNorm of pre-LN models where j < L-1) and the kept layers 0..i-1 and j+1..L-1 (``layers.<k>``).
    WavLM: when layer 0 (owner of the relative-position table) is in the span, layer j+1 takes the table over,
    as :func:`superb_redundancy.pruned_upstream.drop_layers` does.

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
    model, _ = _stock_model(family, checkpoint_config, num_encoder_layers=int(num_layers))
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


def teacher_record(checkpoint: dict, family: ModelFamily, path: str | os.PathLike, sha256: str,
                   content_sha256: Optional[str] = None) -> dict:
    """What an artifact (and a teacher cache) records about its teacher (``content_sha256``: if already known)."""
    return {
        "family": family.name,
        "path": str(path),
        "sha256": sha256,
        # the teacher by content (weights and config): a regenerated identical teacher is the same teacher
        "content_sha256": content_sha256 or model_sha256(checkpoint),
        "num_layers": family.num_layers(checkpoint),
        "hidden_size": family.hidden_size(checkpoint),
        "checkpoint_config": teacher_config(checkpoint, family),
    }


# ---------------------------------------------------------------------------------------------- upstream
class MimicUpstream(nn.Module):
    """An s3prl upstream: the teacher's front end followed by a mimicker (with, for a span, the teacher's encoder
    around it).

    ``forward(wavs: list of 1-D 16 kHz tensors) -> {"hidden_states": [...], "last_hidden_state": ...,
    "hidden_state_k": ...}``, every entry [B, T, d], T = the teacher's frame count. One path for every span
    [i, j]: front end -> the teacher's states entering layers 0..i (:meth:`TeacherEncoder.prefix`; for i = 0 the
    projected features alone) -> the mimicker on the last of them -> the teacher's layers j+1..L-1 on its output
    (:meth:`TeacherEncoder.suffix`; none for j = L-1). The whole stack has no teacher encoder at all: exactly the
    paper's front end + mimicker.

    Hidden states, ``compact`` (the default for the whole stack): the prefix states, the N mimicking layers'
    outputs, the suffix states: ``[projected features, m_1, ..., m_N]`` for the whole stack (classifier only,
    N = 0: ``[projected features]``), ``i + 1 + N + (L-1-j)`` entries for a span. Full (the default for a partial
    span): the L+1 positions of the teacher (position k = the input of layer k, position L = the encoder output),
    so a head trained on the teacher reads each where it expects it: outside the span the teacher's own states;
    position t+1 for a replaced layer t in i..j holds the output of the mimicking layer with the nearest target
    >= t (of equal targets the later), i.e. the span's inner positions repeat the mimicker's output (1 layer: m_1
    at positions i+1..j+1; 2 layers with targets [t1, j], t1 < j: m_1 at i+1..t1+1, m_2 at t1+2..j+1). Position 0 is the teacher's input of layer
    0 when i > 0, and the projected features when i = 0 (the positional convolution is part of the span).

    Step 2 through s3prl's runner (see the module docstring): without ``-f`` nothing here trains and
    ``states-*.ckpt`` holds no ``Upstream``; with ``-f`` the mimicking layers, ``frontend.layer_norm`` and
    ``frontend.post_extract_proj`` train (the CNN runs under ``no_grad`` and stays frozen, like the stock
    experts; the kept teacher layers ``encoder.*`` stay frozen too) and ``states-*.ckpt`` stores ``Upstream``
    (``frontend.*``, ``mimicker.*``, ``encoder.*``).
    """

    def __init__(self, frontend: TeacherFrontend, mimicker: Mimicker, config: MimicConfig,
                 teacher: Optional[dict] = None, targets: Optional[Sequence[int]] = None,
                 training_record: Optional[dict] = None, encoder: Optional[TeacherEncoder] = None,
                 compact: Optional[bool] = None):
        super().__init__()
        self.frontend = frontend
        self.mimicker = mimicker
        self.encoder = encoder
        self.config = config
        self.teacher = dict(teacher or {})
        self.targets = list(targets or [])
        self.training_record = training_record or {}
        num_layers = self.teacher.get("num_layers")
        if num_layers is None:  # without a teacher record only the whole stack's compact layout is known
            self.span, self.compact = None, True
        else:
            self.span = config.resolve_span(int(num_layers))
            self.compact = config.compact_for(int(num_layers)) if compact is None else bool(compact)
        if self.encoder is None and self.span is not None and not config.whole_stack(int(num_layers)):
            raise MimicError(f"mimic upstream: span {list(self.span)} needs the teacher's encoder around it")
        if not self.compact and mimicker.n_layers == 0:
            self.compact = True  # classifier only: no mimicking layer to fill the teacher's positions

    def get_downsample_rates(self, key: str) -> int:
        return DOWNSAMPLE_RATE

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict:
        if len(wavs) == 0:
            raise MimicError("mimic upstream: got an empty batch; pass a list of 1-D 16 kHz waveforms")
        if any(w.dim() != 1 for w in wavs):
            raise MimicError(f"mimic upstream: each waveform must be 1-D, got shapes {[tuple(w.shape) for w in wavs]}")
        if self.frontend.normalize:
            wavs = [F.layer_norm(wav, wav.shape) for wav in wavs]
        device = wavs[0].device
        lengths = torch.tensor([len(w) for w in wavs], device=device)
        wav_padding_mask = torch.arange(int(lengths.max()), device=device)[None, :] >= lengths[:, None]
        features, padding_mask = self.frontend(pad_sequence(list(wavs), batch_first=True), wav_padding_mask)
        prefix, pos_bias = self.encoder.prefix(features, padding_mask) if self.encoder is not None else ([features], None)
        outputs = self.mimicker(prefix[-1], padding_mask)[1:]
        suffix = self.encoder.suffix(outputs[-1], padding_mask, pos_bias) if self.encoder is not None else []
        return upstream_output(self.positions(prefix, outputs, suffix))

    def positions(self, prefix: list, outputs: list, suffix: list) -> list:
        """The hidden states in the upstream's layout (see the class docstring)."""
        if self.compact:
            return prefix + outputs + suffix
        i, j = self.span
        last = len(outputs) - 1
        chosen = [_position_source(self.targets, layer, last) for layer in range(i, j + 1)]
        return prefix + [outputs[n] for n in chosen] + suffix

    def extra_repr(self) -> str:
        span = "" if self.span is None else f", span={list(self.span)}"
        return (f"teacher={self.teacher.get('family')}:{self.teacher.get('num_layers')} layers{span}, "
                f"targets={self.targets}, compact={self.compact}, config={self.config.name()}")


def _position_source(targets: Sequence[int], layer: int, last: int) -> int:
    """The mimicking layer whose output stands for teacher layer ``layer``: the one with the nearest target at
    or after it (of equal targets the later, the one the next layer reads); past every target, the last."""
    after = [n for n, t in enumerate(targets[:last + 1]) if t >= layer]
    return min(after, key=lambda n: (targets[n], -n)) if after else last


# ---------------------------------------------------------------------------------------------- artifacts
def save_artifact(output: str | os.PathLike, config: MimicConfig, teacher: dict, frontend: dict,
                  mimicker: dict, targets: Sequence[int], training: Optional[dict] = None,
                  encoder: Optional[dict] = None) -> Path:
    """Write ONE self-describing mimicker file (plain dicts/lists/tensors/str/numbers), atomically.

    Keys: ``superb_redundancy`` ({kind: "mimicker", version}), ``config`` (:class:`MimicConfig` as a dict),
    ``targets`` (teacher layer each mimicking layer mimics), ``teacher`` (family, path, sha256, num_layers,
    hidden_size, checkpoint_config: the stock checkpoint's config entries), ``frontend`` (CNN + layer_norm +
    post_extract_proj weights), ``mimicker`` (weights), ``training`` (``training``: "mimicking" (step 1) or
    "none" (a baseline: random layers, or none at all); losses per epoch, best epoch, ...),
    ``parameters`` (frontend / mimicker / teacher_encoder / total counts: the total counts the kept teacher
    layers of a span). A partial span also has ``encoder``: the kept teacher weights (:func:`encoder_state`);
    a whole-stack artifact has none.
    """
    d = int(teacher["hidden_size"])
    partial = not config.whole_stack(int(teacher["num_layers"]))
    if partial and not encoder:
        raise MimicError(f"mimic config {config.name()}: span {config.span} keeps teacher layers; pass their "
                         "weights (encoder_state) to save_artifact")
    n_mimicker = mimicker_parameter_count(config.kind, config.n_layers, d, config.z, config.nhead)
    n_frontend = sum(int(v.numel()) for k, v in frontend.items() if not _is_buffer_key(k))
    n_encoder = sum(int(v.numel()) for k, v in (encoder or {}).items() if not _is_buffer_key(k)) if partial else 0
    artifact = {
        ARTIFACT_KEY: {"kind": ARTIFACT_KIND, "version": ARTIFACT_VERSION},
        "config": config.to_dict(),
        "targets": [int(t) for t in targets],
        "teacher": _plain(teacher),
        "frontend": {k: v.detach().cpu().contiguous() for k, v in frontend.items()},
        "mimicker": {k: v.detach().cpu().contiguous() for k, v in mimicker.items()},
        "training": _plain(training or {}),
        "parameters": {"frontend": n_frontend, "mimicker": n_mimicker, "total": n_frontend + n_mimicker},
    }
    if partial:
        artifact["encoder"] = {k: v.detach().cpu().contiguous() for k, v in encoder.items()}
        artifact["parameters"].update(teacher_encoder=n_encoder, total=n_frontend + n_mimicker + n_encoder)
    return atomic.torch_save(artifact, output)


def _is_buffer_key(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def read_artifact(path: str | os.PathLike) -> dict:
    """Load and check a mimicker artifact (weights_only); every problem is one :class:`MimicError` line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MimicError(f"mimicker artifact not found: {path}")
    artifact = load_checkpoint(path, "mimicker artifact", MimicError)
    meta = artifact.get(ARTIFACT_KEY) if isinstance(artifact, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != ARTIFACT_KIND:
        what = "a file without a superb_redundancy mimicker header"
        if isinstance(artifact, dict):
            family = family_of_checkpoint(artifact)
            if isinstance(meta, dict):
                what = f"a superb_redundancy {meta.get('kind')!r} artifact"
            elif family is not None:
                what = f"a stock {family.name} checkpoint (a teacher, not a mimicker)"
        raise MimicError(
            f"{path} is not a mimicker artifact: it is {what}; write one with "
            f"superb_redundancy.mimic_train.train_mimicker (or a baseline with init_artifact)"
        )
    if meta.get("version") != ARTIFACT_VERSION:
        raise MimicError(f"{path}: mimicker artifact version {meta.get('version')!r}; this code reads {ARTIFACT_VERSION}")
    for key in ("config", "targets", "teacher", "frontend", "mimicker"):
        if key not in artifact:
            raise MimicError(f"corrupt mimicker artifact {path}: missing {key!r}")
    return artifact


def describe_artifact(path: str | os.PathLike) -> str:
    """One line: what an artifact is, its parameter counts, and how step 1 went (best loss, epoch)."""
    path = Path(path)
    artifact = read_artifact(path)
    config = MimicConfig.from_dict(artifact["config"], source=str(path))
    params = artifact.get("parameters", {})
    what = ("classifier only (no mimicking layer)" if config.classifier_only else
            f"{config.kind} N={config.n_layers} z={config.z}, targets {artifact['targets']}")
    if config.span is not None:
        what += f", replacing layers {config.span[0]}..{config.span[1]} of {artifact['teacher'].get('num_layers')}"
    counts = f"{params.get('mimicker', 0):,} mimicker + {params.get('frontend', 0):,} front-end"
    if params.get("teacher_encoder"):
        counts += f" + {params['teacher_encoder']:,} kept teacher-encoder"
    counts += " parameters"
    training = artifact.get("training") or {}
    last = max((h.get("epoch", 0) for h in training.get("history", [])), default=0)
    if training.get("training") == "none":
        step1 = "step 1: none" + ("" if config.classifier_only else f" (random layers, seed {config.seed})")
    elif training.get("selected_by") == "head accuracy" and training.get("best_accuracy") is not None:
        step1 = (f"step 1: best head accuracy {training['best_accuracy']:.4g} "
                 f"({(training.get('eval_head') or {}).get('split', 'dev')}) at epoch {training.get('best_epoch')}/{last}")
    elif training.get("best_loss") is not None:
        which = "val" if training.get("selected_by") == "validation loss" else "train"
        step1 = f"step 1: best {which} loss {training['best_loss']:.5g} at epoch {training.get('best_epoch')}/{last}"
    else:
        step1 = "step 1: no record"
    return f"{path}: {what}; {counts}; {step1}"


def _check_teacher(artifact: dict, path: Path, teacher: Optional[str], teacher_sha256: Optional[str],
                   family: Optional[str]) -> None:
    record = artifact["teacher"]
    if family is not None and family != record.get("family"):
        raise MimicError(
            f"{path} was distilled from a {record.get('family')} teacher, not {family}"
        )
    expected, label = None, ""
    if teacher:
        teacher_path = Path(str(teacher)).expanduser()
        if not teacher_path.is_file():
            from .pruned_upstream import PrunedUpstreamError, resolve_base

            try:
                teacher_path = resolve_base(str(teacher), get_family(record["family"]))
            except PrunedUpstreamError as error:
                raise MimicError(f"cannot check {path} against teacher {teacher!r}: {error}") from None
        label = str(teacher_path)
        # by content where the artifact records it; artifacts from before content_sha256, by the file's bytes
        expected = (checkpoint_sha256(teacher_path, "teacher checkpoint", MimicError) if record.get("content_sha256")
                    else sha256_file(teacher_path))
    elif teacher_sha256:
        expected, label = str(teacher_sha256).lower(), "the given teacher"
    if expected is not None and expected not in (record.get("content_sha256"), record.get("sha256")):
        raise MimicError(
            f"{path} was distilled from teacher {record.get('path')} "
            f"(sha256 {str(record.get('content_sha256') or record.get('sha256'))[:12]}...), "
            f"not from {label} (sha256 {expected[:12]}...)"
        )


def load_mimic_artifact(path: str | os.PathLike, teacher: Optional[str] = None,
                        teacher_sha256: Optional[str] = None, family: Optional[str] = None,
                        compact: Optional[bool] = None) -> MimicUpstream:
    """Rebuild the upstream of a saved artifact; ``teacher`` (path or hub name) / ``teacher_sha256`` check it;
    ``compact`` overrides the config's hidden-state layout."""
    path = Path(path).expanduser()
    artifact = read_artifact(path)
    config = MimicConfig.from_dict(artifact["config"], source=str(path))
    record = artifact["teacher"]
    try:
        num_layers, d = int(record["num_layers"]), int(record["hidden_size"])
        family_name = record["family"]
        get_family(family_name)
    except (KeyError, TypeError, ValueError) as error:
        raise MimicError(f"corrupt mimicker artifact {path}: bad teacher record ({error})") from None
    try:
        targets = config.resolve_targets(num_layers)
        partial = not config.whole_stack(num_layers)
    except MimicError as error:
        raise MimicError(f"{path}: {error}") from None
    if [int(t) for t in artifact["targets"]] != targets:
        raise MimicError(f"corrupt mimicker artifact {path}: targets {artifact['targets']} do not match its config ({targets})")
    try:
        config.check_dims(d)
    except MimicError as error:
        raise MimicError(f"{path}: {error}") from None
    _check_teacher(artifact, path, teacher, teacher_sha256, family)
    frontend = build_frontend(family_name, record["checkpoint_config"], artifact["frontend"])
    mimicker = Mimicker.from_config(config, d)
    try:
        mimicker.load_state_dict(artifact["mimicker"], strict=True)
    except RuntimeError as error:
        raise MimicError(f"corrupt mimicker artifact {path}: weights do not fit its config "
                         f"({str(error).splitlines()[0]})") from None
    encoder = None
    if partial:
        if not isinstance(artifact.get("encoder"), dict):
            raise MimicError(f"corrupt mimicker artifact {path}: span {config.span} but no kept teacher weights "
                             "('encoder')")
        try:
            encoder = build_teacher_encoder(family_name, record["checkpoint_config"], config.resolve_span(num_layers),
                                            num_layers, artifact["encoder"])
        except MimicError as error:
            raise MimicError(f"corrupt mimicker artifact {path}: {error}") from None
    return MimicUpstream(frontend, mimicker, config, teacher=record, targets=targets,
                         training_record=artifact.get("training"), encoder=encoder, compact=compact)


# ---------------------------------------------------------------------------------------------- s3prl entry
UPSTREAM_CONFIG_KEYS = ("artifact", "teacher", "teacher_sha256", "family", "compact")


def _upstream_options(model_config: Optional[str]) -> dict:
    """The optional ``-g`` YAML: artifact (path), teacher (checkpoint path or hub name), teacher_sha256, family,
    compact (true/false: the hidden-state layout, overriding the artifact's)."""
    if not model_config:
        return {}
    import yaml

    path = Path(model_config).expanduser()
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise MimicError(f"cannot read mimic upstream config {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise MimicError(f"{path}: expected a mapping with keys {list(UPSTREAM_CONFIG_KEYS)}")
    unknown = sorted(set(values) - set(UPSTREAM_CONFIG_KEYS))
    if unknown:
        raise MimicError(f"{path}: unknown key(s) {unknown}; valid: {list(UPSTREAM_CONFIG_KEYS)}")
    if values.get("family") is not None:
        get_family(values["family"])
    if values.get("compact") is not None and not isinstance(values["compact"], bool):
        raise MimicError(f"{path}: compact={values['compact']!r} is invalid; valid: true, false or unset")
    return values


def register_mimic_upstreams():
    """Register ``mimic`` and ``mimic_local`` on the registry (one family for wav2vec2, HuBERT and WavLM teachers).

    Both load a saved artifact: ``-k ARTIFACT`` (for ``mimic`` the artifact may instead be named by
    ``artifact:`` in ``-g``). The optional ``-g`` YAML may also name ``teacher:`` (a checkpoint path or hub name
    whose sha256 must match the artifact's teacher), ``teacher_sha256:``, ``family:`` and ``compact:`` (the
    hidden-state layout, overriding the artifact's). No per-family aliases: the artifact records its teacher family.
    """
    from .registry import register_upstream

    def mimic(ckpt: Optional[str] = None, model_config: Optional[str] = None, refresh: bool = False, **kwargs):
        """a mimicking network (teacher front end + 1-2 mimicking layers): -k ARTIFACT.pt or -g CONFIG.yaml"""
        options = _upstream_options(model_config)
        artifact = ckpt or options.get("artifact")
        if not artifact:
            raise MimicError(
                "mimic needs a mimicker artifact: pass -k ARTIFACT.pt (written by "
                "superb_redundancy.mimic_train.train_mimicker) or `artifact: PATH` in -g CONFIG.yaml"
            )
        return load_mimic_artifact(artifact, teacher=options.get("teacher"), teacher_sha256=options.get("teacher_sha256"),
                                   family=options.get("family"), compact=options.get("compact"))

    def mimic_local(ckpt: Optional[str] = None, model_config: Optional[str] = None, refresh: bool = False, **kwargs):
        """a saved mimicker artifact: -k ARTIFACT.pt [-g CONFIG.yaml with teacher: PATH to check against]"""
        options = _upstream_options(model_config)
        if not ckpt:
            raise MimicError("mimic_local needs a mimicker artifact: pass -k ARTIFACT.pt")
        return load_mimic_artifact(ckpt, teacher=options.get("teacher"), teacher_sha256=options.get("teacher_sha256"),
                                   family=options.get("family"), compact=options.get("compact"))

    mimic.__module__ = mimic_local.__module__ = __name__
    mimic.__qualname__ = "mimic"
    mimic_local.__qualname__ = "mimic_local"
    return register_upstream("mimic")(mimic), register_upstream("mimic_local")(mimic_local)
