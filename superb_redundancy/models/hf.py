"""Hugging Face wav2vec2 / HuBERT / WavLM folders: loading them, removing layers, running them as s3prl upstreams.

The paper ran facebook/wav2vec2-base, -large, microsoft/wavlm-base and -large through ``transformers``. This
module takes any ``save_pretrained`` folder of those families (a bare model, or one with a head such as
``*ForSequenceClassification`` or ``*ForCTC``) and

- runs it with s3prl's upstream contract (:class:`HFUpstream`, registered as ``-u hf_local -k DIR``):
  ``forward(list of 1-D 16 kHz wavs) -> {"hidden_states": L+1 tensors [B, T, D]}``, 320 samples per frame;
- removes transformer layers from a loaded model (:func:`drop_hf_layers`, see "Removing layers" below).

Writing a pruned folder (and ``superb-redundancy prune`` on an HF base) is :mod:`superb_redundancy.pruning.hf`;
conversion between s3prl-format checkpoints and these folders is :mod:`superb_redundancy.models.hf_convert`.

Hidden-state indexing (the same as s3prl's fairseq experts and :mod:`superb_redundancy.analysis.report`)
-----------------------------------------------------------------------------------------------
``hidden_states[l]`` for ``l < L`` is the **input of transformer layer l**; ``hidden_states[L]`` is the
**encoder output**. Concretely, with transformers 5.x:

- entry 0 is what enters layer 0: CNN features -> feature projection -> (padded frames zeroed) -> + positional
  conv embedding, then, for post-LN models (``do_stable_layer_norm: false``: wav2vec2-base, HuBERT base,
  WavLM base), the encoder LayerNorm. Pre-LN ("stable layer norm") models (wav2vec2-large-lv60, WavLM large)
  apply no norm here. Entries 0..L-1 are transformers' own ``output_hidden_states`` unchanged.
- entry L: for post-LN models the output of the last layer (= transformers' ``hidden_states[-1]`` =
  ``last_hidden_state``). For pre-LN models it is ``last_hidden_state``, i.e. with the encoder's final
  LayerNorm applied, as in s3prl's fairseq experts and in transformers 4.x. **transformers 5.x changed this:**
  its ``hidden_states[-1]`` of a stable-layer-norm model is now the last layer's raw output (before the final
  LayerNorm), so for those models our last entry differs from transformers' (and from s3prl's
  ``hf_*_custom`` experts, which return transformers' tuple as is) and equals ``last_hidden_state``.

Input preparation follows the folder's ``preprocessor_config.json`` (a ``Wav2Vec2FeatureExtractor``): with
``do_normalize`` each clip is normalised to zero mean, unit variance **over its own samples** (never the
padding), then zero-padded. The attention mask is passed to the model when the feature extractor's
``return_attention_mask`` is true, or when there is no ``preprocessor_config.json`` (then ``do_normalize`` is
true as well: transformers' defaults, with the mask). Models trained without a mask (wav2vec2-base ships
``return_attention_mask: false``) therefore get zero padding and no mask, as their model card asks; s3prl's own
``hf_*_custom`` experts always pass the mask.

Removing layers
---------------
Layers are removed from ``base_model.encoder.layers`` (renumbered 0..K-1), ``config.num_hidden_layers`` becomes
K. WavLM gives the relative-position bias table (``attention.rel_attn_embed``) to layer 0 only, and layer 0
hands the bias it computes to every later layer; when layer 0 is dropped the table moves to the new first layer,
so the pruned model computes the very bias the original did (and is a standard WavLM checkpoint again).
A pruned model is exactly the original with the dropped layers made identity. Heads are kept as they are; a
weighted layer sum (``layer_weights``, one weight per hidden state) is folded so the head computes what it did
on the original with the dropped layers made identity (a dropped layer's output repeats its input, so their
softmax weights merge by logsumexp).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.contract import DOWNSAMPLE_RATE, upstream_output
from superb_redundancy.core.errors import UserError

__all__ = [
    "HF_MODEL_TYPES",
    "HFModelError",
    "HFUpstream",
    "is_hf_model_dir",
    "read_hf_config",
    "default_feature_extractor",
    "load_feature_extractor",
    "load_hf_model",
    "resolve_dropped",
    "drop_hf_layers",
    "PRUNING_RECORD",
    "FEATURE_EXTRACTOR_FILE",
]

#: config.json model_type values this module handles
HF_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
#: provenance written next to a pruned (or converted) model's config.json
PRUNING_RECORD = "superb_redundancy_pruning.json"
#: the feature extractor's file in a save_pretrained folder
FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"


class HFModelError(UserError):
    """Not a usable Hugging Face wav2vec2 / HuBERT / WavLM folder, or a bad pruning request for one."""


# ---------------------------------------------------------------------------------------------- folders
def _config_path(path) -> Optional[Path]:
    if path is None:
        return None
    try:
        path = Path(path).expanduser()
    except TypeError:
        return None
    return path / "config.json" if path.is_dir() else None


def is_hf_model_dir(path) -> bool:
    """True for a ``save_pretrained`` folder whose config.json has model_type wav2vec2, hubert or wavlm."""
    config = _config_path(path)
    if config is None or not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") in HF_MODEL_TYPES


def read_hf_config(path) -> dict:
    """config.json of an HF folder as a dict; :class:`HFModelError` saying what is wrong otherwise."""
    if path is None or str(path) == "":
        raise HFModelError("no Hugging Face model folder given (pass -k DIR: a save_pretrained folder)")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise HFModelError(f"Hugging Face model folder not found: {folder}")
    if not folder.is_dir():
        raise HFModelError(f"{folder} is a file, not a Hugging Face save_pretrained folder (with config.json)")
    config = folder / "config.json"
    if not config.is_file():
        raise HFModelError(f"{folder} has no config.json: not a Hugging Face save_pretrained folder")
    try:
        data = json.loads(config.read_text())
    except ValueError as error:
        raise HFModelError(f"{config} is not valid JSON: {error}") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in HF_MODEL_TYPES:
        raise HFModelError(f"{folder}: model_type {model_type!r} is not supported; valid: {list(HF_MODEL_TYPES)}")
    if data.get("add_adapter"):
        raise HFModelError(f"{folder}: models with add_adapter=true change the frame rate; not supported")
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json",
                                                       "pytorch_model.bin", "pytorch_model.bin.index.json")):
        raise HFModelError(f"{folder} has a config.json but no weights (model.safetensors / pytorch_model.bin)")
    return data


def default_feature_extractor():
    """transformers' Wav2Vec2FeatureExtractor defaults at 16 kHz, with the attention mask on."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=True, return_attention_mask=True)


