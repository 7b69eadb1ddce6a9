"""s3prl-format wav2vec2 / HuBERT checkpoints <-> Hugging Face ``save_pretrained`` folders.

:func:`s3prl_to_hf` writes a stock checkpoint or a pruned artifact (its K kept layers) as a folder transformers'
``Wav2Vec2Model`` / ``HubertModel`` load, with a feature extractor, a model card and the pruning record;
:func:`hf_to_s3prl` writes a folder's base model back as a stock s3prl checkpoint. The fairseq weight names are
renamed one to one (``_WEIGHT_RULES``); the hidden states agree within :data:`CONVERSION_TOLERANCE`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch

from superb_redundancy.core.audio import SAMPLE_RATE
from superb_redundancy.core.files import atomic_dir, check_writable, load_checkpoint, torch_save
from superb_redundancy.core.variant import ARTIFACT_KEY, DESCRIPTION_KEY, PRUNED_ARTIFACT_KIND
from superb_redundancy.models.families import check_checkpoint, get_family
from superb_redundancy.models.hf import (PRUNING_RECORD, HFModelError, load_feature_extractor, load_hf_model,
                                         read_hf_config)

__all__ = ["CONVERTIBLE_FAMILIES", "CONVERSION_TOLERANCE", "MODEL_CARD", "s3prl_to_hf", "hf_to_s3prl"]

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
              "(`superb-redundancy export ... --output-dir DIR`). Pretraining-only heads (quantizer, project_q, "
              "final_proj, label embeddings) are left out.", "",
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


# ---------------------------------------------------------------------------------------------- s3prl -> HF
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
    state, left_out = _hf_state(checkpoint[family.weights_key], cfg, set(model.state_dict()), source)
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = checkpoint.get(ARTIFACT_KEY) if isinstance(checkpoint.get(ARTIFACT_KEY), dict) else None
    if meta is not None and meta.get("kind") != PRUNED_ARTIFACT_KIND:
        meta = None
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                                      do_normalize=normalize, return_attention_mask=True)
    record = _conversion_record(checkpoint, meta, cfg, config.model_type, source, left_out)
    card = _model_card(dst.name, family.name, meta if meta else None, source, int(cfg.encoder_layers),
                       CONVERSION_TOLERANCE)
    # the whole folder is one unit: unit=("*",) carries nothing of a replaced folder over (no stale weights file)
    with atomic_dir(dst, unit=("*",)) as tmp:
        model.save_pretrained(str(tmp))
        extractor.save_pretrained(str(tmp))
        (tmp / PRUNING_RECORD).write_text(json.dumps(record, indent=1, default=str))
        (tmp / MODEL_CARD).write_text(card)
    return dst


def _hf_state(weights: dict, cfg, hf_keys: set, source: str) -> tuple[dict, list]:
    """transformers' state dict of an s3prl model's ``weights``, and the pretraining-only weights left out;
    HFModelError if a weight has no transformers name or a transformers weight stays unset."""
    names = _weight_norm_names(hf_keys)
    state, left_out, unknown = {}, [], []
    for key, value in weights.items():
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
    if "post_extract_proj.weight" not in weights and all(k in hf_keys for k in projection):
        # fairseq has no feature projection when the CNN's width is the model's; transformers always has one
        size = int(cfg.encoder_embed_dim)
        state[projection[0]], state[projection[1]] = torch.eye(size), torch.zeros(size)
    missing = sorted(hf_keys - set(state))
    if unknown or missing:
        raise HFModelError(f"{source}: {len(unknown)} weight(s) without a transformers name (e.g. "
                           f"{(unknown or ['-'])[0]}), {len(missing)} transformers weight(s) not in it (e.g. "
                           f"{(missing or ['-'])[0]})")
    return state, left_out


def _conversion_record(checkpoint: dict, meta: Optional[dict], cfg, model_type: str, source: str,
                       left_out: list) -> dict:
    """The pruning record of a converted folder: the kept layers (of a pruned artifact: of its base)."""
    return {
        "source": source,
        "converted_from": "s3prl",
        "model_type": model_type,
        "num_layers": int(meta["num_layers"]) if meta else int(cfg.encoder_layers),
        "dropped_layers": list(meta["dropped_layers"]) if meta else [],
        "kept_layers": list(meta["kept_layers"]) if meta else list(range(int(cfg.encoder_layers))),
        "feature_extractor": "written (s3prl's normalize and padding mask)",
        "left_out": left_out,
        "notes": {"base": (meta.get("spec") or {}).get("base") if meta else None,
                  "base_model_sha256": meta.get("base_model_sha256") if meta else None,
                  "finetuned": meta.get("finetuned") if meta else checkpoint.get("finetuned")},
        # a pruned artifact's description travels with it (the leaderboard reads it, results/variants.py)
        **({DESCRIPTION_KEY: meta[DESCRIPTION_KEY]} if meta and meta.get(DESCRIPTION_KEY) else {}),
    }


# ---------------------------------------------------------------------------------------------- HF -> s3prl
def hf_to_s3prl(src_dir, output, seed: int = 0) -> Path:
    """Write an HF wav2vec2 / HuBERT ``save_pretrained`` folder (its base model; a head is ignored) as a stock
    s3prl checkpoint (``wav2vec2_local`` / ``hubert_local`` load it). The fairseq pretraining heads transformers'
    base models lack (final_proj, project_q, HuBERT's label embeddings) are filled with a seeded fresh
    initialisation (they take no part in the hidden states) and named in the file's ``converted_from`` entry.
    A folder this module converted from s3prl keeps its pruning record there too. Written atomically."""
    import transformers

    src = Path(src_dir).expanduser()
    data = read_hf_config(src)
    model_type = data["model_type"]
    if model_type not in CONVERTIBLE_FAMILIES:
        raise HFModelError(f"{src}: model_type {model_type!r}; conversion to s3prl covers {list(CONVERTIBLE_FAMILIES)}")
    if Path(output).expanduser().is_dir():
        raise HFModelError(f"{output} is a folder; give a file path for the s3prl checkpoint")
    check_writable(Path(output).expanduser().parent)
    config = getattr(transformers, CONVERTIBLE_FAMILIES[model_type][0]).from_dict(data)
    _check_s3prl_can_express(config, model_type, src)
    entries = _s3prl_entries(config, model_type, load_feature_extractor(src))
    family = get_family(model_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        s3prl_model, _ = family.build_model(entries)
    weights = family.stock_weights(s3prl_model)
    filled = _fill_from_hf(weights, load_hf_model(src).state_dict(), s3prl_model, src)  # the base model's
    record_path = src / PRUNING_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    checkpoint = {**entries, family.weights_key: weights,
                  "converted_from": {"hf_folder": str(src.resolve()), "model_type": model_type,
                                     "filled_afresh": filled, "seed": int(seed), "pruning_record": record}}
    return torch_save(checkpoint, Path(output).expanduser())


def _check_s3prl_can_express(config, model_type: str, src: Path) -> None:
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


def _s3prl_entries(config, model_type: str, extractor) -> dict:
    """``task_cfg`` and ``model_cfg`` (and HuBERT's dictionary) of the s3prl checkpoint for transformers' config."""
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
    entries = {"task_cfg": dict(normalize=bool(extractor.do_normalize), sample_rate=SAMPLE_RATE),
               "model_cfg": model_cfg}
    if model_type == "hubert":
        entries["task_cfg"]["label_rate"] = 50
        entries["model_cfg"]["label_rate"] = 50
        entries["dictionaries_symbols"] = [["0"]]
    return entries


def _fill_from_hf(weights: dict, hf_state: dict, s3prl_model, src: Path) -> list:
    """Replace s3prl's fresh ``weights`` (in place) by the HF model's; returns the keys left fresh (pretraining
    heads). HFModelError if a weight maps to nothing, or an HF weight is left over."""
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
    return filled
