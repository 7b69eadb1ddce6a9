"""Step 1 of mimicking (task-agnostic distillation): a teacher feature cache, then MSE training of mimickers.

The teacher runs ONCE per clip, when the cache is built (:func:`build_teacher_cache`); every configuration and
every epoch then reads the cache, so training the paper's grid of 12 configurations (:func:`train_grid`) costs a
single teacher pass.

The cache (a directory, written to a temp dir and renamed into place, reused while its manifest matches):

* ``features.npy``: the mimicker's input for every frame of every clip: the projected CNN features (output of
  the teacher's ``layer_norm`` + ``post_extract_proj``, the input of its encoder), ``[total_frames, d]``;
* ``layer_<t>.npy``: the output of transformer layer ``t`` (s3prl's ``hidden_states[t + 1]``; for the final
  layer the encoder output, after the final LayerNorm of pre-LN models), ``[total_frames, d]``, only for the
  layers some configuration mimics (by default the final layer; :func:`train_grid` stores the union of its
  configurations' targets) -- storing all L+1 states would cost 13-25x the disk for nothing;
* ``index.npy``: ``[clips, 3]`` int64 (frame offset, frame count, source file index);
* ``frontend.pt``: the teacher's record and front-end weights (so training never reads the teacher again);
* ``manifest.json``: format, teacher (path, sha256, family, L, d), layers, dtype, sources (path, bytes).

A span ``[i, j]`` (block replacement, :class:`~superb_redundancy.mimic.MimicConfig`) needs the states entering
layer i and leaving layer j: ``layer_<j>.npy`` and, as its input, ``features.npy`` for i = 0 or ``layer_<i-1>.npy``
for i > 0 (the output of layer i-1 is the input of layer i); :func:`cache_layers` names them and
:func:`train_grid` stores their union, so the whole stack (i = 0) reads exactly what it always did.

Arrays are ``.npy`` files opened memory-mapped, float16 by default (half the disk of float32; a value outside
float16's range is refused with a hint to use ``dtype="float32"``).

Clips are run one at a time, unpadded, so cached features never depend on what a clip was batched with.
Audio: ``*.wav`` / ``*.flac`` under a folder (recursive, sorted) or a list of files (or folders), listed and read
by :mod:`superb_redundancy.features` (soundfile, multi-channel files averaged to mono), 16 kHz (other rates are
refused: resample first); :func:`corpus_audio` lists a split of a SUPERB task's corpus.

Baselines (:func:`init_artifact`): a non-mimicker (seeded random mimicking layers, no step 1) or, with
``n_layers: 0``, classifier only; both are trained only in step 2 (s3prl's runner, see :mod:`superb_redundancy.mimic`).

The mimicker's own accuracy during step 1 (as the authors' code tracks it): with ``eval_head`` (an s3prl
experiment trained on the teacher) every epoch also evaluates the mimicker through that experiment's trained
Featurizer and head on its dev split (:class:`HeadEvaluator`, reusing
:func:`superb_redundancy.pruning_curves.load_experiment` and :func:`~superb_redundancy.pruning_curves.evaluate_upstream`),
with the upstream in the teacher's L+1 positions; ``select_by="acc"`` keeps the weights of the best accuracy
instead of the best validation MSE.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .files import load_checkpoint, model_sha256
from . import atomic, features as audio_io
from .bundles import ModelFamily, check_checkpoint, get_family
from .mimic import (
    MimicConfig,
    MimicError,
    Mimicker,
    MimicUpstream,
    build_frontend,
    build_teacher_encoder,
    encoder_state,
    frontend_state,
    save_artifact,
    sha256_file,
    teacher_record,
)

__all__ = [
    "TeacherCache",
    "Teacher",
    "HeadEvaluator",
    "cache_layers",
    "build_teacher_cache",
    "list_audio",
    "corpus_audio",
    "step1_audio",
    "train_mimicker",
    "train_grid",
    "init_artifact",
    "init_grid",
    "baseline_name",
    "masked_mse",
    "split_clips",
    "resume_state_path",
    "CACHE_FORMAT",
    "SAMPLE_RATE",
]

CACHE_FORMAT = "superb_redundancy.teacher_cache"
CACHE_VERSION = 1
SAMPLE_RATE = 16000
DTYPES = ("float16", "float32")
#: how step 1 picks the weights it keeps: the best validation MSE, or the best accuracy through an eval head
SELECT_BY = ("mse", "acc")


def _progress(iterable, enabled: bool, **kwargs):
    from tqdm import tqdm

    return tqdm(iterable, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


def _device(device: Optional[str]) -> torch.device:
    return torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))


# ---------------------------------------------------------------------------------------------- audio
def list_audio(audio: str | os.PathLike | Sequence[str | os.PathLike], limit: Optional[int] = None,
               seed: int = 0) -> list[Path]:
    """The clips of a folder (recursive ``*.wav``/``*.flac``, sorted) or of a list of files/folders, as absolute
    paths (:func:`superb_redundancy.features.list_audio` per entry); ``limit`` keeps a seeded random subset."""
    entries = [audio] if isinstance(audio, (str, os.PathLike)) else list(audio)
    if not entries:
        raise MimicError("no audio files given")
    if limit is not None and limit < 1:
        raise MimicError(f"limit must be >= 1, got {limit}")
    files: list[Path] = []
    try:
        for entry in entries:
            files += [p.resolve() for p in audio_io.list_audio(Path(entry).expanduser())]
        if limit is not None and limit < len(files):
            files = [files[k] for k in sorted(np.random.default_rng(seed).choice(len(files), limit, replace=False))]
    except (FileNotFoundError, ValueError) as error:
        raise MimicError(str(error)) from None
    return files


def corpus_audio(corpus_root: Optional[str | os.PathLike], task: str, split: str = "train",
                 datarc: Optional[dict] = None) -> list[Path]:
    """The audio of one split (train, dev or test) of a SUPERB task's corpus, laid out as s3prl reads it (the
    synthetic corpus or the real one): speech_commands (v0.01: ``validation_list.txt`` / ``testing_list.txt``
    split the training root, test = the test set), voxceleb1 (``iden_split.txt`` 1/2/3), emotion (fold 1:
    ``Session1/{train,test}_meta_data.json``; no fixed dev split), asr (train-clean-100 / dev-clean / test-clean)."""
    from . import tasks

    splits = ("train", "dev", "test")
    try:
        tasks.get_task(task)
    except ValueError as error:
        raise MimicError(str(error)) from None
    if split not in splits:
        raise MimicError(f"corpus split {split!r} is invalid; valid: {', '.join(splits)}")
    if datarc is not None:  # the datarc keys of a real corpus, as a study gives them
        paths = {key: Path(value) for key, value in datarc.items()}
    else:
        paths = {key: Path(value) for key, value in tasks.data_overrides(task, corpus_root).items()}
        paths = {key.rsplit(".", 1)[-1]: value for key, value in paths.items()}
    try:
        if task in ("speech_commands", "speech_commands_35"):
            root = paths["speech_commands_root"]
            if split == "test" and paths.get("speech_commands_test_root"):
                return list_audio(paths["speech_commands_test_root"])
            listed = {name: set((root / f"{name}_list.txt").read_text().split()) for name in ("validation", "testing")}
            words = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith("_")]
            files = [p for d in words for p in list_audio(d)]
            if split == "dev":
                return [p for p in files if f"{p.parent.name}/{p.name}" in listed["validation"]]
            if split == "test":
                return [p for p in files if f"{p.parent.name}/{p.name}" in listed["testing"]]
            dropped = listed["validation"] | listed["testing"]
            return [p for p in files if f"{p.parent.name}/{p.name}" not in dropped]
        if task == "voxceleb1":
            root, wanted = paths["file_path"], str(splits.index(split) + 1)
            lines = [line.split() for line in paths["meta_data"].read_text().splitlines() if line.strip()]
            return list_audio([next((root / part / "wav" / rel for part in ("dev", "test")
                                     if (root / part / "wav" / rel).is_file()), root / "dev" / "wav" / rel)
                               for number, rel in lines if number == wanted])
        if task == "emotion":
            if split == "dev":
                raise MimicError("emotion has no fixed dev split (s3prl draws 20% of train); use train or test")
            meta = json.loads((paths["meta_data"] / "Session1" / f"{split}_meta_data.json").read_text())
            return list_audio([paths["root"] / item["path"] for item in meta["meta_data"]])
        if task == "asr":
            names = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
            return list_audio(paths["libri_root"] / names[split])
    except (OSError, KeyError, ValueError) as error:
        if isinstance(error, MimicError):
            raise
        raise MimicError(f"cannot list the {split} audio of {task} under {corpus_root}: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    raise MimicError(f"no split listing for task {task!r}")  # pragma: no cover (tasks.data_overrides checks it)


def step1_audio(audio=None, corpus: Optional[str | os.PathLike] = None, task: Optional[str] = None,
                split: str = "train", limit: Optional[int] = None, seed: int = 0) -> list[Path]:
    """Step-1 audio: ``audio`` (folders/files) or a ``corpus`` split of ``task``; ``limit``: a seeded subset."""
    if (audio is None) == (corpus is None):
        raise MimicError("give the step-1 audio either as audio folders/files or as a corpus root with a task")
    if corpus is not None:
        if not task:
            raise MimicError("a corpus split needs its task (speech_commands, voxceleb1, emotion or asr)")
        files = corpus_audio(corpus, task, split)
        return list_audio(files, limit=limit, seed=seed) if limit is not None else files
    return list_audio(audio, limit=limit, seed=seed)


def _read_audio(path: Path) -> np.ndarray:
    return audio_io.load_wav(path).numpy()


def _audio_samples(path: Path) -> int:
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as error:
        raise MimicError(f"unreadable audio file {path}: {str(error).splitlines()[0]}") from None
    if info.samplerate != SAMPLE_RATE:
        raise MimicError(f"{path}: sample rate {info.samplerate} Hz; the teachers take {SAMPLE_RATE} Hz (resample first)")
    return int(info.frames)


# ---------------------------------------------------------------------------------------------- teacher
def _teacher_checkpoint(teacher: str | os.PathLike, family: Optional[str], refresh: bool = False):
    """(path, family, checkpoint) of a teacher given as a checkpoint path, or as a hub name with ``family``."""
    from .pruned_upstream import PrunedUpstreamError, load_base_checkpoint, resolve_base

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
    except PrunedUpstreamError as error:
        raise MimicError(str(error)) from None


class Teacher:
    """A teacher's stock s3prl expert, run on one clip at a time.

    :meth:`run` returns the projected features (captured at the encoder's input) and the outputs of the
    requested transformer layers (s3prl's ``hidden_states[t + 1]``), each ``[T, d]`` float32 on the CPU.
    """

    def __init__(self, path: Path, family: ModelFamily, device: torch.device):
        from .pruned_upstream import _stock_expert

        self.expert = _stock_expert(Path(path), family).to(device).eval()
        self.device = device
        self._captured: list[torch.Tensor] = []
        self.expert.model.encoder.register_forward_pre_hook(lambda module, args: self._captured.append(args[0]))

    @torch.no_grad()
    def run(self, wav: np.ndarray, layers: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        self._captured.clear()
        hidden_states = self.expert([torch.from_numpy(wav).to(self.device)])["hidden_states"]
        features = self._captured[0]
        frames = min(features.size(1), hidden_states[0].size(1))
        return (features[0, :frames].float().cpu(),
                {t: hidden_states[t + 1][0, :frames].float().cpu() for t in layers})


# ---------------------------------------------------------------------------------------------- the cache
class TeacherCache:
    """A built cache (see the module docstring), arrays memory-mapped read-only."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        manifest_path = self.directory / "manifest.json"
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise MimicError(f"not a teacher cache: {self.directory} ({str(error).splitlines()[0]})") from None
        if self.manifest.get("format") != CACHE_FORMAT or self.manifest.get("version") != CACHE_VERSION:
            raise MimicError(f"{self.directory} is not a version-{CACHE_VERSION} teacher cache")
        self.teacher: dict = self.manifest["teacher"]
        self.layers: list[int] = [int(t) for t in self.manifest["layers"]]
        self.dtype: str = self.manifest["dtype"]
        self.index = np.load(self.directory / "index.npy")
        self.offsets, self.lengths = self.index[:, 0], self.index[:, 1]
        self.features = np.load(self.directory / "features.npy", mmap_mode="r")
        self.hidden = {t: np.load(self.directory / f"layer_{t}.npy", mmap_mode="r") for t in self.layers}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def hidden_size(self) -> int:
        return int(self.teacher["hidden_size"])

    @property
    def num_layers(self) -> int:
        return int(self.teacher["num_layers"])

    def frontend(self) -> dict:
        """``{"teacher": record with checkpoint_config, "frontend": state_dict}``."""
        return load_checkpoint(self.directory / "frontend.pt", "teacher cache front end", MimicError)

    def _gather(self, array: np.ndarray, ids: Sequence[int], frames: int) -> torch.Tensor:
        out = np.zeros((len(ids), frames, array.shape[1]), dtype=np.float32)
        for b, i in enumerate(ids):
            start, length = int(self.offsets[i]), int(self.lengths[i])
            out[b, :length] = array[start:start + length]
        return torch.from_numpy(out)

    def batch(self, ids: Sequence[int], layers: Sequence[int], device: torch.device, source: Optional[int] = None):
        """(inputs [B,T,d], padding_mask [B,T] True=pad, [targets [B,T,d] per layer]) as float32 tensors; the
        inputs are the projected features (``source`` None) or the output of layer ``source`` (a span's input)."""
        lengths = torch.as_tensor(self.lengths[list(ids)])
        frames = int(lengths.max())
        padding_mask = torch.arange(frames)[None, :] >= lengths[:, None]
        features = self._gather(self.features if source is None else self.hidden[source], ids, frames).to(device)
        targets = [self._gather(self.hidden[t], ids, frames).to(device) for t in layers]
        return features, padding_mask.to(device), targets


def cache_layers(config: MimicConfig, num_layers: int) -> list[int]:
    """The layer outputs a configuration reads from the cache: its targets and, for a span starting at i > 0,
    its input (the output of layer i-1)."""
    source = config.input_layer(num_layers)
    return sorted(set(config.resolve_targets(num_layers)) | ({source} if source is not None else set()))


def _sources(files: Sequence[Path]) -> list[dict]:
    return [{"path": str(p), "bytes": p.stat().st_size} for p in files]


def _is_cache_dir(path: Path) -> bool:
    """A directory we may replace: empty, or holding a manifest of our format."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == CACHE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _reusable(output: Path, sha256: str, content: str, sources: list[dict], dtype: str) -> Optional[TeacherCache]:
    if not (output / "manifest.json").is_file():
        return None
    try:
        cache = TeacherCache(output)
    except (MimicError, OSError, KeyError, ValueError):
        return None
    m = cache.manifest
    # the teacher by content where the cache records it (a regenerated identical teacher is the same teacher)
    same_teacher = (m["teacher"]["content_sha256"] == content if m["teacher"].get("content_sha256")
                    else m["teacher"].get("sha256") == sha256)
    if same_teacher and m.get("sources") == sources and m.get("dtype") == dtype:
        return cache
    return None


def build_teacher_cache(teacher: str | os.PathLike, audio, output: str | os.PathLike,
                        layers: Optional[Iterable[int]] = None, family: Optional[str] = None,
                        dtype: str = "float16", device: Optional[str] = None, progress: bool = True,
                        refresh: bool = False) -> TeacherCache:
    """Run ``teacher`` once per clip of ``audio`` and store its features and ``layers``' outputs under ``output``.

    ``teacher``: a stock checkpoint path (family inferred), or with ``family`` an s3prl hub name. ``layers``:
    transformer layers 0..L-1 whose outputs to store (default: the final layer). An existing cache of the same
    teacher (sha256), audio (paths and sizes) and dtype holding all ``layers`` is reused without running the
    teacher; one holding fewer layers is rebuilt with the union. ``refresh=True`` always rebuilds.
    """
    if dtype not in DTYPES:
        raise MimicError(f"cache dtype {dtype!r} is invalid; valid: {' or '.join(DTYPES)}")
    output = Path(output).expanduser()
    path, fam, checkpoint = _teacher_checkpoint(teacher, family)
    num_layers = fam.num_layers(checkpoint)
    wanted = sorted(set(int(t) for t in layers)) if layers is not None else [num_layers - 1]
    for t in wanted:
        if not 0 <= t < num_layers:
            raise MimicError(f"cache layer {t} is outside the teacher's transformer stack; "
                             f"valid 0..{num_layers - 1} (the teacher has {num_layers} layers)")
    sha256, content = sha256_file(path), model_sha256(checkpoint)
    files = list_audio(audio)
    sources = _sources(files)

    existing = None if refresh else _reusable(output, sha256, content, sources, dtype)
    if existing is not None:
        if set(wanted) <= set(existing.layers):
            return existing
        wanted = sorted(set(wanted) | set(existing.layers))
        print(f"[mimic] {output}: cache lacks layers {sorted(set(wanted) - set(existing.layers))}; rebuilding "
              f"with layers {wanted}", file=sys.stderr)
        del existing

    if output.exists() and not _is_cache_dir(output):
        raise MimicError(f"{output} exists and is not a teacher cache; pick another cache directory")
    record = teacher_record(checkpoint, fam, path, sha256, content)
    frontend = frontend_state(checkpoint, fam)
    del checkpoint
    from .features import check_audio

    files = check_audio(files, error=MimicError)  # corrupt, non-audio or NaN clips: one line before the teacher runs
    samples = [_audio_samples(p) for p in files]
    dev = _device(device)
    runner = Teacher(path, fam, dev)
    conv = [block[0] for block in runner.expert.model.feature_extractor.conv_layers]

    def frames_of(n: int) -> int:
        for c in conv:
            n = (n - c.kernel_size[0]) // c.stride[0] + 1
        return max(n, 0)

    frames = [frames_of(n) for n in samples]
    keep = [k for k, f in enumerate(frames) if f > 0]
    skipped = [str(files[k]) for k, f in enumerate(frames) if f <= 0]
    if not keep:
        raise MimicError(f"every clip of {audio} is shorter than the teacher's receptive field")
    index = np.zeros((len(keep), 3), dtype=np.int64)
    offset = 0
    for row, k in enumerate(keep):
        index[row] = (offset, frames[k], k)
        offset += frames[k]
    total, d = offset, int(record["hidden_size"])

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np_dtype = np.dtype(dtype)
        features = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np_dtype, shape=(total, d))
        hidden = {t: np.lib.format.open_memmap(tmp / f"layer_{t}.npy", mode="w+", dtype=np_dtype, shape=(total, d))
                  for t in wanted}
        for row, k in enumerate(_progress(keep, progress, desc="teacher cache", unit="clip")):
            start, length = int(index[row, 0]), int(index[row, 1])
            feats, outs = runner.run(_read_audio(files[k]), wanted)
            if feats.size(0) != length:
                raise MimicError(f"{files[k]}: the teacher made {feats.size(0)} frames, expected {length}")
            for array, value, what in [(features, feats, "features")] + [(hidden[t], outs[t], f"layer {t}") for t in wanted]:
                stored = value.numpy().astype(np_dtype)
                if not np.isfinite(stored).all():
                    raise MimicError(f"{files[k]}: teacher {what} do not fit in {dtype} (max |x| = "
                                     f"{float(value.abs().max()):.3g}); build the cache with dtype='float32'")
                array[start:start + length] = stored
        for array in [features, *hidden.values()]:
            array.flush()
        del features, hidden
        np.save(tmp / "index.npy", index)
        torch.save({"teacher": record, "frontend": frontend}, tmp / "frontend.pt")
        manifest = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "teacher": {k: v for k, v in record.items() if k != "checkpoint_config"},
            "layers": wanted,
            "layer_meaning": "layer_<t>.npy is the output of transformer layer t (s3prl hidden_states[t + 1])",
            "features": "features.npy: the teacher's projected CNN features (layer_norm + post_extract_proj)",
            "dtype": dtype,
            "hidden_size": d,
            "num_clips": len(keep),
            "num_frames": total,
            "sample_rate": SAMPLE_RATE,
            "sources": sources,
            "skipped_too_short": skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if output.exists():
            trash = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(output, trash)
            os.replace(tmp, output)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TeacherCache(output)


# ---------------------------------------------------------------------------------------------- training
def masked_mse(prediction: torch.Tensor, target: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean squared error over the valid frames (``padding_mask`` True = padding) and all dimensions."""
    if padding_mask is None:
        return torch.mean((prediction - target) ** 2)
    valid = (~padding_mask).unsqueeze(-1).to(prediction.dtype)
    return ((prediction - target) ** 2 * valid).sum() / (valid.sum() * prediction.size(-1)).clamp_min(1)


def _step1_terms(model: Mimicker, features, padding_mask, targets, teacher_forcing: bool) -> list[torch.Tensor]:
    teacher_inputs = targets[:-1] if teacher_forcing and len(targets) > 1 else None
    outputs = model(features, padding_mask, teacher_inputs=teacher_inputs)[1:]
    return [masked_mse(o, t, padding_mask) for o, t in zip(outputs, targets)]


def split_clips(num_clips: int, config) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train ids, validation ids) of a cache's clips: ``val_fraction`` of them, at most ``max_val_clips``,
    at least one where there are two clips (``config``: a MimicConfig or a HealConfig, which share these fields)."""
    order = np.random.default_rng(config.seed).permutation(num_clips)
    n_val = min(config.max_val_clips, int(round(config.val_fraction * num_clips)))
    if config.val_fraction > 0 and num_clips >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, num_clips - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def _evaluate(model, cache, ids, targets, config, device, source: Optional[int] = None) -> Optional[list[float]]:
    """Per-term validation MSE over all valid frames of ``ids`` (frame-weighted), or None without ids."""
    if len(ids) == 0:
        return None
    model.eval()
    sums = np.zeros(len(targets))
    count = 0
    for start in range(0, len(ids), config.batch_size):
        batch = ids[start:start + config.batch_size]
        features, mask, wanted = cache.batch(batch, targets, device, source)
        valid = int((~mask).sum())
        terms = _step1_terms(model, features, mask, wanted, config.teacher_forcing)
        sums += np.array([float(t) for t in terms]) * valid
        count += valid
    return [float(x) for x in sums / max(count, 1)]


def resume_state_path(output: Path) -> Path:
    """Where a training run's resumable state goes: beside its output (the mimic trainer's and heal's)."""
    return output.with_name(output.name + ".state.pt")


def _comparable(config: dict) -> dict:
    # through MimicConfig: a state written before a field existed holds its default
    return {k: v for k, v in MimicConfig.from_dict(config).to_dict().items() if k != "epochs"}


# ---------------------------------------------------------------------------------------------- teacher layers
def _cache_teacher(cache: "TeacherCache", teacher) -> dict:
    """The teacher checkpoint the cache was built from: ``teacher`` (a loaded stock checkpoint, trusted, or a
    path) or the path the cache records; a path is checked against the cache's teacher by content."""
    if isinstance(teacher, dict):
        return teacher
    path = Path(str(teacher or cache.teacher["path"])).expanduser()
    if not path.is_file():
        raise MimicError(f"a span keeps teacher layers, read from the teacher checkpoint: {path} not found; pass "
                         "the checkpoint the cache was built from (teacher=PATH, --teacher)")
    checkpoint = load_checkpoint(path, "teacher checkpoint", MimicError)
    recorded = cache.teacher.get("content_sha256")
    found = model_sha256(checkpoint) if recorded else sha256_file(path)
    if found != (recorded or cache.teacher["sha256"]):
        raise MimicError(f"{path} is not the teacher of cache {cache.directory} (sha256 {found[:12]}..., the cache's "
                         f"teacher {cache.teacher['path']}: {str(recorded or cache.teacher['sha256'])[:12]}...)")
    return checkpoint


def _span_weights(cache: "TeacherCache", config: MimicConfig, teacher) -> Optional[dict]:
    """The kept teacher-encoder weights of a partial span (None for the whole stack: nothing is kept)."""
    if config.whole_stack(cache.num_layers):
        return None
    family = get_family(cache.teacher["family"])
    return encoder_state(_cache_teacher(cache, teacher), family, config.resolve_span(cache.num_layers))


# ---------------------------------------------------------------------------------------------- eval head
class HeadEvaluator:
    """The accuracy of a mimicker through the teacher's fine-tuned downstream head: the Featurizer and head of an
    s3prl experiment trained on the teacher (``expdir``: its folder, ``dev-best.ckpt`` or a ``states-*.ckpt``),
    rebuilt by :func:`superb_redundancy.pruning_curves.load_experiment`, on one split of that experiment's data
    (``dev``: its validation split), metric as the expert averages ``records["acc"]``.

    The experiment's upstream must be the cache's teacher (same family, depth and weights). The upstream
    evaluated returns the teacher's L+1 positions (see :class:`~superb_redundancy.mimic.MimicUpstream`), so a
    Featurizer's weighted sum over the teacher's hidden states reads the mimicker where it expects each layer.
    """

    def __init__(self, expdir: str | os.PathLike, cache: "TeacherCache", device: torch.device,
                 split: str = "dev", progress: bool = False):
        from . import pruning_curves as curves

        try:
            self.experiment = curves.load_experiment(expdir, device=str(device))
            self.loader = self.experiment.downstream.get_dataloader(split)
        except curves.CurvesInputError as error:
            raise MimicError(f"eval head {expdir}: {error}") from None
        except (KeyError, ValueError, OSError) as error:  # the expert has no such split / cannot read its data
            raise MimicError(f"eval head {expdir}: cannot load its {split!r} split "
                             f"({(str(error).splitlines() or [type(error).__name__])[0]})") from None
        self.expdir, self.split, self.progress = Path(expdir), split, progress
        self.mean = curves.SUPPORTED_TASKS[self.experiment.task]
        self.items = 0
        _check_head_teacher(self.experiment, cache, self.expdir)

    def accuracy(self, upstream: torch.nn.Module) -> float:
        """The head's accuracy on the split with ``upstream`` (evaluated in eval mode, no gradient); the global
        random states the evaluation seeds (as s3prl's runner does) are restored afterwards."""
        import random

        from .pruning_curves import evaluate_upstream

        was_training = upstream.training
        state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[self.experiment.device] if "cuda" in str(self.experiment.device) else []):
            try:
                upstream.eval()
                records = evaluate_upstream(self.experiment, upstream, self.split, self.loader, self.progress,
                                            leave=False)
            finally:
                upstream.train(was_training)
                random.setstate(state[0])
                np.random.set_state(state[1])
        outcomes = list(records["acc"])
        if not outcomes:
            raise MimicError(f"eval head {self.expdir}: its {self.split} split holds no item")
        self.items = len(outcomes)
        return float(self.mean(outcomes))

    def describe(self) -> dict:
        args = self.experiment.args
        return {"checkpoint": str(self.experiment.checkpoint), "task": self.experiment.task, "split": self.split,
                "upstream": args.upstream, "upstream_ckpt": getattr(args, "upstream_ckpt", None),
                "feature_selection": getattr(args, "upstream_feature_selection", "hidden_states"),
                "items": self.items, "metric": "accuracy"}


