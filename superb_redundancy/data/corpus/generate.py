"""Generate the synthetic corpus: plan, synthesise (fresh worker processes), render, write, install atomically.

Idempotence: ``<root>/.complete`` (JSON) records, per task, the hash of the settings it was generated with
(task, scale, seed, corpus version, espeak-ng package version). A task whose hash matches and whose folders exist
is skipped; otherwise it is rebuilt.

Synthesis runs in fresh interpreters (``python -m superb_redundancy.data.corpus._synth``, one per unit of clips, up to
``workers`` at a time): espeak-ng carries generator state from one utterance to the next, so only a fixed sequence
of calls from a fresh start is reproducible. Rendering (16 kHz resampling, levels, noise) and writing happen here.

Atomicity, per task: everything is written into ``<root>/.tmp-<task>-*/``; then the task's entry is dropped from
the marker, its old top-level folders are moved aside, the new ones renamed into place (same file system, so each
rename is atomic), and the marker entry is written last (``os.replace``). A task without a matching marker entry
is never treated as complete, so an interrupted run is redone by the next call.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import math
import numbers
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import soundfile
from tqdm.auto import tqdm

from superb_redundancy.data import tasks as task_table
from superb_redundancy.data.corpus.plans import PLANNERS, TASKS, TaskPlan
from superb_redundancy.data.corpus.speech import ESPEAK_RATE, TARGET_RATE, clip_rng, render_noise, render_speech
from superb_redundancy.core.errors import UserError

__all__ = [
    "CORPUS_VERSION",
    "MARKER",
    "TASKS",
    "generate",
    "task_paths",
    "datarc_paths",
    "overrides",
    "settings_hash",
]

CORPUS_VERSION = 4  # bump when the generator's output changes (2: the sizes and variation of issue 12; 3: 6k KS
# training clips, SNR 10-30 dB; 4: Speech Commands v0.02 as released: 10 speakers, a quarter of the clips under 1 s,
# six ~1-minute background recordings, README.md / LICENSE, and its separate test archive; v0.01 unchanged)
MARKER = ".complete"

# generate()'s return keys -> path relative to the corpus root
_PATHS = {
    "speech_commands": {"speech_commands": "speech_commands_v0.01",
                        "speech_commands_test": "speech_commands_test_set_v0.01",
                        "speech_commands_v0.02": "speech_commands_v0.02",
                        "speech_commands_test_v0.02": "speech_commands_test_set_v0.02"},
    "voxceleb1": {"voxceleb1": "voxceleb1", "voxceleb1_meta_data": "voxceleb1/iden_split.txt"},
    "emotion": {"emotion": "IEMOCAP", "emotion_meta_data": "IEMOCAP/meta_data"},
    "asr": {"asr": "LibriSpeech", "asr_bucket_file": "len_for_bucket"},
}


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return task


def task_paths(root: Union[str, Path], task: str) -> dict[str, Path]:
    """What :func:`generate` returns for ``task`` (e.g. ``speech_commands``, ``speech_commands_test``, ...)."""
    return {key: Path(root) / rel for key, rel in _PATHS[_check_task(task)].items()}


def datarc_paths(root: Union[str, Path], task: str) -> dict[str, Path]:
    """The s3prl ``downstream_expert.datarc`` keys of ``task`` that lie in the corpus, mapped to this corpus' paths
    (the task table's :attr:`~superb_redundancy.data.tasks.Task.corpus_keys` of the s3prl task of that name)."""
    return {key: Path(root) / rel for key, rel in task_table.get_task(_check_task(task)).corpus_keys}


def overrides(root: Union[str, Path], task: str) -> str:
    """An s3prl ``-o`` value pointing ``task``'s config at the corpus under ``root``."""
    return task_table.format_overrides({f"config.downstream_expert.datarc.{key}": str(path)
                                        for key, path in datarc_paths(root, task).items()})


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _settings(task: str, scale: float, seed: int) -> dict:
    return {"task": task, "scale": float(scale), "seed": int(seed), "corpus_version": CORPUS_VERSION,
            "espeakng_loader": _package_version("espeakng-loader")}


def settings_hash(task: str, scale: float = 1.0, seed: int = 0) -> str:
    blob = json.dumps(_settings(task, scale, seed), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_marker(root: Path) -> dict:
    try:
        data = json.loads((root / MARKER).read_text())
        return data if isinstance(data.get("tasks"), dict) else {"tasks": {}}
    except (OSError, ValueError, AttributeError):
        return {"tasks": {}}


def _write_marker(root: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}.", dir=root)
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, root / MARKER)


def _is_complete(root: Path, task: str, digest: str) -> bool:
    entry = _read_marker(root)["tasks"].get(task)
    return (isinstance(entry, dict) and entry.get("hash") == digest
            and all(p.exists() for p in task_paths(root, task).values()))


def _install(root: Path, build: Path, plan: TaskPlan, settings: dict, digest: str) -> None:
    marker = _read_marker(root)
    if marker["tasks"].pop(plan.task, None) is not None:
        _write_marker(root, marker)
    trash = Path(tempfile.mkdtemp(prefix=f".old-{plan.task}-", dir=root))
    for name in plan.outputs:
        target = root / name
        if target.exists() or target.is_symlink():
            os.rename(target, trash / name)
        os.rename(build / name, target)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(build, ignore_errors=True)
    marker = _read_marker(root)
    marker["tasks"][plan.task] = {"hash": digest, "settings": settings}
    _write_marker(root, marker)


def _units(plan: TaskPlan, seed: int) -> dict[str, list]:
    """Synthesis requests per unit, in clip order."""
    units: dict[str, list] = {}
    for clip in plan.clips:
        if clip.text is not None:
            espeak_seed = int(clip_rng(seed, plan.task, clip.path, "espeak").integers(0, 2 ** 31))
            units.setdefault(clip.unit, []).append((clip.text, asdict(clip.voice), espeak_seed))
    return units


def _synthesize_in_subprocess(requests: list) -> list:
    """Run :mod:`._synth` in a new interpreter on ``requests``; return the int16 arrays."""
    package_parent = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "superb_redundancy.data.corpus._synth"]
    proc = subprocess.run(command, input=json.dumps(requests).encode(), capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"espeak-ng synthesis worker failed (exit {proc.returncode}): " + " | ".join(tail))
    with np.load(io.BytesIO(proc.stdout)) as data:
        samples, lengths = data["samples"], data["lengths"]
    return np.split(samples, np.cumsum(lengths)[:-1]) if len(lengths) else []


