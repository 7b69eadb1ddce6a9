"""What a mimicker is and how step 1 trains it: :class:`MimicConfig`, and the paper's grids of configurations.

A config is read from YAML (or a study's mapping) through the project's one dataclass loader,
:mod:`superb_redundancy.core.config_io`; every bad value is one :class:`MimicError` line naming it and what is valid.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import yaml

from superb_redundancy.core import files as atomic
from superb_redundancy.core.config_io import from_mapping, read_yaml
from superb_redundancy.distill.errors import MimicError

__all__ = ["MimicError", "MimicConfig", "KINDS", "as_config", "check_unique_names", "cache_layers", "default_layer_i",
           "paper_grid", "tiny_grid", "paper_baselines", "tiny_baselines", "select_configs"]

KINDS = ("linear", "transformer")
#: the ``source`` of a config given as a plain mapping: its errors are raised without a prefix
_DEFAULT_SOURCE = "mimic config"


def _config_error(message: str) -> MimicError:
    """config_io's line about a mapping, as a :class:`MimicError` naming the fields as a mimic config's."""
    return MimicError(message.replace(": unknown field(s) ", ": unknown mimic config field(s) ", 1))


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

    ``normalize_terms`` (default true): each step-1 MSE term is divided by its target's variance over the training
    frames (recorded per term as ``target_variance``), so that every term weighs as the paper's equal-weight sum
    does on its post-LN Base teachers, whose layer outputs all have a comparable scale. On a pre-LN teacher the
    raw residual stream at layer i is tens of times larger than the final output, and the unnormalised sum (``false``,
    the authors' code) is almost only m_f's term.

    ``compact``: which hidden states the upstream returns. Unset: compact for the whole stack (today's
    ``[projected features, m_1, ..., m_N]``), full for a partial span (the L+1 positions a head trained on the
    teacher expects). See :class:`~superb_redundancy.mimic.upstream.MimicUpstream`.
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
    normalize_terms: bool = True

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
        if not isinstance(self.normalize_terms, bool):
            bad("normalize_terms", self.normalize_terms, "true (each term over its target's variance) or false "
                "(the raw sum)")
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
    def from_dict(cls, values: dict, source: str = _DEFAULT_SOURCE) -> "MimicConfig":
        """The config of a mapping (:func:`~superb_redundancy.core.config_io.from_mapping`: a non-mapping or an
        unknown field is one line naming ``source``); a bad value's line is prefixed by ``source`` too."""
        try:
            return from_mapping(cls, values, source, _config_error, expected="a mapping of mimic config fields")
        except MimicError as error:
            # from_mapping's own lines already start with the source; the fields' validation lines do not
            if source == _DEFAULT_SOURCE or str(error).startswith(f"{source}: "):
                raise
            raise MimicError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "MimicConfig":
        values = read_yaml(path, "mimic config", MimicError)
        return cls.from_dict(values or {}, source=str(path))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
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


def cache_layers(config: MimicConfig, num_layers: int) -> list[int]:
    """The layer outputs a configuration reads from the cache: its targets and, for a span starting at i > 0,
    its input (the output of layer i-1)."""
    source = config.input_layer(num_layers)
    return sorted(set(config.resolve_targets(num_layers)) | ({source} if source is not None else set()))


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



def as_config(config: MimicConfig | dict | str | os.PathLike) -> MimicConfig:
    """A :class:`MimicConfig` given as itself, as a mapping of its fields, or as a YAML file."""
    if isinstance(config, dict):
        return MimicConfig.from_dict(config)
    if not isinstance(config, MimicConfig):
        return MimicConfig.from_yaml(config)
    return config


def check_unique_names(names: Sequence[str]) -> None:
    """Refuse configurations whose artifacts (named after them) would overwrite each other."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MimicError(f"configurations with the same name would overwrite each other: {duplicates}")
