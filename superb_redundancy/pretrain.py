"""Self-supervised pretraining of a small wav2vec 2.0 on a folder of audio (the synthetic corpus' training splits).

The paper's models were pretrained self-supervised, then fine-tuned; a randomly initialised tiny model is not.
:func:`pretrain` trains s3prl's own port of fairseq's ``Wav2Vec2Model`` with wav2vec 2.0's objective, as fairseq's
``wav2vec`` criterion computes it from that model:

* ``net_output = model(source, mask=True, features_only=False)``; the contrastive (InfoNCE) term is the
  cross-entropy of ``model.get_logits(net_output)`` against class 0 (the true quantized target among
  ``num_negatives`` distractors from the same clip), averaged over the masked frames;
* plus ``model.get_extra_losses(net_output)`` weighted as fairseq's ``loss_weights [0.1, 10]``: the codebook
  diversity term ``(num_vars - prob_perplexity) / num_vars`` (0.1) and the feature penalty (10);
* fairseq masks logits whose negative equals the positive (``neg_is_pos``, possible with a small codebook); s3prl's
  port computes the mask but drops it, so the model used here gets fairseq's ``compute_preds`` back (on the
  instance: the saved checkpoint is the stock format, loaded by s3prl's ``wav2vec2_local`` as is);
* the Gumbel temperature decays per update (``quantizer.set_num_updates``) from 2 to 0.5, reaching 0.5 at 70% of
  the run (fairseq's Base reaches its floor at about the same point); Adam (0.9, 0.98, eps 1e-6, decoupled weight
  decay 0.01), linear warm-up then linear decay to 0 (fairseq's ``polynomial_decay``), gradient-norm clipping.

The model (defaults): 8 transformer layers of width 128 (FFN 512, 4 heads), Base's 7-layer CNN of width 64 (total
stride 320), a Gumbel quantizer of 2 groups x 8 entries, built by :mod:`superb_redundancy.tiny_models`. The
transformer is pre-LN (Large's ``layer_norm_first``): on the synthetic corpus an 8-layer post-LN stack (Base's)
stayed at chance, its predictions at masked frames all alike, for 1500+ updates at every learning rate tried,
while the pre-LN one leaves that plateau within a few hundred (``--post-ln`` gives Base's layout). A small
codebook, a short positional convolution and a learning rate of 5e-3 also shorten the plateau; the training
record shows where it ends (``accuracy`` leaving ~0.08).

Data: clips are cropped as fairseq's audio dataset does without padding: every clip of a batch to one length, the
shorter of a seeded random length in ``[crop_min, crop_max]`` seconds and the shortest clip of the batch, each at a
seeded random offset; clips shorter than ``crop_min`` are left out. ``--corpus ROOT`` takes the training splits of
a corpus laid out as ours (keyword spotting's training root minus its validation/testing lists and background
noise, VoxCeleb1's identification split 1, IEMOCAP sessions 2-5, LibriSpeech ``train-*``); ``--data DIR ...``
takes every clip of the folders.

Reproducibility: python, numpy and torch are seeded (the model's masks use numpy's global generator, its negatives,
Gumbel noise and dropout torch's; the data order and crops a separate seeded generator), torch runs deterministic
algorithms with the given thread count, so a rerun with the same settings on the same machine gives the same
losses and the same checkpoint bytes. The checkpoint is s3prl's stock wav2vec2 format (``task_cfg``,
``model_cfg``, ``model_weight``) plus a ``superb_redundancy`` entry: the training record without its wall-clock
parts (so that the bytes depend on the settings and data alone). ``<checkpoint>.train.json`` holds the whole
record (every step's loss, contrastive accuracy, diversity, learning rate, ...; command, seeds, data hash,
versions, wall time), written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

__all__ = ["PretrainSettings", "PretrainError", "PretrainResult", "TrainingAudio", "pretrain", "build_model",
           "training_audio", "corpus_training_audio", "settings_from_record", "load_record", "loss_terms",
           "evaluate", "model_config", "RECORD_KEY", "RECORD_FORMAT", "SAMPLE_RATE"]

SAMPLE_RATE = 16000
# not "superb_redundancy": that key marks pruned and mimic artifacts, and a pretrained model is a stock checkpoint
RECORD_KEY = "pretraining"
RECORD_FORMAT = "superb_redundancy.pretrain/1"
#: fairseq's wav2vec criterion: loss_weights for [diversity, feature penalty]
DIVERSITY_WEIGHT = 0.1
FEATURE_PENALTY_WEIGHT = 10.0
#: where the Gumbel temperature reaches its floor, as a fraction of the run
TEMPERATURE_FLOOR_AT = 0.7
#: the columns of the per-step log
LOG_COLUMNS = ("loss", "contrastive", "diversity", "features_pen", "accuracy", "code_perplexity",
               "prob_perplexity", "temp", "lr", "grad_norm", "masked_frames", "crop_samples")


class PretrainError(ValueError):
    """Bad input for pretraining; raised before any work."""


@dataclass(frozen=True)
class PretrainSettings:
    """Everything a pretraining run depends on (with the audio). Defaults: 8 layers of width 128."""

    corpus: Optional[str] = None  # a corpus root (its training splits) ...
    data: tuple[str, ...] = ()  # ... or folders of audio (every clip)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 5e-3  # fairseq Base: 5e-4 over 400k updates; at 5e-4 a small run never leaves the plateau here
    warmup: Optional[int] = None  # None: 8% of the steps (fairseq's Base: 32k of 400k)
    weight_decay: float = 0.01
    clip_norm: float = 10.0
    seed: int = 0
    threads: int = 2
    crop_min: float = 1.0  # seconds
    crop_max: float = 2.0
    # ---- model (superb_redundancy.tiny_models.TinyConfig fields)
    layers: int = 8
    dim: int = 128
    ffn_dim: int = 512
    heads: int = 4
    conv_dim: int = 64
    conv_pos: int = 8
    conv_pos_groups: int = 4
    final_dim: int = 64
    latent_vars: int = 8
    latent_groups: int = 2
    #: True: a pre-LN transformer (wav2vec 2.0 Large's layer_norm_first) on Base's CNN (one GroupNorm, raw
    #: waveforms); False: Base's post-LN transformer. Measured on the synthetic corpus (8 layers, lr 5e-3): the
    #: post-LN stack stays at chance (flat logits, accuracy ~0.08) for 1500 updates and more, the pre-LN one leaves
    #: that plateau after a few hundred. (Large's LayerNorm CNN with normalised waveforms collapsed its codebook.)
    layer_norm_first: bool = True
    # ---- objective
    mask_prob: float = 0.5
    mask_length: int = 5
    num_negatives: int = 20
    dropout: float = 0.1  # transformer, attention, input and feature dropout (fairseq's Base: 0.1 each)
    feature_grad_mult: float = 0.1

    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(1, round(0.08 * self.steps))

    def temperature(self) -> list[float]:
        """``latent_temp`` (start, floor, decay per update): 2 -> 0.5 at 70% of the steps."""
        updates = max(1, round(TEMPERATURE_FLOOR_AT * self.steps))
        return [2.0, 0.5, float((0.5 / 2.0) ** (1.0 / updates))]

    def check(self) -> "PretrainSettings":
        """Every problem of the settings (not of the data) as one line; raises :class:`PretrainError`."""
        def positive(name: str, value, kind=int) -> None:
            if not isinstance(value, kind) or isinstance(value, bool) or not value > 0 or \
                    (kind is float and not math.isfinite(value)):
                raise PretrainError(f"--{name.replace('_', '-')} must be a positive {kind.__name__}, got {value!r}")

        if bool(self.corpus) == bool(self.data):
            raise PretrainError("give the audio as --corpus ROOT or as --data DIR [DIR ...] (one of the two)")
        for name in ("steps", "batch_size", "threads", "layers", "dim", "ffn_dim", "heads", "conv_dim", "conv_pos",
                     "conv_pos_groups", "final_dim", "latent_vars", "latent_groups", "mask_length",
                     "num_negatives"):
            positive(name, getattr(self, name))
        for name in ("lr", "crop_min", "crop_max"):
            positive(name, float(getattr(self, name)), float)
        if self.warmup is not None and not 0 <= self.warmup <= self.steps:
            raise PretrainError(f"--warmup must be between 0 and --steps ({self.steps}), got {self.warmup}")
        for name in ("weight_decay", "clip_norm", "dropout", "feature_grad_mult"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise PretrainError(f"--{name.replace('_', '-')} must be >= 0, got {value!r}")
        if self.dropout >= 1:
            raise PretrainError(f"--dropout must be below 1, got {self.dropout!r}")
        if not 0 < self.mask_prob <= 1:
            raise PretrainError(f"--mask-prob must be in (0, 1], got {self.mask_prob!r}")
        if self.crop_max < self.crop_min:
            raise PretrainError(f"--crop-seconds: the maximum {self.crop_max:g} is below the minimum "
                                f"{self.crop_min:g}")
        frames = _frames(int(self.crop_min * SAMPLE_RATE))
        if frames < 2 * self.mask_length + 2:
            raise PretrainError(f"--crop-seconds minimum {self.crop_min:g} s gives {frames} frames: too few for "
                                f"masked spans of --mask-length {self.mask_length} (need {2 * self.mask_length + 2})")
        if self.dim % self.heads:
            raise PretrainError(f"--dim {self.dim} is not divisible by --heads {self.heads}")
        if self.dim % self.conv_pos_groups:
            raise PretrainError(f"--dim {self.dim} is not divisible by --conv-pos-groups {self.conv_pos_groups}")
        if self.final_dim % self.latent_groups:
            raise PretrainError(f"--final-dim {self.final_dim} is not divisible by --latent-groups "
                                f"{self.latent_groups}")
        if self.latent_vars < 2:
            raise PretrainError(f"--latent-vars must be at least 2, got {self.latent_vars}")
        return self


def _frames(samples: int) -> int:
    """Frames of the 320-stride conv stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) for ``samples``."""
    n = samples
    for kernel, stride in [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2:
        n = (n - kernel) // stride + 1
        if n <= 0:
            return 0
    return n


def model_config(settings: PretrainSettings):
    """The :class:`~superb_redundancy.tiny_models.TinyConfig` of the model."""
    from .tiny_models import TinyConfig

    return TinyConfig(num_layers=settings.layers, dim=settings.dim, ffn_dim=settings.ffn_dim, heads=settings.heads,
                      conv_dim=settings.conv_dim, conv_pos=settings.conv_pos, conv_pos_groups=settings.conv_pos_groups,
                      final_dim=settings.final_dim, quantize_targets=True, latent_vars=settings.latent_vars,
                      latent_groups=settings.latent_groups, layer_norm_first=settings.layer_norm_first,
                      extractor_mode="default", normalize=False)


def _initial_checkpoint(settings: PretrainSettings) -> dict:
    """The stock-format checkpoint the run starts from: tiny_models' seeded initialisation, with the training
    settings of the objective in ``model_cfg`` (masking, negatives, temperature, dropout; no shapes change)."""
    from .tiny_models import build_checkpoint

    with torch_rng_forked():
        checkpoint = build_checkpoint("wav2vec2", model_config(settings), settings.seed)
    d = settings.dropout
    checkpoint["model_cfg"].update(
        mask_prob=settings.mask_prob, mask_length=settings.mask_length, num_negatives=settings.num_negatives,
        cross_sample_negatives=0, codebook_negatives=0, latent_temp=settings.temperature(),
        dropout=d, attention_dropout=d, activation_dropout=0.0, dropout_input=d, dropout_features=d,
        feature_grad_mult=settings.feature_grad_mult, logit_temp=0.1)
    return checkpoint


@contextlib.contextmanager
def torch_rng_forked() -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        yield


def _compute_preds(self, x, y, negatives):
    """fairseq's ``Wav2Vec2Model.compute_preds``: cosine logits / temperature, a negative equal to the positive
    masked out (s3prl's port computes ``neg_is_pos`` but does not apply it)."""
    import torch

    neg_is_pos = (y == negatives).all(-1)
    targets = torch.cat([y.unsqueeze(0), negatives], dim=0)
    logits = torch.cosine_similarity(x.float(), targets.float(), dim=-1) / self.logit_temp
    logits = logits.type_as(x)
    if neg_is_pos.any():
        logits = torch.cat([logits[:1], logits[1:].masked_fill(neg_is_pos, -float(2 ** 30))], dim=0)
    return logits


def build_model(checkpoint: dict):
    """s3prl's ``Wav2Vec2Model`` of a stock checkpoint (weights loaded), with fairseq's ``compute_preds``."""
    import types

    from .bundles import get_family

    model, _ = get_family("wav2vec2").build_model({k: checkpoint[k] for k in ("task_cfg", "model_cfg")})
    model.load_state_dict(checkpoint["model_weight"])
    if model.quantizer is None:
        raise PretrainError("the model has no quantizer (model_cfg quantize_targets is false): nothing to pretrain")
    model.compute_preds = types.MethodType(_compute_preds, model)
    return model


# ------------------------------------------------------------------------------------------------------ data
@dataclass
class TrainingAudio:
    """The clips a run trains on: paths, lengths (samples), and where they came from."""

    files: list[Path]
    lengths: list[int]
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.files)


