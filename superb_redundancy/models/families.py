"""What the rest of the project needs to know about each base model family, in one place.

A :class:`ModelFamily` is a frozen description (torchaudio's "bundle" idea): how s3prl's stock checkpoints of
the family look, how many transformer layers a checkpoint has, where the layer stack lives inside s3prl's stock
expert, and how to write a checkpoint of a smaller stack in the same stock format. Pruning, mimicking,
profiling and similarity code ask the family instead of special-casing wav2vec2, HuBERT, WavLM and data2vec.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Type

import torch
from torch import nn

from superb_redundancy.core.errors import UserError

__all__ = ["ModelFamily", "FAMILIES", "get_family", "family_of_checkpoint", "check_checkpoint"]


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
    #: names that mark this family's checkpoints (top-level keys, config keys or weight names), tried in
    #: _RECOGNITION_ORDER: HuBERT's keys are a superset of wav2vec2's, so key sets alone cannot tell them apart
    markers: tuple[str, ...] = ()
    #: a weights entry that is no weight of the model: data2vec's EMA teacher (a dict of the encoder's weights,
    #: keys "layers.N..."), which the stock loader deletes before loading; kept (and compacted) in checkpoints
    ema_key: Optional[str] = None

    @property
    def pruned_hub_name(self) -> str:
        """Our hub entry that prunes a base of this family by a spec (``-u NAME -g SPEC``; upstreams/pruned)."""
        return f"pruned_{self.name}"

    @property
    def pruned_local_hub_name(self) -> str:
        """Our hub entry that loads a saved pruned artifact of this family (``-u NAME -k ARTIFACT``)."""
        return f"pruned_{self.name}_local"

    # ----------------------------------------------------------------- checkpoints
    def matches(self, checkpoint: dict) -> bool:
        """The checkpoint is of this family (by its distinguishing names) and has every key the stock loader reads."""
        return _recognise(checkpoint) is self and all(k in checkpoint for k in self.checkpoint_keys)

    def weights_mismatch(self, checkpoint: dict) -> Optional[str]:
        """Why the checkpoint's weights do not fit the model its config describes (the stock loader's strict
        ``load_state_dict`` would crash), or None. The model is built on the meta device: shapes, no memory."""
        try:
            with _shapes_only():
                model, _ = self.build_model(self.config_entries(checkpoint))
        except Exception as error:  # a config s3prl cannot build from
            return f"its config does not build a {self.name} model ({type(error).__name__}: {_first_line(error)})"
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        weights = checkpoint[self.weights_key]
        if not isinstance(weights, dict):
            return f"{self.weights_key!r} is not a state dict"
        if self.ema_key is not None:
            if self.ema_key not in weights:
                return f"{self.weights_key!r} has no {self.ema_key!r} entry (the stock loader deletes it before loading)"
            weights = {k: v for k, v in weights.items() if k != self.ema_key}
        found = {k: tuple(getattr(v, "shape", ())) for k, v in weights.items()}
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        problems = []
        if missing:
            problems.append(f"{len(missing)} weight(s) missing, e.g. {missing[0]}")
        if unexpected:
            problems.append(f"{len(unexpected)} the model lacks, e.g. {unexpected[0]}")
        if shapes:
            problems.append(f"{len(shapes)} of another shape, e.g. {shapes[0]} {list(found[shapes[0]])} "
                            f"(config: {list(expected[shapes[0]])})")
        return None if not problems else "its weights do not fit its config: " + "; ".join(problems)

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
            if key == self.ema_key and isinstance(value, dict):
                weights[key] = _compact_ema(value, renumber)
                continue
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
        out[self.weights_key] = self.stock_weights(model)
        return out

    def stock_weights(self, model: nn.Module) -> dict:
        """The weights entry of a stock checkpoint of ``model`` (one :meth:`build_model` made): its state dict,
        with data2vec's EMA teacher entry (the encoder's weights but the positional convolution's, as
        fairseq's ``ema_layers_only`` keeps them) for the stock loader to delete."""
        weights = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        if self.ema_key is not None:
            weights[self.ema_key] = {k: v.detach().clone().cpu() for k, v in model.encoder.state_dict().items()
                                     if not k.startswith("pos_conv.")}
        return weights

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


def _compact_ema(ema: dict, renumber: dict[int, int]) -> dict:
    """data2vec's EMA teacher entry with only the kept layers' weights ("layers.N..."), renumbered."""
    out = {}
    for key, value in ema.items():
        if key.startswith("layers."):
            index_str, rest = key[len("layers."):].split(".", 1)
            if int(index_str) in renumber:
                out[f"layers.{renumber[int(index_str)]}.{rest}"] = value
        else:
            out[key] = value
    return out


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


