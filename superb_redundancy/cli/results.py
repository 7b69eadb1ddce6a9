"""``superb-redundancy leaderboard``: harvest s3prl experiments into run records; tables, figures, an HTML page."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="harvest s3prl experiments into records; tables, figures, HTML page",
                       description="Harvest evaluated s3prl experiments into run records, profile each variant, "
                                   "and write per-task and overview tables, figures and one HTML page.")
    p.add_argument("--experiments", nargs="*", default=[], metavar="DIR",
                   help="folders holding s3prl expdirs to harvest")
    p.add_argument("--records", default="leaderboard/records",
                   help="run records (JSON), read and written (default: leaderboard/records)")
    p.add_argument("--output", default="leaderboard", metavar="DIR",
                   help="where tables, figures and index.html go (default: leaderboard)")
    p.add_argument("--repeats", type=int, default=30,
                   help="latency rounds (each times every variant once, interleaved); one timing averages 1 pass, "
                        "doubled up to 32 until variants whose MACs differ by more than 10%% have separate IQRs")
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing (default 1: steadier)")
    p.add_argument("--device", default="cpu", help="where variants are timed: cpu (default), cuda, cuda:N")
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
        raise ValueError(f"no run records in {args.records}: pass --experiments DIR with evaluated s3prl runs")
    frame, timing = build(records, repeats=args.repeats, device=args.device, threads=args.threads)
    written = write_leaderboard(frame, args.output, timing=timing)
    print(format_tables(frame))
    print(f"\nleaderboard: {written['index.html']}")
    return 0

