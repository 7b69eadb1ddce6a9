"""The teacher's front end, which a mimicker keeps, and what an artifact records of its teacher.

The deployed model keeps the teacher's front end, i.e. the CNN feature extractor followed by ``layer_norm`` and
``post_extract_proj`` (the "feature projection"): :class:`TeacherFrontend`, rebuilt with s3prl's own model class
from the teacher's stored config (:func:`build_frontend`). :func:`teacher_checkpoint` loads a teacher (a stock
checkpoint path, or a hub name with its family); :func:`teacher_record` is what artifacts and teacher caches
record about it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from superb_redundancy.core.files import load_checkpoint, model_sha256
from superb_redundancy.distill.errors import MimicError
from superb_redundancy.hub.feature_cache import clip_key
from superb_redundancy.models.checkpoints import CheckpointError, load_base_checkpoint, resolve_base
from superb_redundancy.models.families import ModelFamily, check_checkpoint, get_family

__all__ = ["FRONTEND_MODULES", "FrontendCache", "TeacherFrontend", "build_frontend", "frontend_state", "teacher_checkpoint",
           "teacher_config", "teacher_record", "stock_model", "json_plain"]

FRONTEND_MODULES = ("feature_extractor", "layer_norm", "post_extract_proj")
#: families whose stock model masks frames by the conv output lengths (the others: a frame whose samples all pad)
CONV_LENGTH_MASK = ("wav2vec2", "data2vec")


def teacher_checkpoint(teacher: str | os.PathLike, family: Optional[str], refresh: bool = False):
    """(path, family, checkpoint) of a teacher given as a checkpoint path, or as a hub name with ``family``."""
    teacher = str(teacher)
    try:
        if family is None:
            path = Path(teacher).expanduser()
            if not path.is_file():
                raise MimicError(f"teacher checkpoint not found: {path} (a hub name needs family=...)")
            checkpoint = load_checkpoint(path, "teacher checkpoint", MimicError)
            # recognised by family, weights checked against the config (else s3prl's loader crashes later)
            return path, check_checkpoint(checkpoint, path, error=MimicError), checkpoint
        fam = get_family(family)
        path = resolve_base(teacher, fam, refresh=refresh)
        return path, fam, load_base_checkpoint(path, fam)
    except CheckpointError as error:
        raise MimicError(str(error)) from None


def json_plain(value: Any) -> Any:
    """A JSON-plain copy (dict/list/str/number/bool/None) that ``torch.load(weights_only=True)`` accepts."""
    return json.loads(json.dumps(value, default=str))


def stock_model(family: ModelFamily, checkpoint_config: dict, num_encoder_layers: int = 0):
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
        return self.project(self.extract(wav), wav_padding_mask)

    def extract(self, wav: torch.Tensor) -> torch.Tensor:
        """The CNN's features of a padded batch [B, S]: [B, T, C] (without gradients unless ``feature_grad_mult``)."""
        if self.feature_grad_mult > 0:
            features = self.feature_extractor(wav)
        else:
            with torch.no_grad():
                features = self.feature_extractor(wav)
        return features.transpose(1, 2)

    def project(self, features: torch.Tensor, wav_padding_mask: Optional[torch.Tensor] = None):
        """The CNN's features [B, T, C] -> (LayerNorm, the frame padding mask, the feature projection)."""
        features = self.layer_norm(features)
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


