"""``python -m superb_redundancy``: the ``superb-redundancy`` command."""

import sys

from superb_redundancy.cli import main

sys.exit(main())
