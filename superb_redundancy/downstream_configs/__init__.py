"""Downstream configs for s3prl's runner (installed as superb_redundancy.downstream_configs; data only)."""
