"""``superb-redundancy``: one command, one subcommand per concept. Parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["main"]


def _cmd_main(args: argparse.Namespace) -> int:
    from .default_job import build_leaderboard, format_runs, run_default_job
    from .leaderboard import format_tables

    runs = run_default_job(Path(args.workdir), tasks=args.tasks, corpus_scale=args.scale, device=args.device)
    print()
    print("Test metrics of the tiny wav2vec2 and its pruned variant (synthetic corpus, s3prl's runner):")
    print(format_runs(runs))
    print("\n[4/4] leaderboard (harvested records + compute profiles)", flush=True)
    frame, written = build_leaderboard(Path(args.workdir), Path(args.leaderboard))
    print(format_tables(frame))
    print(f"\nleaderboard: {written['index.html']}")
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


def _cmd_similarity(args: argparse.Namespace) -> int:
    from .analysis import SimilaritySettings, analyse
    from .features import list_audio
    from .registry import build_upstream

    settings = SimilaritySettings(pool=args.pool, averaging=args.averaging, batch_size=args.batch_size, k=args.k,
                                  max_samples=args.max_samples, n_blocks=args.blocks, max_seconds=args.max_seconds)
    files = list_audio(args.data, limit=args.limit, seed=args.seed)  # bad paths fail before the model loads
    upstream = build_upstream(args.upstream, args.upstream_ckpt, args.upstream_model_config)
    source = {"upstream": args.upstream, "ckpt": args.upstream_ckpt, "model_config": args.upstream_model_config,
              "data": str(args.data), "clips": len(files)}
    report = analyse(upstream, files, settings, device=args.device, source=source)
    paths = report.save(args.output, title=f"{args.upstream} ({report.num_samples} samples, pool={args.pool})")
    print(f"layer similarity of {args.upstream} over {report.num_samples} samples; blocks:")
    print(report.describe_blocks())
    print(f"matrices: {paths['json']}\nheatmap:  {paths['figure']}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from .analysis import SimilarityReport, SimilaritySettings, analyse, plan_pruning
    from .features import list_audio
    from .prune_spec import PruneSpec
    from .pruned_upstream import build_pruned, save_pruned
    from .hf_models import is_hf_model_dir, prune_hf_cli

    if is_hf_model_dir(args.base):
        return prune_hf_cli(args)
    if args.output_dir:
        raise ValueError(f"--output-dir is for a Hugging Face save_pretrained --base; {args.base} is not one")
    amount = args.amount
    if args.similarity:
        report = SimilarityReport.load(args.similarity)
        settings = report.settings
    else:
        if not args.data:
            raise ValueError("give --similarity REPORT (from `superb-redundancy similarity`) or --data AUDIO_DIR")
        settings = SimilaritySettings()
        report = None
    files = list_audio(args.data, limit=args.limit, seed=args.seed) if args.data else None
    if args.iterative and files is None:
        raise ValueError("--iterative recomputes scores on the pruned model: it needs --data AUDIO_DIR")

    def analyse_with(dropped: list[int]) -> SimilarityReport:
        model = build_pruned(args.family, PruneSpec(base=args.base, drop_layers=dropped))
        return analyse(model, files, settings, device=args.device)

    if report is None:
        report = analyse_with([])
    plan = plan_pruning(report, args.objective, amount, keep_first=not args.allow_first,
                        reanalyse=analyse_with if args.iterative else None)
    print(plan.describe())
    spec = PruneSpec(base=args.base, drop_layers=plan.drop_layers,
                     notes={"objective": plan.objective, "iterative": plan.iterative, "amount": args.amount,
                            "order": plan.order, "scores": plan.scores})
    if args.output:
        print(f"prune spec: {spec.to_yaml(args.output)}  (use: -u pruned_{args.family} -g {args.output})")
    if args.artifact:
        path = save_pruned(args.family, spec, args.artifact)
        print(f"pruned artifact: {path}  (use: -u pruned_{args.family}_local -k {path})")
    return 0


def _amount(text: str) -> int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"must be a layer count (3) or a fraction of the layers (0.25), got {text!r}")


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from .harvest import harvest, load_records
    from .leaderboard import build, format_tables, variant_profile, write_leaderboard

    if args.experiments:
        records, problems = harvest(args.experiments, args.records)
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
    records = load_records(args.records)
    if not records:
        raise ValueError(f"no run records in {args.records}: pass --experiments DIR with evaluated s3prl runs")
    frame = build(records, profile=lambda r: variant_profile(r, repeats=args.repeats))
    written = write_leaderboard(frame, args.output)
    print(format_tables(frame))
    print(f"\nleaderboard: {written['index.html']}")
    return 0


def _add_upstream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-u", "--upstream", required=True, help="any s3prl hub name, ours included")
    p.add_argument("-k", "--upstream_ckpt", help="checkpoint path (for _local names)")
    p.add_argument("-g", "--upstream_model_config", help="model config (our pruned_*: a prune spec)")


def _add_data_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data", required=required, help="folder of .wav/.flac audio (searched recursively)")
    p.add_argument("--limit", type=int, help="random subset of this many clips (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


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
    p.add_argument("--leaderboard", default="leaderboard", help="where the leaderboard goes (default: ./leaderboard)")
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

    p = sub.add_parser("similarity", help="layer similarity (cosine, CKA, mutual kNN) with blocks and a heatmap")
    _add_upstream_args(p)
    _add_data_args(p, required=True)
    p.add_argument("--pool", default="mean", choices=["mean", "flatten", "frames"],
                   help="clip -> sample: mean over time (default), flatten (paper code; equal lengths), frames")
    p.add_argument("--averaging", default="batch", choices=["batch", "whole"],
                   help="batch: per batch of --batch-size samples, averaged (the paper); whole: the whole set once")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--k", type=int, default=8, help="neighbours for mutual kNN (default 8)")
    p.add_argument("--max-samples", type=int, default=4096, help="sample cap for --averaging whole")
    p.add_argument("--max-seconds", type=float, help="crop clips to this length")
    p.add_argument("--blocks", type=int, default=2, help="number of contiguous blocks to detect")
    p.add_argument("--output", required=True, help="folder for similarity.json and similarity.png")
    p.set_defaults(func=_cmd_similarity)

    p = sub.add_parser("prune", help="pruning order by an objective; writes the prune spec and/or artifact")
    p.add_argument("--family", required=True, choices=["wav2vec2", "hubert", "wavlm"])
    p.add_argument("--base", required=True,
                   help="s3prl hub name of the family, a checkpoint path, or a Hugging Face save_pretrained folder")
    p.add_argument("--objective", required=True, choices=sorted(__import__("superb_redundancy.pruning_order",
                                                                           fromlist=["OBJECTIVES"]).OBJECTIVES))
    p.add_argument("--amount", required=True, type=_amount, help="layers to drop: a count (3) or a fraction of L (0.25)")
    p.add_argument("--similarity", help="similarity.json of the base (else computed from --data)")
    _add_data_args(p, required=False)
    p.add_argument("--iterative", action="store_true", help="recompute scores after each removal")
    p.add_argument("--allow-first", action="store_true", help="allow pruning layer 0 (never, by default)")
    p.add_argument("--output", help="prune spec YAML to write")
    p.add_argument("--artifact", help="pruned artifact to write")
    p.add_argument("--output-dir", help="Hugging Face --base: the pruned save_pretrained folder to write")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("leaderboard", help="harvest s3prl experiments into records; tables, figures, HTML page")
    p.add_argument("--experiments", nargs="*", default=[], help="folders holding s3prl expdirs to harvest")
    p.add_argument("--records", default="leaderboard/records", help="run records (JSON), read and written")
    p.add_argument("--output", default="leaderboard", help="where tables, figures and index.html go")
    p.add_argument("--repeats", type=int, default=5, help="latency repeats per variant")
    p.set_defaults(func=_cmd_leaderboard)

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
