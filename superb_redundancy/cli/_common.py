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
from typing import NoReturn, Optional, Sequence

from superb_redundancy.core.errors import UserError, print_user_error

__all__ = ["Parser", "HelpFormatter", "FAMILY_NAMES", "add_upstream_args", "add_data_args", "add_clip_source",
           "check_output_file", "check_max_seconds", "check_enough_clips", "corpus_tasks", "add_aliased",
           "add_device_arg", "resolve_device", "add_progress_arg", "add_s3prl_model_args", "AUTO_DEVICE",
           "DATA_HELP", "data_label"]

#: the model families (keys of :data:`superb_redundancy.models.families.FAMILIES`, in its order). A copy: that
#: module imports torch, which ``-h`` must not; tests/test_cli.py checks the two are equal.
FAMILY_NAMES = ("wav2vec2", "hubert", "wavlm", "data2vec")


def corpus_tasks() -> tuple[str, ...]:
    """The tasks the synthetic corpus writes (those of :data:`superb_redundancy.data.tasks.TASKS`, a light module;
    ``superb_redundancy.data.corpus`` itself imports numpy and soundfile)."""
    from superb_redundancy.data.tasks import TASKS

    return tuple(dict.fromkeys(task.corpus_task for task in TASKS.values()))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default shown by the formatter, ``(default: X)``, never typed into its help by hand; left
    out where there is nothing to show (no default, a switch that is off, a hidden alias)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        default = action.default
        if ("%(default)" in help_ or default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or default == [] or not action.option_strings):
            return help_
        return help_ + " (default: %(default)s)"

    def _expand_help(self, action: argparse.Action) -> str:
        if isinstance(action.default, (list, tuple)) and "%(default)" in self._get_help_string(action):
            action = argparse.Action(action.option_strings, action.dest, default=" ".join(map(str, action.default)),
                                     help=action.help, metavar=action.metavar, choices=action.choices)
        return super()._expand_help(action)


