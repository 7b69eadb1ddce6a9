"""``superb-redundancy``: one command, one subcommand per concept. Parses arguments and calls the library.

Each topic module (lhotse's ``bin/modes/<topic>.py``) has ``register(subparsers)`` adding its subcommands: their
parsers, and handlers that import the library when they run, so ``-h`` imports no torch. That is the one way a
subcommand is registered. Here: the parser, the one path from bad input to exit status 2, and the passthrough of
``run-downstream``.

Bad input is a :class:`~superb_redundancy.core.errors.UserError` (each subpackage's error subclasses it): ``main``
prints it as one line, ``superb-redundancy <command>: error: ...``, and returns 2, as argparse's own refusals
(:class:`~superb_redundancy.cli._common.Parser`). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

__all__ = ["build_parser", "main"]

#: the topic modules (superb_redundancy.cli.<topic>), in the order -h lists their subcommands
TOPICS = ("study", "data", "models", "analysis", "pruning", "mimic", "compute", "results")
#: subcommands whose arguments belong to another program: passed on untouched
PASSTHROUGH = {"run-downstream": "superb_redundancy.hub.runner"}


def build_parser() -> argparse.ArgumentParser:
    from superb_redundancy.cli._common import Parser

    parser = Parser(prog="superb-redundancy", epilog="superb-redundancy COMMAND -h documents each command.",
                    description="Layer similarity, pruning, healing and mimicking of s3prl upstreams (SUPERB): one "
                                "subcommand per concept.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for topic in TOPICS:
        importlib.import_module(f"superb_redundancy.cli.{topic}").register(sub)
    sub.add_parser("run-downstream", help="s3prl's run_downstream.py with our variants (its arguments)",
                   add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from superb_redundancy.cli._common import resolve_device
    from superb_redundancy.core import quiet
    from superb_redundancy.core.errors import UserError, print_user_error

    argv = list(sys.argv[1:] if argv is None else argv)
    quiet.silence_known_noise()
    if argv and argv[0] in PASSTHROUGH:
        return int(importlib.import_module(PASSTHROUGH[argv[0]]).main(argv[1:]) or 0)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # refused by the subcommand that was given them, so the line names it
        _chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "flush_denormals", False):  # the commands that train (core/numerics.py says why)
        from superb_redundancy.core.numerics import flush_denormals

        flush_denormals()
    prog = _chosen_parser(parser, args).prog
    try:
        if hasattr(args, "device"):
            args.device = resolve_device(args.device)
        return args.func(args)
    except UserError as error:  # bad input: one line, no traceback; anything else is a bug and keeps it
        return print_user_error(prog, error)


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subparser ``args`` were parsed by (``mimic train``'s for ``mimic train ...``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None))
            return parser if chosen is None else _chosen_parser(chosen, args)
    return parser


if __name__ == "__main__":
    sys.exit(main())