def _check_head_teacher(experiment, cache: "TeacherCache", expdir: Path) -> None:
    """The experiment's upstream is the cache's teacher: family, depth and weights (by content)."""
    from .files import checkpoint_sha256
    from .pruned_upstream import PrunedUpstreamError, resolve_base

    teacher = cache.teacher
    if experiment.family.name != teacher["family"] or experiment.num_layers != cache.num_layers:
        raise MimicError(f"eval head {expdir} was trained on a {experiment.num_layers}-layer {experiment.family.name}, "
                         f"not on the cache's teacher ({cache.num_layers}-layer {teacher['family']})")
    base = experiment.base
    path: Optional[Path] = Path(base).expanduser()
    if not path.is_file():
        try:
            path = resolve_base(base, experiment.family, download=False)
        except PrunedUpstreamError:
            path = None
    if path is None:
        raise MimicError(f"eval head {expdir}: cannot find its upstream {base!r} to check it is the cache's teacher")
    recorded = teacher.get("content_sha256")
    found = checkpoint_sha256(path, "teacher checkpoint", MimicError) if recorded else sha256_file(path)
    if found != (recorded or teacher["sha256"]):
        raise MimicError(f"eval head {expdir} was trained on {path} (sha256 {str(found)[:12]}...), not on the "
                         f"cache's teacher {teacher['path']} (sha256 {str(recorded or teacher['sha256'])[:12]}...)")