class FrontendCache:
    """The CNN features of each clip, kept after the batch the clip first came in (``max_bytes`` at most), for a
    step 2 that trains what sits above the CNN (a non-mimicker's layers; a ceiling's feature projection too).

    ``__call__(wavs: list of 1-D tensors) -> (features [B, T, d], padding_mask [B, T] or None)``, what
    :class:`TeacherFrontend` gives the padded batch: the CNN runs on the clips not seen before (padded among
    themselves), the others' CNN frames come from memory as computed in their first batch, zero-padded; the
    LayerNorm, the frame mask and the projection then run on the batch as usual. A valid frame agrees with the
    uncached front end's to float rounding (bit for bit within one batch of one-length clips; the CNN's kernels
    may round differently, about 1e-7, at another batch size), a padded (masked) frame is zero here. Keyed by the samples' content
    (:func:`~superb_redundancy.hub.feature_cache.clip_key`); like our runner's feature cache.

    With a ``store`` file (``runner.frontend_store`` in a downstream config: a study's mimic runs, which all share
    their teacher's CNN) the clips another run computed are read from it first, and :meth:`persist` adds this run's
    to it (written whole, then renamed). Only clips computed without padding go there (the longest of their batch:
    their frames do not depend on the batch), so what a run reads does not depend on which run wrote it."""

    part = "the CNN's features"

    def __init__(self, frontend: TeacherFrontend, max_bytes: int, store: Optional[Path] = None):
        self.frontend = frontend
        self.max_bytes = int(max_bytes)
        self.bytes = self.hits = self.misses = 0
        self.full = False
        self._store: dict[bytes, torch.Tensor] = {}
        self.store = None if store is None else Path(store)
        self._new: list[bytes] = []  # computed here without padding: what persist() adds to the store
        self.loaded = 0
        for key, clip in _read_store(self.store).items():
            self._keep(key, clip)
            self.loaded += 1

    def __call__(self, wavs: list[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        lengths = torch.tensor([len(w) for w in wavs], device=wavs[0].device)
        wav_padding_mask = torch.arange(int(lengths.max()), device=lengths.device)[None, :] >= lengths[:, None]
        keys = [clip_key(wav) for wav in wavs]
        missing = [i for i, key in enumerate(keys) if key not in self._store]
        self.hits += len(wavs) - len(missing)
        self.misses += len(missing)
        fresh = {}
        if missing:  # the CNN runs on the new clips only: in a mixed batch it would redo the others' work
            computed = self.frontend.extract(nn.utils.rnn.pad_sequence([wavs[i] for i in missing], batch_first=True))
            frames = self.frontend.output_lengths(lengths[missing]).clamp(max=computed.size(1))
            unpadded = int(lengths[missing].max())
            for j, i in enumerate(missing):
                fresh[i] = computed[j, :int(frames[j])].detach().clone()
                if self._keep(keys[i], fresh[i]) and int(lengths[i]) == unpadded:
                    self._new.append(keys[i])
        clips = [fresh[i] if i in fresh else self._store[key] for i, key in enumerate(keys)]
        return self.frontend.project(nn.utils.rnn.pad_sequence(clips, batch_first=True), wav_padding_mask)

    def _keep(self, key: bytes, clip: torch.Tensor) -> bool:
        size = clip.numel() * clip.element_size()
        if key in self._store or self.bytes + size > self.max_bytes:
            self.full = self.full or key not in self._store
            return False
        self._store[key] = clip
        self.bytes += size
        return True

    def persist(self) -> int:
        """Add the clips computed here without padding to the store file (with what other runs put there
        meanwhile); the number added. No store, or nothing new: nothing written."""
        if self.store is None or not self._new:
            return 0
        from superb_redundancy.core.files import torch_save

        self.store.parent.mkdir(parents=True, exist_ok=True)
        merged = _read_store(self.store)
        added = [key for key in self._new if key not in merged]
        merged.update((key, self._store[key]) for key in added)
        keys = list(merged)
        torch_save({"keys": torch.tensor([list(key) for key in keys], dtype=torch.uint8),
                    "frames": torch.tensor([len(merged[key]) for key in keys], dtype=torch.int64),
                    "features": torch.cat([merged[key] for key in keys])}, self.store)
        self._new = []
        return len(added)

    def summary(self) -> str:
        total = self.hits + self.misses
        share = f"{100 * self.hits / total:.0f}%" if total else "-"
        limit = f", limit {self.max_bytes / 2 ** 30:g} GiB reached" if self.full else ""
        stored = f" ({self.loaded} read from {self.store.name})" if self.store is not None else ""
        return (f"front-end cache: {len(self._store)} clips{stored}, {self.bytes / 2 ** 20:.0f} MiB{limit}; "
                f"{self.hits} of {total} clip passes from memory ({share})")


def _read_store(path: Optional[Path]) -> dict[bytes, torch.Tensor]:
    """{clip key: CNN frames} of a store file (none or unreadable: empty: the clips are computed again)."""
    if path is None or not path.is_file():
        return {}
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        clips = torch.split(data["features"], data["frames"].tolist())
        return {bytes(key.tolist()): clip for key, clip in zip(data["keys"], clips)}
    except (OSError, RuntimeError, KeyError, ValueError, EOFError):  # a store cut short is only a lost speed-up
        return {}


def teacher_config(checkpoint: dict, family: ModelFamily) -> dict:
    """Everything in a stock checkpoint but its weights, JSON-plain."""
    return json_plain({k: checkpoint[k] for k in family.checkpoint_keys if k != family.weights_key})


def frontend_state(checkpoint: dict, family: ModelFamily) -> dict[str, torch.Tensor]:
    """The front-end weights of a stock checkpoint (keys as in the stock model: ``feature_extractor.*`` ...)."""
    return {k: v.detach().clone().cpu() for k, v in checkpoint[family.weights_key].items()
            if k.split(".", 1)[0] in FRONTEND_MODULES}


def build_frontend(family_name: str, checkpoint_config: dict,
                   state: Optional[dict[str, torch.Tensor]] = None) -> TeacherFrontend:
    """The teacher's front end, built with s3prl's own model class (0 encoder layers) from the stored config."""
    family = get_family(family_name)
    model, normalize = stock_model(family, checkpoint_config, num_encoder_layers=0)
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