def load_feature_extractor(path):
    """The folder's Wav2Vec2FeatureExtractor (preprocessor_config.json), else :func:`default_feature_extractor`."""
    from transformers import Wav2Vec2FeatureExtractor

    folder = Path(path).expanduser()
    if not (folder / FEATURE_EXTRACTOR_FILE).is_file():
        return default_feature_extractor()
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
    if extractor.sampling_rate != SAMPLE_RATE:
        raise HFModelError(f"{folder}: the feature extractor expects {extractor.sampling_rate} Hz; s3prl feeds "
                           f"{SAMPLE_RATE} Hz audio")
    return extractor


def _model_class(config: dict, with_head: bool):
    """The class to load a folder with: its saved architecture (head included) or the family's base model."""
    import transformers

    if with_head:
        for name in config.get("architectures") or []:
            cls = getattr(transformers, name, None)
            if cls is not None:
                return cls
    return transformers.AutoModel


def load_hf_model(path, with_head: bool = False):
    """Load an HF folder in eval mode: the base model (default), or the saved architecture with its head."""
    config = read_hf_config(path)
    model = _model_class(config, with_head).from_pretrained(str(Path(path).expanduser()))
    return model.eval()


def _base(model: nn.Module) -> nn.Module:
    return getattr(model, "base_model", model)


def _layers(model: nn.Module) -> nn.ModuleList:
    encoder = getattr(_base(model), "encoder", None)
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise HFModelError(f"{type(model).__name__} has no encoder.layers to prune")
    return layers


