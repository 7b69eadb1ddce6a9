"""The mimic upstream module: the teacher's CNN front end followed by 1-2 mimicking layers (see superb_redundancy.mimic)."""

from superb_redundancy.mimic import MimicUpstream as UpstreamExpert  # noqa: F401
