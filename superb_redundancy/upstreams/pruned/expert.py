"""The pruned upstream module: s3prl's stock expert of the base's family with the dropped layers made identity."""

from superb_redundancy.pruning.upstream import PrunedUpstream as UpstreamExpert, hub_entry, hub_entry_local

__all__ = ["UpstreamExpert", "hub_entry", "hub_entry_local"]