# ---------------------------------------------------------------------------------------------- layer surgery
def resolve_dropped(drop: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """The sorted 0-based layers ``drop`` names in a stack of ``num_layers``; :class:`HFModelError` (one line, the
    wording of a prune spec's ``drop_layers`` check) for a non-integer, repeated or out-of-range index, or for
    dropping every layer. A :class:`~superb_redundancy.pruning.spec.PruneSpec` is resolved by
    :mod:`superb_redundancy.pruning.hf`: this layer knows no specs."""
    drop = tuple(drop)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in drop):
        raise HFModelError(f"drop_layers must be a list of 0-based layer indices, got {drop!r}")
    duplicates = sorted({i for i in drop if drop.count(i) > 1})
    if duplicates:
        raise HFModelError(f"drop_layers lists layer(s) {duplicates} more than once: {list(drop)}")
    bad = [i for i in drop if not 0 <= i < num_layers]
    if bad:
        raise HFModelError(f"drop_layers {bad} out of range: this model has {num_layers} transformer layers "
                           f"(valid 0..{num_layers - 1})")
    if len(drop) == num_layers:
        raise HFModelError(f"the spec drops all {num_layers} transformer layers; keep at least one "
                           "(a model without its stack is a mimicker with zero layers, not a pruned model)")
    return tuple(sorted(drop))


def _kept(dropped: Sequence[int], num_layers: int) -> tuple[int, ...]:
    return tuple(i for i in range(num_layers) if i not in set(dropped))


def _entry_of_state(kept: Sequence[int], num_layers: int) -> list[int]:
    """For each original hidden state h = 0..L (input of layer h; L the output), the pruned model's entry
    holding it when the layers not in ``kept`` are removed: the number of kept layers before h."""
    kept = set(kept)
    return [sum(1 for i in range(h) if i in kept) for h in range(num_layers + 1)]


def drop_hf_layers(model: nn.Module, dropped: Sequence[int]) -> nn.Module:
    """Remove ``dropped`` transformer layers in place (checked by :func:`resolve_dropped`); returns the model.

    Works on a base model or one with a head. Moves WavLM's relative-position table to the new first layer when
    layer 0 goes, shrinks a weighted-layer-sum head's ``layer_weights``, and sets ``config.num_hidden_layers``.
    """
    layers = _layers(model)
    num_layers = len(layers)
    dropped = resolve_dropped(dropped, num_layers)
    if not dropped:
        return model
    kept = _kept(dropped, num_layers)
    first_attention = getattr(layers[0], "attention", None)
    table = getattr(first_attention, "rel_attn_embed", None)
    if table is not None and 0 in dropped:
        target = layers[kept[0]].attention
        if getattr(target, "rel_attn_embed", None) is None:
            target.rel_attn_embed = table  # WavLM: the new first layer computes the bias for all the others
    new_layers = nn.ModuleList([layers[i] for i in kept])
    _base(model).encoder.layers = new_layers
    # A head's weighted layer sum (softmax over L+1 weights, one per hidden state): in the original with the
    # dropped layers made identity, hidden state h equals entry source[h] of the pruned model, so each pruned
    # entry takes the logsumexp of the weights of the states it stands for. The head's output is unchanged.
    weights = getattr(model, "layer_weights", None)
    if isinstance(weights, nn.Parameter) and weights.numel() == num_layers + 1:
        source = torch.tensor(_entry_of_state(kept, num_layers))
        merged = torch.stack([torch.logsumexp(weights.detach()[source == e], dim=0) for e in range(len(kept) + 1)])
        model.layer_weights = nn.Parameter(merged.to(weights.dtype), requires_grad=weights.requires_grad)
    for config in {id(c): c for c in (model.config, _base(model).config)}.values():
        config.num_hidden_layers = len(kept)
    # transformers installs its hidden-state hooks once, per layer module; the kept modules keep theirs.
    return model


