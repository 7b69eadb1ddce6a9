"""The s3prl upstream of a mimicking network.

:class:`MimicUpstream` returns ``hidden_states = [projected features, output of mimicking layer 1, ..., output of
layer N]`` for the whole stack, and for a partial span by default the teacher's L+1 positions (see the class).
The bodies of the two hub entries, which load a saved artifact, are in :mod:`superb_redundancy.mimic.artifact`
(``upstreams/mimic/hubconf.py`` defines the entries for s3prl).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from superb_redundancy.core.contract import DOWNSAMPLE_RATE, upstream_output
from superb_redundancy.distill.frontend import FrontendCache, TeacherFrontend
from superb_redundancy.mimic.config import MimicConfig, MimicError
from superb_redundancy.mimic.encoder import TeacherEncoder
from superb_redundancy.mimic.modules import Mimicker
from superb_redundancy.models.families import get_family

__all__ = ["MimicUpstream", "upstream_options", "DOWNSAMPLE_RATE", "UPSTREAM_CONFIG_KEYS"]

UPSTREAM_CONFIG_KEYS = ("artifact", "teacher", "teacher_sha256", "family", "compact", "frozen_frontend")


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
    (``frontend.*``, ``mimicker.*``, ``encoder.*``). After :meth:`freeze_frontend` (``frozen_frontend: true`` in
    ``-g``) only the mimicking layers train under ``-f``, as the paper's step 2 of a non-mimicker does.
    """

    def __init__(self, frontend: TeacherFrontend, mimicker: Mimicker, config: MimicConfig,
                 teacher: Optional[dict] = None, targets: Optional[Sequence[int]] = None,
                 training_record: Optional[dict] = None, encoder: Optional[TeacherEncoder] = None,
                 compact: Optional[bool] = None):
        super().__init__()
        self.frontend = frontend
        self.frozen_frontend = False
        self.frontend_cache: Optional[FrontendCache] = None
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

    def freeze_frontend(self) -> "MimicUpstream":
        """Keep the front end (CNN, LayerNorm, feature projection) out of training: no gradient, never updated."""
        self.frozen_frontend = True
        for parameter in self.frontend.parameters():
            parameter.requires_grad_(False)
        return self

    def cache_frozen_part(self, max_bytes: int, store: Optional[str | Path] = None) -> Optional[FrontendCache]:
        """Keep the CNN's features per clip (our runner's feature cache); None, and nothing kept, where the CNN
        trains (``feature_grad_mult``) or has dropout: its output would then change. ``store``: a folder shared by
        runs, where the features of this teacher's CNN are kept in one file per teacher."""
        cnn = self.frontend.feature_extractor
        if self.frontend.feature_grad_mult > 0 or any(isinstance(m, nn.Dropout) and m.p > 0 for m in cnn.modules()):
            return None
        teacher = self.teacher.get("content_sha256") or self.teacher.get("sha256")
        path = None if store is None or not teacher else Path(store) / f"cnn-{teacher[:20]}.pt"
        self.frontend_cache = FrontendCache(self.frontend, max_bytes, path)
        return self.frontend_cache

    def get_downsample_rates(self, key: str) -> int:
        return DOWNSAMPLE_RATE

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict:
        if len(wavs) == 0:
            raise MimicError("mimic upstream: got an empty batch; pass a list of 1-D 16 kHz waveforms")
        if any(w.dim() != 1 for w in wavs):
            raise MimicError(f"mimic upstream: each waveform must be 1-D, got shapes {[tuple(w.shape) for w in wavs]}")
        if self.frontend.normalize:
            wavs = [F.layer_norm(wav, wav.shape) for wav in wavs]
        if self.frontend_cache is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_frontend):
                features, padding_mask = self.frontend_cache(list(wavs))
        else:
            device = wavs[0].device
            lengths = torch.tensor([len(w) for w in wavs], device=device)
            wav_padding_mask = torch.arange(int(lengths.max()), device=device)[None, :] >= lengths[:, None]
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_frontend):
                features, padding_mask = self.frontend(pad_sequence(list(wavs), batch_first=True),
                                                       wav_padding_mask)
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


def upstream_options(model_config: Optional[str]) -> dict:
    """The optional ``-g`` YAML: artifact (path), teacher (checkpoint path or hub name), teacher_sha256, family,
    compact (true/false: the hidden-state layout, overriding the artifact's), frozen_frontend (true: the front end
    does not train under ``-f``)."""
    if not model_config:
        return {}
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
    for key in ("compact", "frozen_frontend"):
        if values.get(key) is not None and not isinstance(values[key], bool):
            raise MimicError(f"{path}: {key}={values[key]!r} is invalid; valid: true, false or unset")
    return values
