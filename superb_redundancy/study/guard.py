"""Who may write where: one runner per workdir, one process per run folder, and no child outliving its runner.

Locks are ``flock`` on a file (``<workdir>/.lock``, ``<run folder>/.lock``) that also says who holds it (pid,
host, since when), so a refused caller can name the holder. The kernel drops a flock when the last process
holding its file descriptor ends, however it ends; a run's lock descriptor is also handed to the s3prl child
(see ``experiment.run_downstream``), so a run folder stays locked while anything that may write into it lives.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Iterator, Optional

from superb_redundancy.core.errors import UserError

__all__ = ["Held", "hold", "holder", "die_with_parent", "RUN_LOCK_FD"]

#: the environment variable that passes a run's lock descriptor to the runs' child processes
RUN_LOCK_FD = "SUPERB_REDUNDANCY_RUN_LOCK_FD"


class Held(UserError):
    """The lock is held by another live process; the message names it."""


#: how long a lock whose recorded holder is gone may stay held: the time a killed holder's children (which
#: inherited the descriptor) take to exit
EXIT_GRACE_S = 15.0


def _read(path: Path) -> Optional[dict]:
    try:
        info = json.loads(Path(path).read_text())
        return {"pid": int(info["pid"]), "host": str(info["host"]), "since": float(info.get("since", 0)),
                "what": str(info.get("what", "?"))}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _gone(info: Optional[dict]) -> bool:
    """The recorded holder is a process of this host that no longer exists."""
    return info is not None and info["host"] == socket.gethostname() and not _alive(info["pid"])


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says (the holder writes it right after locking)."""
    info = _read(path)
    if info is None:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
    text = f"pid {info['pid']} on {info['host']} since {since} ({info['what']})"
    if _gone(info):
        text += "; that process is gone, a child it started still holds the lock"
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def hold(path: Path, what: str, wait: bool = False) -> Iterator[IO[str]]:
    """Hold the lock at ``path`` for the block; :class:`Held` (naming the holder) when another process holds it,
    unless ``wait``: then wait for it. ``what`` says what the holder does (shown to the refused)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        try:
            locked = _try_lock(handle)
            deadline = time.monotonic() + EXIT_GRACE_S
            while not locked and _gone(_read(path)) and time.monotonic() < deadline:  # children still exiting
                time.sleep(0.1)
                locked = _try_lock(handle)
            if not locked and not wait:
                raise Held(f"{path.parent} is in use by {holder(path)}")
            if not locked:
                print(f"waiting for {path.parent}, in use by {holder(path)}", file=sys.stderr, flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # a filesystem without flock (some Lustre mounts): go on, unguarded, and say so
            if error.errno not in (errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            print(f"warning: cannot lock {path} ({error.strerror}); concurrent runs are not prevented",
                  file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                 "what": what}))
        handle.flush()
        yield handle
    finally:
        # closing (not LOCK_UN) frees the lock only once no child holds the descriptor any more
        handle.close()


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Linux: this process gets ``sig`` when its parent dies, so a killed runner leaves no worker behind.
    ``parent``: the pid the parent had (when it died before this call, exit now)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