# ---------------------------------------------------------------------------------------------- the upstream
class HFUpstream(nn.Module):
    """An HF wav2vec2 / HuBERT / WavLM folder (or loaded model) behind s3prl's upstream contract.

    ``HFUpstream(DIR)`` loads the base model (a head in the folder is ignored). ``forward(wavs)`` returns
    ``{"hidden_states": [...], "last_hidden_state": ..., "hidden_state_<i>": ...}`` with L+1 entries indexed as
    the module docstring describes. ``drop_layers`` removes layers in memory (K+1 entries then: input of the
    stack, outputs of the kept layers, the last one the encoder output), or, with ``full_positions``, still L+1
    entries at the original positions, a dropped layer's entry repeating its input (like PrunedUpstream's
    default). ``normalize`` / ``attention_mask`` override the feature extractor's ``do_normalize`` /
    ``return_attention_mask``.
    """

    def __init__(self, path=None, *, model: Optional[nn.Module] = None, feature_extractor=None,
                 drop_layers: Sequence[int] = (), full_positions: bool = False, normalize: Optional[bool] = None,
                 attention_mask: Optional[bool] = None):
        super().__init__()
        if path is not None and model is not None:
            raise HFModelError("HFUpstream takes a save_pretrained folder or a loaded model, not both")
        if model is None:  # no folder either: read_hf_config says what to pass
            model = load_hf_model(path)
            if feature_extractor is None:
                feature_extractor = load_feature_extractor(path)
        model = _base(model)
        if getattr(model.config, "model_type", None) not in HF_MODEL_TYPES:
            raise HFModelError(f"{type(model).__name__} is not a {'/'.join(HF_MODEL_TYPES)} model")
        if getattr(model.config, "add_adapter", False):
            raise HFModelError("models with add_adapter=true change the frame rate; not supported")
        num_layers = len(_layers(model))
        drop_layers = [i.item() if hasattr(i, "item") else i for i in drop_layers]  # numpy / torch scalars
        dropped = resolve_dropped(drop_layers, num_layers) if drop_layers else ()
        self.model = drop_hf_layers(model, dropped) if dropped else model
        # original hidden state h -> the entry of the (pruned) model that holds it; None: compact output
        self._positions = None
        if dropped and full_positions:
            self._positions = _entry_of_state(_kept(dropped, num_layers), num_layers)[:-1]
        self.extractor = feature_extractor if feature_extractor is not None else default_feature_extractor()
        self.normalize = bool(self.extractor.do_normalize if normalize is None else normalize)
        self.use_attention_mask = bool(self.extractor.return_attention_mask if attention_mask is None
                                       else attention_mask)
        self.source = None if path is None else str(path)
        self.pre_ln = bool(getattr(self.model.config, "do_stable_layer_norm", False))

    @property
    def num_layers(self) -> int:
        return len(_layers(self.model))

    def get_downsample_rates(self, key: str = None) -> int:
        return DOWNSAMPLE_RATE

    def prepare(self, wavs: Sequence[torch.Tensor]) -> dict:
        """``input_values`` [B, N] (normalised per clip if asked, zero-padded) and, if used, ``attention_mask``."""
        if len(wavs) == 0:
            raise ValueError("got no waveforms")
        parameter = next(self.model.parameters())
        arrays = []
        for wav in wavs:
            wav = torch.as_tensor(wav)
            if wav.dim() != 1:
                raise ValueError(f"each waveform must be 1-D (16 kHz mono samples), got shape {tuple(wav.shape)}")
            arrays.append(wav.detach().to("cpu", torch.float32).numpy())
        was = self.extractor.do_normalize
        self.extractor.do_normalize = self.normalize
        try:
            # Always ask for the mask: with it, normalisation uses each clip's own samples, not the padding.
            batch = self.extractor(arrays, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=True,
                                   return_tensors="pt")
        finally:
            self.extractor.do_normalize = was
        inputs = {"input_values": batch["input_values"].to(parameter.device, parameter.dtype)}
        if self.use_attention_mask:
            inputs["attention_mask"] = batch["attention_mask"].to(parameter.device)
        return inputs

    def forward(self, wavs: Sequence[torch.Tensor]) -> dict:
        outputs = self.model(**self.prepare(wavs), output_hidden_states=True, return_dict=True)
        hidden_states = list(outputs.hidden_states)
        if self._positions is not None:
            hidden_states = [hidden_states[i] for i in self._positions] + [hidden_states[-1]]
        if self.pre_ln:  # transformers 5 leaves the final LayerNorm off hidden_states[-1]; s3prl's index has it
            hidden_states[-1] = outputs.last_hidden_state
        return upstream_output(hidden_states)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, layers={self.num_layers}, pre_ln={self.pre_ln}, "
                f"normalize={self.normalize}, attention_mask={self.use_attention_mask}")
