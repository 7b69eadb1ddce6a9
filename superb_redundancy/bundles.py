"""What the rest of the project needs to know about each base model family, in one place.

A :class:`ModelFamily` is a frozen description (torchaudio's "bundle" idea): how s3prl's stock checkpoints of
the family look, how many transformer layers a checkpoint has, where the layer stack lives inside s3prl's stock
expert, and how to write a checkpoint of a smaller stack in the same stock format. Pruning, mimicking,
profiling and similarity code ask the family instead of special-casing wav2vec2, HuBERT and WavLM.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

__all__ = ["ModelFamily", "FAMILIES", "get_family", "family_of_checkpoint"]


@dataclass(frozen=True)
class ModelFamily:
    name: str
    #: s3prl hub module whose functions load this family (e.g. "s3prl.upstream.wav2vec2.hubconf")
    hubconf: str
    #: s3prl hub name that loads a local checkpoint of this family
    local_hub_name: str
    #: the keys a stock checkpoint of this family has
    checkpoint_keys: tuple[str, ...]
    #: where the model config sits in the checkpoint
    config_key: str
    #: where the weights sit in the checkpoint
    weights_key: str
    #: how the family's encoder layer returns: "fairseq" -> (x, (attn, layer_result)); "wavlm" -> (x, attn, pos_bias)
    layer_output: str
    #: whether layer 0 owns a relative-position bias table that the other layers reuse (WavLM)
    shared_position_bias: bool = False

    # ----------------------------------------------------------------- checkpoints
    def matches(self, checkpoint: dict) -> bool:
        return isinstance(checkpoint, dict) and all(k in checkpoint for k in self.checkpoint_keys)

    def config(self, checkpoint: dict) -> dict:
        return checkpoint[self.config_key]

    def num_layers(self, checkpoint: dict) -> int:
        return int(self.config(checkpoint).get("encoder_layers", 12))

    def hidden_size(self, checkpoint: dict) -> int:
        return int(self.config(checkpoint).get("encoder_embed_dim", 768))

    def layer_prefix(self) -> str:
        return "encoder.layers."

    def compact_checkpoint(self, checkpoint: dict, kept_layers: Sequence[int]) -> dict:
        """A stock-format checkpoint holding only ``kept_layers``, renumbered 0..K-1.

        The stock loaders build a K-layer model from it. For WavLM the relative-position table of layer 0 is
        moved to the first kept layer, which the stock builder gives the table (it gives it to layer 0).
        """
        kept = list(kept_layers)
        renumber = {old: new for new, old in enumerate(kept)}
        prefix = self.layer_prefix()
        weights: dict[str, torch.Tensor] = {}
        moved_table: dict[str, torch.Tensor] = {}
        for key, value in checkpoint[self.weights_key].items():
            if not key.startswith(prefix):
                weights[key] = value
                continue
            index_str, rest = key[len(prefix):].split(".", 1)
            index = int(index_str)
            if self.shared_position_bias and index == 0 and "relative_attention_bias" in rest:
                moved_table[rest] = value
            if index in renumber:
                weights[f"{prefix}{renumber[index]}.{rest}"] = value
        for rest, value in moved_table.items():
            weights[f"{prefix}0.{rest}"] = value
        compact = {k: copy.deepcopy(v) for k, v in checkpoint.items() if k != self.weights_key}
        compact[self.weights_key] = weights
        compact[self.config_key]["encoder_layers"] = len(kept)
        return compact

    # ----------------------------------------------------------------- models
    def build_model(self, checkpoint_config: dict, num_layers: Optional[int] = None) -> tuple[nn.Module, bool]:
        """s3prl's own model class of this family built from a checkpoint's config entries (everything but the
        weights), with ``num_layers`` transformer layers (default: the config's); returns (model, normalize),
        normalize being whether the family's expert layer-normalises each waveform first."""
        return _BUILDERS[self.name](checkpoint_config, num_layers)

    def config_entries(self, checkpoint: dict) -> dict:
        """Everything in a stock checkpoint but its weights."""
        return {k: checkpoint[k] for k in self.checkpoint_keys if k != self.weights_key}

    def random_checkpoint(self, checkpoint: dict, seed: int = 0) -> dict:
        """A checkpoint of the same architecture with freshly initialised (seeded) weights: a baseline that has
        learned nothing."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _ = self.build_model(self.config_entries(checkpoint))
        out = {k: v for k, v in checkpoint.items() if k != self.weights_key}
        out[self.weights_key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return out

    # ----------------------------------------------------------------- live modules (s3prl stock experts)
    def layers(self, expert: nn.Module) -> nn.ModuleList:
        return expert.model.encoder.layers

    def hub_functions(self) -> dict[str, Callable]:
        """The stock s3prl hub names of this family that download a checkpoint (no _local/_url/_custom)."""
        import importlib

        module = importlib.import_module(self.hubconf)
        return {
            name: fn
            for name, fn in vars(module).items()
            if callable(fn)
            and getattr(fn, "__module__", None) == self.hubconf
            and not name.startswith("_")
            and not name.endswith(("_local", "_url", "_custom"))
            and not isinstance(fn, type)
        }


def _with_layers(config: dict, num_layers: Optional[int]) -> dict:
    return dict(config) if num_layers is None else dict(config, encoder_layers=num_layers)


def _build_wav2vec2(entries: dict, num_layers: Optional[int]) -> tuple[nn.Module, bool]:
    from s3prl.upstream.utils import merge_with_parent
    from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig, Wav2Vec2Config, Wav2Vec2Model

    cfg = merge_with_parent(Wav2Vec2Config, _with_layers(entries["model_cfg"], num_layers))
    normalize = merge_with_parent(AudioPretrainingConfig, dict(entries["task_cfg"])).normalize
    return Wav2Vec2Model(cfg), bool(normalize)


def _build_hubert(entries: dict, num_layers: Optional[int]) -> tuple[nn.Module, bool]:
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    task_cfg = merge_with_parent(HubertPretrainingConfig, dict(entries["task_cfg"]))
    cfg = merge_with_parent(HubertConfig, _with_layers(entries["model_cfg"], num_layers))
    symbols = entries.get("dictionaries_symbols") or [["0"]]
    return HubertModel(cfg, task_cfg, symbols), bool(task_cfg.normalize)


def _build_wavlm(entries: dict, num_layers: Optional[int]) -> tuple[nn.Module, bool]:
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    cfg = WavLMConfig(_with_layers(entries["cfg"], num_layers))
    return WavLM(cfg), bool(cfg.normalize)


#: family -> model factory (torchaudio's pipelines map a model type to its factory the same way)
_BUILDERS: dict[str, Callable[[dict, Optional[int]], tuple[nn.Module, bool]]] = {
    "wav2vec2": _build_wav2vec2,
    "hubert": _build_hubert,
    "wavlm": _build_wavlm,
}

FAMILIES: dict[str, ModelFamily] = {
    "wav2vec2": ModelFamily(
        name="wav2vec2",
        hubconf="s3prl.upstream.wav2vec2.hubconf",
        local_hub_name="wav2vec2_local",
        checkpoint_keys=("task_cfg", "model_cfg", "model_weight"),
        config_key="model_cfg",
        weights_key="model_weight",
        layer_output="fairseq",
    ),
    "hubert": ModelFamily(
        name="hubert",
        hubconf="s3prl.upstream.hubert.hubconf",
        local_hub_name="hubert_local",
        checkpoint_keys=("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"),
        config_key="model_cfg",
        weights_key="model_weight",
        layer_output="fairseq",
    ),
    "wavlm": ModelFamily(
        name="wavlm",
        hubconf="s3prl.upstream.wavlm.hubconf",
        local_hub_name="wavlm_local",
        checkpoint_keys=("cfg", "model"),
        config_key="cfg",
        weights_key="model",
        layer_output="wavlm",
        shared_position_bias=True,
    ),
}


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; valid: {sorted(FAMILIES)}") from None


def family_of_checkpoint(checkpoint: dict) -> ModelFamily | None:
    """The most specific family whose stock format the checkpoint has (HuBERT before wav2vec2)."""
    for family in sorted(FAMILIES.values(), key=lambda f: -len(f.checkpoint_keys)):
        if family.matches(checkpoint):
            return family
    return None
