"""Atomic writes: results are written to a temporary file beside the target, then renamed over it.

A reader (or a crash) never sees a half-written file: either the old content or the new one is there.
Files that belong together (a report and its figure) are written as one unit with :func:`atomic_dir`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["atomic_path", "atomic_dir", "check_output_dir", "check_writable", "write_text", "write_json",
           "torch_save"]


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


def check_output_dir(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Refuse, before any work, an output folder that cannot be one: an existing file, an unwritable place, or
    the current folder (or one above it), which :func:`atomic_dir` would swap from under the shell."""
    path = Path(path).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; give a folder (it will hold the outputs)")
    if _holds_cwd(path.resolve()):
        raise ValueError(f"{flag} {path} is the current folder or holds it; give a folder of its own (e.g. {path}/out)")
    check_writable(path, flag)
    return path


def check_writable(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Refuse, before any work, a path in a place this process cannot write (its nearest existing folder)."""
    path = Path(path).expanduser()
    existing = next(p for p in [path.absolute(), *path.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is not writable")
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
        raise ValueError(f"{final} exists and is not a folder")
    if _holds_cwd(final):
        raise ValueError(f"{final} is the current folder or holds it; write the unit into a folder of its own")
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
