"""``superb-redundancy mimic train`` (step 1 of mimicking: one cached teacher pass, then each mimicker trained on the
cache) and ``superb-redundancy mimic init`` (the baselines that skip step 1)."""

from __future__ import annotations

import argparse
from typing import Optional

from superb_redundancy.cli._common import FAMILY_NAMES, add_aliased, add_clip_source, add_device_arg, add_progress_arg

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("mimic", help="mimicking networks: train (step 1, teacher cache) or init (baselines)",
                       description="Mimicking networks (paper section 2.3); the artifacts load as -u mimic_local -k.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = actions.add_parser("train", help="step 1: cache the teacher once, train each mimicker config on the cache",
                           description="Step 1: run the teacher once over the clips (cached), then train each "
                                       "mimicker configuration on the cache; writes <config name>.pt per config.")
    _add_mimic_args(a, paper="the paper's 12 mimickers: linear/transformer x N 1,2 x z 32,768,4096 (lr 1e-3, "
                             "batch 128, 50 epochs)",
                    tiny="4 CPU-sized mimickers: linear/transformer x N 1,2 at z 32 (lr 3e-3, batch 4, 10 epochs)",
                    output="folder for the mimickers (<config name>.pt) and, by default, the teacher cache")
    add_clip_source(a, seed_help="seed of the --limit subset", deprecated="--audio")
    a.add_argument("--layer-i", type=int, metavar="I",
                   help="with a grid: the teacher layer (0-based) whose output the first layer (m_f) of each 2-layer "
                        "mimicker mimics (default round(2L/3) - 1; a --config file sets its own layer_i)")
    a.add_argument("--span", type=int, nargs=2, metavar=("I", "J"), help="block replacement: every mimicker "
                   "replaces transformer layers I..J only (0-based, inclusive), the teacher's others kept frozen "
                   "(default: the whole stack)")
    a.add_argument("--eval-head", metavar="EXPDIR", help="an s3prl experiment trained on the teacher: the "
                   "mimicker's accuracy through its head on the dev split after every epoch (a whole-stack "
                   "mimicker needs a head on the teacher's last layer only, trained with -s last_hidden_state: "
                   "it then scores what that head scores on the mimicker's last output; a span, any head)")
    a.add_argument("--select-by", choices=["mse", "acc"], default="mse",
                   help="keep the weights of the best validation MSE or the best --eval-head accuracy")
    a.add_argument("--cache-dir", help="teacher cache (default: OUTPUT_DIR/teacher_cache; reused when it matches)")
    a.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="cache dtype")
    add_device_arg(a)
    a.add_argument("--resume", action="store_true", help="continue interrupted trainings (<artifact>.state.pt)")
    add_progress_arg(a)
    a.set_defaults(func=_cmd_mimic_train, flush_denormals=True)

    a = actions.add_parser("init", help="baselines without step 1: non-mimicker (random layers) or classifier only",
                           description="The baselines that skip step 1: non-mimickers (mimicking layers left at "
                                       "random initialisation) and classifier only (no mimicking layer).")
    _add_mimic_args(a, paper="the paper's 7 baselines: 6 non-mimickers (linear/transformer x z 32,768,4096, N 1) "
                             "and classifier only",
                    tiny="3 CPU-sized baselines: 2 non-mimickers (linear/transformer, N 1, z 32) and classifier only",
                    output="folder for the baselines (nonmimic-<config name>.pt, classifier-only.pt)")
    a.set_defaults(func=_cmd_mimic_init)


def _add_mimic_args(p: argparse.ArgumentParser, paper: str, tiny: str, output: str) -> None:
    p.add_argument("--teacher", required=True, help="stock checkpoint path (or an s3prl hub name with --family)")
    p.add_argument("--family", choices=FAMILY_NAMES,
                   help="the teacher's family: needed when --teacher is a hub name (a checkpoint's is read from it)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", nargs="+", default=[], metavar="YAML",
                       help="MimicConfig YAML file(s) (n_layers: 0 = classifier only)")
    group.add_argument("--paper-grid", action="store_true", help=paper)
    group.add_argument("--tiny-grid", action="store_true", help=tiny)
    add_aliased(p, "--output-dir", aliases=("--output",), required=True, metavar="DIR", help=output)


def _grid(args: argparse.Namespace) -> Optional[str]:
    return "paper" if args.paper_grid else "tiny" if args.tiny_grid else None


def _cmd_mimic_train(args: argparse.Namespace) -> int:
    from superb_redundancy.mimic.artifact import describe_artifact
    from superb_redundancy.mimic.config import select_configs
    from superb_redundancy.distill.teacher_cache import step1_audio
    from superb_redundancy.mimic.train import train_grid

    configs = select_configs(args.config, grid=_grid(args), layer_i=args.layer_i, span=args.span)
    files = step1_audio(args.data, corpus=args.corpus, task=args.task, split=args.split, limit=args.limit,
                        seed=args.seed)
    paths = train_grid(args.teacher, files, configs, args.output_dir, cache_dir=args.cache_dir, family=args.family,
                       dtype=args.dtype, device=args.device, resume=args.resume, progress=args.progress,
                       eval_head=args.eval_head, select_by=args.select_by)
    print(f"{len(paths)} mimicker(s) from {len(files)} clips (use: -u mimic_local -k ARTIFACT; -f adapts the layers):")
    for path in paths:
        print(describe_artifact(path))
    return 0


def _cmd_mimic_init(args: argparse.Namespace) -> int:
    from superb_redundancy.mimic.artifact import describe_artifact
    from superb_redundancy.mimic.baselines import init_grid
    from superb_redundancy.mimic.config import select_configs

    configs = select_configs(args.config, grid=_grid(args), baselines=True)
    paths = init_grid(args.teacher, configs, args.output_dir, family=args.family)
    print(f"{len(paths)} baseline(s), no step 1 (use: -u mimic_local -k ARTIFACT; -f trains the random layers):")
    for path in paths:
        print(describe_artifact(path))
    return 0
