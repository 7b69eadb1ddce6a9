"""superb-redundancy: layer-similarity analysis, pruned and mimicked upstreams for s3prl (SUPERB).

Importing the package installs the compat import hook (:mod:`superb_redundancy.hub.compat`): whatever imports s3prl
afterwards gets the fixes first. Nothing heavy (torch, s3prl) is imported here.
"""

from superb_redundancy.hub import compat as _compat

_compat.install_hook()
