"""``python -m superb_redundancy.corpus --root DIR [--scale S] [--seed N] [--tasks T ...]``"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .generate import TASKS, generate

__all__ = ["main", "build_parser", "add_arguments", "run"]

DESCRIPTION = "Generate the deterministic synthetic SUPERB corpus (espeak-ng speech) in s3prl's layouts."


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m superb_redundancy.corpus", description=DESCRIPTION)
    return add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", type=Path, default=Path("work/study/data"),
                        help="output folder (default: work/study/data, what downstream_configs/*/*.yaml point at)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the clip counts (default 1: the sizes a score needs, e.g. 408 KS test clips)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), metavar="TASK",
                        help=f"tasks to generate (default: all); any of {', '.join(TASKS)}; commas also separate")
    parser.add_argument("--workers", type=int, default=None, help="synthesis processes (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the marker says it is complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog)
    return run(parser.parse_args(argv), parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    tasks = [t for item in args.tasks for t in item.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task {unknown[0]!r}; valid tasks: {', '.join(TASKS)}")
    if not tasks:
        parser.error(f"no task given; valid tasks: {', '.join(TASKS)}")
    if not math.isfinite(args.scale) or args.scale <= 0:
        parser.error(f"--scale must be > 0, got {args.scale:g}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    start = time.perf_counter()
    paths = generate(args.root, tasks=tasks, scale=args.scale, seed=args.seed, progress=not args.no_progress,
                     workers=args.workers, force=args.force)
    for key, path in paths.items():
        print(f"{key:<24} {path}")
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
