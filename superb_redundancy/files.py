"""Reading the files our commands are given: checkpoints loaded as weights only, with one-line errors; hashes.

Every checkpoint our code reads goes through :func:`load_checkpoint` (``torch.load(weights_only=True)``). A file
that needs code to unpickle (a class, a function, ``os.system``) is refused with the name of the global it
pickles; the message never suggests loading it anyway.

Models are identified by what they hold, not by their files' bytes: :func:`content_sha256` hashes tensors (dtype,
shape, bytes) and the JSON of everything else, in sorted key order; :func:`model_sha256` leaves out the
provenance our artifacts carry (paths, training logs), and :func:`checkpoint_sha256` does it for a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Type

__all__ = ["load_checkpoint", "pickled_global", "sha256_file", "content_sha256", "model_sha256",
           "checkpoint_sha256", "PROVENANCE"]

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


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint", error: Type[Exception] = ValueError,
                    mmap: bool = False, safe_globals: Iterable[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a missing, unreadable or code-carrying file raises
    ``error`` with one line naming the file (and the rejected global). ``mmap``: map instead of reading, for
    files whose small entries alone are needed. ``safe_globals``: plain classes to allow (argparse.Namespace)."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
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
                      error: Type[Exception] = ValueError) -> Optional[str]:
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
