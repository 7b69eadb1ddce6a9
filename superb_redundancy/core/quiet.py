"""Silence the third-party noise every command would print, at our entry points only.

Each entry is a known, harmless message of a dependency (matched exactly, by category and text), so a new or
different warning, and every warning of our own, still shows.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["KNOWN_WARNINGS", "KNOWN_LOG_LINES", "silence_known_noise"]

#: (category, message regex) of warnings raised while s3prl and its models load
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # s3prl's byol/ssast modules decorate with torch.jit.script_method (deprecated since torch 2.5)
    (FutureWarning, r"`torch\.jit\.script_method` is deprecated"),
    (DeprecationWarning, r"`torch\.jit\.script_method` is deprecated"),
    # s3prl's wav2vec2/HuBERT/WavLM positional convolution
    (FutureWarning, r"`torch\.nn\.utils\.weight_norm` is deprecated"),
    # s3prl's data2vec model calls Module.state_dict with positional arguments (deprecated by torch)
    (FutureWarning, r"Positional args are being deprecated, use kwargs instead"),
    # torchaudio 2.9+ on its own removed I/O backends, raised by s3prl's imports
    (UserWarning, r"In 2\.9, this function's implementation will be changed"),
    (UserWarning, r"torchaudio\._backend\.set_audio_backend has been deprecated"),
    # s3prl's runner: tensorboardX / SummaryWriter import-order hack
    (UserWarning, r"Creating a tensor from a list of numpy\.ndarrays is extremely slow"),
)

#: (logger name, message prefix) of log lines that say nothing about the run
KNOWN_LOG_LINES: tuple[tuple[str, str], ...] = (
    ("s3prl.upstream.espnet_hubert.expert", "ESPnet is not installed"),
)


class _DropKnown(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


_DONE = False


def silence_known_noise() -> None:
    """Install the filters (idempotent); call from an entry point, never from library code."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    for category, pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, prefix in KNOWN_LOG_LINES:
        logging.getLogger(name).addFilter(_DropKnown(prefix))
