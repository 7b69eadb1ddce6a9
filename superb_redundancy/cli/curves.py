"""``superb-redundancy curves``: pruning curves without retraining (see :mod:`superb_redundancy.pruning.curves`).

    superb-redundancy curves --expdir EXPDIR_OR_CKPT --output-dir DIR [--similarity REPORT] [--similarity-split dev]
                             [--objectives forward backward bi knn-bi] [--repeats 5] [--subset 1.0] [--seed 0]
                             [--iterative] [--device auto]

Mounted by :mod:`superb_redundancy.cli.pruning` with :func:`add_arguments` and :func:`run`. Bad input (no such
experiment, an unsupported task or upstream, a similarity report of another model, ...) raises a
:class:`~superb_redundancy.core.errors.UserError` before any evaluation, which the CLI's ``main`` prints as one
line (exit status 2). Building the parser imports neither torch nor s3prl: the library is imported by :func:`run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from superb_redundancy.cli._common import add_aliased, add_device_arg
from superb_redundancy.core.files import check_output_dir
from superb_redundancy.pruning.objectives import OBJECTIVES

__all__ = ["add_arguments", "run"]

DESCRIPTION = ("Pruning curves without retraining (paper Fig. 2b / 2c): one trained downstream head, every pruned "
               "upstream.")
#: the default objectives, superb_redundancy.pruning.curves.PAPER_OBJECTIVES (the paper's Fig. 2b); repeated here
#: because that package imports torch (a test checks that the two agree)
PAPER_OBJECTIVES = ("forward", "backward", "bi", "knn-bi")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--expdir", required=True, metavar="EXPDIR_OR_CKPT",
                        help="an s3prl downstream expdir trained on the UNPRUNED upstream (its dev-best.ckpt, else "
                             "the latest states-*.ckpt is evaluated) or one checkpoint file")
    parser.add_argument("--similarity", metavar="REPORT",
                        help="similarity.json (or its folder) of the same upstream for the score objectives and "
                             "Fig. 2c; default: computed on the experiment's --similarity-split audio")
    parser.add_argument("--similarity-split", default="dev", choices=("train", "dev", "test"),
                        help="the split whose audio the similarity (and so the score orders) comes from when no "
                             "--similarity is given; dev as the paper's code: never the scored test items")
    parser.add_argument("--objectives", nargs="+", default=list(PAPER_OBJECTIVES), choices=sorted(OBJECTIVES),
                        help="pruning objectives; the default is the paper's Fig. 2b")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per variant (the paper's N)")
    parser.add_argument("--subset", type=float, default=1.0,
                        help="fraction of the test set each repeat averages over, drawn with seed + repeat "
                             "(1.0: every repeat is the whole test set, so the repeats are identical)")
    parser.add_argument("--seed", type=int, default=0, help="seed of repeat 0 (repeat r uses seed + r)")
    parser.add_argument("--iterative", action="store_true",
                        help="recompute score-objective orders on the pruned model after each removal "
                             "(L-2 extra similarity passes over the similarity split per score objective)")
    add_aliased(parser, "--output-dir", aliases=("--output",), required=True, metavar="DIR",
                help="folder for curves, figures and the table")
    add_device_arg(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from superb_redundancy.pruning.curves.run import pruning_curves
    from superb_redundancy.pruning.curves.settings import CurveSettings

    settings = CurveSettings(objectives=tuple(args.objectives), repeats=args.repeats, subset=args.subset,
                             seed=args.seed, iterative=args.iterative, device=args.device,
                             similarity_split=args.similarity_split)
    check_output_dir(args.output_dir)
    result = pruning_curves(args.expdir, similarity=args.similarity, settings=settings, output=args.output_dir)
    print(result.summary())
    print(result.table())
    print(f"curves, figures and table: {Path(args.output_dir)}")
    return 0