def _probe(cache: "TeacherCache", config: MimicConfig, model: Mimicker, targets: Sequence[int],
           encoder: Optional[dict], device: torch.device) -> MimicUpstream:
    """The upstream the eval head sees during step 1: the cache's front end, the mimicker being trained (shared,
    not copied) and the kept teacher layers, in the teacher's L+1 positions."""
    front = cache.frontend()
    record = front["teacher"]
    frontend = build_frontend(record["family"], record["checkpoint_config"], front["frontend"])
    teacher_encoder = None if encoder is None else build_teacher_encoder(
        record["family"], record["checkpoint_config"], config.resolve_span(cache.num_layers), cache.num_layers, encoder)
    return MimicUpstream(frontend, model, config, teacher=record, targets=targets, encoder=teacher_encoder,
                         compact=False).to(device)


# ---------------------------------------------------------------------------------------------- step 1
def train_mimicker(cache: TeacherCache | str | os.PathLike, config: MimicConfig | dict | str | os.PathLike,
                   output: str | os.PathLike, resume: bool = False, device: Optional[str] = None,
                   progress: bool = True, teacher: Optional[str | os.PathLike | dict] = None,
                   eval_head: Optional[str | os.PathLike | HeadEvaluator] = None, select_by: str = "mse",
                   eval_split: str = "dev") -> Path:
    """Train one mimicker on a teacher cache (step 1) and write its artifact; returns the artifact path.

    Loss: the sum over mimicking layers of the masked MSE between its output and its target layer's output
    (equal weights, as the authors' code); Adam at ``config.lr``; a seeded held-out validation subset
    (``val_fraction`` of the clips, at most ``max_val_clips``) evaluated before training (epoch 0) and after each
    epoch; the best weights by validation loss (training loss without a validation subset) go in the artifact.

    A span ``[i, j]`` trains the same way on its own input (the cached output of layer i-1; the projected
    features for i = 0) and targets; its artifact also holds the kept teacher layers, read from ``teacher`` (the
    checkpoint the cache was built from: a path, checked by content, or the loaded dict; default: the path the
    cache records). The whole stack reads nothing else and trains exactly as it always did.

    ``eval_head`` (an s3prl experiment trained on the teacher, or a :class:`HeadEvaluator`): the mimicker's
    accuracy through that head on ``eval_split`` at epoch 0 and after every epoch (``head_acc`` in the history,
    the curve in ``head_accuracy``); ``select_by="acc"`` keeps the weights of the best accuracy (the earliest
    epoch on ties) instead of the best validation loss (``"mse"``, the default). The record says which epoch and
    by which criterion (``best_epoch``, ``select_by``, ``selected_by``).

    Resumable: ``<output>.state.pt`` (model, optimizer, best weights, history) is written after every epoch;
    ``resume=True`` continues from it, and may raise ``epochs`` to train further. Shuffling and dropout are
    seeded per epoch, so an interrupted-and-resumed run ends with the same weights as an uninterrupted one.
    """
    if not isinstance(cache, TeacherCache):
        cache = TeacherCache(cache)
    if isinstance(config, dict):
        config = MimicConfig.from_dict(config)
    elif not isinstance(config, MimicConfig):
        config = MimicConfig.from_yaml(config)
    output = Path(output).expanduser()
    _check_trainable(config)
    if select_by not in SELECT_BY:
        raise MimicError(f"select_by={select_by!r} is invalid; valid: {' or '.join(SELECT_BY)}")
    if select_by == "acc" and eval_head is None:
        raise MimicError("select_by='acc' needs an eval head (--eval-head EXPDIR: an s3prl experiment trained on "
                         "the teacher) to measure the accuracy by")
    L, d = cache.num_layers, cache.hidden_size
    targets = config.resolve_targets(L)
    source = config.input_layer(L)
    config.check_dims(d)
    needed = cache_layers(config, L)
    missing = sorted(set(needed) - set(cache.layers))
    if missing:
        raise MimicError(
            f"teacher cache {cache.directory} stores layers {cache.layers}; config {config.name()} needs {needed} "
            f"(missing {missing}): rebuild it with build_teacher_cache(..., layers={sorted(set(cache.layers) | set(needed))})"
        )
    encoder = _span_weights(cache, config, teacher)
    dev = _device(device)
    train_ids, val_ids = split_clips(len(cache), config)
    if len(train_ids) == 0:
        raise MimicError(f"teacher cache {cache.directory} has no clip left to train on")

    cuda = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        model = Mimicker.from_config(config, d).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    evaluator = eval_head if isinstance(eval_head, HeadEvaluator) or eval_head is None else \
        HeadEvaluator(eval_head, cache, dev, eval_split, progress)
    probe = None if evaluator is None else _probe(cache, config, model, targets, encoder, dev)
    selection = {"select_by": select_by, "eval_head": None if evaluator is None else str(evaluator.experiment.checkpoint),
                 "split": None if evaluator is None else evaluator.split}
    cache_id = {"sha256": cache.teacher.get("content_sha256") or cache.teacher["sha256"], "layers": cache.layers,
                "num_clips": len(cache), "num_frames": int(cache.manifest["num_frames"]), "dtype": cache.dtype}
    # states written before caches recorded the teacher's content hash name it by its file's bytes
    legacy_id = dict(cache_id, sha256=cache.teacher["sha256"])
    state_path = resume_state_path(output)
    history: list[dict] = []
    best = {"epoch": None, "loss": float("inf"), "acc": None, "weights": None}
    start_epoch, steps, seconds = 1, 0, 0.0

    def head_accuracy(entry: dict) -> Optional[float]:
        if probe is None:
            return None
        entry["head_acc"] = evaluator.accuracy(probe)
        return entry["head_acc"]

    if resume and state_path.is_file():
        state = load_checkpoint(state_path, "training state", MimicError)
        if _comparable(state["config"]) != _comparable(config.to_dict()):
            raise MimicError(f"{state_path} was written for config {state['config']}, not {config.to_dict()} "
                             "(only epochs may change on resume)")
        if state["cache"] not in (cache_id, legacy_id):
            raise MimicError(f"{state_path} was trained on another teacher cache ({state['cache']})")
        written = state.get("selection", {"select_by": "mse", "eval_head": None, "split": None})
        if written != selection:
            raise MimicError(f"{state_path} was trained with selection {written}, not {selection} "
                             "(only epochs may change on resume)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        best = {"epoch": state["best_epoch"], "loss": state["best_loss"], "acc": state.get("best_acc"),
                "weights": state["best_weights"]}
        start_epoch, steps, seconds = int(state["epoch"]) + 1, int(state["steps"]), float(state["seconds"])
    else:
        val = _evaluate(model, cache, val_ids, targets, config, dev, source)
        history.append({"epoch": 0, "train_loss": None, "val_loss": None if val is None else sum(val),
                        "val_terms": val})
        head_accuracy(history[-1])

    for epoch in range(start_epoch, config.epochs + 1):
        began = time.time()
        order = np.random.default_rng([config.seed, epoch]).permutation(train_ids)
        batches = [order[s:s + config.batch_size] for s in range(0, len(order), config.batch_size)]
        total, frames = 0.0, 0
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            bar = _progress(batches, progress, desc=f"mimic {config.name()} epoch {epoch}/{config.epochs}",
                            unit="batch", leave=False)
            for batch in bar:
                model.train()
                features, mask, wanted = cache.batch(batch, targets, dev, source)
                loss = sum(_step1_terms(model, features, mask, wanted, config.teacher_forcing))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value, valid = float(loss.detach()), int((~mask).sum())
                total += value * valid
                frames += valid
                steps += 1
                bar.set_postfix(loss=f"{value:.4g}")
        train_loss = total / max(frames, 1)
        val = _evaluate(model, cache, val_ids, targets, config, dev, source)
        score = float(sum(val)) if val is not None else float(train_loss)
        seconds += time.time() - began
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": None if val is None else sum(val),
                        "val_terms": val, "seconds": round(time.time() - began, 3)})
        acc = head_accuracy(history[-1])
        better = (acc > best["acc"] if best["acc"] is not None else True) if select_by == "acc" \
            else score < best["loss"]
        if better:
            best = {"epoch": epoch, "loss": score, "acc": acc,
                    "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if progress:
            print(f"[mimic] {config.name()} epoch {epoch}: train {train_loss:.5g}"
                  + (f", val {sum(val):.5g}" if val is not None else "")
                  + (f", head acc {acc:.4g}" if acc is not None else ""), file=sys.stderr)
        atomic.torch_save({
            "config": config.to_dict(), "cache": cache_id, "epoch": epoch, "steps": steps, "seconds": seconds,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "history": history, "selection": selection,
            "best_epoch": best["epoch"], "best_loss": best["loss"], "best_acc": best["acc"],
            "best_weights": best["weights"],
        }, state_path)

    weights = best["weights"] if best["weights"] is not None else \
        {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    front = cache.frontend()
    by_loss = "validation loss" if len(val_ids) else "training loss"
    training = {
        "training": "mimicking",
        "history": history,
        "best_epoch": best["epoch"],
        "best_loss": best["loss"],
        "selected_by": "head accuracy" if select_by == "acc" else by_loss,
        "select_by": select_by,
        "span": list(config.resolve_span(L)),
        "input": "projected features" if source is None else f"output of layer {source}",
        "train_clips": int(len(train_ids)),
        "val_clips": int(len(val_ids)),
        "steps": steps,
        "seconds": round(seconds, 3),
        "device": str(dev),
        "loss": "sum over mimicking layers of the MSE over valid frames",
        "teacher_forcing": config.teacher_forcing,
        "cache": dict(cache_id, path=str(cache.directory)),
    }
    if evaluator is not None:
        training.update(best_accuracy=best["acc"], eval_head=evaluator.describe(),
                        head_accuracy=[h.get("head_acc") for h in history])
    return save_artifact(output, config, front["teacher"], front["frontend"], weights, targets, training, encoder)


def _check_trainable(config: MimicConfig) -> None:
    if config.classifier_only:
        raise MimicError("config classifier-only (n_layers=0) has no mimicking layer to train in step 1; "
                         "write it with init_artifact (superb-redundancy mimic init)")


def baseline_name(config: MimicConfig) -> str:
    """The file stem of a baseline artifact: ``classifier-only`` or ``nonmimic-<config name>``."""
    return config.name() if config.classifier_only else f"nonmimic-{config.name()}"


def init_artifact(teacher: str | os.PathLike, config: MimicConfig | dict | str | os.PathLike,
                  output: str | os.PathLike, family: Optional[str] = None, refresh: bool = False) -> Path:
    """Write a baseline artifact without step 1: the paper's "non-mimicker" (mimicking layers freshly initialised
    with ``torch.manual_seed(config.seed)``, exactly the weights :func:`train_mimicker` starts from) or, with
    ``n_layers: 0``, "classifier only" (no mimicking layer). Its training record says ``training: none``; the
    layers are trained only in step 2 (s3prl's runner with ``-f``).

    ``teacher``: a stock checkpoint path (family inferred), or with ``family`` an s3prl hub name.
    """
    if isinstance(config, dict):
        config = MimicConfig.from_dict(config)
    elif not isinstance(config, MimicConfig):
        config = MimicConfig.from_yaml(config)
    path, fam, checkpoint = _teacher_checkpoint(teacher, family, refresh=refresh)
    record = teacher_record(checkpoint, fam, path, sha256_file(path))
    targets = config.resolve_targets(record["num_layers"])
    config.check_dims(int(record["hidden_size"]))
    encoder = None if config.whole_stack(record["num_layers"]) else \
        encoder_state(checkpoint, fam, config.resolve_span(record["num_layers"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Mimicker.from_config(config, int(record["hidden_size"]))
    training = {
        "training": "none",
        "baseline": "classifier only" if config.classifier_only else "non-mimicker",
        "init_seed": config.seed,
        "history": [],
        "best_epoch": None,
        "best_loss": None,
        "note": "no step 1: trained only in step 2 (s3prl's runner; -f trains the mimicking layers)",
    }
    return save_artifact(Path(output).expanduser(), config, record, frontend_state(checkpoint, fam),
                         model.state_dict(), targets, training, encoder)


def init_grid(teacher: str | os.PathLike, configs: Sequence[MimicConfig], output_dir: str | os.PathLike,
              family: Optional[str] = None) -> list[Path]:
    """:func:`init_artifact` for each configuration: ``<output_dir>/<baseline_name(config)>.pt``."""
    output_dir = Path(output_dir).expanduser()
    _check_unique([baseline_name(c) for c in configs])
    return [init_artifact(teacher, config, output_dir / f"{baseline_name(config)}.pt", family=family)
            for config in configs]


def _check_unique(names: Sequence[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MimicError(f"configurations with the same name would overwrite each other: {duplicates}")


def train_grid(teacher: str | os.PathLike, audio, configs: Sequence[MimicConfig], output_dir: str | os.PathLike,
               cache_dir: Optional[str | os.PathLike] = None, family: Optional[str] = None,
               dtype: str = "float16", device: Optional[str] = None, resume: bool = False,
               progress: bool = True, eval_head: Optional[str | os.PathLike] = None,
               select_by: str = "mse") -> list[Path]:
    """Train every configuration from ONE teacher pass: the cache stores the union of the layers they read
    (:func:`cache_layers`: targets, and a span's input).

    Artifacts are ``<output_dir>/<config.name()>.pt``; the cache defaults to ``<output_dir>/teacher_cache``.
    ``eval_head`` / ``select_by``: see :func:`train_mimicker` (the experiment is loaded once for the grid).
    """
    output_dir = Path(output_dir).expanduser()
    for config in configs:
        _check_trainable(config)
    _check_unique([config.name() for config in configs])
    if select_by not in SELECT_BY:
        raise MimicError(f"select_by={select_by!r} is invalid; valid: {' or '.join(SELECT_BY)}")
    if select_by == "acc" and eval_head is None:
        raise MimicError("select_by='acc' needs an eval head (--eval-head EXPDIR: an s3prl experiment trained on "
                         "the teacher) to measure the accuracy by")
    _, fam, checkpoint = _teacher_checkpoint(teacher, family)
    L = fam.num_layers(checkpoint)
    layers = sorted({t for config in configs for t in cache_layers(config, L)})
    spans = any(not config.whole_stack(L) for config in configs)
    if not spans:
        checkpoint = None  # the whole stack needs no teacher weights beyond the cache's front end
    cache = build_teacher_cache(teacher, audio, cache_dir or output_dir / "teacher_cache", layers=layers,
                                family=fam.name, dtype=dtype, device=device, progress=progress)
    evaluator = None if eval_head is None else HeadEvaluator(eval_head, cache, _device(device), progress=progress)
    return [train_mimicker(cache, config, output_dir / f"{config.name()}.pt", resume=resume, device=device,
                           progress=progress, teacher=checkpoint, eval_head=evaluator,
                           select_by=select_by) for config in configs]


# ---------------------------------------------------------------------------------------------- command line
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m superb_redundancy.mimic_train",
        description="Step 1 of mimicking: cache the teacher once, then train each mimicker config on the cache "
                    "(the same as `superb-redundancy mimic train`).",
    )
    parser.add_argument("--teacher", required=True, help="stock checkpoint path (or hub name with --family)")
    parser.add_argument("--family", choices=["wav2vec2", "hubert", "wavlm"])
    parser.add_argument("--audio", required=True, nargs="+", help="a folder (recursive *.wav/*.flac) or files")
    parser.add_argument("--config", nargs="*", default=[], help="MimicConfig YAML file(s)")
    parser.add_argument("--paper-grid", action="store_true", help="train the paper's 12 configurations")
    parser.add_argument("--layer-i", type=int, help="m_f's target layer for the paper grid's 2-layer mimickers")
    parser.add_argument("--span", type=int, nargs=2, metavar=("I", "J"),
                        help="replace transformer layers I..J only (0-based, inclusive); default: the whole stack")
    parser.add_argument("--eval-head", metavar="EXPDIR", help="s3prl experiment trained on the teacher: the "
                        "mimicker's accuracy through its head on the dev split after every epoch")
    parser.add_argument("--select-by", choices=SELECT_BY, default="mse",
                        help="keep the weights of the best validation MSE (default) or head accuracy")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument("--dtype", choices=DTYPES, default="float16")
    parser.add_argument("--device")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    from .mimic import paper_grid

    audio = args.audio[0] if len(args.audio) == 1 else args.audio
    try:
        configs = [MimicConfig.from_yaml(p) for p in args.config]
        if args.paper_grid:
            configs += paper_grid(layer_i=args.layer_i)
        if not configs:
            parser.error("give --config FILE(s) or --paper-grid")
        if args.span is not None:
            configs = [dataclasses.replace(c, span=list(args.span)) for c in configs]
        paths = train_grid(args.teacher, audio, configs, args.output_dir, cache_dir=args.cache_dir,
                           family=args.family, dtype=args.dtype, device=args.device, resume=args.resume,
                           eval_head=args.eval_head, select_by=args.select_by)
    except MimicError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