def _corpus_sources(root: Path) -> dict[str, list[Path]]:
    """The training clips of each task of a corpus laid out as ours (missing tasks: absent)."""
    sources: dict[str, list[Path]] = {}
    ks = root / "speech_commands_v0.01"
    if ks.is_dir():
        held_out = set()
        for name in ("validation_list.txt", "testing_list.txt"):
            if (ks / name).is_file():
                held_out.update(line.strip() for line in (ks / name).read_text().splitlines() if line.strip())
        sources["speech_commands"] = [p for p in sorted(ks.rglob("*.wav"))
                                      if p.relative_to(ks).parts[0] != "_background_noise_"
                                      and p.relative_to(ks).as_posix() not in held_out]
    vox = root / "voxceleb1"
    if (vox / "iden_split.txt").is_file():
        files = []
        for line in (vox / "iden_split.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "1":  # s3prl's SID: 1 train, 2 dev, 3 test
                found = [vox / part / "wav" / parts[1] for part in ("dev", "test")]
                files.extend([p for p in found if p.is_file()][:1])
        sources["voxceleb1"] = sorted(set(files))
    iemocap = root / "IEMOCAP"
    if iemocap.is_dir():
        sources["emotion"] = sorted(p for s in (2, 3, 4, 5)
                                    for p in (iemocap / f"Session{s}" / "sentences" / "wav").rglob("*.wav"))
    libri = root / "LibriSpeech"
    if libri.is_dir():
        sources["asr"] = sorted(p for d in sorted(libri.glob("train*")) if d.is_dir()
                                for p in d.rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    return sources


def corpus_training_audio(root: str | os.PathLike) -> tuple[list[Path], dict]:
    """The training-split clips of every task of a corpus root, and a description (counts, the corpus marker)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PretrainError(f"--corpus {root}: no such folder")
    sources = _corpus_sources(root)
    if not any(sources.values()):
        raise PretrainError(f"--corpus {root} holds none of speech_commands_v0.01/, voxceleb1/iden_split.txt, "
                            "IEMOCAP/, LibriSpeech/ (make one with: superb-redundancy corpus --root DIR)")
    marker = {}
    if (root / ".complete").is_file():
        try:
            marker = json.loads((root / ".complete").read_text()).get("tasks", {})
        except (ValueError, AttributeError):
            marker = {}
    description = {"kind": "corpus", "root": str(root),
                   "tasks": {task: {"clips": len(files), **({"settings": marker[task].get("settings"),
                                                              "hash": marker[task].get("hash")}
                                                             if isinstance(marker.get(task), dict) else {})}
                             for task, files in sources.items()}}
    return [p for files in sources.values() for p in files], description


def training_audio(settings: PretrainSettings) -> TrainingAudio:
    """Every clip the run trains on, read once (lengths, finite samples) and hashed, before the model is built."""
    import numpy as np
    import soundfile

    from .features import AUDIO_SUFFIXES

    if settings.corpus:
        files, source = corpus_training_audio(settings.corpus)
        roots = [Path(settings.corpus).expanduser()]
    else:
        files, roots = [], []
        for folder in settings.data:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise PretrainError(f"--data {folder}: no such folder")
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise PretrainError(f"--data {folder}: no {'/'.join(AUDIO_SUFFIXES)} files under it")
            files.extend(found)
            roots.append(path)
        source = {"kind": "folders", "folders": [str(r) for r in roots]}
    digest = hashlib.sha256()
    kept, lengths, short = [], [], 0
    minimum = int(round(settings.crop_min * SAMPLE_RATE))
    for path in files:
        try:
            with soundfile.SoundFile(str(path)) as audio:
                rate, channels = audio.samplerate, audio.channels
                data = audio.read(dtype="float32", always_2d=True)
        except (RuntimeError, OSError, EOFError) as exc:
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PretrainError(f"unreadable audio file {path}: {text}") from None
        if rate != SAMPLE_RATE:
            raise PretrainError(f"audio file {path} is at {rate} Hz; pretraining reads 16 kHz audio only")
        if not np.isfinite(data).all():
            raise PretrainError(f"audio file {path} holds NaN or infinite samples")
        root = next(r for r in roots if path.is_relative_to(r))
        digest.update(f"{roots.index(root)}:{path.relative_to(root).as_posix()}:{channels}\0".encode())
        digest.update(hashlib.sha256(data.tobytes()).digest())
        if len(data) < minimum:
            short += 1
            continue
        kept.append(path)
        lengths.append(len(data))
    if len(kept) < settings.batch_size:
        raise PretrainError(f"{len(kept)} clip(s) of at least --crop-seconds {settings.crop_min:g} s in the data "
                            f"({short} shorter left out): fewer than --batch-size {settings.batch_size}")
    source.update(clips=len(kept), shorter_left_out=short, seconds=round(sum(lengths) / SAMPLE_RATE, 3),
                  sha256=digest.hexdigest())
    return TrainingAudio(kept, lengths, source)


def _read(path: Path, offset: int, length: int):
    import soundfile

    data, _ = soundfile.read(str(path), start=offset, frames=length, dtype="float32", always_2d=True)
    return data.mean(axis=1)


def iter_batches(audio: TrainingAudio, settings: PretrainSettings, steps: int) -> Iterator:
    """``steps`` batches [B, samples] (float32 tensors): seeded epochs of shuffled clips (the last partial batch
    of an epoch dropped), every clip cropped to the batch's length at a seeded offset."""
    import numpy as np
    import torch

    rng = np.random.default_rng([settings.seed, 1])
    lo, hi = int(round(settings.crop_min * SAMPLE_RATE)), int(round(settings.crop_max * SAMPLE_RATE))
    order: list[int] = []
    for _ in range(steps):
        if len(order) < settings.batch_size:
            order = [int(i) for i in rng.permutation(len(audio))]
        batch, order = order[:settings.batch_size], order[settings.batch_size:]
        length = min(int(rng.integers(lo, hi + 1)), min(audio.lengths[i] for i in batch))
        offsets = [int(rng.integers(0, audio.lengths[i] - length + 1)) for i in batch]
        yield torch.from_numpy(np.stack([_read(audio.files[i], off, length) for i, off in zip(batch, offsets)]))


# -------------------------------------------------------------------------------------------------- objective
def loss_terms(model, source) -> dict:
    """wav2vec 2.0's loss on a batch (model in its current mode; masks and negatives from the global RNGs):
    a dict of tensors ``loss`` (to minimise), ``contrastive``, ``diversity``, ``features_pen`` and numbers
    ``accuracy``, ``code_perplexity``, ``prob_perplexity``, ``temp``, ``masked_frames``."""
    import torch
    import torch.nn.functional as F

    net_output = model(source, padding_mask=None, mask=True, features_only=False)
    logits = model.get_logits(net_output).float()
    target = logits.new_zeros(logits.size(0), dtype=torch.long)
    contrastive = F.cross_entropy(logits, target, reduction="mean")
    extra = model.get_extra_losses(net_output)  # [(num_vars - prob_ppl) / num_vars, features_pen]
    diversity, features_pen = extra[0], extra[1]
    loss = contrastive + DIVERSITY_WEIGHT * diversity + FEATURE_PENALTY_WEIGHT * features_pen
    with torch.no_grad():  # fairseq's accuracy: argmax at the positive, not a degenerate all-equal row
        best, worst = logits.argmax(-1) == 0, logits.argmin(-1) == 0
        correct = int(best.sum()) - int((best & worst).sum())
    return {"loss": loss, "contrastive": contrastive, "diversity": diversity, "features_pen": features_pen,
            "accuracy": correct / max(1, logits.size(0)),
            "code_perplexity": float(net_output["code_perplexity"].detach()),
            "prob_perplexity": float(net_output["prob_perplexity"].detach()), "temp": float(net_output["temp"]),
            "masked_frames": int(logits.size(0))}


def evaluate(model, source, seed: int = 0) -> dict:
    """:func:`loss_terms` in eval mode (no dropout, hard codes) with the masks and negatives of ``seed``: a fixed
    measurement of a batch, for comparing a model before and after training. Global RNG states are restored."""
    import numpy as np
    import torch

    was_training = model.training
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            np.random.seed(seed)
            model.eval()
            terms = loss_terms(model, source)
    finally:
        np.random.set_state(state)
        model.train(was_training)
    return {k: float(v) for k, v in terms.items()}


def _lr(settings: PretrainSettings, update: int) -> float:
    """Linear warm-up to ``lr`` over the warm-up, then linear decay towards 0 at ``steps`` (update is 0-based)."""
    warmup = settings.warmup_steps()
    if update < warmup:
        return settings.lr * (update + 1) / warmup
    return settings.lr * (settings.steps - update) / max(1, settings.steps - warmup)


# ------------------------------------------------------------------------------------------------------- runs
@dataclass
class PretrainResult:
    checkpoint: Path
    record_path: Path
    record: dict

    @property
    def losses(self) -> list[float]:
        return self.record["log"]["loss"]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__), "s3prl": v("s3prl"),
            "superb_redundancy": v("superb-redundancy"), "python": platform.python_version()}


