"""s3prl-style upstream families (one folder each, hubconf.py + expert.py), installed as superb_redundancy.upstreams."""