def _build_data2vec(entries: dict, num_layers: Optional[int]) -> tuple[nn.Module, bool]:
    from s3prl.upstream.data2vec.data2vec_model import Data2VecAudioConfig, Data2VecAudioModel
    from s3prl.upstream.utils import merge_with_parent
    from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig

    cfg = merge_with_parent(Data2VecAudioConfig, _with_layers(entries["model_cfg"], num_layers))
    normalize = merge_with_parent(AudioPretrainingConfig, dict(entries["task_cfg"])).normalize
    model = Data2VecAudioModel(cfg)
    model.remove_pretraining_modules()  # as s3prl's loader does: no final_proj, no EMA teacher module
    return model, bool(normalize)


#: family -> model factory (torchaudio's pipelines map a model type to its factory the same way)
_BUILDERS: dict[str, Callable[[dict, Optional[int]], tuple[nn.Module, bool]]] = {
    "wav2vec2": _build_wav2vec2,
    "hubert": _build_hubert,
    "wavlm": _build_wavlm,
    "data2vec": _build_data2vec,
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
        markers=("model_cfg", "model_weight", "project_q.weight", "quantizer.vars"),
    ),
    "hubert": ModelFamily(
        name="hubert",
        hubconf="s3prl.upstream.hubert.hubconf",
        local_hub_name="hubert_local",
        checkpoint_keys=("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"),
        config_key="model_cfg",
        weights_key="model_weight",
        layer_output="fairseq",
        markers=("dictionaries_symbols", "label_embs_concat", "label_rate"),
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
        markers=("cfg",),
    ),
    # data2vec (audio): wav2vec2's checkpoint keys and transformer encoder; the weights carry the EMA teacher
    "data2vec": ModelFamily(
        name="data2vec",
        hubconf="s3prl.upstream.data2vec.hubconf",
        local_hub_name="data2vec_local",
        checkpoint_keys=("task_cfg", "model_cfg", "model_weight"),
        config_key="model_cfg",
        weights_key="model_weight",
        layer_output="fairseq",
        markers=("_ema", "average_top_k_layers", "ema_transformer_only"),
        ema_key="_ema",
    ),
}


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown model family {name!r}; valid: {sorted(FAMILIES)}") from None


def _names(checkpoint: dict) -> set:
    """Top-level keys and the keys one level down (config entries, weight names)."""
    names = set(checkpoint)
    for value in checkpoint.values():
        if isinstance(value, dict):
            names.update(value)
    return names


#: the order families are recognised in: the more specific first (HuBERT and data2vec hold wav2vec2's names too)
_RECOGNITION_ORDER = ("hubert", "data2vec", "wavlm", "wav2vec2")


def _recognise(checkpoint) -> Optional[ModelFamily]:
    """The family whose distinguishing names the checkpoint holds (whether or not it has every stock key)."""
    if not isinstance(checkpoint, dict):
        return None
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, dict) and "model" in cfg and "task" in cfg:
        return None  # a fairseq training checkpoint (its cfg has sections), not s3prl's stock WavLM format
    names = _names(checkpoint)
    for name in _RECOGNITION_ORDER:
        if any(marker in names for marker in FAMILIES[name].markers):
            return FAMILIES[name]
    return None


def family_of_checkpoint(checkpoint: dict) -> ModelFamily | None:
    """The family of a stock checkpoint (recognised by its distinguishing names, with every key its loader
    reads), or None."""
    family = _recognise(checkpoint)
    return family if family is not None and family.matches(checkpoint) else None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextlib.contextmanager
def _shapes_only() -> Iterator[None]:
    """Build models on the meta device; WavLM's initialiser copies through the CPU, so it is skipped meanwhile."""
    import s3prl.upstream.wavlm.WavLM as wavlm_module

    initialise = wavlm_module.init_bert_params
    wavlm_module.init_bert_params = lambda module: None
    try:
        with torch.device("meta"):
            yield
    finally:
        wavlm_module.init_bert_params = initialise


def check_checkpoint(checkpoint, path, family: Optional[ModelFamily] = None,
                     error: Type[Exception] = UserError) -> ModelFamily:
    """The family of a loaded stock checkpoint, checked: of ``family`` if given, with every key the stock loader
    reads, and weights that fit its config. Every problem raises ``error`` with one line naming ``path``."""
    found = _recognise(checkpoint)
    if found is None:
        keys = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        wanted = f"a {family.name}" if family is not None else "a wav2vec2, HuBERT, WavLM or data2vec"
        raise error(f"{path} is not {wanted} checkpoint in s3prl's stock format (found {keys})")
    if family is not None and found is not family:
        raise error(f"{path} is a {found.name} checkpoint, not {family.name} (use {found.local_hub_name} / "
                    f"--family {found.name})")
    missing = [k for k in found.checkpoint_keys if k not in checkpoint]
    if missing:
        raise error(f"{path} is a {found.name} checkpoint without {missing} (s3prl's {found.local_hub_name} "
                    f"needs {list(found.checkpoint_keys)})")
    problem = found.weights_mismatch(checkpoint)
    if problem is not None:
        raise error(f"{path}: {problem}")
    return found
