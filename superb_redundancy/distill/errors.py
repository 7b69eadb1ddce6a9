"""The error of bad distillation input (a teacher, its cache, step-1 audio, a mimicker's config or artifact)."""

from __future__ import annotations

from superb_redundancy.core.errors import UserError

__all__ = ["MimicError"]


class MimicError(UserError):
    """Bad input for a mimicker (config, artifact, teacher); one line, naming the value and what is valid.

    Named after the mimicker, whose public error it has always been (``superb_redundancy.mimic.config.MimicError``
    is this class); it lives here because the teacher and its cache, which healing uses too, raise it."""
