"""The mimic upstream module: the teacher's CNN front end followed by 1-2 mimicking layers, or for a span [i, j] the
teacher's own layers around mimicking layers that replace layers i..j (see superb_redundancy.mimic)."""

from superb_redundancy.mimic.artifact import hub_entry, hub_entry_local
from superb_redundancy.mimic.upstream import MimicUpstream as UpstreamExpert

__all__ = ["UpstreamExpert", "hub_entry", "hub_entry_local"]
