#!/usr/bin/env python3
"""s3prl's run_downstream.py, with superb_redundancy's upstream variants registered.

Takes s3prl's arguments, e.g.
    python run_downstream.py -m train -u pruned_wav2vec2 -g prune.yaml -d emotion -c CONFIG -p EXPDIR
and evaluates a trained head with another upstream into its own folder:
    python run_downstream.py -m evaluate -e EXPDIR/dev-best.ckpt -u pruned_wav2vec2 -g prune.yaml
"""

import sys

from superb_redundancy.hub.runner import main

if __name__ == "__main__":
    sys.exit(main())
