"""The project's file helper: atomic writes, checked checkpoint loading, content hashes.

Writes: results go to a temporary file beside the target, then are renamed over it, so a reader (or a crash)
never sees a half-written file; files that belong together (a report and its figure) are written as one unit
with :func:`atomic_dir`.

Reads: every checkpoint our code reads goes through :func:`load_checkpoint` (``torch.load(weights_only=True)``).
A file that needs code to unpickle (a class, a function, ``os.system``) is refused with the name of the global it
pickles; the message never suggests loading it anyway.

Hashes: models are identified by what they hold, not by their files' bytes: :func:`content_sha256` hashes tensors
(dtype, shape, bytes) and the JSON of everything else, in sorted key order; :func:`model_sha256` leaves out the
provenance our artifacts carry (paths, training logs), and :func:`checkpoint_sha256` does it for a file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Type

from superb_redundancy.core.errors import UserError

__all__ = ["file_sha256", "atomic_path", "atomic_dir", "check_output_dir", "check_writable", "write_text", "write_json",
           "torch_save", "load_checkpoint", "pickled_global", "sha256_file", "content_sha256", "model_sha256",
           "checkpoint_sha256", "PROVENANCE"]


# ---- writing

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically and deterministically: equal objects give byte-identical files.

    torch names the zip's top folder after the file it is given (here a random temp name); through a file object
    it is always "archive", so the bytes depend on ``obj`` alone.
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            torch.save(obj, file)
    return Path(path)


# ---------------------------------------------------------------------------------------------- units of files
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _move_missing(source: Path, target: Path, unit: Iterable[str] = ()) -> None:
    """Move the entries of ``source`` that ``target`` lacks into it (files beside the unit stay where they were),
    except those whose name matches a pattern of ``unit`` (files of the old unit the new one no longer has)."""
    patterns = list(unit)
    for entry in source.iterdir():
        if any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
            continue
        if not os.path.lexists(target / entry.name):
            os.replace(entry, target / entry.name)


def _clean_stale(final: Path) -> None:
    """Finish or undo what a killed :func:`atomic_dir` left beside ``final`` (pid in the name, process gone)."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)$")
    if not final.parent.is_dir():
        return
    for entry in sorted(final.parent.iterdir()):
        match = pattern.match(entry.name)
        if not match or _pid_alive(int(match.group(2))) and int(match.group(2)) != os.getpid():
            continue
        if match.group(1) == "old" and entry.is_dir():
            if not os.path.lexists(final):
                os.replace(entry, final)  # killed between the two renames: the old unit is the complete one
                continue
            _move_missing(entry, final)  # killed while moving the other files back: finish it
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _holds_cwd(folder: Path) -> bool:
    cwd = Path.cwd().resolve()
    return folder == cwd or folder in cwd.parents


def check_output_dir(path: str | os.PathLike, flag: str = "--output-dir") -> Path:
    """Refuse, before any work, an output folder that cannot be one: an existing file, an unwritable place, or
    the current folder (or one above it), which :func:`atomic_dir` would swap from under the shell."""
    path = Path(path).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder (it will hold the outputs)")
    if _holds_cwd(path.resolve()):
        raise UserError(f"{flag} {path} is the current folder or holds it; give a folder of its own (e.g. {path}/out)")
    check_writable(path, flag)
    return path