def command_line(settings: PretrainSettings, output: str | os.PathLike, stop_after: Optional[int] = None) -> str:
    """The ``superb-redundancy pretrain`` command that reruns ``settings`` into ``output``."""
    defaults = PretrainSettings()
    args = ["superb-redundancy", "pretrain"]
    args += ["--corpus", str(settings.corpus)] if settings.corpus else ["--data", *map(str, settings.data)]
    for f in dataclasses.fields(PretrainSettings):
        if f.name in ("corpus", "data", "crop_min", "crop_max", "layer_norm_first"):
            continue
        value = getattr(settings, f.name)
        if f.name in ("steps", "seed", "threads") or value != getattr(defaults, f.name):
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    args += [] if settings.layer_norm_first else ["--post-ln"]
    args += ["--crop-seconds", repr(settings.crop_min), repr(settings.crop_max), "--output", str(output)]
    if stop_after is not None:
        args += ["--stop-after", str(stop_after)]
    return shlex.join(args)


def format_record(record: dict) -> str:
    """The record as indented JSON, each column of the per-step log on one line (a few hundred kB, not MB)."""
    head = json.dumps({k: v for k, v in record.items() if k != "log"}, indent=1)
    columns = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record["log"].items())
    return f'{head[:-2]},\n "log": {{\n{columns}\n }}\n}}\n'


