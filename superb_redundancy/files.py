"""Reading the files our commands are given: checkpoints loaded as weights only, with one-line errors; hashes.

Every checkpoint our code reads goes through :func:`load_checkpoint` (``torch.load(weights_only=True)``). A file
that needs code to unpickle (a class, a function, ``os.system``) is refused with the name of the global it
pickles; the message never suggests loading it anyway.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Type

__all__ = ["load_checkpoint", "pickled_global", "sha256_file"]


def pickled_global(error: BaseException) -> Optional[str]:
    """The global a weights-only unpickler rejected, from torch's error text (None if it names none)."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
    return found.group(1) if found else None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        name = pickled_global(exc)
        if name is not None:
            raise error(f"refused to load {what} {path}: it pickles {name}; checkpoints are loaded as weights only "
                        "(tensors, numbers, strings, lists and dicts)") from None
        raise error(f"corrupt or unreadable {what} {path}: {_first_line(exc)}") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise error(f"corrupt or unreadable {what} {path}: {_first_line(exc)}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