def generate(root: Union[str, Path], tasks: Iterable[str] = TASKS, scale: float = 1.0, seed: int = 0, *,
             progress: bool = True, workers: Optional[int] = None, force: bool = False) -> dict[str, Path]:
    """Generate (or reuse) the synthetic corpus for ``tasks`` under ``root``; return the data roots.

    Returned keys: ``speech_commands`` (v0.01 train root), ``speech_commands_test``, ``speech_commands_v0.02``,
    ``speech_commands_test_v0.02`` (v0.02's separate test archive),
    ``voxceleb1``, ``voxceleb1_meta_data``, ``emotion`` (IEMOCAP root), ``emotion_meta_data``, ``asr``
    (LibriSpeech root), ``asr_bucket_file`` (only those of the requested tasks). ``scale`` multiplies the clip
    counts; ``workers`` caps the synthesis processes (default: CPU count); ``force`` rebuilds regardless.
    """
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = list(dict.fromkeys(_check_task(t) for t in tasks))
    if not tasks:
        raise UserError(f"no task given; valid tasks: {', '.join(TASKS)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
        raise UserError(f"scale must be a finite number > 0, got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UserError(f"seed must be an int, got {seed!r}")
    scale, seed = float(scale), int(seed)
    if workers is not None and workers < 1:
        raise UserError(f"workers must be >= 1, got {workers!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    result: dict[str, Path] = {}
    todo: list[tuple[TaskPlan, dict, str]] = []
    for task in tasks:
        result.update(task_paths(root, task))
        digest = settings_hash(task, scale, seed)
        if force or not _is_complete(root, task, digest):
            todo.append((PLANNERS[task](float(scale), seed), _settings(task, scale, seed), digest))
    if not todo:
        return result

    units = [((plan.task, name), requests) for plan, _, _ in todo for name, requests in _units(plan, seed).items()]
    n_workers = min(workers or os.cpu_count() or 1, len(units)) or 1
    # espeak-ng keeps state across utterances: each unit is synthesised by a fresh interpreter.
    import torch  # rendering resamples with torchaudio: one intra-op thread is as fast here and spins less

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # rendering and writing take most of the time: threads render clips side by side (torch's resampling and
    # libsndfile's writes release the GIL); each clip has its own random stream, so the order changes nothing
    render_threads = min(workers or os.cpu_count() or 1, 8)
    with concurrent.futures.ThreadPoolExecutor(max_workers=n_workers) as pool, \
            concurrent.futures.ThreadPoolExecutor(max_workers=render_threads) as renderers:
        try:
            futures = {key: pool.submit(_synthesize_in_subprocess, requests) for key, requests in units}
            total = sum(len(plan.clips) for plan, _, _ in todo)
            with tqdm(total=total, desc="synthetic corpus", unit="clip", disable=not progress) as bar:
                for plan, settings, digest in todo:
                    bar.set_postfix_str(plan.task)
                    _build_task(root, plan, settings, digest, seed, futures, bar, renderers)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            renderers.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            torch.set_num_threads(threads)
    return result


def _render_and_write(clip, speech, seed: int, task: str, out: Path) -> int:
    """One clip rendered (its own random stream) and written; its length in samples."""
    rng = clip_rng(seed, task, clip.path)
    if clip.noise is not None:
        kind, level_db, n = clip.noise
        wav = render_noise(n, kind, level_db, rng)
    else:
        wav = render_speech(speech, ESPEAK_RATE, clip.render, rng)
    soundfile.write(str(out), wav, TARGET_RATE, subtype="PCM_16", format=clip.format)
    return int(wav.shape[0])


def _build_task(root: Path, plan: TaskPlan, settings: dict, digest: str, seed: int, futures: dict, bar,
                renderers: concurrent.futures.Executor) -> None:
    build = Path(tempfile.mkdtemp(prefix=f".tmp-{plan.task}-", dir=root))
    try:
        synthesised: dict[str, Iterable] = {}
        rendering = {}
        for clip in plan.clips:
            speech = None
            if clip.noise is None:  # a unit's utterances come in the order of its clips
                if clip.unit not in synthesised:
                    synthesised[clip.unit] = iter(futures[(plan.task, clip.unit)].result())
                speech = next(synthesised[clip.unit])
            out = build / clip.path
            out.parent.mkdir(parents=True, exist_ok=True)
            job = renderers.submit(_render_and_write, clip, speech, seed, plan.task, out)
            job.add_done_callback(lambda _: bar.update(1))
            rendering[clip.path] = job
        lengths = {path: job.result() for path, job in rendering.items()}
        plan.finalize(build, lengths)
        _install(root, build, plan, settings, digest)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
