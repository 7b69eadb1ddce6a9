"""The one error of bad input, and the one way the command line prints it.

Every error a user can cause with a command's arguments or files (a bad value, a missing file, a checkpoint of
another family, ...) is a :class:`UserError`; each subpackage's own error (``MimicError``, ``PruneSpecError``,
``ProfileError``, ``StudyConfigError``, ...) subclasses it. It is a ``ValueError``, so library callers that catch
``ValueError`` keep working. The command line prints a ``UserError`` as one line and exits with status 2
(:func:`print_user_error`); any other exception, numpy's and torch's ``ValueError`` included, is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["UserError", "InputNotFound", "print_user_error", "USAGE_STATUS"]

#: the exit status of a refused command (argparse's, for its own refusals)
USAGE_STATUS = 2


class UserError(ValueError):
    """Bad input, raised before any work: one line naming the bad value and what is valid."""


class InputNotFound(UserError, FileNotFoundError):
    """An input file or folder that does not exist (a ``FileNotFoundError`` too)."""


def print_user_error(prog: str, error: BaseException | str, file: TextIO | None = None) -> int:
    """``<prog>: error: <message>`` on stderr, one line; returns the exit status (2)."""
    print(f"{prog}: error: {error}", file=file or sys.stderr)
    return USAGE_STATUS