def check_writable(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Refuse, before any work, a path in a place this process cannot write (its nearest existing folder)."""
    path = Path(path).expanduser()
    existing = next(p for p in [path.absolute(), *path.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")
    return path


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, unit: Iterable[str] = ()) -> Iterator[Path]:
    """Write files that belong together as one unit: yield an empty sibling folder ``.{name}.tmp-<pid>``; on
    success it becomes ``final`` (the old folder is renamed away, the new one renamed in, then the other entries
    of the old folder are moved back and it is deleted), on error it is removed. ``unit``: name patterns of the
    unit's files, so that an old one the new unit lacks is not carried over (default: every other entry is).

    A reader never sees a new file of the unit beside an old one. Leftovers of a killed run (``.tmp-`` and
    ``.old-`` siblings whose process is gone) are cleaned up (or the interrupted swap completed) on the next call.
    """
    final = Path(final).expanduser().resolve()  # a symlinked folder: swap its target, not the link
    if os.path.lexists(final) and not final.is_dir():
        raise UserError(f"{final} exists and is not a folder")
    if _holds_cwd(final):
        raise UserError(f"{final} is the current folder or holds it; write the unit into a folder of its own")
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if final.is_dir():
            os.replace(final, old)
            os.replace(tmp, final)
            _move_missing(old, final, unit)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- reading and hashing
#: entries of our artifacts that say where a model came from, not what it is (dotted paths into the checkpoint)
PROVENANCE = (
    "training",  # mimic: losses, seconds per epoch
    "teacher.path", "teacher.sha256", "teacher.content_sha256",  # mimic: which teacher file it was distilled from
    "superb_redundancy.spec.base", "superb_redundancy.spec.notes",  # pruned: base path, objective scores
    "superb_redundancy.base_sha256", "superb_redundancy.base_model_sha256",
    "superb_redundancy.finetuned", "finetuned",  # export: the experiment whose fine-tuned upstream it is
    "converted_from",  # export --format s3prl: the Hugging Face folder it was converted from
    "superb_redundancy.healed",  # heal: the record of the healing (the weights say what it is)
)


def pickled_global(error: BaseException) -> Optional[str]:
    """The global a weights-only unpickler rejected, from torch's error text (None if it names none)."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
    return found.group(1) if found else None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _reason(error: BaseException) -> str:
    """Why a file did not load, in a few words: torch's weights-only message leads with advice to load the file
    unsafely, which we never give, so its underlying unpickler error is used instead."""
    if isinstance(error, EOFError):
        return "empty or truncated file"
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(error))
    if found:
        return f"not a torch checkpoint ({found.group(1).strip()})"
    return _first_line(error)


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint", error: Type[Exception] = UserError,
                    mmap: bool = False, safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a missing, unreadable or code-carrying file raises
    ``error`` with one line naming the file (and the rejected global). ``mmap``: map instead of reading, for
    files whose small entries alone are needed. ``safe_globals``: plain classes to allow (argparse.Namespace)."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    # only those not allowed already: leaving the context removes its classes, even one allowed process-wide
    # before (the compat layer's argparse.Namespace), which a later s3prl load in this process would then miss
    allowed = set(torch.serialization.get_safe_globals())
    try:
        with torch.serialization.safe_globals([c for c in safe_globals if c not in allowed]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not (mmap and "mmap can only be used" in str(exc)):
                    raise
                # not a zip-format file (legacy torch format, or no torch file at all): read it plainly
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        name = pickled_global(exc)
        if name is not None:
            raise error(f"refused to load {what} {path}: it pickles {name}; checkpoints are loaded as weights only "
                        "(tensors, numbers, strings, lists and dicts)") from None
        raise error(f"corrupt or unreadable {what} {path}: {_reason(exc)}") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise error(f"corrupt or unreadable {what} {path}: {_reason(exc)}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Optional[str]) -> Optional[str]:
    """sha256 of a file (cached by path, size and mtime), or None for no/missing file."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(p)
    return _FILE_HASHES[key]


def _feed(digest: "hashlib._Hash", value: Any, path: str, exclude: frozenset[str]) -> None:
    import numpy as np
    import torch

    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            child = f"{path}.{key}" if path else str(key)
            if child in exclude:
                continue
            digest.update(json.dumps(key, default=str).encode() + b":")
            _feed(digest, value[key], child, exclude)
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item, path, exclude)
            digest.update(b",")
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{list(tensor.shape)}".encode())
        if tensor.numel():  # raw bytes, whatever the dtype (bfloat16 has no numpy twin)
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"A{array.dtype.str}{list(array.shape)}".encode())
        digest.update(array.tobytes())
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())


def content_sha256(obj: Any, exclude: Iterable[str] = ()) -> str:
    """sha256 of a state dict or checkpoint by content: every tensor's dtype, shape and bytes, and the JSON of
    every other value, in sorted key order; ``exclude``: dotted key paths to leave out. Equal content gives the
    same hash whatever the file it was read from (or how it was pickled)."""
    digest = hashlib.sha256()
    _feed(digest, obj, "", frozenset(exclude))
    return digest.hexdigest()


def model_sha256(checkpoint: Any) -> str:
    """The identity of a model: :func:`content_sha256` of its weights and config, without :data:`PROVENANCE`."""
    return content_sha256(checkpoint, PROVENANCE)


_CHECKPOINT_HASHES: dict[tuple[str, int, int], str] = {}


def checkpoint_sha256(path: Optional[str | os.PathLike], what: str = "checkpoint",
                      error: Type[Exception] = UserError) -> Optional[str]:
    """:func:`model_sha256` of a checkpoint file (cached by path, size and mtime); None for no path or a path
    that is not a file (a Hugging Face folder, a missing file). A file torch cannot read raises ``error``."""
    if not path:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        return None
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKPOINT_HASHES:
        checkpoint = load_checkpoint(p, what, error, mmap=True)  # mapped: the hash reads each byte once
        _CHECKPOINT_HASHES[key] = model_sha256(checkpoint)
    return _CHECKPOINT_HASHES[key]
