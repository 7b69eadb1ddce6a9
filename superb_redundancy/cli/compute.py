"""``superb-redundancy profile``: parameters, MACs and latency of an upstream (see :mod:`superb_redundancy.compute`).

    superb-redundancy profile -u NAME [-k CKPT] [-g SPEC] [--arch wav2vec2_base] [--seconds 1 10]
                              [--lengths-file F] [--timing-passes N] [--warmup-passes N] [--threads N]
                              [--device auto] [--no-latency] [--output OUT.json]

:func:`register` mounts it in ``superb-redundancy`` (:mod:`superb_redundancy.cli`) with :func:`add_arguments` and
:func:`run`, which a larger CLI can mount as well. Bad input (unknown upstream or architecture, non-positive
seconds, a missing lengths file, ...) raises :class:`~superb_redundancy.compute.ProfileError` (a UserError) with
one line, before any model is built; the CLI's ``main`` prints it as ``superb-redundancy profile: error: ...`` and
exits with status 2.

Importing this module imports no torch (``superb-redundancy -h`` stays fast): the library is imported in :func:`run`.
"""

from __future__ import annotations

import argparse

from superb_redundancy.cli._common import add_aliased, add_device_arg, add_s3prl_model_args
from superb_redundancy.core.files import write_json

__all__ = ["register", "add_arguments", "run"]


def register(sub) -> None:
    """The ``profile`` subcommand, on the subparsers of ``superb-redundancy``."""
    p = sub.add_parser("profile", help="parameters, MACs and latency of any upstream or a real-size architecture",
                       description="Parameters, MACs and latency of an upstream, or of a real-size architecture "
                                   "with random weights.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-u", "--upstream", default=None,
                        help="an s3prl hub name (stock or registered by superb_redundancy, e.g. wav2vec2_local, "
                             "pruned_wav2vec2); with --arch defaults to <family>_local, or pruned_<family> with -g")
    add_s3prl_model_args(parser, "ckpt", "model_config")
    parser.add_argument("--arch", default=None,
                        help="profile a real-size architecture with random weights instead of a checkpoint "
                             "(wav2vec2_base, wav2vec2_large, hubert_base, hubert_large, wavlm_base, wavlm_large, "
                             "distilhubert)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --arch random weights")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0],
                        help="clip lengths in seconds, each profiled at batch size 1")
    parser.add_argument("--lengths-file", default=None,
                        help="one sample count or audio path per line: MACs summed over them at batch 1 "
                             "(SUPERB: 32 LibriSpeech test-clean utterances)")
    # --repeats/--warmup: the older spellings (--repeats means the evaluation repeats of `curves`)
    add_aliased(parser, "--timing-passes", aliases=("--repeats",), type=int, default=10, metavar="N",
                help="timed forward passes per length")
    add_aliased(parser, "--warmup-passes", aliases=("--warmup",), type=int, default=3, metavar="N",
                help="untimed forward passes first")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads while timing")
    add_device_arg(parser, "where the model is profiled")
    parser.add_argument("--no-latency", dest="latency", action="store_false", help="skip the timing")
    add_aliased(parser, "--output", aliases=("--json",), default=None, metavar="FILE.json",
                help="also write the profile as JSON here (atomically)")
    return parser


def run(args: argparse.Namespace) -> int:
    from superb_redundancy.compute.profile import format_profile_table, profile_upstream  # torch: only when run

    # profile_upstream checks every input (validate_request) before any model work; a ProfileError propagates
    profile = profile_upstream(name=args.upstream, ckpt=args.ckpt, model_config=args.model_config,
                               seconds=args.seconds, lengths_file=args.lengths_file, repeats=args.timing_passes,
                               warmup=args.warmup_passes, threads=args.threads, device=args.device, arch=args.arch,
                               seed=args.seed, latency=args.latency)
    print(format_profile_table(profile))
    if args.output:
        path = write_json(args.output, profile, indent=2)  # atomic: temp file beside it, then renamed
        print(f"\nwrote {path}")
    return 0
