"""``superb-redundancy corpus`` (the synthetic SUPERB corpus) and ``superb-redundancy overrides`` (s3prl's ``-o``
string pointing a task's config at a corpus root)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from superb_redundancy.cli._common import add_progress_arg, corpus_tasks
from superb_redundancy.core.errors import UserError

__all__ = ["register", "add_corpus_arguments", "run_corpus", "CORPUS_DESCRIPTION"]

CORPUS_DESCRIPTION = "Generate the deterministic synthetic SUPERB corpus (espeak-ng speech) in s3prl's layouts."
#: where the corpus goes by default: what downstream_configs/*/*.yaml point at
DEFAULT_ROOT = "work/study/data"


def register(sub) -> None:
    p = sub.add_parser("corpus", help="generate the synthetic SUPERB corpus", description=CORPUS_DESCRIPTION)
    add_corpus_arguments(p)
    p.set_defaults(func=run_corpus)

    from superb_redundancy.data.tasks import TASKS

    p = sub.add_parser("overrides", help="print the -o string pointing a task's config at a corpus root",
                       description="Print s3prl's -o string that points a task's downstream config at a corpus "
                                   "root laid out as ours (superb-redundancy corpus).")
    p.add_argument("-d", "--downstream", required=True, choices=list(TASKS), metavar="TASK",
                   help=f"the s3prl task (-d): {', '.join(TASKS)}")
    p.add_argument("--root", default=DEFAULT_ROOT, help="the corpus root; the default is the main job's corpus")
    p.set_defaults(func=_cmd_overrides)


def add_corpus_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    tasks = corpus_tasks()
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT),
                        help="the corpus root to write; the default is where downstream_configs/*/*.yaml point")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the clip counts; 1 gives the sizes a score needs, e.g. 408 KS test clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--tasks", nargs="+", default=list(tasks), metavar="TASK",
                        help=f"tasks to generate, any of {', '.join(tasks)}; commas also separate")
    parser.add_argument("--workers", type=int, default=None, help="synthesis processes (none given: the CPU count)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the marker says it is complete")
    add_progress_arg(parser)
    return parser


def run_corpus(args: argparse.Namespace) -> int:
    valid = corpus_tasks()
    tasks = [t for item in args.tasks for t in item.split(",") if t]
    unknown = [t for t in tasks if t not in valid]
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r}; valid tasks: {', '.join(valid)}")
    if not tasks:
        raise UserError(f"no task given; valid tasks: {', '.join(valid)}")
    if not math.isfinite(args.scale) or args.scale <= 0:
        raise UserError(f"--scale must be > 0, got {args.scale:g}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")

    from superb_redundancy.data.corpus.generate import generate

    start = time.perf_counter()
    paths = generate(args.root, tasks=tasks, scale=args.scale, seed=args.seed, progress=args.progress,
                     workers=args.workers, force=args.force)
    for key, path in paths.items():
        print(f"{key:<24} {path}")
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _cmd_overrides(args: argparse.Namespace) -> int:
    from superb_redundancy.data import tasks

    print(tasks.format_overrides(tasks.data_overrides(args.downstream, args.root)))
    return 0
