"""The teacher feature cache of step 1: the teacher runs ONCE per clip, every configuration and epoch reads the cache.

The cache (a directory, written as one unit by :func:`superb_redundancy.core.files.atomic_dir`, reused while its
manifest matches):

* ``features.npy``: the mimicker's input for every frame of every clip: the projected CNN features (output of
  the teacher's ``layer_norm`` + ``post_extract_proj``, the input of its encoder), ``[total_frames, d]``;
* ``layer_<t>.npy``: the output of transformer layer ``t`` (s3prl's ``hidden_states[t + 1]``; for the final
  layer the encoder output, after the final LayerNorm of pre-LN models), ``[total_frames, d]``, only for the
  layers some configuration mimics (by default the final layer; :func:`~superb_redundancy.mimic.train.train_grid`
  stores the union of its configurations' targets) -- storing all L+1 states would cost 13-25x the disk for nothing;
* ``index.npy``: ``[clips, 3]`` int64 (frame offset, frame count, source file index);
* ``frontend.pt``: the teacher's record and front-end weights (so training never reads the teacher again);
* ``manifest.json``: format, teacher (path, sha256, family, L, d), layers, dtype, sources (path, bytes).

A span ``[i, j]`` (block replacement, :class:`~superb_redundancy.mimic.MimicConfig`) needs the states entering
layer i and leaving layer j: ``layer_<j>.npy`` and, as its input, ``features.npy`` for i = 0 or ``layer_<i-1>.npy``
for i > 0 (the output of layer i-1 is the input of layer i); :func:`cache_layers` names them, so the whole stack
(i = 0) reads exactly what it always did.

Arrays are ``.npy`` files opened memory-mapped, float16 by default (half the disk of float32; a value outside
float16's range is refused with a hint to use ``dtype="float32"``).

Clips are run in batches of equal length, never padded, so a clip's cached values do not depend on what it was
batched with (beyond float rounding, far below float16's).
Audio: ``*.wav`` / ``*.flac`` under a folder (recursive, sorted) or a list of files (or folders), listed by
:func:`superb_redundancy.data.splits.audio_files` and read by :mod:`superb_redundancy.core.audio` (soundfile,
multi-channel files averaged to mono), 16 kHz (other rates are refused: resample first); :func:`step1_audio`
takes them, or a split of a SUPERB task's corpus (:func:`superb_redundancy.data.splits.corpus_audio`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from superb_redundancy.core.audio import SAMPLE_RATE, check_audio, load_wav
from superb_redundancy.core.files import atomic_dir, load_checkpoint, model_sha256, sha256_file
from superb_redundancy.data.splits import SplitError, audio_files, corpus_audio
from superb_redundancy.distill.errors import MimicError
from superb_redundancy.distill.frontend import frontend_state, teacher_checkpoint, teacher_record
from superb_redundancy.models.checkpoints import stock_expert
from superb_redundancy.models.families import ModelFamily

__all__ = ["CACHE_FORMAT", "SAMPLE_RATE", "DTYPES", "Teacher", "TeacherCache", "build_teacher_cache", "step1_audio",
           "progress_bar", "resolve_device"]

CACHE_FORMAT = "superb_redundancy.teacher_cache"
CACHE_VERSION = 1
DTYPES = ("float16", "float32")
#: the files of a cache (the unit atomic_dir swaps: an old cache's arrays never outlive it)
CACHE_FILES = ("features.npy", "layer_*.npy", "index.npy", "frontend.pt", "manifest.json")


def progress_bar(iterable, enabled: bool, **kwargs):
    """A tqdm bar on stderr (``enabled=False``: the plain iteration)."""
    return tqdm(iterable, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


def resolve_device(device: Optional[str]) -> torch.device:
    """``device``, or CUDA where there is one, else the CPU."""
    return torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))


# ---------------------------------------------------------------------------------------------- audio
def step1_audio(audio=None, corpus: Optional[str | os.PathLike] = None, task: Optional[str] = None,
                split: str = "train", limit: Optional[int] = None, seed: int = 0) -> list[Path]:
    """Step-1 audio: ``audio`` (folders/files) or a ``corpus`` split of ``task``; ``limit``: a seeded subset."""
    if (audio is None) == (corpus is None):
        raise MimicError("give the step-1 audio either as audio folders/files or as a corpus root with a task")
    if corpus is not None and not task:
        raise MimicError("a corpus split needs its task (speech_commands, voxceleb1, emotion or asr)")
    try:
        if corpus is not None:
            files = corpus_audio(corpus, task, split)
            return audio_files(files, limit=limit, seed=seed) if limit is not None else files
        return audio_files(audio, limit=limit, seed=seed)
    except SplitError as error:
        raise MimicError(str(error)) from None


def _listed(audio) -> list[Path]:
    """:func:`~superb_redundancy.data.splits.audio_files` of ``audio``, a problem as a :class:`MimicError` line."""
    try:
        return audio_files(audio)
    except SplitError as error:
        raise MimicError(str(error)) from None


def _read_audio(path: Path) -> np.ndarray:
    return load_wav(path).numpy()


def _audio_samples(path: Path) -> int:
    try:
        info = soundfile.info(str(path))
    except Exception as error:
        raise MimicError(f"unreadable audio file {path}: {str(error).splitlines()[0]}") from None
    if info.samplerate != SAMPLE_RATE:
        raise MimicError(f"{path}: sample rate {info.samplerate} Hz; the teachers take {SAMPLE_RATE} Hz (resample first)")
    return int(info.frames)


# ---------------------------------------------------------------------------------------------- the teacher and the cache
class Teacher:
    """A teacher's stock s3prl expert, run on clips of one length at a time (nothing is padded).

    :meth:`run` returns, per clip, the projected features (captured at the encoder's input) and the outputs of the
    requested transformer layers (s3prl's ``hidden_states[t + 1]``), each ``[T, d]`` float32 on the CPU.
    """

    def __init__(self, path: Path, family: ModelFamily, device: torch.device):
        self.expert = stock_expert(Path(path), family).to(device).eval()
        self.device = device
        self._captured: list[torch.Tensor] = []
        self.expert.model.encoder.register_forward_pre_hook(lambda module, args: self._captured.append(args[0]))

    @torch.no_grad()
    def run(self, wavs: Sequence[np.ndarray],
            layers: Sequence[int]) -> list[tuple[torch.Tensor, dict[int, torch.Tensor]]]:
        if len({len(w) for w in wavs}) != 1:  # padding would change what the teacher computes
            raise ValueError("the teacher runs clips of one length at a time")
        self._captured.clear()
        hidden_states = self.expert([torch.from_numpy(w).to(self.device) for w in wavs])["hidden_states"]
        features = self._captured[0]
        frames = min(features.size(1), hidden_states[0].size(1))
        return [(features[b, :frames].float().cpu(), {t: hidden_states[t + 1][b, :frames].float().cpu() for t in layers})
                for b in range(len(wavs))]


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

    def teacher_checkpoint(self, teacher: Optional[str | os.PathLike | dict] = None) -> dict:
        """The teacher checkpoint the cache was built from (a span's kept layers are read from it): ``teacher`` (a
        loaded stock checkpoint, trusted, or a path) or the path the cache records; a path is checked against the
        cache's teacher by content."""
        if isinstance(teacher, dict):
            return teacher
        path = Path(str(teacher or self.teacher["path"])).expanduser()
        if not path.is_file():
            raise MimicError(f"a span keeps teacher layers, read from the teacher checkpoint: {path} not found; pass "
                             "the checkpoint the cache was built from (teacher=PATH, --teacher)")
        checkpoint = load_checkpoint(path, "teacher checkpoint", MimicError)
        recorded = self.teacher.get("content_sha256")
        expected = recorded or self.teacher["sha256"]
        found = model_sha256(checkpoint) if recorded else sha256_file(path)
        if found != expected:
            raise MimicError(f"{path} is not the teacher of cache {self.directory} (sha256 {found[:12]}..., the "
                             f"cache's teacher {self.teacher['path']}: {str(expected)[:12]}...)")
        return checkpoint

    def batch(self, ids: Sequence[int], layers: Sequence[int], device: torch.device, source: Optional[int] = None):
        """(inputs [B,T,d], padding_mask [B,T] True=pad, [targets [B,T,d] per layer]) as float32 tensors; the
        inputs are the projected features (``source`` None) or the output of layer ``source`` (a span's input).

        Each array is read with one indexed read of the batch's frames (in the cache's dtype), moved to ``device``
        as it is stored and converted and padded there, in bulk (the device does the work, the host copies half
        the bytes of float16)."""
        ids = np.asarray(ids, dtype=np.int64)
        lengths = self.lengths[ids]
        frames, total = int(lengths.max()), int(lengths.sum())
        starts = np.cumsum(lengths) - lengths  # each clip's first row in the gathered block
        rows = np.arange(total) + np.repeat(self.offsets[ids] - starts, lengths)
        clip = torch.from_numpy(np.repeat(np.arange(len(ids)), lengths)).to(device)
        frame = torch.from_numpy(np.arange(total) - np.repeat(starts, lengths)).to(device)

        def gather(array: np.ndarray) -> torch.Tensor:
            block = torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)
            out = torch.zeros((len(ids), frames, array.shape[1]), dtype=torch.float32, device=device)
            out[clip, frame] = block.float()
            return out

        lengths_t = torch.from_numpy(lengths).to(device)
        padding_mask = torch.arange(frames, device=device)[None, :] >= lengths_t[:, None]
        features = gather(self.features if source is None else self.hidden[source])
        return features, padding_mask, [gather(self.hidden[t]) for t in layers]

    def target_variance(self, ids: Sequence[int], layer: int, chunk: int = 256) -> float:
        """The variance of layer ``layer``'s output over the frames of clips ``ids``, per dimension about its own
        mean, averaged over the dimensions: the MSE of the best constant prediction (float64, two passes)."""
        array = self.hidden[layer]
        ids = np.sort(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            raise MimicError(f"teacher cache {self.directory}: no clip to take layer {layer}'s variance over")

        def blocks():
            for start in range(0, len(ids), chunk):
                part = ids[start:start + chunk]
                rows = np.concatenate([np.arange(o, o + n) for o, n in zip(self.offsets[part], self.lengths[part])])
                yield np.asarray(array[rows], dtype=np.float64)

        frames = int(self.lengths[ids].sum())
        mean = sum(block.sum(axis=0) for block in blocks()) / frames
        return float((sum(((block - mean) ** 2).sum(axis=0) for block in blocks()) / frames).mean())

    def batches(self, batches: Sequence[Sequence[int]], layers: Sequence[int], device: torch.device,
                source: Optional[int] = None):
        """:meth:`batch` of each id list in turn, the next one read in a background thread while the caller
        trains on the current one (reading the cache then overlaps the device's work)."""
        from concurrent.futures import ThreadPoolExecutor

        if not batches:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="teacher-cache") as reader:
            ahead = reader.submit(self.batch, batches[0], layers, device, source)
            for index in range(len(batches)):
                current = ahead.result()
                if index + 1 < len(batches):
                    ahead = reader.submit(self.batch, batches[index + 1], layers, device, source)
                yield current


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
    path, fam, checkpoint = teacher_checkpoint(teacher, family)
    wanted = _cache_request(layers, fam.num_layers(checkpoint))
    sha256, content = sha256_file(path), model_sha256(checkpoint)
    files = _listed(audio)
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
    files = check_audio(files, error=MimicError)  # corrupt, non-audio or NaN clips: one line before the teacher runs
    samples = [_audio_samples(p) for p in files]
    runner = Teacher(path, fam, resolve_device(device))
    index, keep, skipped = _clip_index(runner, files, samples, audio)
    with atomic_dir(output, unit=CACHE_FILES) as tmp:
        _write_arrays(tmp, runner, files, keep, index, wanted, dtype, int(record["hidden_size"]), progress, samples)
        torch.save({"teacher": record, "frontend": frontend}, tmp / "frontend.pt")
        manifest = _manifest(record, wanted, dtype, index, sources, skipped)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return TeacherCache(output)


def _cache_request(layers: Optional[Iterable[int]], num_layers: int) -> list[int]:
    """The layers to store, sorted (default: the final one), each checked against the teacher's depth."""
    wanted = sorted(set(int(t) for t in layers)) if layers is not None else [num_layers - 1]
    for t in wanted:
        if not 0 <= t < num_layers:
            raise MimicError(f"cache layer {t} is outside the teacher's transformer stack; "
                             f"valid 0..{num_layers - 1} (the teacher has {num_layers} layers)")
    return wanted


def _clip_index(runner: Teacher, files: Sequence[Path], samples: Sequence[int],
                audio) -> tuple[np.ndarray, list[int], list[str]]:
    """``(index [clips, 3]: frame offset, frame count, file index; the kept files' indices; the skipped files)``:
    the frames the teacher's CNN makes of each clip (the conv formula); a clip too short for one is skipped."""
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
    return index, keep, skipped


#: frames per teacher batch (clips x frames): 83 one-second clips, one of 80 s
BATCH_FRAMES = 4096


def _batches(samples: Sequence[int], frames: Sequence[int]) -> list[list[int]]:
    """The kept clips' rows, grouped by length (so nothing is padded) into batches of at most
    :data:`BATCH_FRAMES` frames, in row order within a length."""
    by_length: dict[int, list[int]] = {}
    for row, n in enumerate(samples):
        by_length.setdefault(n, []).append(row)
    batches = []
    for rows in by_length.values():
        size = max(1, BATCH_FRAMES // max(1, frames[rows[0]]))
        batches += [rows[i:i + size] for i in range(0, len(rows), size)]
    return batches


def _write_arrays(folder: Path, runner: Teacher, files: Sequence[Path], keep: Sequence[int], index: np.ndarray,
                  wanted: Sequence[int], dtype: str, d: int, progress: bool, samples: Sequence[int]) -> None:
    """Run the teacher on the kept clips, batched by length, into ``features.npy`` and ``layer_<t>.npy``
    (memory-mapped), then write ``index.npy``. A clip's values do not depend on its batch beyond float rounding
    (no padding), far below the cache's float16."""
    np_dtype, total = np.dtype(dtype), int(index[:, 1].sum())
    features = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np_dtype, shape=(total, d))
    hidden = {t: np.lib.format.open_memmap(folder / f"layer_{t}.npy", mode="w+", dtype=np_dtype, shape=(total, d))
              for t in wanted}
    bar = progress_bar(None, progress, total=len(keep), desc="teacher cache", unit="clip")
    for rows in _batches([samples[k] for k in keep], index[:, 1]):
        outputs = runner.run([_read_audio(files[keep[row]]) for row in rows], wanted)
        for row, (feats, outs) in zip(rows, outputs):
            _store(files[keep[row]], int(index[row, 0]), int(index[row, 1]), feats, outs, features, hidden, dtype)
        bar.update(len(rows))
    bar.close()
    for array in [features, *hidden.values()]:
        array.flush()
    del features, hidden
    np.save(folder / "index.npy", index)


def _store(path: Path, start: int, length: int, feats: torch.Tensor, outs: dict[int, torch.Tensor],
           features: np.ndarray, hidden: dict[int, np.ndarray], dtype: str) -> None:
    """One clip's teacher outputs into the arrays at its frame offset, checked to fit the cache's dtype."""
    if feats.size(0) != length:
        raise MimicError(f"{path}: the teacher made {feats.size(0)} frames, expected {length}")
    for array, value, what in [(features, feats, "features")] + [(hidden[t], outs[t], f"layer {t}") for t in hidden]:
        stored = value.numpy().astype(array.dtype)
        if not np.isfinite(stored).all():
            raise MimicError(f"{path}: teacher {what} do not fit in {dtype} (max |x| = "
                             f"{float(value.abs().max()):.3g}); build the cache with dtype='float32'")
        array[start:start + length] = stored


def _manifest(record: dict, wanted: Sequence[int], dtype: str, index: np.ndarray, sources: list[dict],
              skipped: list[str]) -> dict:
    """``manifest.json``: what the cache holds, of which teacher and audio."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "teacher": {k: v for k, v in record.items() if k != "checkpoint_config"},
        "layers": wanted,
        "layer_meaning": "layer_<t>.npy is the output of transformer layer t (s3prl hidden_states[t + 1])",
        "features": "features.npy: the teacher's projected CNN features (layer_norm + post_extract_proj)",
        "dtype": dtype,
        "hidden_size": int(record["hidden_size"]),
        "num_clips": len(index),
        "num_frames": int(index[:, 1].sum()),
        "sample_rate": SAMPLE_RATE,
        "sources": sources,
        "skipped_too_short": skipped,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
