"""``superb-redundancy leaderboard``: harvest s3prl experiments into run records; tables, figures, an HTML page."""

from __future__ import annotations

import argparse
import sys

from superb_redundancy.cli._common import add_aliased, add_device_arg

from superb_redundancy.core.errors import UserError

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="harvest s3prl experiments into records; tables, figures, HTML page",
                       description="Harvest evaluated s3prl experiments into run records, profile each variant, "
                                   "and write per-task and overview tables, figures and one HTML page.")
    p.add_argument("--experiments", nargs="*", default=[], metavar="DIR",
                   help="folders holding s3prl expdirs to harvest")
    p.add_argument("--records", default="leaderboard/records", metavar="DIR",
                   help="run records (JSON), read and written")
    add_aliased(p, "--output-dir", aliases=("--output",), default="leaderboard", metavar="DIR",
                help="where tables, figures and index.html go")
    # --repeats: the older spelling (it means the evaluation repeats of `curves`)
    add_aliased(p, "--timing-rounds", aliases=("--repeats",), type=int, default=30, metavar="N",
                help="latency rounds (each times every variant once, interleaved); one timing averages 1 pass, "
                     "doubled up to 32 until variants whose MACs differ by more than 10%% have separate IQRs")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing; 1 is steadier")
    add_device_arg(p, "where variants are timed")
    p.set_defaults(func=_cmd_leaderboard)


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    import warnings

    from superb_redundancy.results.leaderboard.frame import build
    from superb_redundancy.results.leaderboard.page import write_leaderboard
    from superb_redundancy.results.leaderboard.tables import format_tables
    from superb_redundancy.results.records import harvest, load_records

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.experiments:
            harvest(args.experiments, args.records)
        records = load_records(args.records)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if not records:
        raise UserError(f"no run records in {args.records}: pass --experiments DIR with evaluated s3prl runs")
    frame, timing = build(records, repeats=args.timing_rounds, device=args.device, threads=args.threads)
    written = write_leaderboard(frame, args.output_dir, timing=timing)
    print(format_tables(frame))
    print(f"\nleaderboard: {written['index.html']}")
    return 0

