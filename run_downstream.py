#!/usr/bin/env python3
"""s3prl's run_downstream.py, with superb_redundancy's upstream variants registered.

Takes exactly s3prl's arguments, e.g.
    python run_downstream.py -m train -u pruned_wav2vec2 -g prune.yaml -d emotion -c CONFIG -p EXPDIR
"""

from superb_redundancy.downstream_runner import main

if __name__ == "__main__":
    main()
