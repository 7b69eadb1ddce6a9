"""Commands run as a user runs them: a fresh interpreter, output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

_SCRIPT = Path(sys.executable).with_name("superb-redundancy")
#: the console script where it is installed, else the module
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "superb_redundancy.cli"]


def cli(*args: object, cwd: Optional[Path] = None, env: Optional[dict] = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """``superb-redundancy ARGS`` in a fresh process."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The last non-empty stderr line of a refused command (exit status 2, no traceback)."""
    assert result.returncode == 2, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


def in_process(*args: object, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``superb-redundancy ARGS`` through :func:`superb_redundancy.cli.main` in this process (in ``cwd``), its
    output captured: what a fresh process would print and return, without the interpreter's start-up."""
    import contextlib
    import io
    import os

    from superb_redundancy.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's refusals
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            if "torch" in sys.modules:  # the commands that train flush subnormals (core/numerics.py): not the rest
                sys.modules["torch"].set_flush_denormal(False)
    return subprocess.CompletedProcess([*CLI, *map(str, args)], code, out.getvalue(), err.getvalue())
