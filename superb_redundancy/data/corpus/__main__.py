"""``python -m superb_redundancy.data.corpus --root DIR [--scale S] [--seed N] [--tasks T ...]``: the same as
``superb-redundancy corpus`` (the parser lives in :mod:`superb_redundancy.cli.data`)."""

import sys

from superb_redundancy.cli.data import corpus_main as main

if __name__ == "__main__":
    sys.exit(main())
