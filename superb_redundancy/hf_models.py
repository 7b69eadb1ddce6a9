"""Hugging Face wav2vec2 / HuBERT / WavLM models as s3prl upstreams, and layer pruning of their checkpoints.

The paper ran facebook/wav2vec2-base, -large, microsoft/wavlm-base and -large through ``transformers``. This
module takes any ``save_pretrained`` folder of those families (a bare model, or one with a head such as
``*ForSequenceClassification`` or ``*ForCTC``) and

- runs it with s3prl's upstream contract (:class:`HFUpstream`, registered as ``-u hf_local -k DIR``):
  ``forward(list of 1-D 16 kHz wavs) -> {"hidden_states": L+1 tensors [B, T, D]}``, 320 samples per frame;
- writes a copy with transformer layers removed (:func:`prune_hf_model`), which plain
  ``transformers.AutoModel.from_pretrained`` and s3prl's ``hf_wav2vec2_custom`` / ``hf_hubert_custom`` load;
- runs the similarity analysis and pruning plan on it for ``superb-redundancy prune`` (:func:`prune_hf_cli`);
- converts s3prl-format wav2vec2 / HuBERT checkpoints (stock, or pruned artifacts: their K kept layers) to such
  folders with a model card, and folders back to s3prl's format (:func:`s3prl_to_hf`, :func:`hf_to_s3prl`; the
  fairseq weight names renamed one to one, see ``_WEIGHT_RULES``).

Hidden-state indexing (the same as s3prl's fairseq experts and :mod:`superb_redundancy.analysis`)
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

Pruning
-------
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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .prune_spec import PruneSpec, PruneSpecError, kept_layers
from .registry import upstream_output

__all__ = [
    "HF_MODEL_TYPES",
    "HFModelError",
    "HFUpstream",
    "is_hf_model_dir",
    "read_hf_config",
    "load_feature_extractor",
    "load_hf_model",
    "drop_hf_layers",
    "prune_hf_model",
    "prune_hf_cli",
    "PRUNING_RECORD",
    "CONVERTIBLE_FAMILIES",
    "s3prl_to_hf",
    "hf_to_s3prl",
]

#: config.json model_type values this module handles
HF_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
#: provenance written next to a pruned model's config.json
PRUNING_RECORD = "superb_redundancy_pruning.json"
SAMPLE_RATE = 16000
DOWNSAMPLE_RATE = 320  # total conv stride of every wav2vec2-family feature encoder s3prl knows
_FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"
#: tokenizer files of a *ForCTC folder, copied to the pruned folder so it stays usable with its processor
_TOKENIZER_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "tokenizer.json")


class HFModelError(ValueError):
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
    if not (folder / _FEATURE_EXTRACTOR_FILE).is_file():
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


def _resolve(drop: Sequence[int] | PruneSpec, num_layers: int) -> tuple[int, ...]:
    try:
        spec = drop if isinstance(drop, PruneSpec) else PruneSpec(drop_layers=tuple(drop))
        return spec.resolve(num_layers)
    except PruneSpecError as error:
        raise HFModelError(str(error)) from None


def _entry_of_state(kept: Sequence[int], num_layers: int) -> list[int]:
    """For each original hidden state h = 0..L (input of layer h; L the output), the pruned model's entry
    holding it when the layers not in ``kept`` are removed: the number of kept layers before h."""
    kept = set(kept)
    return [sum(1 for i in range(h) if i in kept) for h in range(num_layers + 1)]


def drop_hf_layers(model: nn.Module, dropped: Sequence[int]) -> nn.Module:
    """Remove ``dropped`` transformer layers in place (validated like a prune spec); returns the model.

    Works on a base model or one with a head. Moves WavLM's relative-position table to the new first layer when
    layer 0 goes, shrinks a weighted-layer-sum head's ``layer_weights``, and sets ``config.num_hidden_layers``.
    """
    layers = _layers(model)
    num_layers = len(layers)
    dropped = _resolve(list(dropped), num_layers)
    if not dropped:
        return model
    kept = kept_layers(dropped, num_layers)
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
        dropped = _resolve(drop_layers, num_layers) if drop_layers else ()
        self.model = drop_hf_layers(model, dropped) if dropped else model
        # original hidden state h -> the entry of the (pruned) model that holds it; None: compact output
        self._positions = None
        if dropped and full_positions:
            self._positions = _entry_of_state(kept_layers(dropped, num_layers), num_layers)[:-1]
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


# ---------------------------------------------------------------------------------------------- pruning
def prune_hf_model(src_dir, drop_layers: Sequence[int] | PruneSpec, dst_dir, overwrite: bool = False,
                   notes: Optional[dict] = None) -> Path:
    """Write ``src_dir`` with ``drop_layers`` removed to ``dst_dir`` (save_pretrained, safetensors); returns it.

    ``drop_layers`` is a list of 0-based layers or a :class:`PruneSpec` (drop_layers or keep_layers), checked
    with :meth:`PruneSpec.resolve` before any weights load. The saved architecture (a head included) is kept.
    The feature extractor is copied, or a default one written if the source had none (so s3prl's
    ``hf_*_custom`` never turns to the Hub). The folder appears atomically (written beside it, then renamed);
    an existing non-empty ``dst_dir`` is an error unless ``overwrite``.
    """
    src = Path(src_dir).expanduser()
    config = read_hf_config(src)
    num_layers = int(config.get("num_hidden_layers", 0))
    dropped = _resolve(drop_layers, num_layers)
    dst = Path(dst_dir).expanduser()
    if dst.resolve() == src.resolve():
        raise HFModelError(f"the pruned model must go to a new folder, not over its source {src}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise HFModelError(f"{dst} exists and is not empty; choose a new folder (or pass overwrite=True)")

    extractor = load_feature_extractor(src)
    model = load_hf_model(src, with_head=True)
    drop_hf_layers(model, dropped)

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        model.save_pretrained(str(tmp))
        extractor.save_pretrained(str(tmp))
        for name in _TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        record = {
            "source": str(src.resolve()),
            "model_type": config["model_type"],
            "num_layers": num_layers,
            "dropped_layers": list(dropped),
            "kept_layers": list(kept_layers(dropped, num_layers)),
            "feature_extractor": "copied" if (src / _FEATURE_EXTRACTOR_FILE).is_file() else "default written",
            "notes": dict(notes or {}),
        }
        (tmp / PRUNING_RECORD).write_text(json.dumps(record, indent=1))
        _swap_in(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def prune_hf_cli(args) -> int:
    """``superb-redundancy prune --base HF_DIR ... --output-dir OUT``: analyse, plan, write the pruned folder.

    Reads the ``prune`` subcommand's arguments (base, objective, amount, similarity, data, limit, seed, device,
    iterative, allow_first, output, artifact, family, output_dir). The similarity report (given with
    ``--similarity`` or computed from ``--data``) must index this model's L+1 hidden states.
    """
    from .analysis import SimilarityReport, SimilaritySettings, analyse, plan_pruning
    from .features import list_audio

    base = Path(args.base).expanduser()
    config = read_hf_config(base)
    family = getattr(args, "family", None)
    if family and family != config["model_type"]:
        raise HFModelError(f"--family {family} does not match {base} (model_type {config['model_type']!r})")
    output_dir = getattr(args, "output_dir", None)
    if not output_dir:
        raise ValueError("an HF base is pruned into a new save_pretrained folder: give --output-dir DIR")
    existing = Path(output_dir).expanduser()
    if existing.exists() and (not existing.is_dir() or any(existing.iterdir())):
        raise ValueError(f"--output-dir {existing} exists and is not empty; choose a new folder")
    if getattr(args, "artifact", None):
        raise ValueError("--artifact writes s3prl-format checkpoints; for an HF base use --output-dir DIR")
    num_layers = int(config["num_hidden_layers"])
    data = getattr(args, "data", None)
    files = list_audio(data, limit=getattr(args, "limit", None), seed=getattr(args, "seed", 0)) if data else None
    report = None
    if getattr(args, "similarity", None):
        report = SimilarityReport.load(args.similarity)
        if report.num_layers != num_layers:
            raise ValueError(f"the similarity report indexes {report.num_layers} layers; {base} has {num_layers}")
        settings = report.settings
    elif files is None:
        raise ValueError("give --similarity REPORT (from `superb-redundancy similarity`) or --data AUDIO_DIR")
    else:
        settings = SimilaritySettings()
    if getattr(args, "iterative", False) and files is None:
        raise ValueError("--iterative recomputes scores on the pruned model: it needs --data AUDIO_DIR")
    device = getattr(args, "device", "cpu") or "cpu"
    source = {"upstream": "hf_local", "ckpt": str(base), "data": None if data is None else str(data)}

    def analyse_with(dropped: list[int]) -> SimilarityReport:
        # full positions: L+1 states (a dropped layer's output repeats its input), so scores index layers as before
        upstream = HFUpstream(base, drop_layers=dropped, full_positions=True)
        return analyse(upstream, files, settings, device=device, source=source)

    if report is None:
        report = analyse_with([])
    plan = plan_pruning(report, args.objective, args.amount, keep_first=not getattr(args, "allow_first", False),
                        reanalyse=analyse_with if getattr(args, "iterative", False) else None)
    print(plan.describe())
    notes = {"objective": plan.objective, "iterative": plan.iterative, "amount": args.amount,
             "order": plan.order, "scores": plan.scores}
    spec = PruneSpec(base=str(base), drop_layers=plan.drop_layers, notes=notes)
    if getattr(args, "output", None):
        print(f"prune spec (record of the plan): {spec.to_yaml(args.output)}")
    path = prune_hf_model(base, spec, output_dir, notes=notes)
    print(f"pruned model: {path}  ({num_layers - len(plan.drop_layers)} of {num_layers} layers; "
          f"use: -u hf_local -k {path}, or transformers.AutoModel.from_pretrained)")
    return 0


# ---------------------------------------------------------------------------------------------- s3prl format <-> HF
#: s3prl-format families that convert to / from transformers' classes (same layer layout, renamed weights)
CONVERTIBLE_FAMILIES = {"wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"), "hubert": ("HubertConfig", "HubertModel")}
#: the model card written into a converted folder
MODEL_CARD = "README.md"
#: fairseq weight name -> transformers weight name (regex, replacement); the positional conv's weight-norm pair is
#: named after what the installed transformers builds (parametrizations.weight.original0/1, or weight_g/weight_v)
_WEIGHT_RULES = (
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", r"encoder.pos_conv_embed.conv.{weight_g}"),
    (r"encoder\.pos_conv\.0\.weight_v", r"encoder.pos_conv_embed.conv.{weight_v}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
)
#: fairseq pretraining heads transformers' base models do not have (left out; filled afresh on the way back)
_PRETRAINING_ONLY = ("quantizer.", "project_q.", "final_proj.", "label_embs_concat", "target_glu.", "project_inp.")


def _weight_norm_names(hf_keys) -> dict:
    parametrized = "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in hf_keys
    return ({"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
            if parametrized else {"weight_g": "weight_g", "weight_v": "weight_v"})


def _fairseq_to_hf_name(name: str, names: dict) -> Optional[str]:
    import re

    for pattern, replacement in _WEIGHT_RULES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement.format(**names), name)
    return None


def _s3prl_config(checkpoint: dict, family) -> tuple:
    """s3prl's config dataclass of a stock checkpoint and its task's normalize flag."""
    from s3prl.upstream.utils import merge_with_parent

    if family.name == "wav2vec2":
        from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig, Wav2Vec2Config

        cfg = merge_with_parent(Wav2Vec2Config, dict(checkpoint["model_cfg"]))
        task = merge_with_parent(AudioPretrainingConfig, dict(checkpoint["task_cfg"]))
    else:
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertPretrainingConfig

        cfg = merge_with_parent(HubertConfig, dict(checkpoint["model_cfg"]))
        task = merge_with_parent(HubertPretrainingConfig, dict(checkpoint["task_cfg"]))
    return cfg, bool(task.normalize)


def _hf_config(cfg, family, where: str):
    """transformers' config for an s3prl (fairseq) config; HFModelError for what transformers cannot express."""
    import transformers

    unsupported = []
    if str(cfg.layer_type) != "transformer":
        unsupported.append(f"layer_type {cfg.layer_type}")
    if str(cfg.activation_fn) != "gelu":
        unsupported.append(f"activation_fn {cfg.activation_fn}")
    if int(getattr(cfg, "pos_conv_depth", 1)) != 1:
        unsupported.append(f"pos_conv_depth {cfg.pos_conv_depth}")
    if int(getattr(cfg, "crop_seq_to_multiple", 1)) != 1:
        unsupported.append(f"crop_seq_to_multiple {cfg.crop_seq_to_multiple}")
    if getattr(cfg, "quantize_input", False):
        unsupported.append("quantize_input")
    if unsupported:
        raise HFModelError(f"{where}: transformers' {family.name} model has no {', '.join(unsupported)}")
    conv = eval(str(cfg.conv_feature_layers))  # s3prl's own config string, as its model class evaluates it
    config_class = getattr(transformers, CONVERTIBLE_FAMILIES[family.name][0])
    return config_class(
        hidden_size=int(cfg.encoder_embed_dim), num_hidden_layers=int(cfg.encoder_layers),
        num_attention_heads=int(cfg.encoder_attention_heads), intermediate_size=int(cfg.encoder_ffn_embed_dim),
        hidden_act="gelu", feat_extract_activation="gelu",
        conv_dim=[int(c[0]) for c in conv], conv_kernel=[int(c[1]) for c in conv], conv_stride=[int(c[2]) for c in conv],
        conv_bias=bool(cfg.conv_bias), feat_extract_norm="group" if str(cfg.extractor_mode) == "default" else "layer",
        do_stable_layer_norm=bool(cfg.layer_norm_first),
        num_conv_pos_embeddings=int(cfg.conv_pos), num_conv_pos_embedding_groups=int(cfg.conv_pos_groups),
        hidden_dropout=float(cfg.dropout), attention_dropout=float(cfg.attention_dropout),
        activation_dropout=float(cfg.activation_dropout), feat_proj_dropout=float(cfg.dropout_input),
        layerdrop=float(cfg.encoder_layerdrop), layer_norm_eps=1e-5,
        architectures=[CONVERTIBLE_FAMILIES[family.name][1]],
    )


