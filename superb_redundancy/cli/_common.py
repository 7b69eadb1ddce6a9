"""What the subcommand modules share: the parser class whose refusals are one line, the family names, the
arguments several commands take with one spelling, and the checks made before any work.

Light on purpose: building the parser (``superb-redundancy -h``) imports nothing heavy (no torch, s3prl,
transformers, matplotlib or pandas); library code is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NoReturn, Optional

__all__ = ["Parser", "FAMILY_NAMES", "add_upstream_args", "add_data_args", "add_clip_source", "check_output_file",
           "check_max_seconds", "check_enough_clips", "corpus_tasks", "add_aliased"]

#: the model families (keys of :data:`superb_redundancy.models.families.FAMILIES`, in its order). A copy: that
#: module imports torch, which ``-h`` must not; tests/test_cli.py checks the two are equal.
FAMILY_NAMES = ("wav2vec2", "hubert", "wavlm", "data2vec")


def corpus_tasks() -> tuple[str, ...]:
    """The tasks the synthetic corpus writes (those of :data:`superb_redundancy.data.tasks.TASKS`, a light module;
    ``superb_redundancy.data.corpus`` itself imports numpy and soundfile)."""
    from superb_redundancy.data.tasks import TASKS

    return tuple(dict.fromkeys(task.corpus_task for task in TASKS.values()))


class Parser(argparse.ArgumentParser):
    """argparse's refusals as one line (no usage block), as the commands' own errors are:
    ``superb-redundancy <command>: error: <message>``, exit status 2. Subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        # a required flag with a hidden deprecated alias is a required group of one visible member
        alone = re.fullmatch(r"one of the arguments (\S+) is required", message)
        if alone:
            message = f"the following arguments are required: {alone[1]}"
        self.exit(2, f"{self.prog}: error: {message}\n")


class _DeprecatedAlias(argparse.Action):
    """An older spelling of a flag: accepted (same dest, same nargs), left out of -h, noted on stderr."""

    def __init__(self, option_strings, dest, spelling: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.spelling = spelling

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.spelling}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_aliased(p, flag: str, deprecated: str, required: bool = False, **kwargs) -> argparse.Action:
    """``flag``, with ``deprecated`` as a hidden alias of it (to p, a parser or a mutually exclusive group)."""
    if required:  # either spelling satisfies it: a required group of the two
        p = p.add_mutually_exclusive_group(required=True)
    action = p.add_argument(flag, **kwargs)
    p.add_argument(deprecated, dest=action.dest, nargs=action.nargs, action=_DeprecatedAlias, spelling=flag,
                   metavar=action.metavar, help=argparse.SUPPRESS)
    return action


def add_upstream_args(p: argparse.ArgumentParser) -> None:
    """s3prl's own spelling of the upstream: ``-u NAME [-k CKPT] [-g CONFIG]``."""
    p.add_argument("-u", "--upstream", required=True, help="any s3prl hub name, ours included")
    p.add_argument("-k", "--upstream_ckpt", metavar="CKPT", help="checkpoint path (for _local names)")
    p.add_argument("-g", "--upstream_model_config", metavar="CONFIG", help="model config (our pruned_*: a prune spec)")


def add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    """One audio folder (``--data``), a seeded subset of it, and the device the model runs on."""
    p.add_argument("--data", required=required, metavar="DIR", help="folder of .wav/.flac audio (searched recursively)")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")


def add_clip_source(p: argparse.ArgumentParser, seed_help: str, deprecated: Optional[str] = None) -> None:
    """The clips a trainer reads: audio files/folders (``--data``), or a corpus split (with its task), and a
    seeded subset. ``deprecated``: an older spelling of ``--data``, still accepted, not shown."""
    source = p.add_mutually_exclusive_group(required=True)
    help_ = "folder(s) (recursive *.wav/*.flac) or audio files, 16 kHz"
    if deprecated:
        add_aliased(source, "--data", deprecated, nargs="+", metavar="AUDIO", help=help_)
    else:
        source.add_argument("--data", nargs="+", metavar="AUDIO", help=help_)
    source.add_argument("--corpus", metavar="ROOT", help="a SUPERB corpus root laid out as ours (with --task; "
                                                         "superb-redundancy corpus makes one)")
    p.add_argument("--task", choices=corpus_tasks(),
                   help="with --corpus: the task whose split is read")
    p.add_argument("--split", default="train", choices=["train", "dev", "test"],
                   help="with --corpus: the split (default train)")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def check_output_file(path: Optional[str], flag: str) -> None:
    """An output file's path must not be a folder, and its folder must be creatable: checked before the work."""
    if path and Path(path).expanduser().is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    if path:
        from superb_redundancy.core.files import check_writable

        check_writable(Path(path).expanduser().parent, flag)


def check_max_seconds(value: Optional[float], flag: str = "--max-seconds") -> None:
    from superb_redundancy.core.audio import MIN_SAMPLES, SAMPLE_RATE

    if value is not None and not value >= MIN_SAMPLES / SAMPLE_RATE:  # `not >=`: NaN fails too
        raise ValueError(f"{flag} must be at least {MIN_SAMPLES / SAMPLE_RATE:g} (one frame of the "
                         f"model), got {value:g}")


def check_enough_clips(files: list, settings, data: str) -> None:
    """Mutual kNN needs k+1 samples; with a sample per clip, too few clips would fail after the forward pass."""
    if settings.pool != "frames" and len(files) < settings.k + 1:
        raise ValueError(f"{len(files)} usable clip(s) in {data}: mutual kNN with --k {settings.k} needs at least "
                         f"{settings.k + 1} (or --pool frames)")