def settings_from_record(record: dict, **changes) -> PretrainSettings:
    """The settings a record was trained with (``changes`` replace fields, e.g. ``corpus=`` another copy)."""
    values = dict(record["settings"])
    values["data"] = tuple(values.get("data") or ())
    values.update(changes)
    return PretrainSettings(**values)


def load_record(path: str | os.PathLike) -> dict:
    """A training record: ``<ckpt>.train.json``, or the ``superb_redundancy`` entry of a checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainError(f"training record not found: {path}")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    from .files import load_checkpoint

    checkpoint = load_checkpoint(path, "checkpoint", PretrainError, mmap=True)
    if not isinstance(checkpoint, dict) or RECORD_KEY not in checkpoint:
        raise PretrainError(f"{path} holds no training record (no {RECORD_KEY!r} entry)")
    return checkpoint[RECORD_KEY]


def record_path(checkpoint: str | os.PathLike) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".train.json") if checkpoint.suffix != ".pt" else \
        checkpoint.with_suffix(".train.json")


def _check_output(output: str | os.PathLike) -> Path:
    from .atomic import check_output_dir

    path = Path(output).expanduser()
    if path.is_dir():
        raise PretrainError(f"--output {output} is a folder; give the checkpoint's file path (e.g. {path}/w2v2.pt)")
    check_output_dir(path.parent, "--output")
    return path


@contextlib.contextmanager
def _deterministic(threads: int, seed: int) -> Iterator[None]:
    """Seeded python/numpy/torch, deterministic torch algorithms, ``threads`` threads; all restored after."""
    import numpy as np
    import torch

    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic, warn_only=old_warn)
        random.setstate(py_state)
        np.random.set_state(np_state)


def pretrain(settings: PretrainSettings, output: str | os.PathLike, stop_after: Optional[int] = None,
             progress: bool = True, argv: Optional[Sequence[str]] = None) -> PretrainResult:
    """Pretrain, write the checkpoint to ``output`` and the record beside it; returns both paths and the record.

    ``stop_after``: run only the first N updates of the ``settings.steps`` schedule (learning rate and temperature
    as in the full run), e.g. to check that a run reproduces a shipped record's first losses.
    """
    settings = settings.check()
    if stop_after is not None and not (isinstance(stop_after, int) and 1 <= stop_after <= settings.steps):
        raise PretrainError(f"--stop-after must be between 1 and --steps ({settings.steps}), got {stop_after!r}")
    output = _check_output(output)
    audio = training_audio(settings)  # every clip read and checked before the model is built
    steps = stop_after or settings.steps

    import numpy as np
    import torch
    from tqdm import tqdm

    from . import atomic

    started, clock = time.time(), time.perf_counter()
    log: dict[str, list] = {name: [] for name in LOG_COLUMNS}
    with _deterministic(settings.threads, settings.seed):
        checkpoint = _initial_checkpoint(settings)
        model = build_model(checkpoint)
        model.train()
        decay, no_decay = [], []
        for name, parameter in model.named_parameters():
            (no_decay if parameter.ndim < 2 or name.endswith(".bias") else decay).append(parameter)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=settings.lr, betas=(0.9, 0.98), eps=1e-6, foreach=False)
        bar = tqdm(total=steps, desc="pretrain", unit="step", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        loop = time.perf_counter()
        for update, source in enumerate(iter_batches(audio, settings, steps)):
            lr = _lr(settings, update)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.quantizer.set_num_updates(update)
            terms = loss_terms(model, source)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                bar.close()
                raise PretrainError(f"the loss became {float(loss)} at step {update + 1}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                  settings.clip_norm if settings.clip_norm > 0 else float("inf"))
            optimizer.step()
            values = {**{k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in terms.items()},
                      "lr": lr, "grad_norm": float(norm),
                      "crop_samples": int(source.size(1))}
            for name in LOG_COLUMNS:
                log[name].append(int(values[name]) if name in ("masked_frames", "crop_samples") else values[name])
            bar.set_postfix(loss=f"{values['loss']:.4f}", acc=f"{values['accuracy']:.3f}",
                            div=f"{values['diversity']:.3f}")
            bar.update(1)
        bar.close()
        loop = time.perf_counter() - loop
        model.eval()
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    wall = time.perf_counter() - clock

    window = min(50, steps)
    record = {
        "format": RECORD_FORMAT,
        "objective": "wav2vec 2.0 (fairseq's wav2vec criterion on s3prl's Wav2Vec2Model): InfoNCE over masked "
                     f"frames + {DIVERSITY_WEIGHT:g} * codebook diversity + {FEATURE_PENALTY_WEIGHT:g} * feature "
                     "penalty; losses in nats per masked frame",
        "settings": {**asdict(settings), "data": list(settings.data)},
        "command": command_line(settings, output.name, stop_after),
        "seeds": {"python": settings.seed, "numpy": settings.seed, "torch": settings.seed,
                  "init": settings.seed, "data": [settings.seed, 1]},
        "threads": settings.threads,
        "deterministic_algorithms": True,
        "steps_run": steps,
        "data": audio.source,
        "model": {"family": "wav2vec2", "hub_name": "wav2vec2_local", "config": asdict(model_config(settings)),
                  "parameters": int(sum(v.numel() for k, v in weights.items())),
                  "latent_temp": settings.temperature(), "warmup": settings.warmup_steps()},
        "versions": _versions(),
        "log": log,
        "final": {"step": steps, "loss": log["loss"][-1], "accuracy": log["accuracy"][-1],
                  f"loss_mean_last_{window}": float(np.mean(log["loss"][-window:])),
                  f"accuracy_mean_last_{window}": float(np.mean(log["accuracy"][-window:])),
                  f"loss_mean_first_{window}": float(np.mean(log["loss"][:window])),
                  f"accuracy_mean_first_{window}": float(np.mean(log["accuracy"][:window]))},
    }
    stock = {k: checkpoint[k] for k in ("task_cfg", "model_cfg")}
    atomic.torch_save({**stock, "model_weight": weights, RECORD_KEY: record}, output)
    from .files import sha256_file

    full = dict(record, argv=list(sys.argv if argv is None else argv), checkpoint=str(output),
                checkpoint_sha256=sha256_file(output), wall_seconds=round(wall, 3),
                seconds_per_step=round(loop / steps, 4),
                started=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                machine={"platform": platform.platform(), "processor": platform.machine(),
                         "cpu_count": os.cpu_count()})
    path = record_path(output)
    atomic.write_text(path, format_record(full))
    return PretrainResult(output, path, full)


# -------------------------------------------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    d = PretrainSettings()
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="a corpus root laid out as ours (superb-redundancy corpus): its training "
                                         "splits of all four tasks")
    source.add_argument("--data", nargs="+", metavar="DIR", help="folder(s) of .wav/.flac audio (every clip)")
    p.add_argument("--output", required=True, help="the checkpoint to write (s3prl's stock wav2vec2 format); the "
                                                   "record goes beside it as <name>.train.json")
    p.add_argument("--steps", type=int, default=d.steps, help=f"updates (default {d.steps})")
    p.add_argument("--stop-after", type=int, help="run only the first N updates of the --steps schedule (checks)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument("--warmup", type=int, help="warm-up updates (default 8%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--clip-norm", type=float, default=d.clip_norm, help="gradient-norm clip (0: none)")
    p.add_argument("--seed", type=int, default=d.seed, help="python, numpy, torch and data seed")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (losses depend on it)")
    p.add_argument("--crop-seconds", type=float, nargs=2, default=(d.crop_min, d.crop_max), metavar=("MIN", "MAX"),
                   help="random crop length per batch (capped by its shortest clip; shorter clips left out)")
    for name, help_ in (("layers", "transformer layers"), ("dim", "width"), ("ffn-dim", "feed-forward width"),
                        ("heads", "attention heads"), ("conv-dim", "CNN channels"),
                        ("conv-pos", "positional conv kernel"), ("conv-pos-groups", "positional conv groups"),
                        ("final-dim", "contrastive projection width"), ("latent-vars", "codebook entries per group"),
                        ("latent-groups", "codebook groups"), ("mask-length", "masked span length (frames)"),
                        ("num-negatives", "distractors per masked frame")):
        default = getattr(d, name.replace("-", "_"))
        p.add_argument(f"--{name}", type=int, default=default, help=f"{help_} (default {default})")
    p.add_argument("--mask-prob", type=float, default=d.mask_prob, help=f"span-start probability ({d.mask_prob})")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--feature-grad-mult", type=float, default=d.feature_grad_mult)
    p.add_argument("--post-ln", dest="layer_norm_first", action="store_false",
                   help="wav2vec 2.0 Base's post-LN transformer instead of a pre-LN one (Large's layer_norm_first); "
                        "deep post-LN stacks stay at chance far longer")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def settings_from_args(args) -> PretrainSettings:
    names = {f.name for f in dataclasses.fields(PretrainSettings)} - {"corpus", "data", "crop_min", "crop_max"}
    return PretrainSettings(corpus=args.corpus, data=tuple(args.data or ()), crop_min=args.crop_seconds[0],
                            crop_max=args.crop_seconds[1], **{n: getattr(args, n) for n in names})


def run(args) -> int:
    result = pretrain(settings_from_args(args), args.output, stop_after=args.stop_after, progress=not args.quiet)
    record, log = result.record, result.record["log"]
    print(f"pretrained {record['steps_run']} step(s) on {record['data']['clips']} clips in "
          f"{record['wall_seconds']:.1f} s ({record['seconds_per_step']:.3f} s/step): loss {log['loss'][0]:.4f} -> "
          f"{log['loss'][-1]:.4f}, contrastive accuracy {log['accuracy'][0]:.3f} -> {log['accuracy'][-1]:.3f}")
    print(f"checkpoint: {result.checkpoint}  (use: -u wav2vec2_local -k {result.checkpoint})")
    print(f"record:     {result.record_path}")
    return 0
