"""``superb-redundancy``: one command, one subcommand per concept. Parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["main"]


def _cmd_main(args: argparse.Namespace) -> int:
    from .default_job import format_runs, run_default_job

    runs = run_default_job(Path(args.workdir), tasks=args.tasks, corpus_scale=args.scale, device=args.device)
    print()
    print("Test metrics of the tiny wav2vec2 and its pruned variant (synthetic corpus, s3prl's runner):")
    print(format_runs(runs))
    failed = [r for r in runs if r.error]
    for run in failed:
        print(f"failed: {run.variant.label} / {run.task}: {run.error}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_tiny_models(args: argparse.Namespace) -> int:
    from .tiny_models import write_all

    for family, path in write_all(Path(args.output), seed=args.seed).items():
        print(f"{family}: {path}")
    return 0


def _cmd_upstreams(args: argparse.Namespace) -> int:
    from . import registry

    registry.install()
    for name, entry in sorted(registry.UPSTREAMS.items()):
        print(f"{name:<28} {entry.description}")
    return 0


def _cmd_prune_spec(args: argparse.Namespace) -> int:
    from .prune_spec import PruneSpec
    from .pruned_upstream import save_pruned

    spec = PruneSpec(base=args.base, drop_layers=args.drop, keep_layers=args.keep, compact=args.compact)
    if args.artifact:
        from . import registry

        registry.install()
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    if args.output:
        path = spec.to_yaml(args.output)
        print(f"prune spec: {path}  (use: -u pruned_{args.family} -g {path})")
    return 0


def _passthrough(target: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        module_name, _, function = target.partition(":")
        result = getattr(importlib.import_module(module_name), function)(args.rest)
        return int(result or 0)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="superb-redundancy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("main", help="the embedded default job: synthetic corpus, tiny models, all four tasks")
    p.add_argument("--workdir", default="work", help="where data, models, experiments go (default: ./work)")
    p.add_argument("--tasks", nargs="+", default=["speech_commands", "voxceleb1", "emotion", "asr"],
                   choices=["speech_commands", "voxceleb1", "emotion", "asr"])
    p.add_argument("--scale", type=float, default=1.0, help="corpus size multiplier (default 1)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_main)

    p = sub.add_parser("corpus", help="generate the synthetic SUPERB corpus (see: corpus -h)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_passthrough("superb_redundancy.corpus.__main__:main"))

    p = sub.add_parser("tiny-models", help="write tiny random checkpoints in s3prl's stock formats")
    p.add_argument("--output", default="work/models")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_tiny_models)

    p = sub.add_parser("prune-spec", help="write a prune spec (-g) and/or a pruned artifact (-k) by layer indices")
    p.add_argument("--family", required=True, choices=["wav2vec2", "hubert", "wavlm"])
    p.add_argument("--base", required=True, help="s3prl hub name of the family, or a checkpoint path")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--drop", type=int, nargs="+", help="0-based transformer layers to drop")
    group.add_argument("--keep", type=int, nargs="+", help="0-based transformer layers to keep")
    p.add_argument("--compact", action="store_true", help="hidden_states only of kept layers")
    p.add_argument("--output", help="prune spec YAML to write")
    p.add_argument("--artifact", help="self-describing pruned checkpoint to write")
    p.set_defaults(func=_cmd_prune_spec)

    p = sub.add_parser("upstreams", help="list the upstream variants registered into s3prl.hub")
    p.set_defaults(func=_cmd_upstreams)

    p = sub.add_parser("run-downstream", help="s3prl's run_downstream.py with our variants (same arguments)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_passthrough("superb_redundancy.downstream_runner:main"))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is _cmd_prune_spec and not (args.output or args.artifact):
        parser.error("prune-spec: give --output SPEC.yaml and/or --artifact PATH.pt")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:  # bad input: one line, no traceback
        print(f"superb-redundancy {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
