"""Run s3prl's own downstream runner with our variants registered (train, evaluate and resume alike).

s3prl stores no upstream in its experiment checkpoints and resolves ``-u`` by name on every call, so the
registration has to happen on every call, evaluate (``-m evaluate -e``) and resume (``-a``) included.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from . import registry

__all__ = ["main", "variants_help"]


def variants_help() -> str:
    lines = ["", "superb_redundancy upstream variants (-u NAME):"]
    for name, entry in sorted(registry.UPSTREAMS.items()):
        lines.append(f"  {name:<28} {entry.description}")
    from . import downstream_registry

    lines += ["", "superb_redundancy downstream tasks (-d NAME), besides s3prl's own:"]
    for name, entry in sorted(downstream_registry.DOWNSTREAMS.items()):
        lines.append(f"  {name:<28} {entry.description}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "LOCAL_RANK" in os.environ and "--local_rank" not in argv:
        # torchrun passes the rank in the environment; s3prl's runner reads it from --local_rank
        argv += ["--local_rank", os.environ["LOCAL_RANK"]]
    registry.install()
    from s3prl import run_downstream

    sys.argv = ["run_downstream.py", *argv]
    try:
        run_downstream.main()
    except SystemExit:
        if {"-h", "--help"} & set(argv):
            print(variants_help())
        raise


if __name__ == "__main__":
    main()
