"""The pruned hubert upstream module: s3prl's stock hubert expert with dropped layers made identity."""

from superb_redundancy.pruning.upstream import PrunedUpstream as UpstreamExpert, hub_entry, hub_entry_local

__all__ = ["UpstreamExpert", "FAMILY", "hub_entry", "hub_entry_local"]

FAMILY = "hubert"