class Parser(argparse.ArgumentParser):
    """argparse's refusals as one line (no usage block), printed as the commands' own errors are
    (:func:`~superb_redundancy.core.errors.print_user_error`): ``superb-redundancy <command>: error: <message>``,
    exit status 2. Defaults are shown by :class:`HelpFormatter`. Subparsers are of the same class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # a required flag with a hidden alias is a required group of one visible member
        alone = re.fullmatch(r"one of the arguments (\S+) is required", message)
        if alone:
            message = f"the following arguments are required: {alone[1]}"
        sys.exit(print_user_error(self.prog, message))


class _Alias(argparse.Action):
    """Another spelling of an option: the same dest, nargs, type and choices, left out of -h. A deprecated one is
    noted on stderr; s3prl's own spellings (``--upstream_ckpt``) are not deprecated, only not shown."""

    def __init__(self, option_strings, dest, target: argparse.Action, deprecated: bool, **kwargs):
        super().__init__(option_strings, dest, nargs=target.nargs, type=target.type, choices=target.choices,
                         metavar=target.metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.target, self.deprecated = target, deprecated

    def __call__(self, parser, namespace, values, option_string=None):
        if self.deprecated:
            print(f"{parser.prog}: note: {option_string} is deprecated; use {self.target.option_strings[-1]}",
                  file=sys.stderr)
        self.target(parser, namespace, values, self.target.option_strings[-1])


def add_aliased(p, *flags: str, aliases: Sequence[str] = (), deprecated: bool = True, required: bool = False,
                **kwargs) -> argparse.Action:
    """The option ``flags`` (shown in -h), with each of ``aliases`` a hidden spelling of it (to p, a parser or a
    mutually exclusive group). ``deprecated``: aliases note on stderr that they are (s3prl's spellings: False)."""
    if required:  # either spelling satisfies it: a required group of the two
        p = p.add_mutually_exclusive_group(required=True)
    action = p.add_argument(*flags, **kwargs)
    for alias in aliases:
        p.add_argument(alias, dest=action.dest, action=_Alias, target=action, deprecated=deprecated)
    return action


#: the value of ``--device`` that means "cuda if available, else cpu": the one rule, resolved by the CLI's main
AUTO_DEVICE = "auto"


def add_device_arg(p, what: str = "where the model runs") -> None:
    """``--device``, the one rule for every command: ``auto`` (the default) is cuda if available, else cpu."""
    p.add_argument("--device", default=AUTO_DEVICE, help=f"{what}: auto (cuda if available, else cpu), cpu, cuda "
                                                          f"or cuda:N")


def resolve_device(device: Optional[str]) -> Optional[str]:
    """``auto`` as the device it means here (imports torch); anything else unchanged."""
    if device != AUTO_DEVICE:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_progress_arg(p) -> None:
    """``--no-progress`` (``--quiet``: its older spelling in some commands, hidden); sets ``args.progress``."""
    add_aliased(p, "--no-progress", aliases=("--quiet",), dest="progress", action="store_false",
                help="no progress bars")


def add_upstream_args(p: argparse.ArgumentParser) -> None:
    """s3prl's own spelling of the upstream: ``-u NAME [-k CKPT] [-g CONFIG]``."""
    p.add_argument("-u", "--upstream", required=True, help="any s3prl hub name, ours included")
    add_s3prl_model_args(p, "upstream_ckpt", "upstream_model_config")


def add_s3prl_model_args(p, ckpt_dest: str, config_dest: str) -> None:
    """``-k/--upstream-ckpt CKPT`` and ``-g/--upstream-model-config CONFIG``; s3prl's ``--upstream_ckpt`` and
    ``--upstream_model_config`` stay accepted (hidden, not deprecated: they are what s3prl's users type)."""
    add_aliased(p, "-k", "--upstream-ckpt", aliases=("--upstream_ckpt",), deprecated=False, dest=ckpt_dest,
                metavar="CKPT", help="checkpoint path, as s3prl's -k (for _local names)")
    add_aliased(p, "-g", "--upstream-model-config", aliases=("--upstream_model_config",), deprecated=False,
                dest=config_dest, metavar="CONFIG", help="model config, as s3prl's -g (our pruned_*: a prune spec)")


#: what ``--data`` takes, in every command
DATA_HELP = "folder(s) (recursive *.wav/*.flac) or audio files, 16 kHz"


def data_label(data: Sequence[str]) -> str:
    """``--data`` as a report records it: the folder, or the folders and files separated by spaces."""
    return " ".join(map(str, data))


def add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    """The audio (``--data``: folders or files), a seeded subset of it, and the device the model runs on."""
    p.add_argument("--data", required=required, nargs="+", metavar="AUDIO", help=DATA_HELP)
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    add_device_arg(p)


def add_clip_source(p: argparse.ArgumentParser, seed_help: str, deprecated: Optional[str] = None) -> None:
    """The clips a trainer reads: audio files/folders (``--data``), or a corpus split (with its task), and a
    seeded subset. ``deprecated``: an older spelling of ``--data``, still accepted, not shown."""
    source = p.add_mutually_exclusive_group(required=True)
    help_ = DATA_HELP
    if deprecated:
        add_aliased(source, "--data", aliases=(deprecated,), nargs="+", metavar="AUDIO", help=help_)
    else:
        source.add_argument("--data", nargs="+", metavar="AUDIO", help=help_)
    source.add_argument("--corpus", metavar="ROOT", help="a SUPERB corpus root laid out as ours (with --task; "
                                                         "superb-redundancy corpus makes one)")
    p.add_argument("--task", choices=corpus_tasks(),
                   help="with --corpus: the task whose split is read")
    p.add_argument("--split", default="train", choices=["train", "dev", "test"],
                   help="with --corpus: the split")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def check_output_file(path: Optional[str], flag: str) -> None:
    """An output file's path must not be a folder, and its folder must be creatable: checked before the work."""
    if path and Path(path).expanduser().is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file path")
    if path:
        from superb_redundancy.core.files import check_writable

        check_writable(Path(path).expanduser().parent, flag)


def check_max_seconds(value: Optional[float], flag: str = "--max-seconds") -> None:
    from superb_redundancy.core.audio import MIN_SAMPLES, SAMPLE_RATE

    if value is not None and not value >= MIN_SAMPLES / SAMPLE_RATE:  # `not >=`: NaN fails too
        raise UserError(f"{flag} must be at least {MIN_SAMPLES / SAMPLE_RATE:g} (one frame of the "
                         f"model), got {value:g}")


def check_enough_clips(files: list, settings, data: Sequence[str]) -> None:
    """Mutual kNN needs k+1 samples; with a sample per clip, too few clips would fail after the forward pass."""
    if settings.pool != "frames" and len(files) < settings.k + 1:
        raise UserError(f"{len(files)} usable clip(s) in {data_label(data)}: mutual kNN with --k {settings.k} needs at least "
                         f"{settings.k + 1} (or --pool frames)")