def _model_card(name: str, family: str, meta: Optional[dict], source: str, num_layers: int, tolerance: str) -> str:
    lines = ["---", "library_name: transformers", "tags:", "- audio", "- speech", f"- {family}",
             "- superb-redundancy"]
    if meta:
        lines.append("- layer-pruning")
    lines += ["---", "", f"# {name}", ""]
    if meta:
        base = (meta.get("spec") or {}).get("base")
        dropped, kept, total = meta.get("dropped_layers", []), meta.get("kept_layers", []), meta.get("num_layers")
        lines += [f"A {family} model with **{len(kept)} of the {total} transformer layers** of its base: layers "
                  f"{dropped} (0-based, of the base) were dropped, layers {kept} kept and renumbered 0..{len(kept) - 1}.",
                  "", f"- Base: `{base}` (content sha256 `{meta.get('base_model_sha256', '?')}`)",
                  f"- Dropped layers: {dropped}", f"- Kept layers: {kept}",
                  f"- `config.num_hidden_layers`: {len(kept)} (the base has {total})"]
        spec = meta.get("spec") or {}
        notes = spec.get("notes") or {}
        if notes.get("objective"):
            lines.append(f"- Chosen by: {notes['objective']} (superb-redundancy prune)")
    else:
        lines += [f"A {family} model with {num_layers} transformer layers (nothing dropped)."]
    finetuned = (meta or {}).get("finetuned")
    if finetuned:
        lines.append(f"- Fine-tuned (s3prl `-f`, task {finetuned.get('downstream')}, step {finetuned.get('step')}) "
                     f"in `{finetuned.get('expdir')}`")
    lines += ["", f"Converted from the s3prl-format checkpoint `{source}` by superb-redundancy "
              "(`superb-redundancy export ... --format hf`). Pretraining-only heads (quantizer, project_q, final_proj, "
              "label embeddings) are left out.", "",
              f"Hidden states: `output_hidden_states=True` gives {num_layers + 1} entries (the input of the stack, then "
              "each layer's output). They equal s3prl's (`pruned_<family>_local -k ARTIFACT` with `compact: true`, or "
              f"`{family}_local -k ARTIFACT`) within {tolerance}, with the attention mask this folder's "
              "feature extractor asks for." + (_HUBERT_PADDING if family == "hubert" else "") + " The dropped layers' "
              "positions are not kept here: a downstream head trained on the full model's L+1 states needs s3prl's "
              "pruned upstream, which keeps them.", "", "```python",
              "import torch", f"from transformers import AutoModel, Wav2Vec2FeatureExtractor", "",
              f'model = AutoModel.from_pretrained("{name}").eval()',
              f'extractor = Wav2Vec2FeatureExtractor.from_pretrained("{name}")',
              "inputs = extractor([torch.randn(16000).numpy()], sampling_rate=16000, return_tensors=\"pt\")",
              "hidden_states = model(**inputs, output_hidden_states=True).hidden_states", "```", ""]
    return "\n".join(lines)


