"""``superb-redundancy similarity``: layer similarity (cosine, CKA, mutual kNN) of one model with its blocks, or of
two models against each other (``--against``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from superb_redundancy.cli._common import (add_aliased, add_data_args, add_upstream_args, check_enough_clips,
                                           check_max_seconds, data_label)
from superb_redundancy.core.errors import UserError

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("similarity", help="layer similarity (cosine, CKA, mutual kNN) with blocks and a heatmap",
                       description="Cosine, CKA and mutual-kNN matrices over the L+1 hidden states of -u on the "
                                   "clips of --data, with automatic block detection and a heatmap (or, with "
                                   "--against, of -u against a reference model).")
    add_upstream_args(p)
    p.add_argument("--against", metavar="NAME",
                   help="a reference upstream (e.g. the teacher of a pruned or mimicking -u): instead of blocks, the "
                        "matrices of every -u hidden state (rows) against every reference hidden state (columns) on "
                        "the same clips -> cross_similarity.json/.png")
    # --against_ckpt, --against_model_config: the spellings of s3prl's -k/-g this flag family once copied
    add_aliased(p, "--against-ckpt", aliases=("--against_ckpt",), deprecated=False, metavar="CKPT",
                help="the reference's checkpoint path (as -k)")
    add_aliased(p, "--against-model-config", aliases=("--against_model_config",), deprecated=False,
                metavar="CONFIG", help="the reference's model config (as -g)")
    add_data_args(p, required=True)
    p.add_argument("--pool", default="mean", choices=["mean", "flatten", "frames"],
                   help="clip -> sample: mean over time, flatten (paper code; equal lengths), frames")
    p.add_argument("--averaging", default="batch", choices=["batch", "whole"],
                   help="batch: per batch of --batch-size samples, averaged (the paper); whole: the whole set once")
    p.add_argument("--batch-size", type=int, default=128, help="samples per batch")
    p.add_argument("--k", type=int, default=8, help="neighbours for mutual kNN")
    p.add_argument("--max-samples", type=int, default=4096, help="sample cap for --averaging whole")
    p.add_argument("--max-seconds", type=float, help="crop longer clips to this length")
    p.add_argument("--clip-seconds", type=float,
                   help="fit every clip to this length, cut or padded with zeros (--pool flatten needs one length; "
                        "the paper: 1 for Speech Commands)")
    p.add_argument("--blocks", type=int, default=_ONE_MODEL_ONLY["blocks"][1],
                   help="number of contiguous blocks to detect")
    p.add_argument("--include-input", action="store_true",
                   help="blocks and heat maps over all L+1 hidden states (default: the L transformer-layer outputs, "
                        "as the paper); the saved matrices always hold all L+1")
    p.add_argument("--permutations", type=int, default=_ONE_MODEL_ONLY["permutations"][1],
                   help="permutation-null draws per metric, 0 for none")
    p.add_argument("--no-random-baseline", dest="random_baseline", action="store_false",
                   help="skip the same architecture at random initialisation (a second pass over the clips)")
    add_aliased(p, "--output-dir", aliases=("--output",), required=True, metavar="DIR",
                help="folder for similarity.json and similarity.png (cross_similarity.* with --against)")
    p.set_defaults(func=_cmd_similarity)


#: options of the one-model analysis (blocks, nulls, baseline) a cross-model run has no use for: dest -> (flag,
#: default); the parser takes its defaults from here
_ONE_MODEL_ONLY = {"blocks": ("--blocks", 2), "include_input": ("--include-input", False),
                   "permutations": ("--permutations", 1000), "random_baseline": ("--no-random-baseline", True)}


def _check_against_args(args: argparse.Namespace) -> None:
    """--against_* only with --against; with it, no option of the one-model analysis (it would be ignored)."""
    if not args.against:
        given = [flag for flag in ("against_ckpt", "against_model_config") if getattr(args, flag)]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} names the reference's checkpoint or config: give "
                            f"--against NAME too")
        return
    given = [flag for dest, (flag, default) in _ONE_MODEL_ONLY.items() if getattr(args, dest) != default]
    if given:
        raise UserError(f"{given[0]} is for one model's blocks; with --against the command writes cross-model "
                         f"matrices only (no blocks, nulls or random-init baseline)")


def _similarity_settings(args: argparse.Namespace):
    from superb_redundancy.analysis.report import SimilaritySettings

    return SimilaritySettings(pool=args.pool, averaging=args.averaging, batch_size=args.batch_size, k=args.k,
                              max_samples=args.max_samples, n_blocks=args.blocks, max_seconds=args.max_seconds,
                              clip_seconds=args.clip_seconds,
                              include_input=args.include_input, permutations=args.permutations)


def _model_label(name: str, ckpt: Optional[str]) -> str:
    """How a model is named on the cross-model heat map: its upstream name, and its checkpoint file if any."""
    return f"{name} ({Path(ckpt).name})" if ckpt else name


def _cmd_similarity(args: argparse.Namespace) -> int:
    from superb_redundancy.analysis.report import analyse, random_init_upstream
    from superb_redundancy.core.audio import check_audio, list_audio
    from superb_redundancy.core.files import check_output_dir, checkpoint_sha256
    from superb_redundancy.hub.install import build_upstream

    # every input and the output checked before the model loads and the pass starts
    check_max_seconds(args.max_seconds)
    check_max_seconds(args.clip_seconds, "--clip-seconds")
    _check_against_args(args)
    check_output_dir(args.output_dir, "--output-dir")
    settings = _similarity_settings(args)
    files = check_audio(list_audio(args.data, limit=args.limit, seed=args.seed))
    check_enough_clips(files, settings, args.data)
    if args.against:
        return _cmd_cross_similarity(args, settings, files)
    upstream = build_upstream(args.upstream, args.upstream_ckpt, args.upstream_model_config)
    baseline = None
    if args.random_baseline:
        baseline = random_init_upstream(args.upstream, args.upstream_ckpt)
        if baseline is None:
            print(f"note: no random-initialisation baseline for {args.upstream} (stock <family>_local names only)",
                  file=sys.stderr)
    source = {"upstream": args.upstream, "ckpt": args.upstream_ckpt, "model_config": args.upstream_model_config,
              "data": data_label(args.data), "clips": len(files),
              # the analysed model by content: `prune --similarity` refuses the report for another base
              "model_sha256": checkpoint_sha256(args.upstream_ckpt)}
    report = analyse(upstream, files, settings, device=args.device, source=source, baseline_upstream=baseline)
    paths = report.save(args.output_dir, title=f"{args.upstream} ({report.num_samples} samples, pool={args.pool})")
    print(f"layer similarity of {args.upstream} over {report.num_samples} samples; blocks:")
    print(report.describe_blocks())
    print(f"matrices: {paths['json']}\nheatmap:  {paths['figure']}")
    return 0


def _cmd_cross_similarity(args: argparse.Namespace, settings, files: list) -> int:
    from superb_redundancy.analysis.cross import cross_analyse
    from superb_redundancy.core.files import checkpoint_sha256
    from superb_redundancy.hub.install import build_upstream

    # both models load before the pass: a bad name or checkpoint of either fails in one line, before any work
    variant = build_upstream(args.upstream, args.upstream_ckpt, args.upstream_model_config)
    try:
        reference = build_upstream(args.against, args.against_ckpt, args.against_model_config)
    except UserError as error:  # say which of the two models it is
        raise UserError(f"reference (--against {args.against}): {error}") from None
    names = (_model_label(args.upstream, args.upstream_ckpt), _model_label(args.against, args.against_ckpt))
    if names[0] == names[1]:
        names = (f"{names[0]} [rows]", f"{names[1]} [columns]")
    source = {"variant": {"upstream": args.upstream, "ckpt": args.upstream_ckpt,
                          "model_config": args.upstream_model_config,
                          "model_sha256": checkpoint_sha256(args.upstream_ckpt)},
              "reference": {"upstream": args.against, "ckpt": args.against_ckpt,
                            "model_config": args.against_model_config,
                            "model_sha256": checkpoint_sha256(args.against_ckpt)},
              "data": data_label(args.data), "clips": len(files)}
    report = cross_analyse(variant, reference, files, settings, device=args.device, names=names, source=source)
    paths = report.save(args.output_dir, title=f"{names[0]} vs {names[1]} ({report.num_samples} samples, "
                                           f"pool={args.pool})")
    print(report.describe())
    print(f"matrices: {paths['json']}\nheatmap:  {paths['figure']}")
    return 0