#: how close a converted model's hidden states are to s3prl's (float32, CPU). Measured on the tiny models: equal
#: bit for bit without waveform normalisation; with it (task normalize: true) up to ~3e-6, as transformers
#: normalises with eps 1e-7 and s3prl with layer_norm's 1e-5
CONVERSION_TOLERANCE = "atol 1e-4, rtol 1e-4 (float32)"
_HUBERT_PADDING = (" In padded batches s3prl's HuBERT counts a frame as padding only when all its samples are, "
                   "transformers from the convolution's output length, so a shorter clip can have one frame more in "
                   "s3prl and its states then differ; single clips and equal lengths agree.")


def s3prl_to_hf(checkpoint_path, dst_dir, overwrite: bool = False, checkpoint: Optional[dict] = None,
                source_label: Optional[str] = None) -> Path:
    """Write an s3prl-format wav2vec2 / HuBERT checkpoint (stock, or a pruned artifact: its K kept layers) as a
    ``save_pretrained`` folder transformers' ``Wav2Vec2Model`` / ``HubertModel`` (and ``hf_local``) load, with a
    feature extractor, a ``README.md`` model card (what was dropped, from which base) and the pruning record.

    ``checkpoint``: the loaded checkpoint, if already in memory (``checkpoint_path`` then only names it). Checks
    everything (family, config transformers can express, every weight mapped) before writing; the folder appears
    atomically; an existing non-empty ``dst_dir`` is an error unless ``overwrite``.
    """
    import transformers

    from .bundles import check_checkpoint
    from .files import load_checkpoint

    source = str(source_label or checkpoint_path)
    if checkpoint is None:
        checkpoint = load_checkpoint(checkpoint_path, "checkpoint", HFModelError)
    family = check_checkpoint(checkpoint, source, error=HFModelError)
    if family.name not in CONVERTIBLE_FAMILIES:
        raise HFModelError(f"{source} is a {family.name} checkpoint; conversion to transformers covers "
                           f"{', '.join(CONVERTIBLE_FAMILIES)}")
    dst = Path(dst_dir).expanduser()
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise HFModelError(f"{dst} exists and is not empty; choose a new folder (or pass overwrite=True)")
    cfg, normalize = _s3prl_config(checkpoint, family)
    config = _hf_config(cfg, family, source)
    model = getattr(transformers, CONVERTIBLE_FAMILIES[family.name][1])(config)
    hf_keys = set(model.state_dict())
    names = _weight_norm_names(hf_keys)
    state, left_out, unknown = {}, [], []
    for key, value in checkpoint[family.weights_key].items():
        target = _fairseq_to_hf_name(key, names)
        if target is None:
            (left_out if key.startswith(_PRETRAINING_ONLY) else unknown).append(key)
        elif target in hf_keys:
            state[target] = value
        elif target == "masked_spec_embed":
            left_out.append(key)  # a config without time masking has no mask embedding
        else:
            unknown.append(key)
    projection = ("feature_projection.projection.weight", "feature_projection.projection.bias")
    if "post_extract_proj.weight" not in checkpoint[family.weights_key] and all(k in hf_keys for k in projection):
        # fairseq has no feature projection when the CNN's width is the model's; transformers always has one
        size = int(cfg.encoder_embed_dim)
        state[projection[0]], state[projection[1]] = torch.eye(size), torch.zeros(size)
    missing = sorted(hf_keys - set(state))
    if unknown or missing:
        raise HFModelError(f"{source}: {len(unknown)} weight(s) without a transformers name (e.g. "
                           f"{(unknown or ['-'])[0]}), {len(missing)} transformers weight(s) not in it (e.g. "
                           f"{(missing or ['-'])[0]})")
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = checkpoint.get("superb_redundancy") if isinstance(checkpoint.get("superb_redundancy"), dict) else None
    if meta is not None and meta.get("kind") != "pruned_upstream":
        meta = None
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                                      do_normalize=normalize, return_attention_mask=True)
    record = {
        "source": source,
        "converted_from": "s3prl",
        "model_type": config.model_type,
        "num_layers": int(meta["num_layers"]) if meta else int(cfg.encoder_layers),
        "dropped_layers": list(meta["dropped_layers"]) if meta else [],
        "kept_layers": list(meta["kept_layers"]) if meta else list(range(int(cfg.encoder_layers))),
        "feature_extractor": "written (s3prl's normalize and padding mask)",
        "left_out": left_out,
        "notes": {"base": (meta.get("spec") or {}).get("base") if meta else None,
                  "base_model_sha256": meta.get("base_model_sha256") if meta else None,
                  "finetuned": meta.get("finetuned") if meta else checkpoint.get("finetuned")},
    }
    card = _model_card(dst.name, family.name, meta if meta else None, source, int(cfg.encoder_layers),
                       CONVERSION_TOLERANCE)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        model.save_pretrained(str(tmp))
        extractor.save_pretrained(str(tmp))
        (tmp / PRUNING_RECORD).write_text(json.dumps(record, indent=1, default=str))
        (tmp / MODEL_CARD).write_text(card)
        _swap_in(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _swap_in(tmp: Path, dst: Path) -> None:
    """Put the finished folder ``tmp`` at ``dst``, replacing what was there only once ``tmp`` is complete."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)


def hf_to_s3prl(src_dir, output, seed: int = 0) -> Path:
    """Write an HF wav2vec2 / HuBERT ``save_pretrained`` folder (its base model; a head is ignored) as a stock
    s3prl checkpoint (``wav2vec2_local`` / ``hubert_local`` load it). The fairseq pretraining heads transformers'
    base models lack (final_proj, project_q, HuBERT's label embeddings) are filled with a seeded fresh
    initialisation (they take no part in the hidden states) and named in the file's ``converted_from`` entry.
    A folder this module converted from s3prl keeps its pruning record there too. Written atomically."""
    import transformers

    from .atomic import check_writable, torch_save
    from .bundles import get_family

    src = Path(src_dir).expanduser()
    data = read_hf_config(src)
    model_type = data["model_type"]
    if model_type not in CONVERTIBLE_FAMILIES:
        raise HFModelError(f"{src}: model_type {model_type!r}; conversion to s3prl covers {list(CONVERTIBLE_FAMILIES)}")
    if Path(output).expanduser().is_dir():
        raise HFModelError(f"{output} is a folder; give a file path for the s3prl checkpoint")
    check_writable(Path(output).expanduser().parent)
    config = getattr(transformers, CONVERTIBLE_FAMILIES[model_type][0]).from_dict(data)
    problems = []
    for name in ("hidden_act", "feat_extract_activation"):
        if getattr(config, name) != "gelu":
            problems.append(f"{name} {getattr(config, name)}")
    if getattr(config, "conv_pos_batch_norm", False):
        problems.append("conv_pos_batch_norm")
    if model_type == "hubert" and not getattr(config, "feat_proj_layer_norm", True):
        problems.append("feat_proj_layer_norm false")
    if problems:
        raise HFModelError(f"{src}: s3prl's {model_type} model has no {', '.join(problems)}")
    conv = ", ".join(f"({d}, {k}, {s})" for d, k, s in zip(config.conv_dim, config.conv_kernel, config.conv_stride))
    model_cfg = dict(
        encoder_layers=int(config.num_hidden_layers), encoder_embed_dim=int(config.hidden_size),
        encoder_ffn_embed_dim=int(config.intermediate_size), encoder_attention_heads=int(config.num_attention_heads),
        activation_fn="gelu", layer_type="transformer", conv_feature_layers=f"[{conv}]", conv_bias=bool(config.conv_bias),
        extractor_mode="default" if config.feat_extract_norm == "group" else "layer_norm",
        layer_norm_first=bool(config.do_stable_layer_norm), conv_pos=int(config.num_conv_pos_embeddings),
        conv_pos_groups=int(config.num_conv_pos_embedding_groups), dropout=float(config.hidden_dropout),
        attention_dropout=float(config.attention_dropout), activation_dropout=float(config.activation_dropout),
        dropout_input=float(config.feat_proj_dropout), encoder_layerdrop=float(config.layerdrop),
    )
    extractor = load_feature_extractor(src)
    entries = {"task_cfg": dict(normalize=bool(extractor.do_normalize), sample_rate=SAMPLE_RATE),
               "model_cfg": model_cfg}
    if model_type == "hubert":
        entries["task_cfg"]["label_rate"] = 50
        entries["model_cfg"]["label_rate"] = 50
        entries["dictionaries_symbols"] = [["0"]]
    family = get_family(model_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        s3prl_model, _ = family.build_model(entries)
    weights = family.stock_weights(s3prl_model)
    hf = load_hf_model(src)  # the base model
    hf_state = hf.state_dict()
    names = _weight_norm_names(set(hf_state))
    filled, used = [], set()
    for key in list(weights):
        target = _fairseq_to_hf_name(key, names)
        if target in hf_state:
            if tuple(hf_state[target].shape) != tuple(weights[key].shape):
                raise HFModelError(f"{src}: {target} has shape {list(hf_state[target].shape)}, s3prl's {key} "
                                   f"{list(weights[key].shape)}")
            weights[key] = hf_state[target].detach().clone().cpu().contiguous()
            used.add(target)
        else:
            filled.append(key)
    not_filled = [k for k in filled if not k.startswith(_PRETRAINING_ONLY) and k != "mask_emb"]
    left = sorted(k for k in set(hf_state) - used if not k.endswith(("num_batches_tracked",)))
    projection = ["feature_projection.projection.weight", "feature_projection.projection.bias"]
    if set(projection) <= set(left) and getattr(s3prl_model, "post_extract_proj", None) is None:
        # s3prl's model has no feature projection when the CNN's width is the model's: only an identity maps
        weight, bias = (hf_state[k] for k in projection)
        if not (torch.equal(weight, torch.eye(weight.shape[0], dtype=weight.dtype)) and not bias.any()):
            raise HFModelError(f"{src}: its feature projection maps the CNN's width {weight.shape[1]} to the same "
                               "width and is not the identity; s3prl's model has no projection there")
        left = [k for k in left if k not in projection]
    if not_filled or left:
        raise HFModelError(f"{src}: weights that do not map between transformers and s3prl: "
                           f"{(not_filled + left)[:3]}")
    record_path = src / PRUNING_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    checkpoint = {**entries, family.weights_key: weights,
                  "converted_from": {"hf_folder": str(src.resolve()), "model_type": model_type,
                                     "filled_afresh": filled, "seed": int(seed), "pruning_record": record}}
    return torch_save(checkpoint, Path(output).expanduser())
